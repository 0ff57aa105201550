//! Reading the on-disk log chain from a device or image.

use bow_core::format::{LogEntry, LogHeader, FormatError, entry_checksum, MAGIC};
use serde::Serialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Errors found while reading a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("I/O error on {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("log block of sequence {sequence}: {error}")]
    Format { sequence: u32, error: FormatError },
}

/// One entry as found on disk, with its checksum verdict.
#[derive(Debug, Serialize)]
pub struct EntryView {
    pub source: u64,
    pub dest: u64,
    pub size: u32,
    pub checksum: u32,
    /// `None` when the checksum is 0 ("not checked").
    pub checksum_ok: Option<bool>,
}

/// One log block of the chain.
#[derive(Debug, Serialize)]
pub struct BlockView {
    pub magic: String,
    pub sequence: u32,
    pub block_size: u32,
    pub sector0: u64,
    pub entries: Vec<EntryView>,
}

fn read_at(f: &File, offset: u64, len: usize, what: &str) -> Result<Vec<u8>, LogError> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)
        .map_err(|source| LogError::Io { what: what.to_string(), source })?;
    Ok(buf)
}

/// Reads the chain, newest block first. Returns an empty list when block 0
/// holds no log. Checksums are verified against the data as it is on disk now.
pub fn read_chain(path: &Path) -> Result<Vec<BlockView>, LogError> {
    let f = File::open(path).map_err(|source| LogError::Io { what: path.display().to_string(), source })?;
    let first = read_at(&f, 0, 4096.min(file_len(&f)? as usize), "block 0")?;
    if !bow_core::format::holds_log(&first) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut block = first;
    let mut expect_seq = None;
    loop {
        let h = LogHeader::decode(&block).map_err(|error| LogError::Format {
            sequence: expect_seq.unwrap_or(0),
            error,
        })?;
        let mut entries = Vec::new();
        for i in 0..h.count {
            let e = LogEntry::decode_at(&block, i).map_err(|error| LogError::Format { sequence: h.sequence, error })?;
            let checksum_ok = if e.checksum == 0 {
                None
            } else {
                let data = read_at(&f, e.dest * 512, e.size as usize, "entry data")?;
                Some(entry_checksum(e.source, h.block_size, &data) == e.checksum)
            };
            entries.push(EntryView { source: e.source, dest: e.dest, size: e.size, checksum: e.checksum, checksum_ok });
        }
        let prev = if h.sequence > 0 { entries.first().map(|e| e.dest) } else { None };
        out.push(BlockView {
            magic: if h.magic == MAGIC { "BOW".into() } else { "WOB".into() },
            sequence: h.sequence,
            block_size: h.block_size,
            sector0: h.sector0,
            entries,
        });
        match prev {
            Some(dest) if out.len() < 1 << 20 => {
                expect_seq = Some(h.sequence - 1);
                block = read_at(&f, dest * 512, h.block_size as usize, "previous log block")?;
            }
            _ => break,
        }
    }
    Ok(out)
}

fn file_len(f: &File) -> Result<u64, LogError> {
    use std::io::{Seek, SeekFrom};
    let mut f = f;
    f.seek(SeekFrom::End(0)).map_err(|source| LogError::Io { what: "seek".into(), source })
}
