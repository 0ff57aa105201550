//! Reads a dm-log-writes recording (drivers/md/dm-log-writes.c): a super
//! block, then one entry per logged bio, each a metadata sector followed by
//! the bio's data. Writes appear in the order they became durable: a write
//! that completed is logged at the next flush, a FUA write when it completes.

use anyhow::{bail, ensure, Context, Result};

/// `WRITE_LOG_MAGIC`.
pub const MAGIC: u64 = 0x006a_7366_7773_6872;
/// The bio had PREFLUSH (or was an empty flush).
pub const FLUSH: u64 = 1 << 0;
/// The bio had FUA.
pub const FUA: u64 = 1 << 1;
/// A discard.
pub const DISCARD: u64 = 1 << 2;
/// A mark (`dmsetup message <lw> 0 mark <name>`), no I/O.
pub const MARK: u64 = 1 << 3;

/// One logged bio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset on the recorded device.
    pub offset: u64,
    /// Bytes written (or discarded).
    pub len: u64,
    /// The LOG_*_FLAG bits.
    pub flags: u64,
    /// Where the data starts in the recording.
    pub data_at: u64,
    /// The mark's name, for marks.
    pub mark: Option<String>,
}

impl Entry {
    /// A write with data (not a discard, a mark or an empty flush).
    pub fn is_write(&self) -> bool {
        self.flags & (DISCARD | MARK) == 0 && self.len > 0
    }
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    let s = b.get(at..at + 8).context("recording cut short")?;
    Ok(u64::from_le_bytes(s.try_into()?))
}

/// Parses the recording in `log`.
pub fn parse(log: &[u8]) -> Result<Vec<Entry>> {
    ensure!(
        u64_at(log, 0)? == MAGIC,
        "not a dm-log-writes recording (bad magic)"
    );
    ensure!(u64_at(log, 8)? == 1, "unknown dm-log-writes version");
    let n = u64_at(log, 16)?;
    let ss = u64::from(u32::from_le_bytes(
        log.get(24..28).context("short super")?.try_into()?,
    ));
    ensure!(ss.is_power_of_two() && ss >= 512, "bad sector size {ss}");
    let mut out = Vec::with_capacity(n as usize);
    let mut pos = ss;
    for i in 0..n {
        let p = pos as usize;
        let sector = u64_at(log, p)?;
        let nr = u64_at(log, p + 8)?;
        let flags = u64_at(log, p + 16)?;
        let data_len = u64_at(log, p + 24)?;
        let mark = if flags & MARK != 0 {
            let raw = log
                .get(p + 32..p + 32 + data_len as usize)
                .with_context(|| format!("entry {i}: mark cut short"))?;
            Some(
                String::from_utf8_lossy(raw)
                    .trim_end_matches('\0')
                    .to_owned(),
            )
        } else {
            None
        };
        let e = Entry {
            offset: sector * ss,
            len: nr * ss,
            flags,
            data_at: pos + ss,
            mark,
        };
        if e.is_write() && e.data_at + e.len > log.len() as u64 {
            bail!("entry {i}: data past the end of the recording");
        }
        pos += ss;
        if flags & DISCARD == 0 {
            pos += nr * ss;
        }
        out.push(e);
    }
    Ok(out)
}

/// Index of the mark named `name`.
pub fn find_mark(entries: &[Entry], name: &str) -> Option<usize> {
    entries.iter().position(|e| e.mark.as_deref() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(log: &mut Vec<u8>, ss: usize, sector: u64, flags: u64, data: &[u8], mark: &str) {
        let mut m = vec![0u8; ss];
        m[0..8].copy_from_slice(&sector.to_le_bytes());
        let nr = (data.len() / ss) as u64;
        m[8..16].copy_from_slice(&nr.to_le_bytes());
        m[16..24].copy_from_slice(&flags.to_le_bytes());
        m[24..32].copy_from_slice(&(mark.len() as u64).to_le_bytes());
        m[32..32 + mark.len()].copy_from_slice(mark.as_bytes());
        log.extend_from_slice(&m);
        log.extend_from_slice(data);
    }

    #[test]
    fn parses_writes_flushes_and_marks() {
        let ss = 512;
        let mut log = vec![0u8; ss];
        log[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        log[8..16].copy_from_slice(&1u64.to_le_bytes());
        log[16..24].copy_from_slice(&4u64.to_le_bytes());
        log[24..28].copy_from_slice(&512u32.to_le_bytes());
        entry(&mut log, ss, 8, 0, &[7u8; 1024], "");
        entry(&mut log, ss, 0, FLUSH, &[], "");
        entry(&mut log, ss, 0, MARK, &[], "checkpoint");
        entry(&mut log, ss, 16, FLUSH | FUA, &[9u8; 512], "");
        let e = parse(&log).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!((e[0].offset, e[0].len, e[0].is_write()), (4096, 1024, true));
        assert_eq!(&log[e[0].data_at as usize..][..1024], &[7u8; 1024][..]);
        assert!(!e[1].is_write());
        assert_eq!(find_mark(&e, "checkpoint"), Some(2));
        assert_eq!(&log[e[3].data_at as usize..][..512], &[9u8; 512][..]);
    }
}
