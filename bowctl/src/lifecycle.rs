//! The update lifecycle: a checkpoint request kept outside the protected
//! device (like Android's checkpoint file on its metadata partition), and the
//! decision `bowctl boot` takes from it and from what block 0 holds.
//!
//! The record is a small JSON file, replaced atomically (write a temporary
//! file, fsync, rename, fsync the directory) and checksummed, so a power cut
//! leaves either the old record or the new one, and a damaged one is
//! recognised. A missing or damaged record never causes a rollback by
//! itself: only a valid log on the device can be rolled back.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the record lives unless `--record` or `BOWCTL_RECORD` says otherwise.
pub const DEFAULT_RECORD: &str = "/metadata/bow/checkpoint.json";

/// `retries` (and `remaining`) of an update with unlimited attempts: boot
/// never counts them down.
pub const UNLIMITED: u32 = u32::MAX;

/// The record's format version.
pub const VERSION: u32 = 1;

/// A pending update, as `bowctl start` wrote it and `bowctl boot` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Always [`VERSION`].
    pub version: u32,
    /// Boot attempts granted by `bowctl start --retries`.
    pub retries: u32,
    /// Boot attempts not used yet.
    pub remaining: u32,
    /// `bowctl abort` asked for a rollback at the next boot.
    pub abort: bool,
    /// `bowctl commit` decided to keep the update and may have been cut
    /// before the device reached state 2.
    pub committing: bool,
    /// The bow device of the current attempt, set by `bowctl boot`.
    pub device: Option<String>,
}

impl Record {
    /// A new request for `retries` boot attempts.
    pub fn new(retries: u32) -> Self {
        Self {
            version: VERSION,
            retries,
            remaining: retries,
            abort: false,
            committing: false,
            device: None,
        }
    }
}

/// The file as stored: the record and a CRC-32 of its serialization.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    record: Record,
    crc32: String,
}

fn crc_of(r: &Record) -> String {
    let body = serde_json::to_vec(r).unwrap_or_default();
    format!("{:08x}", bow_core::crc::crc32(0, &body))
}

/// What was found at the record's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No file: no update is pending.
    Missing,
    /// A file that is not a valid record; the text says why.
    Corrupt(String),
    /// A valid record.
    Valid(Record),
}

/// Reads the record at `path`.
pub fn load(path: &Path) -> Result<Loaded> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    Ok(parse(&text))
}

/// Parses a record file's content.
pub fn parse(text: &[u8]) -> Loaded {
    let s: Stored = match serde_json::from_slice(text) {
        Ok(s) => s,
        Err(e) => return Loaded::Corrupt(format!("not a bowctl record: {e}")),
    };
    if s.record.version != VERSION {
        return Loaded::Corrupt(format!(
            "version: expected {VERSION}, found {}",
            s.record.version
        ));
    }
    let want = crc_of(&s.record);
    if s.crc32 != want {
        return Loaded::Corrupt(format!("checksum: expected {want}, found {}", s.crc32));
    }
    if s.record.remaining > s.record.retries {
        return Loaded::Corrupt(format!(
            "remaining: expected at most {}, found {}",
            s.record.retries, s.record.remaining
        ));
    }
    Loaded::Valid(s.record)
}

/// The file content for `r`.
pub fn serialize(r: &Record) -> Vec<u8> {
    let s = Stored {
        record: r.clone(),
        crc32: crc_of(r),
    };
    let mut v = serde_json::to_vec_pretty(&s).unwrap_or_default();
    v.push(b'\n');
    v
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that a record at `path` is where the next boot will find it: on a
/// mounted filesystem of its own (not the root filesystem, where
/// `/metadata/bow` lands when the metadata partition is not mounted), and
/// not on a device that bow protects (a rollback would take the record back
/// with the data).
pub fn check_place(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // The nearest directory that exists: `store` creates the rest.
    let mut dir = parent(path);
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => break,
        }
    }
    let canon = std::fs::canonicalize(&dir)
        .map_err(|e| Error::io(format!("cannot resolve {}", dir.display()), e))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("cannot read /proc/self/mountinfo", e))?;
    let mountpoint = crate::device::mount_of(&info, &canon);
    if mountpoint.as_deref() == Some("/") {
        return Err(Error::Refused(format!(
            "{}: the record would be on the root filesystem, not on a partition of its own, \
             so the next boot would not find it (is the metadata partition mounted?); \
             --force writes it there anyway",
            path.display()
        )));
    }
    let dev = std::fs::metadata(&canon)
        .map_err(|e| Error::io(format!("cannot stat {}", canon.display()), e))?
        .dev();
    let here = crate::device::split_dev(dev);
    if let Ok(ctl) = crate::dm::Control::open() {
        for d in crate::device::all(&ctl).unwrap_or_default() {
            let below = d
                .table
                .split_whitespace()
                .next()
                .and_then(crate::device::dev_of);
            if (d.major, d.minor) == here || below == Some(here) {
                return Err(Error::Refused(format!(
                    "{}: the record would be on the device that bow protects ({}), and a rollback \
                     would take it back with the data; put it on a partition of its own",
                    path.display(),
                    d.name
                )));
            }
        }
    }
    Ok(())
}

/// Replaces the record at `path` atomically and durably.
pub fn store(path: &Path, r: &Record) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serialize(r))?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    sync_dir(&dir)
}

/// Removes the record durably; a missing one is fine.
pub fn clear(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(&parent(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Moves a damaged record aside (to `PATH.corrupt`), so it is reported once
/// and kept for a post-mortem.
pub fn set_aside(path: &Path) -> Result<PathBuf> {
    let mut to = path.as_os_str().to_owned();
    to.push(".corrupt");
    let to = PathBuf::from(to);
    std::fs::rename(path, &to).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", path.display(), to.display()),
            e,
        )
    })?;
    sync_dir(&parent(path))?;
    Ok(to)
}

/// What block 0 of the protected device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogState {
    /// No checkpoint log.
    None,
    /// A log that validated (every checksum).
    Valid,
    /// A log that failed validation; the text says why.
    Invalid(String),
}

/// What to do after the log has been dealt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Remove the record and mount the device itself: no update pending.
    ClearAndMount,
    /// Count one attempt down, set up bow, mount through it, checkpoint.
    Attempt,
}

/// `bowctl boot`'s decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No update pending and no log: mount the device as it is.
    Mount,
    /// Restore the checkpoint (offline), then `Then`.
    RollBack(Then, &'static str),
    /// Keep the new data and drop the checkpoint (an interrupted commit),
    /// then remove the record and mount.
    RollForward,
    /// Nothing to roll back: go on with `Then`.
    Proceed(Then, &'static str),
    /// Do nothing at all and fail: the log is invalid and nothing allows
    /// dropping it.
    Refuse(String),
}

/// Decides what `bowctl boot` does from the record and the log. Pure: every
/// row of the table in docs/lifecycle.md is a case of this function.
pub fn decide(rec: &Loaded, log: &LogState) -> Decision {
    use Decision::*;
    let r = match rec {
        Loaded::Valid(r) => Some(r),
        Loaded::Missing | Loaded::Corrupt(_) => None,
    };
    match (r, log) {
        // An interrupted commit: the user chose the new data.
        (Some(r), LogState::Valid | LogState::Invalid(_)) if r.committing => RollForward,
        (Some(r), LogState::None) if r.committing => {
            Proceed(Then::ClearAndMount, "the commit had completed")
        }
        (_, LogState::Invalid(why)) => Refuse(why.clone()),
        (None, LogState::None) => Mount,
        (None, LogState::Valid) => RollBack(
            Then::ClearAndMount,
            "the device holds a checkpoint that was never committed, and no valid update record",
        ),
        (Some(r), LogState::Valid) if r.abort => RollBack(
            Then::ClearAndMount,
            "a rollback was requested (bowctl abort)",
        ),
        (Some(r), LogState::None) if r.abort => Proceed(
            Then::ClearAndMount,
            "a rollback was requested, but no checkpoint was ever taken",
        ),
        (Some(r), LogState::Valid) if r.remaining == 0 => RollBack(
            Then::ClearAndMount,
            "every boot attempt was used without a commit",
        ),
        (Some(r), LogState::None) if r.remaining == 0 => Proceed(
            Then::ClearAndMount,
            "every boot attempt was used before any checkpoint was taken",
        ),
        (Some(_), LogState::Valid) => RollBack(
            Then::Attempt,
            "the last attempt did not commit: its changes are undone before the next one",
        ),
        (Some(_), LogState::None) => Proceed(Then::Attempt, "an update is pending"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(remaining: u32, abort: bool, committing: bool) -> Loaded {
        Loaded::Valid(Record {
            remaining,
            abort,
            committing,
            ..Record::new(2)
        })
    }

    #[test]
    fn round_trip_and_damage() {
        let r = Record {
            device: Some("userdata".into()),
            ..Record::new(3)
        };
        let bytes = serialize(&r);
        assert_eq!(parse(&bytes), Loaded::Valid(r.clone()));
        // Any single changed byte is caught (by JSON or by the checksum).
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(
                !matches!(parse(&b), Loaded::Valid(ref x) if *x != r),
                "flip at {i} gave a different valid record"
            );
        }
        // Truncation at every point.
        for n in 0..bytes.len() - 1 {
            assert!(
                matches!(parse(&bytes[..n]), Loaded::Corrupt(_)),
                "cut at {n} accepted"
            );
        }
        assert!(matches!(parse(b""), Loaded::Corrupt(_)));
        let mut bad = r.clone();
        bad.remaining = 9;
        assert!(
            matches!(parse(&serialize(&bad)), Loaded::Corrupt(ref m) if m.contains("remaining"))
        );
        let mut v2 = r;
        v2.version = 2;
        assert!(matches!(parse(&serialize(&v2)), Loaded::Corrupt(ref m) if m.contains("version")));
    }

    #[test]
    fn store_load_clear() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/checkpoint.json");
        assert_eq!(load(&p).unwrap(), Loaded::Missing);
        let r = Record::new(2);
        store(&p, &r).unwrap();
        assert_eq!(load(&p).unwrap(), Loaded::Valid(r));
        assert!(!d.path().join("sub/checkpoint.json.tmp").exists());
        clear(&p).unwrap();
        clear(&p).unwrap();
        assert_eq!(load(&p).unwrap(), Loaded::Missing);
        std::fs::write(&p, b"{").unwrap();
        assert!(matches!(load(&p).unwrap(), Loaded::Corrupt(_)));
        let aside = set_aside(&p).unwrap();
        assert!(aside.exists());
        assert_eq!(load(&p).unwrap(), Loaded::Missing);
    }

    #[test]
    fn decision_table() {
        use Decision::*;
        let inv = LogState::Invalid("bad".into());
        let corrupt = Loaded::Corrupt("x".into());
        // No record: mount, or roll back a valid log, never drop an invalid one.
        assert_eq!(decide(&Loaded::Missing, &LogState::None), Mount);
        assert_eq!(decide(&corrupt, &LogState::None), Mount);
        assert!(matches!(
            decide(&Loaded::Missing, &LogState::Valid),
            RollBack(Then::ClearAndMount, _)
        ));
        assert!(matches!(
            decide(&corrupt, &LogState::Valid),
            RollBack(Then::ClearAndMount, _)
        ));
        assert_eq!(decide(&Loaded::Missing, &inv), Refuse("bad".into()));
        assert_eq!(decide(&corrupt, &inv), Refuse("bad".into()));
        // Attempts left.
        assert!(matches!(
            decide(&rec(2, false, false), &LogState::None),
            Proceed(Then::Attempt, _)
        ));
        assert!(matches!(
            decide(&rec(1, false, false), &LogState::Valid),
            RollBack(Then::Attempt, _)
        ));
        assert_eq!(decide(&rec(1, false, false), &inv), Refuse("bad".into()));
        // Out of attempts.
        assert!(matches!(
            decide(&rec(0, false, false), &LogState::Valid),
            RollBack(Then::ClearAndMount, _)
        ));
        assert!(matches!(
            decide(&rec(0, false, false), &LogState::None),
            Proceed(Then::ClearAndMount, _)
        ));
        // Abort wins over attempts left.
        assert!(matches!(
            decide(&rec(2, true, false), &LogState::Valid),
            RollBack(Then::ClearAndMount, _)
        ));
        assert!(matches!(
            decide(&rec(2, true, false), &LogState::None),
            Proceed(Then::ClearAndMount, _)
        ));
        // An interrupted commit finishes as a commit, even over a bad log.
        assert_eq!(decide(&rec(1, false, true), &LogState::Valid), RollForward);
        assert_eq!(decide(&rec(1, false, true), &inv), RollForward);
        assert!(matches!(
            decide(&rec(1, false, true), &LogState::None),
            Proceed(Then::ClearAndMount, _)
        ));
    }
}
