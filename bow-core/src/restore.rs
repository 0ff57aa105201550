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
    entries_per_block, has_log_magic, FormatError, LogEntry, LogHeader, MAGIC_RESTORING,
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
    /// Writes `len` bytes of zeros at `offset`. Devices may do it faster
    /// than writing a buffer of zeros (`BLKZEROOUT`).
    fn zero_at(&mut self, offset: u64, len: u64) -> Result<(), IoError> {
        let chunk = len.min(MAX_COPY) as usize;
        let zeros = vec![0u8; chunk];
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(chunk as u64) as usize;
            self.write_at(offset + at, &zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }
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

impl IoOp {
    /// Its name in messages: "read", "write" or "sync".
    pub fn as_str(self) -> &'static str {
        match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Sync => "sync",
        }
    }
}

/// Which entry field a [`Corruption`] is about.
pub type Field = &'static str;

/// What is wrong with a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// A header field is invalid.
    Header(FormatError),
    /// The chain skips sequences: the previous log block is older than expected.
    SequenceGap { expected: u32, found: u32 },
    /// The previous log block's sequence is not below the newer one's.
    SequenceRepeated { newer: u32, found: u32 },
    /// A log block's block size differs from block 0's.
    BlockSize { expected: u32, found: u32 },
    /// The link leads back to a log block already read: the chain loops.
    Loop { block: u64 },
    /// Entry 0 of a block with sequence above 0 does not look like a link.
    BadLink { source: u64, size: u32 },
    /// An entry's size is 0.
    SizeZero,
    /// An entry's size is not a multiple of the block size.
    SizeNotMultiple { size: u32, block_size: u32 },
    /// An entry's source or dest is not block-aligned.
    Unaligned { field: Field, sector: u64 },
    /// An entry's source or dest plus its size overflows.
    Overflow {
        field: Field,
        sector: u64,
        size: u32,
    },
    /// An entry reaches past the end of the device.
    OutOfRange {
        field: Field,
        sector: u64,
        size: u32,
        device_sectors: u64,
    },
    /// An entry's data does not match its checksum.
    Checksum { expected: u32, found: u32 },
    /// A zero-on-restore entry (source equal to dest) has a checksum.
    ZeroChecksum { found: u32 },
    /// A checked entry's copy lies in blocks a newer entry zeroes: the
    /// restore would put zeros back instead of the original data.
    ReadsZeroed { block: u64 },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Header(e) => write!(f, "{e}"),
            Self::SequenceGap { expected, found } => {
                write!(f, "sequence gap: expected {expected}, found {found}")
            }
            Self::SequenceRepeated { newer, found } => write!(
                f,
                "sequence repeated: expected below {newer}, found {found}"
            ),
            Self::BlockSize { expected, found } => write!(
                f,
                "block_size differs between log blocks: expected {expected}, found {found}"
            ),
            Self::Loop { block } => write!(
                f,
                "the chain loops: its link leads back to block {block}, already read as a log block"
            ),
            Self::BadLink { source, size } => write!(
                f,
                "link: expected source 0 and size of one block, found source {source}, size {size}"
            ),
            Self::SizeZero => f.write_str("size: expected at least one block, found 0"),
            Self::SizeNotMultiple { size, block_size } => write!(
                f,
                "size: expected a multiple of the block size {block_size}, found {size}"
            ),
            Self::Unaligned { field, sector } => write!(
                f,
                "{field}: expected a block-aligned sector, found {sector}"
            ),
            Self::Overflow { field, sector, size } => write!(
                f,
                "{field}: sector {sector} plus size {size} overflows"
            ),
            Self::OutOfRange {
                field,
                sector,
                size,
                device_sectors,
            } => write!(
                f,
                "{field}: expected an extent within the device's {device_sectors} sectors, found sector {sector} size {size} bytes"
            ),
            Self::Checksum { expected, found } => {
                write!(f, "checksum: expected {expected:#010x}, found {found:#010x}")
            }
            Self::ZeroChecksum { found } => write!(
                f,
                "zero entry (source equal to dest): expected checksum 0, found {found:#010x}"
            ),
            Self::ReadsZeroed { block } => write!(
                f,
                "dest: block {block} is zeroed by a newer entry before this one would read it"
            ),
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
    /// The device or image is smaller than the log says it must be.
    Truncated { size: u64, needed: u64 },
}

impl Error {
    /// Whether this is a problem of the log itself (as opposed to I/O).
    pub fn is_invalid_log(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::Truncated { .. })
    }
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
            } => write!(f, "invalid log: sequence {sequence}, header: {what}"),
            Self::Io(e) => write!(
                f,
                "{} failed at byte {} (errno {})",
                e.op.as_str(),
                e.offset,
                e.errno
            ),
            Self::Truncated { size, needed } => write!(
                f,
                "invalid log: truncated: the device or image is {size} bytes, the log needs at least {needed}"
            ),
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

fn decode_block(raw: &[u8], expect_bs: u32, newer: Option<u32>) -> Result<Block, Error> {
    let seq_hint = newer.map_or(0, |n| n.saturating_sub(1));
    let fail = |e| corrupt(seq_hint, None, Corruption::Header(e));
    // Judge the identifying fields first, then the block size against
    // block 0's, and only then the fields that depend on the block size.
    let h = LogHeader::decode_raw(raw).map_err(fail)?;
    h.check_identity().map_err(fail)?;
    if h.block_size != expect_bs {
        return Err(corrupt(
            seq_hint,
            None,
            Corruption::BlockSize {
                expected: expect_bs,
                found: h.block_size,
            },
        ));
    }
    let h = LogHeader::decode(raw).map_err(fail)?;
    if let Some(n) = newer {
        let expected = n - 1;
        if h.sequence >= n {
            return Err(corrupt(
                expected,
                None,
                Corruption::SequenceRepeated {
                    newer: n,
                    found: h.sequence,
                },
            ));
        }
        if h.sequence != expected {
            return Err(corrupt(
                expected,
                None,
                Corruption::SequenceGap {
                    expected,
                    found: h.sequence,
                },
            ));
        }
    }
    if h.count == 0 {
        return Err(corrupt(
            h.sequence,
            None,
            Corruption::Header(FormatError::BadCount {
                found: 0,
                max: entries_per_block(h.block_size),
            }),
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

/// Checks one entry's fields against the block size and the device.
fn check_entry(e: &LogEntry, bs: u32, dev_sectors: u64) -> Result<(), Corruption> {
    if e.size == 0 {
        return Err(Corruption::SizeZero);
    }
    if e.size % bs != 0 {
        return Err(Corruption::SizeNotMultiple {
            size: e.size,
            block_size: bs,
        });
    }
    let spb = u64::from(bs / SECTOR_SIZE);
    let n = u64::from(e.size / SECTOR_SIZE);
    for (field, sector) in [("source", e.source), ("dest", e.dest)] {
        if sector % spb != 0 {
            return Err(Corruption::Unaligned { field, sector });
        }
        let end = sector.checked_add(n).ok_or(Corruption::Overflow {
            field,
            sector,
            size: e.size,
        })?;
        if end > dev_sectors {
            return Err(Corruption::OutOfRange {
                field,
                sector,
                size: e.size,
                device_sectors: dev_sectors,
            });
        }
    }
    Ok(())
}

/// Disjoint block ranges, merged: `start -> end`.
#[derive(Default)]
struct Ranges {
    by_start: BTreeMap<u64, u64>,
}

impl Ranges {
    /// The first block of `[start, end)` in the set, if any.
    fn first_in(&self, start: u64, end: u64) -> Option<u64> {
        if let Some((_, &e)) = self.by_start.range(..=start).next_back() {
            if e > start {
                return Some(start);
            }
        }
        self.by_start.range(start..end).next().map(|(&s, _)| s)
    }

    fn remove(&mut self, start: u64, end: u64) {
        let mut keep = Vec::new();
        let hit: Vec<(u64, u64)> = self
            .by_start
            .range(..end)
            .rev()
            .take_while(|(_, &e)| e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in hit {
            self.by_start.remove(&s);
            if s < start {
                keep.push((s, start));
            }
            if e > end {
                keep.push((end, e));
            }
        }
        for (s, e) in keep {
            self.by_start.insert(s, e);
        }
    }

    fn insert(&mut self, start: u64, end: u64) {
        self.remove(start, end);
        let (mut s, mut e) = (start, end);
        if let Some((&ps, &pe)) = self.by_start.range(..s).next_back() {
            if pe == s {
                self.by_start.remove(&ps);
                s = ps;
            }
        }
        if let Some(&ne) = self.by_start.get(&e) {
            self.by_start.remove(&e);
            e = ne;
        }
        self.by_start.insert(s, e);
    }
}

/// Where each block's content is "as if" the entries replayed so far had been
/// applied: block -> block that holds that content on the device now, or
/// zeros (a zero entry replayed, or a copy of zeroed blocks).
#[derive(Default)]
struct Overlay {
    moved: BTreeMap<u64, u64>,
    zeroed: Ranges,
}

impl Overlay {
    fn resolve(&self, block: u64) -> u64 {
        self.moved.get(&block).copied().unwrap_or(block)
    }

    /// The first block of `[start, start + n)` that reads as zeros.
    fn zeroed_in(&self, start: u64, n: u64) -> Option<u64> {
        self.zeroed.first_in(start, start + n)
    }

    fn apply(&mut self, src_block: u64, dst_block: u64, n: u64) {
        if src_block == dst_block {
            // A zero entry.
            for b in src_block..src_block + n {
                self.moved.remove(&b);
            }
            self.zeroed.insert(src_block, src_block + n);
            return;
        }
        let from: Vec<(u64, bool)> = (0..n)
            .map(|i| {
                let d = dst_block + i;
                (self.resolve(d), self.zeroed.first_in(d, d + 1).is_some())
            })
            .collect();
        self.zeroed.remove(src_block, src_block + n);
        for (i, (f, zero)) in from.into_iter().enumerate() {
            let b = src_block + i as u64;
            if zero {
                self.moved.remove(&b);
                self.zeroed.insert(b, b + 1);
            } else {
                self.moved.insert(b, f);
            }
        }
    }
}

/// Reads and validates the whole log, writing nothing. `Ok(None)` means block
/// 0 holds no log: there is nothing to restore.
pub fn validate<D: Disk>(d: &mut D) -> Result<Option<Log>, Error> {
    validate_with(d, &mut ())
}

/// [`validate`], reporting the bytes checksummed to `progress`.
pub fn validate_with<D: Disk, P: Progress>(
    d: &mut D,
    progress: &mut P,
) -> Result<Option<Log>, Error> {
    let size = d.size();
    if size < u64::from(SECTOR_SIZE) {
        // Too small to hold even a header: there cannot be a log.
        return Ok(None);
    }
    let mut head = [0u8; 512];
    d.read_at(0, &mut head)?;
    if !has_log_magic(&head) {
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
        return Err(Error::Truncated {
            size,
            needed: u64::from(bs),
        });
    }
    let spb = u64::from(bs / SECTOR_SIZE);
    let dev_sectors = size / u64::from(SECTOR_SIZE);

    // One pass in replay order (newest block first, last entry first), so
    // every read -- entry data and the previous log block alike -- sees the
    // device "as if" the newer entries had been replayed: saved log blocks
    // and backups may have been moved since they were written.
    let mut overlay = Overlay::default();
    let mut blocks = Vec::new();
    let mut checks = Vec::new();
    // Walk the chain: every field, every link, and for each checksummed
    // entry the extents its data occupies "as if" the newer entries had been
    // replayed. The data itself is read afterwards, in disk order.
    let structural = walk(
        d,
        bs,
        spb,
        dev_sectors,
        &mut overlay,
        &mut blocks,
        &mut checks,
    );
    if let Err(Error::Io(e)) = structural {
        return Err(Error::Io(e));
    }
    // Every check comes before a structural error in replay order (the walk
    // stops there), so a failing checksum is the earlier problem: a damaged
    // link, say, explains the garbage read as the previous log block.
    if let Some(bad) = verify(d, bs, &mut checks, progress)? {
        let c = &checks[bad];
        return Err(corrupt(
            c.sequence,
            Some(c.entry),
            Corruption::Checksum {
                expected: c.expected,
                found: c.found,
            },
        ));
    }
    structural?;
    for c in &checks {
        blocks[c.block].checked[c.entry as usize] = true;
    }
    Ok(Some(Log {
        block_size: bs,
        blocks,
    }))
}

/// One entry's checksum, to be verified against the data.
struct Check {
    /// Index into the walk's blocks, sequence and entry index.
    block: usize,
    sequence: u32,
    entry: u32,
    /// CRC seed (the source block number) and the value logged.
    seed: u32,
    expected: u32,
    /// Where the data is, in device blocks: (first, count), in data order.
    extents: Vec<(u64, u64)>,
    /// The CRC found, once verified.
    found: u32,
}

/// Walks the chain newest block first, last entry first, so every read of a
/// previous log block sees the device "as if" the newer entries had been
/// replayed. Collects the checks; stops at the first structural problem.
fn walk<D: Disk>(
    d: &mut D,
    bs: u32,
    spb: u64,
    dev_sectors: u64,
    overlay: &mut Overlay,
    blocks: &mut Vec<Block>,
    checks: &mut Vec<Check>,
) -> Result<(), Error> {
    // Device blocks already read as log blocks, to catch a chain that loops.
    let mut visited = BTreeSet::new();
    visited.insert(0u64);
    let mut raw = read_log_block(d, 0, bs)?;
    let mut newer = None;
    loop {
        let b = decode_block(&raw, bs, newer)?;
        let seq = b.header.sequence;
        for (i, e) in b.entries.iter().enumerate() {
            check_entry(e, bs, dev_sectors).map_err(|w| corrupt(seq, Some(i as u32), w))?;
        }
        let link = if seq > 0 {
            // `decode_block` guarantees at least one entry.
            let l = b.entries[0];
            if l.source != 0 || l.size != bs {
                return Err(corrupt(
                    seq,
                    Some(0),
                    Corruption::BadLink {
                        source: l.source,
                        size: l.size,
                    },
                ));
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
            if e.is_zero() && e.checksum != 0 {
                return Err(corrupt(
                    seq,
                    Some(ei as u32),
                    Corruption::ZeroChecksum { found: e.checksum },
                ));
            }
            if e.checksum != 0 {
                if let Some(block) = overlay.zeroed_in(dst_b, n) {
                    return Err(corrupt(
                        seq,
                        Some(ei as u32),
                        Corruption::ReadsZeroed { block },
                    ));
                }
                let mut extents: Vec<(u64, u64)> = Vec::new();
                for k in 0..n {
                    let at = overlay.resolve(dst_b + k);
                    match extents.last_mut() {
                        Some((first, count)) if *first + *count == at => *count += 1,
                        _ => extents.push((at, 1)),
                    }
                }
                checks.push(Check {
                    block: blocks.len(),
                    sequence: seq,
                    entry: ei as u32,
                    seed: src_b as u32,
                    expected: e.checksum,
                    extents,
                    found: 0,
                });
            }
            overlay.apply(src_b, dst_b, n);
        }
        blocks.push(b);
        match prev_at {
            Some(at) => {
                if !visited.insert(at) {
                    return Err(corrupt(seq, Some(0), Corruption::Loop { block: at }));
                }
                raw = read_log_block(d, at * u64::from(bs), bs)?;
                newer = Some(seq);
            }
            None => return Ok(()),
        }
    }
}

/// Reads the data of every check in disk order, in reads of up to
/// [`MAX_COPY`] that may span several entries, and computes the CRCs.
/// Returns the check that fails first in replay order, if any.
fn verify<D: Disk, P: Progress>(
    d: &mut D,
    bs: u32,
    checks: &mut [Check],
    progress: &mut P,
) -> Result<Option<usize>, Error> {
    let bsz = u64::from(bs);
    let mut order: Vec<usize> = (0..checks.len()).collect();
    order.sort_by_key(|&i| checks[i].extents.first().map_or(0, |e| e.0));
    let mut buf = vec![0u8; MAX_COPY as usize];
    let mut done = 0u64;
    let mut i = 0;
    while i < order.len() {
        // A group: consecutive single-extent checks that follow each other
        // on the device, up to MAX_COPY bytes, read at once.
        let first = &checks[order[i]];
        if first.extents.len() == 1 {
            let (start, mut end) = (first.extents[0].0, first.extents[0].0 + first.extents[0].1);
            let mut j = i + 1;
            while j < order.len() {
                let c = &checks[order[j]];
                if c.extents.len() != 1
                    || c.extents[0].0 != end
                    || (end + c.extents[0].1 - start) * bsz > MAX_COPY
                {
                    break;
                }
                end += c.extents[0].1;
                j += 1;
            }
            if (end - start) * bsz <= MAX_COPY {
                let data = &mut buf[..((end - start) * bsz) as usize];
                d.read_at(start * bsz, data)?;
                for &k in &order[i..j] {
                    let c = &mut checks[k];
                    let off = ((c.extents[0].0 - start) * bsz) as usize;
                    let len = (c.extents[0].1 * bsz) as usize;
                    c.found = crate::crc::crc32(c.seed, &data[off..off + len]);
                    done += len as u64;
                }
                progress.validated(done);
                i = j;
                continue;
            }
        }
        // Anything else: extent by extent, in chunks.
        let c = &mut checks[order[i]];
        let mut crc = c.seed;
        for &(at, count) in &c.extents {
            let mut k = 0;
            while k < count {
                let run = (count - k).min(MAX_COPY / bsz);
                let data = &mut buf[..(run * bsz) as usize];
                d.read_at((at + k) * bsz, data)?;
                crc = crate::crc::crc32(crc, data);
                k += run;
                done += run * bsz;
            }
        }
        c.found = crc;
        progress.validated(done);
        i += 1;
    }
    // `checks` is in replay order.
    Ok(checks.iter().position(|c| c.found != c.expected))
}

/// Progress of a restore, for a progress bar.
pub trait Progress {
    /// `done` bytes of entry data checksummed so far (the total is not known
    /// until the whole chain has been read).
    fn validated(&mut self, _done: u64) {}
    /// `done` of `total` bytes copied.
    fn copied(&mut self, _done: u64, _total: u64) {}
}

impl Progress for () {}

/// One step of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Copy `bytes` from sector `from` (the entries' dest) back to sector `to`
    /// (their source). One step covers entries `first..=last` of log block
    /// `block` (an index into [`Log::blocks`]) when they are adjacent on disk,
    /// so restore does large sequential I/O.
    Copy {
        block: usize,
        first: u32,
        last: u32,
        from: u64,
        to: u64,
        bytes: u64,
    },
    /// Write `bytes` of zeros at sector `to`: entry `entry` of log block
    /// `block`, a zero entry.
    Zero {
        block: usize,
        entry: u32,
        to: u64,
        bytes: u64,
    },
    /// Write `bytes` of zeros at sector `at`, the dest of entry `entry` of
    /// log block `block`: a backup's place (or a saved log block), free at
    /// checkpoint, which no restart reads again. So no block free at
    /// checkpoint comes back holding a copy of other data.
    Clear {
        block: usize,
        entry: u32,
        at: u64,
        bytes: u64,
    },
    /// Make everything written so far durable.
    Sync,
    /// Sync, rewrite block 0 as a "WOB" log holding entries `0..count` of
    /// log block `block` (the ones still to replay), and sync again.
    Fence { block: usize, count: u32 },
}

/// Largest single copy, in bytes.
pub const MAX_COPY: u64 = 4 << 20;

/// A run of entries being merged into one copy.
struct Run {
    block: usize,
    first: u32,
    last: u32,
    src: u64,
    dst: u64,
    n: u64,
}

impl Run {
    fn step(&self, spb: u64, bs: u32) -> Step {
        Step::Copy {
            block: self.block,
            first: self.first,
            last: self.last,
            from: self.dst * spb,
            to: self.src * spb,
            bytes: self.n * u64::from(bs),
        }
    }

    /// Extends the run with entry `i` (blocks `src..src+n` from `dst..`) if it
    /// is adjacent on both sides and no block it writes is read by the run
    /// (or the other way round), so the order inside the run is irrelevant.
    fn extend(&mut self, i: u32, src: u64, dst: u64, n: u64, max_blocks: u64) -> bool {
        if self.n + n > max_blocks {
            return false;
        }
        let (ns, nd) = if src + n == self.src && dst + n == self.dst {
            (src, dst)
        } else if src == self.src + self.n && dst == self.dst + self.n {
            (self.src, self.dst)
        } else {
            return false;
        };
        let total = self.n + n;
        if ns < nd + total && nd < ns + total {
            return false;
        }
        self.src = ns;
        self.dst = nd;
        self.n = total;
        self.first = i;
        true
    }
}

/// The steps that replay `log`, newest entry first, with a fence before any
/// copy that would overwrite a block read since the last fence (spec 6.4).
pub fn plan(log: &Log) -> Vec<Step> {
    let bs = log.block_size;
    let spb = u64::from(bs / SECTOR_SIZE);
    let max_blocks = (MAX_COPY / u64::from(bs)).max(1);
    let mut steps = Vec::new();
    // Blocks read by copies since the last fence: a restart would read them
    // again, so they must not change before a new fence. The set carries
    // over into the next (older) log block: until a sync makes the switch
    // of block 0 to the older log durable, a restart may replay the newer
    // block's entries, so a copy that would overwrite what they read gets a
    // fence first (whose sync makes the switch durable). This spares a sync
    // per log block.
    let mut read_since_fence: BTreeSet<u64> = BTreeSet::new();
    // The places copies were read from are cleared once no restart reads
    // them again, unless an older entry writes them (the target never makes
    // such a log: a place that held a backup is never backed up earlier;
    // generic logs may). For each block, the oldest entry (largest index in
    // replay order) whose source it is.
    let mut oldest_source: BTreeMap<u64, usize> = BTreeMap::new();
    for (r, (_, _, e)) in log.replay_order().enumerate() {
        if !e.is_zero() {
            let src = e.source / spb;
            for b in src..src + u64::from(e.size / bs) {
                oldest_source.insert(b, r);
            }
        }
    }
    let clearable = |r: usize, e: &LogEntry| {
        let dst = e.dest / spb;
        !e.is_zero()
            && (dst..dst + u64::from(e.size / bs))
                .all(|b| oldest_source.get(&b).map_or(true, |&o| o <= r))
    };
    // The clears of the newer log block, waiting for the sync that makes
    // block 0's switch away from it durable.
    let mut pending_clears: Vec<Step> = Vec::new();
    let mut block_first = 0usize;
    for (bi, block) in log.blocks.iter().enumerate() {
        // Replay index of entry k of this block.
        let (nb, base) = (block.entries.len(), block_first);
        let r_of = move |k: usize| base + (nb - 1 - k);
        block_first += nb;
        let mut run: Option<Run> = None;
        for (i, e) in block.entries.iter().enumerate().rev() {
            let i = i as u32;
            let n = u64::from(e.size / bs);
            let (src, dst) = (e.source / spb, e.dest / spb);
            let hazard = (src..src + n).any(|b| read_since_fence.contains(&b));
            if i == 0 {
                // Entry 0 writes block 0 and so replaces this log block:
                // every earlier write is made durable first.
                if let Some(r) = run.take() {
                    steps.push(r.step(spb, bs));
                    read_since_fence.extend(r.dst..r.dst + r.n);
                }
                steps.push(Step::Sync);
                // That sync also made durable the switch of block 0 away from
                // the newer log block: no restart reads its places again.
                steps.append(&mut pending_clears);
                if e.is_zero() {
                    steps.push(Step::Zero {
                        block: bi,
                        entry: 0,
                        to: e.source,
                        bytes: u64::from(e.size),
                    });
                } else {
                    steps.push(Step::Copy {
                        block: bi,
                        first: 0,
                        last: 0,
                        from: e.dest,
                        to: e.source,
                        bytes: u64::from(e.size),
                    });
                    read_since_fence.extend(dst..dst + n);
                }
                // This block's places, cleared after the next sync (which
                // makes this switch durable), in disk order with adjacent
                // places merged: backups are taken in runs, so this is a few
                // large clears.
                pending_clears = clears(bi, block, &clearable, r_of);
                continue;
            }
            // A zero entry reads nothing and writes its source like a copy
            // would; it never joins a run.
            if !e.is_zero() && !hazard {
                if let Some(r) = run.as_mut() {
                    if r.extend(i, src, dst, n, max_blocks) {
                        continue;
                    }
                }
            }
            if let Some(r) = run.take() {
                steps.push(r.step(spb, bs));
                read_since_fence.extend(r.dst..r.dst + r.n);
            }
            if (src..src + n).any(|b| read_since_fence.contains(&b)) {
                steps.push(Step::Fence {
                    block: bi,
                    count: i + 1,
                });
                read_since_fence.clear();
            }
            if e.is_zero() {
                steps.push(Step::Zero {
                    block: bi,
                    entry: i,
                    to: e.source,
                    bytes: u64::from(e.size),
                });
                continue;
            }
            run = Some(Run {
                block: bi,
                first: i,
                last: i,
                src,
                dst,
                n,
            });
        }
        if let Some(r) = run.take() {
            steps.push(r.step(spb, bs));
        }
    }
    steps.push(Step::Sync);
    if !pending_clears.is_empty() {
        steps.append(&mut pending_clears);
        steps.push(Step::Sync);
    }
    steps
}

/// The clears of `block`'s places that `clearable` allows (by replay index
/// and entry), in disk order with adjacent places merged.
fn clears(
    bi: usize,
    block: &Block,
    clearable: &impl Fn(usize, &LogEntry) -> bool,
    r_of: impl Fn(usize) -> usize,
) -> Vec<Step> {
    let mut places: Vec<(u64, u64, u32)> = block
        .entries
        .iter()
        .enumerate()
        .filter(|&(k, o)| clearable(r_of(k), o))
        .map(|(k, o)| (o.dest, u64::from(o.size), k as u32))
        .collect();
    places.sort_unstable();
    let mut merged: Vec<(u64, u64, u32)> = Vec::new();
    for (at, bytes, k) in places {
        match merged.last_mut() {
            Some(m) if m.0 + m.1 / u64::from(SECTOR_SIZE) == at && m.1 + bytes <= MAX_COPY => {
                m.1 += bytes
            }
            _ => merged.push((at, bytes, k)),
        }
    }
    merged
        .into_iter()
        .map(|(at, bytes, entry)| Step::Clear {
            block: bi,
            entry,
            at,
            bytes,
        })
        .collect()
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
    let total = log.bytes_to_restore();
    let mut done = 0u64;
    let mut buf = Vec::new();
    for step in plan(log) {
        match step {
            Step::Copy {
                from, to, bytes, ..
            } => {
                buf.resize(bytes as usize, 0);
                d.read_at(from * u64::from(SECTOR_SIZE), &mut buf)?;
                d.write_at(to * u64::from(SECTOR_SIZE), &buf)?;
                done += bytes;
                progress.copied(done, total);
            }
            Step::Zero { to, bytes, .. } => {
                d.zero_at(to * u64::from(SECTOR_SIZE), bytes)?;
                done += bytes;
                progress.copied(done, total);
            }
            Step::Clear { at, bytes, .. } => d.zero_at(at * u64::from(SECTOR_SIZE), bytes)?,
            Step::Sync => d.sync()?,
            Step::Fence { block, count } => {
                // `plan` only names blocks of `log`.
                if let Some(b) = log.blocks.get(block) {
                    write_fence(d, log.block_size, b, count)?;
                }
            }
        }
    }
    Ok(())
}

/// Android's fallback for an invalid log: put the live block 0 back and keep
/// the new data. Needs only a readable header in block 0. Returns false when
/// there was no log.
pub fn roll_forward<D: Disk>(d: &mut D) -> Result<bool, Error> {
    let mut head = [0u8; 512];
    if d.size() < head.len() as u64 {
        return Ok(false);
    }
    d.read_at(0, &mut head)?;
    if !has_log_magic(&head) {
        return Ok(false);
    }
    let h = LogHeader::decode_raw(&head).map_err(|e| corrupt(0, None, Corruption::Header(e)))?;
    let bs = h.block_size;
    if !crate::format::valid_block_size(bs) {
        return Err(corrupt(
            h.sequence,
            None,
            Corruption::Header(FormatError::BadBlockSize(bs)),
        ));
    }
    let dev_sectors = d.size() / u64::from(SECTOR_SIZE);
    let live = LogEntry {
        source: 0,
        dest: h.sector0,
        size: bs,
        checksum: 0,
    };
    check_entry(&live, bs, dev_sectors).map_err(|w| corrupt(h.sequence, None, w))?;
    let mut b = vec![0u8; bs as usize];
    d.read_at(h.sector0 * u64::from(SECTOR_SIZE), &mut b)?;
    d.write_at(0, &b)?;
    d.sync()?;
    Ok(true)
}

impl core::error::Error for Error {}
