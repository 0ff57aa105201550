//! The device-mapper table grammar of the `bow` target.
//!
//! ```text
//! <start> <length> bow <device> [<#opt_args> <opt_arg>...]
//!
//! opt_arg:
//!   block_size:N    N a power of two from 512 to 4096: the logical and
//!                   physical block size the target advertises
//!   ignore_log      accept a device whose block 0 holds an unrestored log
//!                   (the log is then lost for good)
//! ```
//!
//! Parsing happens in two steps: [`parse_args`] checks the words alone, and
//! [`check_geometry`] checks them against the device once it is open. Each
//! failure has its own message, used as `ti->error` in the kernel.

use super::format::{valid_block_size, SECTOR_SIZE};
use core::ffi::CStr;

/// The smallest target, in blocks: block 0, one block for the relocated
/// block 0 and one for its backup.
pub const MIN_BLOCKS: u64 = 3;

/// What a table line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableArgs<'a> {
    /// The underlying device, as given (a path or major:minor).
    pub device: &'a [u8],
    /// `block_size:N`, if given.
    pub block_size: Option<u32>,
    /// `ignore_log` was given.
    pub ignore_log: bool,
}

/// A table the target refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// No device, or the optional-argument count does not match the words.
    ArgCount,
    /// The optional-argument count is not a number.
    BadOptCount,
    /// An optional argument that is not known.
    UnknownOption,
    /// The same optional argument twice.
    DuplicateOption,
    /// `block_size:` followed by something that is not a decimal number.
    BadNumber,
    /// A block size that is not a power of two from 512 to 4096.
    BadBlockSize,
    /// A block size below the device's logical block size.
    BlockSizeBelowDevice,
    /// A target length that is not a whole number of blocks.
    LengthNotMultiple,
    /// A target of fewer than [`MIN_BLOCKS`] blocks.
    TooSmall,
    /// A read-only table or device.
    ReadOnly,
    /// The device could not be opened.
    DeviceLookup,
    /// Block 0 holds an unrestored log.
    UnrestoredLog,
}

impl TableError {
    /// The text for `ti->error`.
    pub const fn message(self) -> &'static CStr {
        match self {
            Self::ArgCount => c"Invalid argument count: expected <device> [<#opt_args> <opt_arg>...]",
            Self::BadOptCount => c"Invalid optional argument count",
            Self::UnknownOption => c"Unknown optional argument (known: block_size:N, ignore_log)",
            Self::DuplicateOption => c"Duplicate optional argument",
            Self::BadNumber => c"Invalid block_size: not a decimal number",
            Self::BadBlockSize => c"Invalid block_size: must be a power of two from 512 to 4096",
            Self::BlockSizeBelowDevice => c"Invalid block_size: smaller than the device's logical block size",
            Self::LengthNotMultiple => c"Target length is not a multiple of the block size",
            Self::TooSmall => c"Device too small: at least 3 blocks are needed",
            Self::ReadOnly => c"Device must be writable",
            Self::DeviceLookup => c"Device lookup failed",
            Self::UnrestoredLog => c"Device holds an unrestored bow log: run 'bowctl restore' first, or add ignore_log to discard it",
        }
    }

    /// The same text, as a `str`.
    pub fn as_str(self) -> &'static str {
        self.message().to_str().unwrap_or("invalid table")
    }
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a decimal number with no sign, no spaces and no overflow.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Checks the table words (after `bow`).
pub fn parse_args<'a, I>(args: I) -> Result<TableArgs<'a>, TableError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut it = args.into_iter();
    let device = it.next().ok_or(TableError::ArgCount)?;
    if device.is_empty() {
        return Err(TableError::ArgCount);
    }
    let mut out = TableArgs {
        device,
        block_size: None,
        ignore_log: false,
    };
    let Some(n) = it.next() else {
        return Ok(out);
    };
    let n = parse_decimal(n).ok_or(TableError::BadOptCount)?;
    let mut seen = 0u64;
    for arg in it.by_ref() {
        seen += 1;
        if seen > n {
            return Err(TableError::ArgCount);
        }
        if let Some(v) = arg.strip_prefix(b"block_size:") {
            if out.block_size.is_some() {
                return Err(TableError::DuplicateOption);
            }
            let v = parse_decimal(v).ok_or(TableError::BadNumber)?;
            let v = u32::try_from(v).map_err(|_| TableError::BadBlockSize)?;
            if !valid_block_size(v) {
                return Err(TableError::BadBlockSize);
            }
            out.block_size = Some(v);
        } else if arg == b"ignore_log" {
            if out.ignore_log {
                return Err(TableError::DuplicateOption);
            }
            out.ignore_log = true;
        } else {
            return Err(TableError::UnknownOption);
        }
    }
    if seen != n {
        return Err(TableError::ArgCount);
    }
    Ok(out)
}

/// The geometry a table settles on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Block size in bytes.
    pub block_size: u32,
    /// Number of blocks in the target.
    pub blocks: u64,
}

/// Checks the parsed table against the device: `dev_lbs` is its logical block
/// size, `len_sectors` the target length and `writable` whether both the table
/// and the device allow writes.
pub fn check_geometry(
    args: &TableArgs<'_>,
    dev_lbs: u32,
    len_sectors: u64,
    writable: bool,
) -> Result<Geometry, TableError> {
    if !writable {
        return Err(TableError::ReadOnly);
    }
    let block_size = match args.block_size {
        Some(bs) if bs < dev_lbs => return Err(TableError::BlockSizeBelowDevice),
        Some(bs) => bs,
        None if valid_block_size(dev_lbs) => dev_lbs,
        None => return Err(TableError::BadBlockSize),
    };
    let spb = u64::from(block_size / SECTOR_SIZE);
    if spb == 0 || len_sectors % spb != 0 {
        return Err(TableError::LengthNotMultiple);
    }
    let blocks = len_sectors / spb;
    if blocks < MIN_BLOCKS {
        return Err(TableError::TooSmall);
    }
    Ok(Geometry { block_size, blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<TableArgs<'_>, TableError> {
        parse_args(s.split_ascii_whitespace().map(str::as_bytes))
    }

    #[test]
    fn good_tables() {
        let t = p("/dev/vda").unwrap();
        assert_eq!(t.device, b"/dev/vda");
        assert_eq!(t.block_size, None);
        assert_eq!(p("253:0 1 block_size:4096").unwrap().block_size, Some(4096));
        assert_eq!(p("253:0 0").unwrap().block_size, None);
        let t = p("x 2 ignore_log block_size:512").unwrap();
        assert!(t.ignore_log);
        assert_eq!(t.block_size, Some(512));
    }

    #[test]
    fn bad_tables_each_have_their_error() {
        assert_eq!(p(""), Err(TableError::ArgCount));
        assert_eq!(p("x 1"), Err(TableError::ArgCount));
        assert_eq!(p("x 1 block_size:4096 extra"), Err(TableError::ArgCount));
        assert_eq!(p("x 2 block_size:4096"), Err(TableError::ArgCount));
        assert_eq!(p("x one block_size:4096"), Err(TableError::BadOptCount));
        assert_eq!(p("x -1"), Err(TableError::BadOptCount));
        assert_eq!(p("x 1 bs:4096"), Err(TableError::UnknownOption));
        assert_eq!(
            p("x 2 block_size:4096 block_size:512"),
            Err(TableError::DuplicateOption)
        );
        assert_eq!(p("x 1 block_size:4k"), Err(TableError::BadNumber));
        assert_eq!(p("x 1 block_size:"), Err(TableError::BadNumber));
        assert_eq!(p("x 1 block_size:+512"), Err(TableError::BadNumber));
        assert_eq!(
            p("x 1 block_size:99999999999999999999999"),
            Err(TableError::BadNumber)
        );
        assert_eq!(p("x 1 block_size:3000"), Err(TableError::BadBlockSize));
        assert_eq!(p("x 1 block_size:8192"), Err(TableError::BadBlockSize));
        assert_eq!(p("x 1 block_size:256"), Err(TableError::BadBlockSize));
        assert_eq!(
            p("x 1 block_size:4294967808"),
            Err(TableError::BadBlockSize)
        );
    }

    #[test]
    fn geometry() {
        let t = p("x 1 block_size:4096").unwrap();
        assert_eq!(
            check_geometry(&t, 512, 24, true),
            Ok(Geometry {
                block_size: 4096,
                blocks: 3
            })
        );
        assert_eq!(check_geometry(&t, 512, 16, true), Err(TableError::TooSmall));
        assert_eq!(
            check_geometry(&t, 512, 25, true),
            Err(TableError::LengthNotMultiple)
        );
        assert_eq!(
            check_geometry(&t, 512, 24, false),
            Err(TableError::ReadOnly)
        );
        let t = p("x 1 block_size:512").unwrap();
        assert_eq!(
            check_geometry(&t, 4096, 24, true),
            Err(TableError::BlockSizeBelowDevice)
        );
        let t = p("x").unwrap();
        assert_eq!(
            check_geometry(&t, 512, 3, true),
            Ok(Geometry {
                block_size: 512,
                blocks: 3
            })
        );
    }

    #[test]
    fn messages_are_distinct() {
        use TableError::*;
        let all = [
            ArgCount,
            BadOptCount,
            UnknownOption,
            DuplicateOption,
            BadNumber,
            BadBlockSize,
            BlockSizeBelowDevice,
            LengthNotMultiple,
            TooSmall,
            ReadOnly,
            DeviceLookup,
            UnrestoredLog,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(words in proptest::collection::vec("[a-z_:0-9]{0,12}", 0..6)) {
            let _ = parse_args(words.iter().map(|w| w.as_bytes()));
        }
    }
}
