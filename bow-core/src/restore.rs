//! Offline restore of a checkpoint (spec 6), shared by `bowctl` and the tests.
//!
//! [`validate`] walks the log chain from the newest block to sequence 0 and
//! checks every field and every checksum, reading the device "as if" the later
//! entries had already been replayed; it writes nothing. [`restore`] then
//! replays every entry from newest to oldest. Before it overwrites a block
//! that an entry replayed since the last fence has read, it syncs and rewrites
//! block 0 as a "WOB" log covering only the entries still to do, so a restart
//! after a crash at any point finishes the same job.
//!
//! This module allocates (`alloc`), so the kernel does not mount it.

use crate::format::{
    entries_per_block, holds_log, FormatError, LogEntry, LogHeader, MAGIC, MAGIC_RESTORING,
    SECTOR_SIZE,
};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Random-access storage holding a bow device: a block device or an image.
pub trait Disk {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), IoError>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<(), IoError>;
}

/// An I/O failure, with the OS error number when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoError {
    /// What was being done.
    pub op: IoOp,
    /// Byte offset.
    pub offset: u64,
    /// errno, or 0.
    pub errno: i32,
}

/// The kind of I/O that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// A read.
    Read,
    /// A write.
    Write,
    /// A sync.
    Sync,
}

/// What is wrong with a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// A header field is invalid.
    Header(FormatError),
    /// A log block's sequence is not the one the chain leads to.
    Sequence { expected: u32, found: u32 },
    /// A log block's block size differs from block 0's.
    BlockSize { expected: u32, found: u32 },
    /// A block with sequence above 0 has no entry 0 linking to its predecessor.
    MissingLink,
    /// Entry 0 of a block with sequence above 0 does not look like a link.
    BadLink,
    /// An entry's size is 0 or not a multiple of the block size.
    EntrySize(u32),
    /// An entry's source or dest is not block-aligned.
    Unaligned,
    /// An entry reaches past the end of the device (or overflows).
    OutOfRange,
    /// An entry's data does not match its checksum.
    Checksum { expected: u32, found: u32 },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Header(e) => write!(f, "{e}"),
            Self::Sequence { expected, found } => {
                write!(f, "sequence: expected {expected}, found {found}")
            }
            Self::BlockSize { expected, found } => {
                write!(f, "block_size: expected {expected}, found {found}")
            }
            Self::MissingLink => f.write_str("no entry 0 linking to the previous log block"),
            Self::BadLink => f.write_str("entry 0 is not a link to the previous log block"),
            Self::EntrySize(s) => write!(f, "size {s} is 0 or not a multiple of the block size"),
            Self::Unaligned => f.write_str("source or dest is not block-aligned"),
            Self::OutOfRange => f.write_str("source or dest reaches past the end of the device"),
            Self::Checksum { expected, found } => {
                write!(
                    f,
                    "checksum: expected {expected:#010x}, found {found:#010x}"
                )
            }
        }
    }
}

/// Why a restore did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The log is invalid; `entry` is `None` for header problems.
    Corrupt {
        sequence: u32,
        entry: Option<u32>,
        what: Corruption,
    },
    /// I/O failed.
    Io(IoError),
    /// The device is smaller than one block.
    Truncated,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupt {
                sequence,
                entry: Some(e),
                what,
            } => {
                write!(f, "invalid log: sequence {sequence}, entry {e}: {what}")
            }
            Self::Corrupt {
                sequence,
                entry: None,
                what,
            } => write!(f, "invalid log: sequence {sequence}: {what}"),
            Self::Io(e) => write!(
                f,
                "{:?} failed at byte {} (errno {})",
                e.op, e.offset, e.errno
            ),
            Self::Truncated => f.write_str("device or image is too small to hold a log"),
        }
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Self::Io(e)
    }
}

/// One validated log block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Its header.
    pub header: LogHeader,
    /// Its entries.
    pub entries: Vec<LogEntry>,
    /// Whether each entry's checksum was checked (non-zero checksum).
    pub checked: Vec<bool>,
}

/// A validated log, newest block first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// Block size in bytes.
    pub block_size: u32,
    /// The chain, newest first.
    pub blocks: Vec<Block>,
}

impl Log {
    /// Entries in replay order: newest block first, last entry first.
    pub fn replay_order(&self) -> impl Iterator<Item = (u32, u32, &LogEntry)> + '_ {
        self.blocks.iter().flat_map(|b| {
            b.entries
                .iter()
                .enumerate()
                .rev()
                .map(move |(i, e)| (b.header.sequence, i as u32, e))
        })
    }

    /// Bytes a restore copies.
    pub fn bytes_to_restore(&self) -> u64 {
        self.replay_order().map(|(_, _, e)| u64::from(e.size)).sum()
    }
}

fn corrupt(sequence: u32, entry: Option<u32>, what: Corruption) -> Error {
    Error::Corrupt {
        sequence,
        entry,
        what,
    }
}

fn read_log_block<D: Disk>(d: &mut D, offset: u64, bs: u32) -> Result<Vec<u8>, Error> {
    let mut b = vec![0u8; bs as usize];
    d.read_at(offset, &mut b)?;
    Ok(b)
}

fn decode_block(raw: &[u8], expect_bs: u32, expect_seq: Option<u32>) -> Result<Block, Error> {
    let seq_hint = expect_seq.unwrap_or(0);
    let h = LogHeader::decode(raw).map_err(|e| corrupt(seq_hint, None, Corruption::Header(e)))?;
    if h.block_size != expect_bs {
        return Err(corrupt(
            h.sequence,
            None,
            Corruption::BlockSize {
                expected: expect_bs,
                found: h.block_size,
            },
        ));
    }
    if let Some(s) = expect_seq {
        if h.sequence != s {
            return Err(corrupt(
                s,
                None,
                Corruption::Sequence {
                    expected: s,
                    found: h.sequence,
                },
            ));
        }
    }
    if h.count == 0 {
        return Err(corrupt(
            h.sequence,
            None,
            Corruption::Header(FormatError::BadCount(0)),
        ));
    }
    let mut entries = Vec::with_capacity(h.count as usize);
    for i in 0..h.count {
        entries.push(
            LogEntry::decode_at(raw, i)
                .map_err(|e| corrupt(h.sequence, Some(i), Corruption::Header(e)))?,
        );
    }
    Ok(Block {
        header: h,
        checked: vec![false; entries.len()],
        entries,
    })
}

/// Where each block's content is "as if" the entries replayed so far had been
/// applied: block -> block that holds that content on the device now.
#[derive(Default)]
struct Overlay {
    moved: BTreeMap<u64, u64>,
}

impl Overlay {
    fn resolve(&self, block: u64) -> u64 {
        self.moved.get(&block).copied().unwrap_or(block)
    }

    fn apply(&mut self, src_block: u64, dst_block: u64, n: u64) {
        let from: Vec<u64> = (0..n).map(|i| self.resolve(dst_block + i)).collect();
        for (i, f) in from.into_iter().enumerate() {
            self.moved.insert(src_block + i as u64, f);
        }
    }
}

/// Reads and validates the whole log, writing nothing. `Ok(None)` means block
/// 0 holds no log: there is nothing to restore.
pub fn validate<D: Disk>(d: &mut D) -> Result<Option<Log>, Error> {
    let size = d.size();
    if size < u64::from(SECTOR_SIZE) {
        return Err(Error::Truncated);
    }
    let mut head = [0u8; 512];
    d.read_at(0, &mut head)?;
    if !holds_log(&head) {
        return Ok(None);
    }
    let first =
        LogHeader::decode_raw(&head).map_err(|e| corrupt(0, None, Corruption::Header(e)))?;
    let bs = first.block_size;
    if !crate::format::valid_block_size(bs) {
        return Err(corrupt(
            first.sequence,
            None,
            Corruption::Header(FormatError::BadBlockSize(bs)),
        ));
    }
    if size < u64::from(bs) {
        return Err(Error::Truncated);
    }
    let spb = u64::from(bs / SECTOR_SIZE);
    let dev_sectors = size / u64::from(SECTOR_SIZE);
    let epb = entries_per_block(bs);

    // One pass in replay order (newest block first, last entry first), so
    // every read -- entry data and the previous log block alike -- sees the
    // device "as if" the newer entries had been replayed: saved log blocks
    // and backups may have been moved since they were written.
    let mut overlay = Overlay::default();
    let bsz = bs as usize;
    let mut buf = vec![0u8; bsz];
    let mut blocks = Vec::new();
    let mut raw = read_log_block(d, 0, bs)?;
    let mut expect = None;
    loop {
        let mut b = decode_block(&raw, bs, expect)?;
        let seq = b.header.sequence;
        if b.header.count > epb {
            return Err(corrupt(
                seq,
                None,
                Corruption::Header(FormatError::BadCount(b.header.count)),
            ));
        }
        for (i, e) in b.entries.iter().enumerate() {
            let i = i as u32;
            if e.size == 0 || e.size % bs != 0 {
                return Err(corrupt(seq, Some(i), Corruption::EntrySize(e.size)));
            }
            if e.source % spb != 0 || e.dest % spb != 0 {
                return Err(corrupt(seq, Some(i), Corruption::Unaligned));
            }
            let n = u64::from(e.size / SECTOR_SIZE);
            let fits = |s: u64| s.checked_add(n).is_some_and(|end| end <= dev_sectors);
            if !fits(e.source) || !fits(e.dest) {
                return Err(corrupt(seq, Some(i), Corruption::OutOfRange));
            }
        }
        let link = if seq > 0 {
            let l = *b
                .entries
                .first()
                .ok_or(corrupt(seq, Some(0), Corruption::MissingLink))?;
            if l.source != 0 || l.size != bs {
                return Err(corrupt(seq, Some(0), Corruption::BadLink));
            }
            Some(l.dest / spb)
        } else {
            None
        };
        // Where the previous log block is once the newer entries are replayed.
        let mut prev_at = None;
        for ei in (0..b.entries.len()).rev() {
            let e = b.entries[ei];
            let n = u64::from(e.size / bs);
            let (src_b, dst_b) = (e.source / spb, e.dest / spb);
            if ei == 0 {
                prev_at = link.map(|l| overlay.resolve(l));
            }
            if e.checksum != 0 {
                let mut crc = src_b as u32;
                for k in 0..n {
                    d.read_at(overlay.resolve(dst_b + k) * u64::from(bs), &mut buf)?;
                    crc = crate::crc::crc32(crc, &buf);
                }
                if crc != e.checksum {
                    return Err(corrupt(
                        seq,
                        Some(ei as u32),
                        Corruption::Checksum {
                            expected: e.checksum,
                            found: crc,
                        },
                    ));
                }
                b.checked[ei] = true;
            }
            overlay.apply(src_b, dst_b, n);
        }
        blocks.push(b);
        match prev_at {
            Some(at) => {
                raw = read_log_block(d, at * u64::from(bs), bs)?;
                // Sequences strictly decrease, so the walk ends: no loops.
                expect = Some(seq - 1);
            }
            None => break,
        }
    }
    Ok(Some(Log {
        block_size: bs,
        blocks,
    }))
}

/// Progress of a restore, for a progress bar.
pub trait Progress {
    /// `done` of `total` bytes copied.
    fn copied(&mut self, done: u64, total: u64);
}

impl Progress for () {
    fn copied(&mut self, _: u64, _: u64) {}
}

/// Rewrites block 0 as a "WOB" log covering entries `0..count` of `block`.
fn write_fence<D: Disk>(d: &mut D, bs: u32, block: &Block, count: u32) -> Result<(), Error> {
    d.sync()?;
    let mut raw = vec![0u8; bs as usize];
    let mut h = block.header;
    h.magic = MAGIC_RESTORING;
    h.count = count;
    h.encode(&mut raw)
        .map_err(|e| corrupt(h.sequence, None, Corruption::Header(e)))?;
    for (i, e) in block.entries.iter().take(count as usize).enumerate() {
        e.encode_at(&mut raw, i as u32)
            .map_err(|e| corrupt(h.sequence, None, Corruption::Header(e)))?;
    }
    d.write_at(0, &raw)?;
    d.sync()?;
    Ok(())
}

/// Replays a validated log, newest entry first, so the device returns to its
/// checkpoint image. Safe to interrupt and run again (validating again first).
pub fn restore<D: Disk, P: Progress>(d: &mut D, log: &Log, progress: &mut P) -> Result<(), Error> {
    let bs = log.block_size;
    let spb = u64::from(bs / SECTOR_SIZE);
    let total = log.bytes_to_restore();
    let mut done = 0u64;
    let mut buf = Vec::new();
    for block in &log.blocks {
        // Blocks read by entries replayed since the last fence: a restart
        // would read them again, so they must not change before a new fence.
        let mut read_since_fence: BTreeSet<u64> = BTreeSet::new();
        for (i, e) in block.entries.iter().enumerate().rev() {
            let n = u64::from(e.size / bs);
            let (src_b, dst_b) = (e.source / spb, e.dest / spb);
            if i == 0 {
                // Entry 0 writes block 0 and so replaces this log block: make
                // every earlier write durable first.
                d.sync()?;
            } else if (src_b..src_b + n).any(|b| read_since_fence.contains(&b)) {
                write_fence(d, bs, block, i as u32 + 1)?;
                read_since_fence.clear();
            }
            buf.resize(e.size as usize, 0);
            d.read_at(e.dest * u64::from(SECTOR_SIZE), &mut buf)?;
            d.write_at(e.source * u64::from(SECTOR_SIZE), &buf)?;
            read_since_fence.extend(dst_b..dst_b + n);
            done += u64::from(e.size);
            progress.copied(done, total);
        }
        d.sync()?;
    }
    Ok(())
}

/// Android's fallback for an invalid log: put the live block 0 back and keep
/// the new data. Needs only a readable header in block 0.
pub fn roll_forward<D: Disk>(d: &mut D) -> Result<bool, Error> {
    let mut head = [0u8; 512];
    d.read_at(0, &mut head)?;
    if !holds_log(&head) {
        return Ok(false);
    }
    let h = LogHeader::decode_raw(&head).map_err(|e| corrupt(0, None, Corruption::Header(e)))?;
    if !crate::format::valid_block_size(h.block_size)
        || h.magic != MAGIC && h.magic != MAGIC_RESTORING
    {
        return Err(corrupt(
            h.sequence,
            None,
            Corruption::Header(FormatError::BadBlockSize(h.block_size)),
        ));
    }
    let mut b = vec![0u8; h.block_size as usize];
    let at = h
        .sector0
        .checked_mul(u64::from(SECTOR_SIZE))
        .filter(|&o| o + u64::from(h.block_size) <= d.size());
    let at = at.ok_or(corrupt(h.sequence, None, Corruption::OutOfRange))?;
    d.read_at(at, &mut b)?;
    d.write_at(0, &b)?;
    d.sync()?;
    Ok(true)
}
