//! The on-disk log, compatible with Android's dm-bow.
//!
//! All integers are little-endian; all sector numbers count 512-byte sectors.
//! During a checkpoint, block 0 of the device holds the newest log block:
//!
//! ```text
//! offset size field
//!      0    4 magic           0x00574f42 "BOW", or 0x00424f57 "WOB" while a restore runs
//!      4    2 header_version  0x0100
//!      6    2 header_size     28
//!      8    4 block_size      bytes
//!     12    4 count           entries that follow
//!     16    4 sequence        0 for the first log block, +1 for each later one
//!     20    8 sector0         where the live copy of block 0 is now
//!     28 24*n entries         { source u64, dest u64, size u32, checksum u32 }
//! ```
//!
//! A log block with a sequence above 0 starts with an entry whose source is
//! sector 0 and whose dest is the saved copy of the previous log block, so the
//! blocks form a chain from newest to oldest.
//!
//! The in-core types ([`LogHeader`], [`LogEntry`]) are converted to and from
//! bytes only in this file.

use super::crc::crc32;

/// Magic of a valid, unapplied log ("BOW").
pub const MAGIC: u32 = 0x0057_4f42;
/// Magic of a log that a restore has partly applied ("WOB").
pub const MAGIC_RESTORING: u32 = 0x0042_4f57;
/// The only header version there is.
pub const HEADER_VERSION: u16 = 0x0100;
/// Size of the header in bytes, as written by every known implementation.
pub const HEADER_SIZE: u16 = 28;
/// Size of one entry in bytes.
pub const ENTRY_SIZE: usize = 24;
/// Bytes per sector.
pub const SECTOR_SIZE: u32 = 512;
/// Smallest block size the target accepts.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest block size the target accepts.
pub const MAX_BLOCK_SIZE: u32 = 4096;

/// Why a buffer could not be read or written as a log block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The buffer is shorter than the structure that must fit in it.
    Truncated,
    /// The magic is neither "BOW" nor "WOB".
    BadMagic(u32),
    /// The header version is not 0x0100.
    BadVersion(u16),
    /// The header size is below 28 or leaves no room for one entry.
    BadHeaderSize(u16),
    /// The block size is not a power of two from 512 to 4096.
    BadBlockSize(u32),
    /// No entries, or more than fit in one block (`max`).
    BadCount { found: u32, max: u32 },
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Truncated => f.write_str("buffer too short for a log block"),
            Self::BadMagic(m) => write!(
                f,
                "magic: expected {MAGIC:#010x} (BOW) or {MAGIC_RESTORING:#010x} (WOB), found {m:#010x}"
            ),
            Self::BadVersion(v) => {
                write!(f, "header_version: expected {HEADER_VERSION:#06x}, found {v:#06x}")
            }
            Self::BadHeaderSize(s) => write!(f, "header_size: expected {HEADER_SIZE}, found {s}"),
            Self::BadBlockSize(b) => write!(
                f,
                "block_size: expected a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}, found {b}"
            ),
            Self::BadCount { found, max } => {
                write!(f, "count: expected 1 to {max}, found {found}")
            }
        }
    }
}

/// Whether `bs` is a block size the target supports.
pub const fn valid_block_size(bs: u32) -> bool {
    bs.is_power_of_two() && bs >= MIN_BLOCK_SIZE && bs <= MAX_BLOCK_SIZE
}

/// How many entries one log block of `block_size` bytes holds (169 at 4 KiB).
pub const fn entries_per_block(block_size: u32) -> u32 {
    let bs = block_size as usize;
    if bs < HEADER_SIZE as usize {
        return 0;
    }
    ((bs - HEADER_SIZE as usize) / ENTRY_SIZE) as u32
}

/// How many new log blocks appending `more` entries to a log block that holds
/// `count` entries takes, when each full block is saved and the next one
/// starts with its chain entry (so a new block has room for `epb - 1` more).
/// The target keeps this many free blocks back for the log, so a log write
/// never fails for want of space.
pub const fn chain_blocks(count: u32, more: u64, epb: u32) -> u64 {
    let epb = epb as u64;
    let total = count as u64 + more;
    if epb < 2 || total <= epb {
        return 0;
    }
    (total - epb).div_ceil(epb - 1)
}

/// Bytes at the start of a log block holding `count` entries that a log
/// write must write: the header and every entry, rounded up to `unit` (the
/// logical block size of the device below: a power of two, at least 512) and
/// at most `block_size`. What lies past the last entry is never read (every
/// reader stops at `count`), so the rest of the block need not be written
/// again.
pub const fn log_write_len(count: u32, block_size: u32, unit: u32) -> u32 {
    let unit = if unit < SECTOR_SIZE {
        SECTOR_SIZE
    } else {
        unit
    } as u64;
    let used = HEADER_SIZE as u64 + count as u64 * ENTRY_SIZE as u64;
    let len = used.div_ceil(unit) * unit;
    if len > block_size as u64 {
        block_size
    } else {
        len as u32
    }
}

/// Sectors per block.
pub const fn sectors_per_block(block_size: u32) -> u64 {
    (block_size / SECTOR_SIZE) as u64
}

/// The seed of an entry's checksum: the source block number, cut to 32 bits
/// as Android does (it passes a sector_t into a u32 parameter).
pub const fn entry_seed(source_sector: u64, block_size: u32) -> u32 {
    let spb = sectors_per_block(block_size);
    let spb = if spb == 0 { 1 } else { spb };
    (source_sector / spb) as u32
}

/// The checksum of one entry's data: CRC-32 seeded with the source block number.
pub fn entry_checksum(source_sector: u64, block_size: u32, data: &[u8]) -> u32 {
    crc32(entry_seed(source_sector, block_size), data)
}

fn le_u16(b: &[u8], at: usize) -> Result<u16, FormatError> {
    let s = b.get(at..at + 2).ok_or(FormatError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn le_u32(b: &[u8], at: usize) -> Result<u32, FormatError> {
    let s = b.get(at..at + 4).ok_or(FormatError::Truncated)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

fn le_u64(b: &[u8], at: usize) -> Result<u64, FormatError> {
    let s = b.get(at..at + 8).ok_or(FormatError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), FormatError> {
    b.get_mut(at..at + bytes.len())
        .ok_or(FormatError::Truncated)?
        .copy_from_slice(bytes);
    Ok(())
}

/// The header of one log block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHeader {
    /// [`MAGIC`] or [`MAGIC_RESTORING`].
    pub magic: u32,
    /// Always [`HEADER_VERSION`] when written by us.
    pub header_version: u16,
    /// Always [`HEADER_SIZE`] when written by us.
    pub header_size: u16,
    /// Block size in bytes.
    pub block_size: u32,
    /// Number of entries in this block.
    pub count: u32,
    /// Position of this block in the chain.
    pub sequence: u32,
    /// Sector holding the live copy of the filesystem's block 0.
    pub sector0: u64,
}

impl LogHeader {
    /// A fresh header for a "BOW" log block.
    pub const fn new(block_size: u32, sequence: u32, sector0: u64) -> Self {
        Self {
            magic: MAGIC,
            header_version: HEADER_VERSION,
            header_size: HEADER_SIZE,
            block_size,
            count: 0,
            sequence,
            sector0,
        }
    }

    /// Reads the header fields without judging them.
    pub fn decode_raw(b: &[u8]) -> Result<Self, FormatError> {
        Ok(Self {
            magic: le_u32(b, 0)?,
            header_version: le_u16(b, 4)?,
            header_size: le_u16(b, 6)?,
            block_size: le_u32(b, 8)?,
            count: le_u32(b, 12)?,
            sequence: le_u32(b, 16)?,
            sector0: le_u64(b, 20)?,
        })
    }

    /// Reads and validates a header: magic, version, header size, block size
    /// and count must all make sense, and the block must fit in `b`.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        let h = Self::decode_raw(b)?;
        h.check_identity()?;
        if !valid_block_size(h.block_size) {
            return Err(FormatError::BadBlockSize(h.block_size));
        }
        let max = entries_per_block(h.block_size);
        if h.count > max {
            return Err(FormatError::BadCount {
                found: h.count,
                max,
            });
        }
        if b.len() < h.block_size as usize {
            return Err(FormatError::Truncated);
        }
        Ok(h)
    }

    /// Checks the fields that identify a log block: magic, version and
    /// header size.
    pub fn check_identity(&self) -> Result<(), FormatError> {
        if self.magic != MAGIC && self.magic != MAGIC_RESTORING {
            return Err(FormatError::BadMagic(self.magic));
        }
        if self.header_version != HEADER_VERSION {
            return Err(FormatError::BadVersion(self.header_version));
        }
        if self.header_size != HEADER_SIZE {
            return Err(FormatError::BadHeaderSize(self.header_size));
        }
        Ok(())
    }

    /// Writes the header into the first 28 bytes of `b`.
    pub fn encode(&self, b: &mut [u8]) -> Result<(), FormatError> {
        put(b, 0, &self.magic.to_le_bytes())?;
        put(b, 4, &self.header_version.to_le_bytes())?;
        put(b, 6, &self.header_size.to_le_bytes())?;
        put(b, 8, &self.block_size.to_le_bytes())?;
        put(b, 12, &self.count.to_le_bytes())?;
        put(b, 16, &self.sequence.to_le_bytes())?;
        put(b, 20, &self.sector0.to_le_bytes())
    }
}

/// One move recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogEntry {
    /// Sector the original data came from.
    pub source: u64,
    /// Sector its copy is at now.
    pub dest: u64,
    /// Bytes moved, a multiple of the block size.
    pub size: u32,
    /// [`entry_checksum`] of the data, or 0 for "not checked".
    pub checksum: u32,
}

fn entry_offset(index: u32) -> usize {
    HEADER_SIZE as usize + index as usize * ENTRY_SIZE
}

impl LogEntry {
    /// A "zero on restore" entry (**beyond** Android): `size` bytes at
    /// `sector` were free at checkpoint and may be written since; a restore
    /// zeroes them, so that no block comes back holding data newer than the
    /// checkpoint. Source and dest are the same sector, so a restore that
    /// copies dest to source (Android's) leaves the blocks as they are.
    pub const fn zero(sector: u64, size: u32) -> Self {
        Self {
            source: sector,
            dest: sector,
            size,
            checksum: 0,
        }
    }

    /// Whether this is a [`LogEntry::zero`] entry.
    pub const fn is_zero(&self) -> bool {
        self.source == self.dest
    }

    /// Reads entry `index` of the log block in `b`.
    pub fn decode_at(b: &[u8], index: u32) -> Result<Self, FormatError> {
        let o = entry_offset(index);
        Ok(Self {
            source: le_u64(b, o)?,
            dest: le_u64(b, o + 8)?,
            size: le_u32(b, o + 16)?,
            checksum: le_u32(b, o + 20)?,
        })
    }

    /// Writes this entry as entry `index` of the log block in `b`.
    pub fn encode_at(&self, b: &mut [u8], index: u32) -> Result<(), FormatError> {
        let o = entry_offset(index);
        put(b, o, &self.source.to_le_bytes())?;
        put(b, o + 8, &self.dest.to_le_bytes())?;
        put(b, o + 16, &self.size.to_le_bytes())?;
        put(b, o + 20, &self.checksum.to_le_bytes())
    }
}

/// Whether `b` (the start of block 0) holds a dm-bow log that nobody has
/// restored or committed: BOW or WOB magic, version 0x0100, header size 28
/// (spec 1: what the target refuses to load over).
pub fn holds_log(b: &[u8]) -> bool {
    match LogHeader::decode_raw(b) {
        Ok(h) => {
            has_log_magic(b) && h.header_version == HEADER_VERSION && h.header_size == HEADER_SIZE
        }
        Err(_) => false,
    }
}

/// Whether `b` starts with the BOW or WOB magic. Restore treats such a block
/// 0 as a log and judges the other header fields itself, so a damaged header
/// is reported as an invalid log rather than mistaken for "no checkpoint".
pub fn has_log_magic(b: &[u8]) -> bool {
    le_u32(b, 0).is_ok_and(|m| m == MAGIC || m == MAGIC_RESTORING)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `chain_blocks` against a direct simulation of the chaining rule.
    #[test]
    fn chain_blocks_matches_simulation() {
        for epb in [2u32, 3, 20, 169] {
            for count in 1..=epb {
                for more in 0..200u64 {
                    let (mut c, mut chains) = (count, 0u64);
                    for _ in 0..more {
                        if c >= epb {
                            chains += 1;
                            c = 1;
                        }
                        c += 1;
                    }
                    assert_eq!(
                        chain_blocks(count, more, epb),
                        chains,
                        "epb {epb} count {count} more {more}"
                    );
                }
            }
        }
        // The largest batch at 512-byte blocks needs 54 chained blocks.
        assert_eq!(chain_blocks(20, 1024, 20), 54);
    }

    #[test]
    fn log_write_len_covers_header_and_entries_in_whole_units() {
        // 28 + 20 * 24 = 508 bytes: one sector.
        assert_eq!(log_write_len(20, 4096, 512), 512);
        // 28 + 21 * 24 = 532 bytes: two.
        assert_eq!(log_write_len(21, 4096, 512), 1024);
        // A full block, and a device with 4 KiB logical blocks.
        assert_eq!(log_write_len(169, 4096, 512), 4096);
        assert_eq!(log_write_len(1, 4096, 4096), 4096);
        assert_eq!(log_write_len(20, 512, 512), 512);
        // A unit below 512 counts as 512; never more than the block.
        assert_eq!(log_write_len(1, 4096, 0), 512);
        assert_eq!(log_write_len(u32::MAX, 4096, 512), 4096);
        for bs in [512u32, 1024, 2048, 4096] {
            for unit in [512u32, 1024, 2048, 4096] {
                if unit > bs {
                    continue;
                }
                for count in 1..=entries_per_block(bs) {
                    let len = log_write_len(count, bs, unit);
                    let used = HEADER_SIZE as u32 + count * ENTRY_SIZE as u32;
                    assert!(
                        len >= used && len <= bs && len % unit == 0,
                        "{bs} {unit} {count}"
                    );
                    assert!(
                        len - used < unit,
                        "{bs} {unit} {count}: no whole unit to spare"
                    );
                }
            }
        }
    }

    #[test]
    fn entries_per_4k_block() {
        assert_eq!(entries_per_block(4096), 169);
        assert_eq!(entries_per_block(512), 20);
        assert_eq!(entries_per_block(1024), 41);
    }

    #[test]
    fn header_layout_is_little_endian_at_fixed_offsets() {
        let mut b = [0u8; 512];
        let mut h = LogHeader::new(4096, 7, 0x1122_3344_5566_7788);
        h.count = 3;
        h.encode(&mut b).unwrap();
        assert_eq!(&b[0..4], &[0x42, 0x4f, 0x57, 0x00]); // "BOW\0"
        assert_eq!(&b[4..6], &[0x00, 0x01]);
        assert_eq!(&b[6..8], &[28, 0]);
        assert_eq!(&b[8..12], &4096u32.to_le_bytes());
        assert_eq!(&b[12..16], &3u32.to_le_bytes());
        assert_eq!(&b[16..20], &7u32.to_le_bytes());
        assert_eq!(
            &b[20..28],
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
    }

    #[test]
    fn entry_layout() {
        let mut b = [0u8; 512];
        let e = LogEntry {
            source: 8,
            dest: 0x100,
            size: 4096,
            checksum: 0xdead_beef,
        };
        e.encode_at(&mut b, 1).unwrap();
        assert_eq!(&b[52..60], &8u64.to_le_bytes());
        assert_eq!(&b[60..68], &0x100u64.to_le_bytes());
        assert_eq!(&b[68..72], &4096u32.to_le_bytes());
        assert_eq!(&b[72..76], &0xdead_beefu32.to_le_bytes());
        assert_eq!(LogEntry::decode_at(&b, 1).unwrap(), e);
    }

    #[test]
    fn decode_rejects_each_bad_field() {
        let mut b = [0u8; 4096];
        LogHeader::new(4096, 0, 8).encode(&mut b).unwrap();
        assert!(LogHeader::decode(&b).is_ok());
        let mut c = b;
        c[0] = 0;
        assert!(matches!(
            LogHeader::decode(&c),
            Err(FormatError::BadMagic(_))
        ));
        let mut c = b;
        c[5] = 2;
        assert!(matches!(
            LogHeader::decode(&c),
            Err(FormatError::BadVersion(_))
        ));
        let mut c = b;
        c[6] = 29;
        assert!(matches!(
            LogHeader::decode(&c),
            Err(FormatError::BadHeaderSize(29))
        ));
        let mut c = b;
        c[8..12].copy_from_slice(&3000u32.to_le_bytes());
        assert!(matches!(
            LogHeader::decode(&c),
            Err(FormatError::BadBlockSize(3000))
        ));
        let mut c = b;
        c[12..16].copy_from_slice(&170u32.to_le_bytes());
        assert!(matches!(
            LogHeader::decode(&c),
            Err(FormatError::BadCount {
                found: 170,
                max: 169
            })
        ));
        assert_eq!(LogHeader::decode(&b[..100]), Err(FormatError::Truncated));
    }

    #[test]
    fn holds_log_recognises_both_magics() {
        let mut b = [0u8; 512];
        assert!(!holds_log(&b));
        LogHeader::new(512, 0, 8).encode(&mut b).unwrap();
        assert!(holds_log(&b));
        b[0..4].copy_from_slice(&MAGIC_RESTORING.to_le_bytes());
        assert!(holds_log(&b));
        b[6] = 30;
        assert!(!holds_log(&b));
        assert!(has_log_magic(&b), "a damaged header still has the magic");
        b[0] = 0x41;
        assert!(!has_log_magic(&b));
    }

    #[test]
    fn checksum_seed_is_source_block() {
        let data = [0xa5u8; 4096];
        assert_eq!(entry_checksum(80, 4096, &data), crc32(10, &data));
        assert_eq!(
            entry_checksum(80, 512, &data[..512]),
            crc32(80, &data[..512])
        );
    }

    proptest::proptest! {
        #[test]
        fn header_roundtrip(bs_shift in 0u32..4, count: u32, seq: u32, s0: u64) {
            let bs = 512u32 << bs_shift;
            let mut b = [0u8; 4096];
            let mut h = LogHeader::new(bs, seq, s0);
            h.count = count % (entries_per_block(bs) + 1);
            h.encode(&mut b).unwrap();
            proptest::prop_assert_eq!(LogHeader::decode(&b).unwrap(), h);
        }

        #[test]
        fn entry_roundtrip(i in 0u32..169, source: u64, dest: u64, size: u32, checksum: u32) {
            let mut b = [0u8; 4096];
            let e = LogEntry { source, dest, size, checksum };
            e.encode_at(&mut b, i).unwrap();
            proptest::prop_assert_eq!(LogEntry::decode_at(&b, i).unwrap(), e);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..700), i in 0u32..1000) {
            let _ = LogHeader::decode(&b);
            let _ = LogEntry::decode_at(&b, i);
            let _ = holds_log(&b);
        }
    }
}
