//! Test images: a device with a checkpoint log written the way the target
//! (and Android's) writes it, for the restore tests and bowctl's CLI tests.
//! Only with the `model` feature; never in the kernel.

use crate::format::{entries_per_block, entry_checksum, LogEntry, LogHeader, SECTOR_SIZE};
use crate::restore::{Disk, IoError, IoOp};
use alloc::vec;
use alloc::vec::Vec;

/// A small deterministic generator (xorshift64*), so images are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Fills `b` with random bytes.
    pub fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// A device held in memory. Reads and writes outside it fail with EIO. A
/// write while `writable` is false panics, so a test catches any write
/// where none may happen (validation, a refused log).
#[derive(Debug, Clone)]
pub struct MemDisk {
    /// The device's bytes.
    pub data: Vec<u8>,
    /// Whether writes are allowed.
    pub writable: bool,
}

impl MemDisk {
    /// A writable device holding `data`.
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            writable: true,
        }
    }

    fn range(&self, op: IoOp, o: u64, len: usize) -> Result<core::ops::Range<usize>, IoError> {
        match o.checked_add(len as u64) {
            Some(end) if end <= self.data.len() as u64 => Ok(o as usize..end as usize),
            _ => Err(IoError {
                op,
                offset: o,
                errno: 5,
            }),
        }
    }
}

impl Disk for MemDisk {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), IoError> {
        let r = self.range(IoOp::Read, o, b.len())?;
        b.copy_from_slice(&self.data[r]);
        Ok(())
    }
    fn write_at(&mut self, o: u64, b: &[u8]) -> Result<(), IoError> {
        assert!(self.writable, "wrote to a device that must not be written");
        let r = self.range(IoOp::Write, o, b.len())?;
        self.data[r].copy_from_slice(b);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

/// A device in state 1, as bytes, with the checkpoint image it must restore to.
pub struct Image {
    /// Block size.
    pub bs: u32,
    /// Blocks on the device.
    pub blocks: u64,
    /// The device now.
    pub data: Vec<u8>,
    /// The device at checkpoint time.
    pub checkpoint: Vec<u8>,
    /// Whether each block was free (trimmed) at checkpoint time.
    pub free_at_checkpoint: Vec<bool>,
    /// Which blocks have been overwritten since the checkpoint.
    changed: Vec<bool>,
    free: Vec<u64>,
    header: LogHeader,
    log: Vec<u8>,
    live0: u64,
    /// Sequence number -> block holding that log block's saved copy, once saved.
    pub saved_log_blocks: Vec<u64>,
    /// Entries logged so far, chain links included.
    pub entries: u64,
}

impl Image {
    /// A device of `blocks` random blocks whose last `free` blocks are
    /// trimmed, checkpointed like the target does it: the original block 0
    /// saved with its checksum (entry 0) and a live copy at `sector0`.
    pub fn new(bs: u32, blocks: u64, free: u64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut data = vec![0u8; (blocks * u64::from(bs)) as usize];
        rng.fill(&mut data);
        let checkpoint = data.clone();
        let first_free = blocks - free;
        let mut img = Self {
            bs,
            blocks,
            data,
            checkpoint,
            free_at_checkpoint: (0..blocks).map(|b| b >= first_free).collect(),
            changed: vec![false; blocks as usize],
            free: (first_free..blocks).rev().collect(),
            header: LogHeader::new(bs, 0, 0),
            log: vec![0u8; bs as usize],
            live0: 0,
            saved_log_blocks: Vec::new(),
            entries: 0,
        };
        let a = img.take_free().expect("room for the block 0 backup");
        let l = img.take_free().expect("room for the live block 0");
        let b0 = img.block(0).to_vec();
        img.put(a, &b0);
        img.put(l, &b0);
        img.live0 = l;
        img.header = LogHeader::new(bs, 0, l * img.spb());
        img.push(LogEntry {
            source: 0,
            dest: a * img.spb(),
            size: bs,
            checksum: entry_checksum(0, bs, &b0),
        });
        // The live copy's place is zeroed by a restore, as the target logs it.
        img.push(LogEntry::zero(l * img.spb(), bs));
        img
    }

    fn spb(&self) -> u64 {
        u64::from(self.bs / SECTOR_SIZE)
    }

    fn range(&self, b: u64) -> core::ops::Range<usize> {
        let bs = self.bs as usize;
        b as usize * bs..(b as usize + 1) * bs
    }

    /// Block `b` of the device now.
    pub fn block(&self, b: u64) -> &[u8] {
        &self.data[self.range(b)]
    }

    /// Overwrites block `b` of the device (no logging).
    pub fn put(&mut self, b: u64, d: &[u8]) {
        let r = self.range(b);
        self.data[r].copy_from_slice(d);
    }

    fn take_free(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Free blocks left.
    pub fn free_left(&self) -> usize {
        self.free.len()
    }

    fn flush_log(&mut self) {
        let mut raw = core::mem::take(&mut self.log);
        self.header.encode(&mut raw).expect("header fits");
        self.put(0, &raw);
        self.log = raw;
    }

    fn push(&mut self, e: LogEntry) {
        if self.header.count >= entries_per_block(self.bs) {
            let c = self.take_free().expect("room to chain the log");
            let saved = self.log.clone();
            self.put(c, &saved);
            self.saved_log_blocks.push(c);
            self.header = LogHeader::new(self.bs, self.header.sequence + 1, self.header.sector0);
            self.log = vec![0u8; self.bs as usize];
            LogEntry {
                source: 0,
                dest: c * self.spb(),
                size: self.bs,
                checksum: entry_checksum(0, self.bs, &saved),
            }
            .encode_at(&mut self.log, 0)
            .expect("entry fits");
            self.header.count = 1;
            self.entries += 1;
        }
        self.entries += 1;
        e.encode_at(&mut self.log, self.header.count)
            .expect("entry fits");
        self.header.count += 1;
        self.flush_log();
    }

    /// A state-1 write of block `b` (not a free-at-checkpoint block): the
    /// first overwrite saves the old content and logs the move. Block 0 goes
    /// to its live copy. Returns false (writing nothing) when out of space.
    pub fn write(&mut self, b: u64, d: &[u8]) -> bool {
        assert!(
            !self.free_at_checkpoint[b as usize],
            "tests write only used blocks"
        );
        if b == 0 {
            let l = self.live0;
            self.put(l, d);
            return true;
        }
        if !self.changed[b as usize] {
            // Keep one block in reserve for chaining, as the target does.
            if self.free.len() < 2 {
                return false;
            }
            let dst = self.take_free().expect("checked");
            let old = self.block(b).to_vec();
            self.put(dst, &old);
            let checksum = entry_checksum(b * self.spb(), self.bs, &old);
            self.push(LogEntry {
                source: b * self.spb(),
                dest: dst * self.spb(),
                size: self.bs,
                checksum,
            });
            self.changed[b as usize] = true;
        }
        self.put(b, d);
        true
    }

    /// Claims free-at-checkpoint blocks `[first, first + n)` as the target
    /// does before the first write into them: a zero entry, logged. They stay
    /// free for backups until written ([`Image::write_free`]).
    /// Returns false (logging nothing) unless every block is still free:
    /// the target claims only free blocks, never ones holding backups.
    pub fn claim(&mut self, first: u64, n: u64) -> bool {
        if !(first..first + n).all(|b| self.free.contains(&b)) {
            return false;
        }
        let size = (n * u64::from(self.bs)) as u32;
        self.push(LogEntry::zero(first * self.spb(), size));
        true
    }

    /// Writes a claimed free-at-checkpoint block that holds no backup.
    /// Returns false (writing nothing) if it is not free any more.
    pub fn write_free(&mut self, b: u64, d: &[u8]) -> bool {
        let Some(i) = self.free.iter().position(|f| *f == b) else {
            return false;
        };
        self.free.remove(i);
        self.put(b, d);
        true
    }

    /// Overwrites `n` random used blocks (block 0 included now and then)
    /// with random data, like a filesystem after an update.
    pub fn scribble(&mut self, n: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let used = self.free_at_checkpoint.iter().filter(|f| !**f).count() as u64;
        let mut d = vec![0u8; self.bs as usize];
        for _ in 0..n {
            rng.fill(&mut d);
            let b = rng.below(used);
            if !self.write(b, &d) {
                break;
            }
        }
    }

    /// Overwrites the used blocks `first..first+n` in order (a large file
    /// rewritten sequentially).
    pub fn rewrite_run(&mut self, first: u64, n: u64, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut d = vec![0u8; self.bs as usize];
        for b in first..first + n {
            rng.fill(&mut d);
            if !self.write(b, &d) {
                break;
            }
        }
    }

    /// Whether block `b` of `disk` matches the checkpoint, for every block
    /// that was not free at checkpoint time; returns the first mismatch.
    pub fn first_mismatch(&self, disk: &[u8]) -> Option<u64> {
        (0..self.blocks).find(|&b| {
            !self.free_at_checkpoint[b as usize]
                && disk[self.range(b)] != self.checkpoint[self.range(b)]
        })
    }

    /// A generic move, beyond what the targets do: save block `s` to `d`,
    /// log it, then overwrite `s` with random data. Used to build logs where
    /// a block read by a newer entry is written by an older one, which
    /// restore must fence (spec 6.4). `d` must not hold a needed backup.
    pub fn move_block(&mut self, s: u64, d: u64, rng: &mut Rng) {
        let old = self.block(s).to_vec();
        self.put(d, &old);
        let checksum = entry_checksum(s * self.spb(), self.bs, &old);
        self.push(LogEntry {
            source: s * self.spb(),
            dest: d * self.spb(),
            size: self.bs,
            checksum,
        });
        let mut r = vec![0u8; self.bs as usize];
        rng.fill(&mut r);
        self.put(s, &r);
    }

    /// Takes a block from the free list (for tests that pick dests).
    pub fn take(&mut self) -> Option<u64> {
        self.take_free()
    }
}
