//! The kernel's input grammars (table arguments, sysfs state writes, DM
//! messages) and the header/entry decoders: no panic on any input.
#![no_main]

use bow_core::{format, state, table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let words: Vec<&[u8]> = data.split(|b| *b == b' ').collect();
    let _ = table::parse_args(words.iter().copied());
    for st in [state::State::Trim, state::State::Checkpoint, state::State::Committed] {
        let _ = state::state_write(data, st);
    }
    let _ = state::Message::parse(words.iter().copied());
    if let Ok(args) = table::parse_args(words.iter().copied()) {
        let n = data.len() as u64;
        let _ = table::check_geometry(&args, 512 << (n % 4), n.wrapping_mul(0x9e37_79b9), n % 2 == 0);
    }
    let _ = format::LogHeader::decode(data);
    let _ = format::holds_log(data);
    for i in 0..200 {
        let _ = format::LogEntry::decode_at(data, i);
    }
});
