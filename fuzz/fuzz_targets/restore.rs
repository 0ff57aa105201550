//! The on-disk log is untrusted: any device content must give a verdict
//! without a panic or a hang, validation must never write, and a log that
//! validates must plan and replay without a panic.
#![no_main]

use bow_core::restore;
use bow_core::testimg::MemDisk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = MemDisk { data: data.to_vec(), writable: false };
    let verdict = restore::validate(&mut d);
    assert!(d.data == data, "validation changed the device");
    if let Ok(Some(log)) = verdict {
        let plan = restore::plan(&log);
        assert!(!plan.is_empty());
        d.writable = true;
        restore::restore(&mut d, &log, &mut ()).expect("a validated log replays");
        // The replay ends by putting the original block 0 back: a second
        // validation must not find the same log again.
        let again = restore::validate(&mut d);
        if let Ok(Some(l2)) = again {
            assert!(l2 != log, "restore left the same log behind");
        }
    } else {
        let mut r = MemDisk { data: data.to_vec(), writable: true };
        let _ = restore::roll_forward(&mut r);
    }
});
