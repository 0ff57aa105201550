//! The on-disk log is untrusted: any device content must give a verdict
//! without a panic or a hang, validation must never write, and a log that
//! validates must plan and replay without a panic.
#![no_main]

use bow_core::restore::{self, Disk, IoError, IoOp};
use libfuzzer_sys::fuzz_target;

/// A device whose content is the fuzz input. Writes are allowed only when
/// `writable` (the replay of a validated log, or roll-forward).
struct Dev {
    data: Vec<u8>,
    writable: bool,
}

impl Disk for Dev {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), IoError> {
        let end = o.checked_add(b.len() as u64).filter(|&e| e <= self.size());
        let Some(end) = end else {
            return Err(IoError { op: IoOp::Read, offset: o, errno: 5 });
        };
        b.copy_from_slice(&self.data[o as usize..end as usize]);
        Ok(())
    }
    fn write_at(&mut self, o: u64, b: &[u8]) -> Result<(), IoError> {
        assert!(self.writable, "validation wrote to the device");
        let end = o.checked_add(b.len() as u64).filter(|&e| e <= self.size());
        let Some(end) = end else {
            return Err(IoError { op: IoOp::Write, offset: o, errno: 5 });
        };
        self.data[o as usize..end as usize].copy_from_slice(b);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut d = Dev { data: data.to_vec(), writable: false };
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
        let mut r = Dev { data: data.to_vec(), writable: true };
        let _ = restore::roll_forward(&mut r);
    }
});
