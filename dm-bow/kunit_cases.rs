// SPDX-License-Identifier: GPL-2.0

//! KUnit cases, run when the module loads into a kernel with KUnit. They
//! exercise the module's real code in kernel context: the shared checksum
//! against the kernel's own `crc32_le`, the table grammar `ctr` uses, log
//! blocks encoded into kernel memory, the state machine, the status writer
//! and the chunked walk of the range tree that state changes make.

use crate::bow_core::crc::crc32;
use crate::bow_core::format::{entries_per_block, holds_log, LogEntry, LogHeader};
use crate::bow_core::rangemap::{self, Kind};
use crate::bow_core::state::{state_write, Message, State, StateError};
use crate::bow_core::table::{check_geometry, parse_args, TableError};
use crate::ffi::{kernel_crc32_le, kunit_case, StatusBuf};
use crate::rangetree::{alloc_spares, RangeTree};
use core::ffi::CStr;
use core::fmt::Write;
use kernel::prelude::*;

type Outcome = core::result::Result<(), &'static CStr>;

fn check(cond: bool, msg: &'static CStr) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(msg)
    }
}

kunit_case!(bow_kunit_crc_matches_kernel, crc_matches_kernel);
kunit_case!(bow_kunit_table_grammar, table_grammar);
kunit_case!(bow_kunit_log_block_roundtrip, log_block_roundtrip);
kunit_case!(bow_kunit_state_machine, state_machine);
kunit_case!(bow_kunit_status_buffer, status_buffer);
kunit_case!(bow_kunit_range_tree_walk, range_tree_walk);

/// Xorshift, to fill buffers without a dependency on the kernel's RNG.
fn fill(buf: &mut [u8], mut x: u64) {
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn crc_matches_kernel() -> Outcome {
    let mut buf = KVec::from_elem(0u8, 4096, GFP_KERNEL).map_err(|_| c"allocation failed")?;
    for (i, seed) in [0u32, 1, 7, 0xffff_ffff, 123_456_789]
        .into_iter()
        .enumerate()
    {
        fill(&mut buf, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
        for len in [0usize, 1, 3, 511, 512, 4096] {
            let data = buf.get(..len).ok_or(c"slice")?;
            check(
                crc32(seed, data) == kernel_crc32_le(seed, data),
                c"crc32 differs from the kernel's crc32_le",
            )?;
        }
    }
    Ok(())
}

fn words(s: &'static [u8]) -> impl Iterator<Item = &'static [u8]> {
    s.split(|&c| c == b' ').filter(|w| !w.is_empty())
}

fn table_grammar() -> Outcome {
    let good = parse_args(words(b"253:0 1 block_size:4096")).map_err(|_| c"good table refused")?;
    check(
        good.block_size == Some(4096) && good.device == b"253:0",
        c"good table misparsed",
    )?;
    let cases: [(&[u8], TableError); 6] = [
        (b"", TableError::ArgCount),
        (b"d 2 block_size:4096", TableError::ArgCount),
        (b"d 1 what", TableError::UnknownOption),
        (
            b"d 2 block_size:512 block_size:512",
            TableError::DuplicateOption,
        ),
        (b"d 1 block_size:x", TableError::BadNumber),
        (b"d 1 block_size:1000", TableError::BadBlockSize),
    ];
    for (line, want) in cases {
        check(
            parse_args(words_dyn(line)) == Err(want),
            c"bad table got the wrong error",
        )?;
    }
    let g = check_geometry(&good, 512, 8 * 100, true).map_err(|_| c"geometry refused")?;
    check(g.blocks == 100 && g.block_size == 4096, c"geometry wrong")?;
    check(
        check_geometry(&good, 512, 8 * 100 + 1, true) == Err(TableError::LengthNotMultiple),
        c"unaligned length accepted",
    )?;
    check(
        check_geometry(&good, 512, 16, true) == Err(TableError::TooSmall),
        c"2-block target accepted",
    )?;
    check(
        check_geometry(&good, 512, 800, false) == Err(TableError::ReadOnly),
        c"read-only accepted",
    )?;
    Ok(())
}

fn words_dyn(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&c| c == b' ').filter(|w| !w.is_empty())
}

fn log_block_roundtrip() -> Outcome {
    let mut block = KVec::from_elem(0u8, 4096, GFP_KERNEL).map_err(|_| c"allocation failed")?;
    check(!holds_log(&block), c"zeroed block taken for a log")?;
    let mut h = LogHeader::new(4096, 2, 1024);
    let n = entries_per_block(4096);
    for i in 0..n {
        let e = LogEntry {
            source: u64::from(i) * 8,
            dest: 4096 + u64::from(i) * 8,
            size: 4096,
            checksum: i,
        };
        e.encode_at(&mut block, i)
            .map_err(|_| c"entry did not fit")?;
    }
    h.count = n;
    h.encode(&mut block).map_err(|_| c"header did not fit")?;
    check(holds_log(&block), c"log not recognised")?;
    let back = LogHeader::decode(&block).map_err(|_| c"header did not decode")?;
    check(back == h, c"header changed in the round trip")?;
    let last = LogEntry::decode_at(&block, n - 1).map_err(|_| c"entry did not decode")?;
    check(
        last.source == u64::from(n - 1) * 8 && last.checksum == n - 1,
        c"entry changed in the round trip",
    )?;
    check(
        LogEntry::encode_at(&last, &mut block, n + 1).is_err(),
        c"entry past the block accepted",
    )?;
    Ok(())
}

fn state_machine() -> Outcome {
    check(
        state_write(b"1\n", State::Trim) == Ok(State::Checkpoint),
        c"0->1 refused",
    )?;
    check(
        state_write(b"2", State::Trim) == Err(StateError::NotNext),
        c"0->2 accepted",
    )?;
    check(
        state_write(b"1", State::Checkpoint) == Err(StateError::AlreadyThere),
        c"1->1 accepted",
    )?;
    check(
        state_write(b"x", State::Checkpoint) == Err(StateError::Malformed),
        c"garbage accepted",
    )?;
    check(
        Message::parse(words(b"commit")) == Some(Message::Commit),
        c"commit message refused",
    )?;
    check(
        Message::parse(words(b"rollback")).is_none(),
        c"unknown message accepted",
    )?;
    Ok(())
}

fn status_buffer() -> Outcome {
    let mut small = [0xffu8; 8];
    let mut out = StatusBuf::new(&mut small);
    check(
        write!(out, "state=checkpoint").is_err(),
        c"overflow not reported",
    )?;
    check(out.as_bytes() == b"state=c", c"truncated status wrong")?;
    check(small[7] == 0, c"status not NUL-terminated")?;
    let mut big = [0u8; 64];
    let mut out = StatusBuf::new(&mut big);
    check(
        write!(out, "a={} b={}", 1, 2).is_ok(),
        c"status write failed",
    )?;
    check(out.as_bytes() == b"a=1 b=2", c"status text wrong")?;
    Ok(())
}

/// A walk in chunks of any size visits every extent once, in order, and
/// changes kinds as a walk in one piece would.
fn range_tree_walk() -> Outcome {
    const BLOCKS: u64 = 1000;
    let nomem = |_| c"allocation failed";
    for chunk in [1usize, 2, 7, 1024] {
        let mut t = RangeTree::new().map_err(nomem)?;
        let fill = |t: &mut RangeTree| -> Outcome {
            let mut nodes = alloc_spares(t.spares_needed(), GFP_KERNEL).map_err(nomem)?;
            t.add_spares(&mut nodes);
            Ok(())
        };
        fill(&mut t)?;
        rangemap::init(&mut t, BLOCKS).map_err(|_| c"init")?;
        // Every other block from 100 to 300 free: 201 extents.
        for b in (100..300).step_by(2) {
            fill(&mut t)?;
            rangemap::assign(&mut t, b, b + 1, Kind::Free).map_err(|_| c"assign")?;
        }
        check(t.extents() == 201, c"expected 201 extents")?;
        let (mut seen, mut next, mut free) = (0usize, 0u64, 0u64);
        let mut from = Some(0);
        while let Some(b) = from {
            from = t.visit(b, chunk, |e| {
                seen += 1;
                if e.start != next {
                    // Out of order or visited twice: make the count wrong.
                    seen += 1000;
                }
                next = e.end;
                if e.kind == Kind::Free {
                    free += e.len();
                }
                Some(rangemap::at_checkpoint(e.kind))
            });
        }
        check(
            seen == 201 && next == BLOCKS,
            c"a chunked walk missed or repeated an extent",
        )?;
        check(free == 100, c"a chunked walk saw the wrong free blocks")?;
        let mut bad = 0;
        let mut from = Some(0);
        while let Some(b) = from {
            from = t.visit(b, usize::MAX, |e| {
                if e.kind != Kind::Free && e.kind != Kind::Unchanged {
                    bad += 1;
                }
                Some(e.kind)
            });
        }
        check(bad == 0, c"a chunked walk left a kind unchanged")?;
    }
    Ok(())
}
