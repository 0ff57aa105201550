//! A simulated bow device: random trims and writes in state 0, a checkpoint,
//! random writes in state 1 (first overwrites, rewrites, writes into free
//! space, into blocks holding backups, into block 0 and over its live copy,
//! with log chaining), then the shared restore. Every block that was not
//! free at checkpoint must come back, bit for bit, whatever happened, and
//! every block that was free must come back as it was or zeroed: never
//! holding data written after the checkpoint, nor a copy of other data.
//!
//! The write policy mirrors the kernel's (`dm-bow/target.rs`) on the shared
//! range map, on-disk format and checksum.

use bow_core::format::{entries_per_block, entry_checksum, LogEntry, LogHeader};
use bow_core::rangemap::{self, model::MapStore, Kind};
use bow_core::restore;
use bow_core::testimg::MemDisk;
use proptest::prelude::*;

const BS: u32 = 512;
/// Blocks one claim of free space covers at most (the kernel's window, small).
const CLAIM: u64 = 8;

struct Sim {
    disk: MemDisk,
    map: MapStore,
    blocks: u64,
    live0: u64,
    header: LogHeader,
    log: Vec<u8>,
    hint: u64,
}

impl Sim {
    fn block(&self, b: u64) -> Vec<u8> {
        let o = (b * BS as u64) as usize;
        self.disk.data[o..o + BS as usize].to_vec()
    }
    fn put(&mut self, b: u64, data: &[u8]) {
        let o = (b * BS as u64) as usize;
        self.disk.data[o..o + BS as usize].copy_from_slice(data);
    }
    fn kind(&mut self, b: u64) -> Kind {
        rangemap::Store::containing(&mut self.map, b).unwrap().kind
    }
    fn take_free(&mut self) -> Option<u64> {
        let (b, _) = rangemap::find_free(&mut self.map, self.blocks, self.hint, 1)?;
        rangemap::assign(&mut self.map, b, b + 1, Kind::Backup).unwrap();
        self.hint = b + 1;
        Some(b)
    }
    fn append(&mut self, e: LogEntry) -> Option<()> {
        if self.header.count >= entries_per_block(BS) {
            let c = self.take_free()?;
            self.header.encode(&mut self.log).unwrap();
            let saved = self.log.clone();
            self.put(c, &saved);
            let crc = entry_checksum(0, BS, &saved);
            self.log = vec![0; BS as usize];
            self.header = LogHeader::new(BS, self.header.sequence + 1, self.header.sector0);
            LogEntry {
                source: 0,
                dest: c,
                size: BS,
                checksum: crc,
            }
            .encode_at(&mut self.log, 0)
            .unwrap();
            self.header.count = 1;
        }
        e.encode_at(&mut self.log, self.header.count).unwrap();
        self.header.count += 1;
        self.header.encode(&mut self.log).unwrap();
        let l = self.log.clone();
        self.put(0, &l);
        Some(())
    }
    fn checkpoint(&mut self) -> Option<()> {
        let mut ex = Vec::new();
        for e in self.map.extents() {
            ex.push(e);
        }
        for e in ex {
            rangemap::assign(
                &mut self.map,
                e.start,
                e.end,
                rangemap::at_checkpoint(e.kind),
            )
            .unwrap();
        }
        rangemap::assign(&mut self.map, 0, 1, Kind::Changed).unwrap();
        let a = self.take_free()?;
        let l = self.take_free()?;
        let b0 = self.block(0);
        self.put(a, &b0);
        self.put(l, &b0);
        self.live0 = l;
        self.header = LogHeader::new(BS, 0, l);
        self.log = vec![0; BS as usize];
        LogEntry {
            source: 0,
            dest: a,
            size: BS,
            checksum: entry_checksum(0, BS, &b0),
        }
        .encode_at(&mut self.log, 0)
        .unwrap();
        self.header.count = 1;
        self.header.encode(&mut self.log).unwrap();
        let log = self.log.clone();
        self.put(0, &log);
        // The live copy's place is zeroed by a restore.
        self.append(LogEntry::zero(l, BS))
    }
    /// A state-1 write of one block; `None` is ENOSPC (nothing written).
    fn write(&mut self, b: u64, data: &[u8]) -> Option<()> {
        if b == 0 {
            let l = self.live0;
            self.put(l, data);
            return Some(());
        }
        match self.kind(b) {
            Kind::Changed | Kind::Used => {}
            Kind::Claimed => rangemap::assign(&mut self.map, b, b + 1, Kind::Changed).unwrap(),
            Kind::Free => {
                // Claim a window of the free extent: logged to be zeroed by a
                // restore before anything is written into it.
                let e = rangemap::Store::containing(&mut self.map, b).unwrap();
                let end = e.end.min(b + CLAIM);
                rangemap::assign(&mut self.map, b, end, Kind::Busy).unwrap();
                let r = self.append(LogEntry::zero(b, ((end - b) * BS as u64) as u32));
                if r.is_none() {
                    rangemap::assign(&mut self.map, b, end, Kind::Free).unwrap();
                    return None;
                }
                rangemap::assign(&mut self.map, b, end, Kind::Claimed).unwrap();
                rangemap::assign(&mut self.map, b, b + 1, Kind::Changed).unwrap();
            }
            Kind::Unchanged | Kind::Backup => {
                let free_left = self.map.blocks().iter().filter(|k| k.is_free()).count();
                if free_left <= 1 {
                    return None;
                }
                let d = self.take_free()?;
                let old = self.block(b);
                self.put(d, &old);
                let is_live0 = b == self.live0;
                let checksum = if is_live0 {
                    0
                } else {
                    entry_checksum(b, BS, &old)
                };
                if is_live0 {
                    self.live0 = d;
                    self.header.sector0 = d;
                }
                self.append(LogEntry {
                    source: b,
                    dest: d,
                    size: BS,
                    checksum,
                })?;
                if is_live0 {
                    self.append(LogEntry::zero(d, BS))?;
                }
                rangemap::assign(&mut self.map, b, b + 1, Kind::Changed).unwrap();
            }
            Kind::Busy => unreachable!(),
        }
        self.put(b, data);
        Some(())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Trim(u64, u64),
    Write(u64, u8),
}

fn ops(blocks: u64, n: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            (0..blocks, 1u64..40).prop_map(|(s, l)| Op::Trim(s, l)),
            (0..blocks, any::<u8>()).prop_map(|(b, v)| Op::Write(b, v)),
        ],
        0..n,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn restore_returns_every_block_not_free_at_checkpoint(
        seed in any::<u64>(),
        before in ops(256, 40),
        after in proptest::collection::vec((0u64..256, any::<u8>()), 0..400),
    ) {
        let blocks = 256u64;
        let mut dev = vec![0u8; (blocks * BS as u64) as usize];
        let mut x = seed | 1;
        for b in dev.iter_mut() { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *b = x as u8; }
        let mut sim = Sim { disk: MemDisk::new(dev), map: MapStore::default(), blocks, live0: 0,
                            header: LogHeader::new(BS, 0, 0), log: vec![], hint: 0 };
        rangemap::init(&mut sim.map, blocks).unwrap();
        // State 0: whole-device trim of a middle region plus random ops.
        rangemap::assign(&mut sim.map, 128, 256, Kind::Free).unwrap();
        for op in before {
            match op {
                Op::Trim(s, l) => rangemap::assign(&mut sim.map, s, (s + l).min(blocks), Kind::Free).unwrap(),
                Op::Write(b, v) => {
                    rangemap::assign(&mut sim.map, b, b + 1, Kind::Used).unwrap();
                    sim.put(b, &[v; BS as usize]);
                }
            }
        }
        sim.map.check(blocks);
        let free_at_ckpt: Vec<bool> = sim.map.blocks().iter().map(|k| *k == Kind::Free).collect();
        let image = sim.disk.data.clone();
        prop_assume!(sim.checkpoint().is_some());
        for (b, v) in after {
            // ENOSPC leaves everything as it was; go on like a filesystem would.
            let _ = sim.write(b, &[v; BS as usize]);
            sim.map.check(blocks);
        }
        let mut disk = sim.disk;
        let log = restore::validate(&mut disk).expect("valid log").expect("a log");
        restore::restore(&mut disk, &log, &mut ()).unwrap();
        for (b, free) in free_at_ckpt.iter().enumerate() {
            if !free {
                let r = b * BS as usize..(b + 1) * BS as usize;
                prop_assert_eq!(&disk.data[r.clone()], &image[r], "block {}", b);
            }
        }
        // Every block free at checkpoint holds what it held then, or zeros:
        // never data written after it, nor a copy of other data.
        for (b, free) in free_at_ckpt.iter().enumerate() {
            let r = b * BS as usize..(b + 1) * BS as usize;
            if *free {
                let got = &disk.data[r.clone()];
                prop_assert!(got.iter().all(|x| *x == 0) || got == &image[r],
                    "block {} free at checkpoint holds other data", b);
            }
        }
        // A second restore finds nothing to do.
        prop_assert!(restore::validate(&mut disk).unwrap().is_none());
    }
}
