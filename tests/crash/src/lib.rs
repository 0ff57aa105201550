//! Crash states from a dm-log-writes recording of what dm-bow sent to its
//! disk, each restored with the shared restore code and checked against the
//! checkpoint image (spec 7).
//!
//! A case directory holds what one recorded run left (see
//! tests/crash/README.md): `base.img` (the disk when recording began),
//! `log.bin` (the recording), `free` (the target's free map at checkpoint,
//! `start+len` block ranges) and `meta` (`key=value` lines: `bs`, `label`).
//! The recording carries the marks `pre-checkpoint` (filesystem frozen, just
//! before `echo 1 > state`) and `checkpoint` (state 1 reached); a run that
//! rolls back also `pre-restore` and `restore` around `bowctl restore`.

pub mod logwrites;

use anyhow::{Context, Result};
use bow_core::restore;
use bow_core::testimg::{MemDisk, Rng};
use logwrites::{Entry, FLUSH, FUA};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One recorded run.
pub struct Case {
    /// Name for reports and reproducers.
    pub label: String,
    /// The target's block size.
    pub bs: u32,
    /// The disk when recording began.
    pub base: Vec<u8>,
    /// The disk below, read in the VM with the filesystem frozen just before
    /// the checkpoint (`ref.img`), apart from the recording.
    pub reference: Vec<u8>,
    /// The recording.
    pub log: Vec<u8>,
    /// Its entries.
    pub entries: Vec<Entry>,
    /// Whether each block was free at checkpoint.
    pub free: Vec<bool>,
    /// Index of the `pre-checkpoint` and `checkpoint` marks.
    pub pre: usize,
    pub ckpt: usize,
    /// For a run that commits: the `pre-commit` and `commit` marks and the
    /// device as the filesystem saw it just before the commit (`view.img`).
    pub commit: Option<(usize, usize, Vec<u8>)>,
    /// For a run that rolled back with bowctl: the `pre-restore` and
    /// `restore` marks around bowctl's own writes.
    pub rollback: Option<(usize, usize)>,
}

impl Case {
    /// Loads a case directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let read =
            |n: &str| std::fs::read(dir.join(n)).with_context(|| format!("{}/{n}", dir.display()));
        let meta = String::from_utf8(read("meta")?)?;
        let get = |k: &str| {
            meta.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_owned)
                .with_context(|| format!("meta has no {k}"))
        };
        let bs: u32 = get("bs")?.parse()?;
        let label = get("label")?;
        let base = read("base.img")?;
        let reference = read("ref.img")?;
        let log = read("log.bin")?;
        let entries = logwrites::parse(&log).with_context(|| format!("{label}: log.bin"))?;
        let blocks = base.len() / bs as usize;
        let mut free = vec![false; blocks];
        for r in String::from_utf8(read("free")?)?.split_whitespace() {
            let (s, l) = r
                .split_once('+')
                .with_context(|| format!("bad free range {r}"))?;
            let (s, l): (usize, usize) = (s.parse()?, l.parse()?);
            for f in free.iter_mut().skip(s).take(l) {
                *f = true;
            }
        }
        let pre =
            logwrites::find_mark(&entries, "pre-checkpoint").context("no pre-checkpoint mark")?;
        let ckpt = logwrites::find_mark(&entries, "checkpoint").context("no checkpoint mark")?;
        // The scenario says which phases it recorded; a missing mark is an
        // error, never a phase dropped without a word.
        let marks = |a: &str, b: &str| -> Result<(usize, usize)> {
            let a = logwrites::find_mark(&entries, a)
                .with_context(|| format!("{label}: no {a} mark in the recording"))?;
            let b = logwrites::find_mark(&entries, b)
                .with_context(|| format!("{label}: no {b} mark in the recording"))?;
            Ok((a, b))
        };
        let (commit, rollback) = match get("commit")?.as_str() {
            "1" => {
                let (a, b) = marks("pre-commit", "commit")?;
                (Some((a, b, read("view.img")?)), None)
            }
            "0" => (None, Some(marks("pre-restore", "restore")?)),
            other => anyhow::bail!("{label}: meta has commit={other}"),
        };
        Ok(Self {
            label,
            bs,
            base,
            reference,
            log,
            entries,
            free,
            pre,
            ckpt,
            commit,
            rollback,
        })
    }

    fn apply(&self, img: &mut [u8], e: &Entry) {
        if e.is_write() {
            let (o, l) = (e.offset as usize, e.len as usize);
            if o + l <= img.len() {
                img[o..o + l].copy_from_slice(&self.log[e.data_at as usize..][..l]);
            }
        }
    }

    /// The image after entries `..k` in log order.
    pub fn prefix(&self, k: usize) -> Vec<u8> {
        let mut img = self.base.clone();
        for e in &self.entries[..k] {
            self.apply(&mut img, e);
        }
        img
    }

    /// The crash state `s` (a reproducer rebuilds one state this way).
    pub fn state(&self, s: State) -> Vec<u8> {
        Builder::new(self).build(s)
    }

    /// One past the last flush entry before `k` (0 if none): every entry
    /// before it is durable at a cut at `k`.
    pub fn last_flush_before(&self, k: usize) -> usize {
        self.entries[..k]
            .iter()
            .rposition(|e| e.flags & FLUSH != 0)
            .map_or(0, |i| i + 1)
    }

    /// Applies entries `f..k` as a volatile cache may have kept them: FUA
    /// writes are durable, of the others a random half.
    fn lose_some(&self, img: &mut [u8], f: usize, k: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        for e in &self.entries[f..k] {
            if e.flags & FUA != 0 || rng.below(2) == 0 {
                self.apply(img, e);
            }
        }
    }

    /// The first block not free at checkpoint that differs from `want`.
    pub fn first_diff(&self, got: &[u8], want: &[u8]) -> Option<u64> {
        let bs = self.bs as usize;
        (0..self.free.len())
            .find(|&b| !self.free[b] && got[b * bs..(b + 1) * bs] != want[b * bs..(b + 1) * bs])
            .map(|b| b as u64)
    }
}

/// What restores a crash image: the shared code in this process, or the
/// real `bowctl restore` binary on an image file.
#[derive(Clone, Debug)]
pub enum Restorer {
    InProcess,
    Bowctl(PathBuf),
}

/// A scratch file for one worker, in memory where the host has /dev/shm.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    dir.join(format!(
        "bow-crash-{}-{}",
        std::process::id(),
        tag.replace('/', "_")
    ))
}

impl Restorer {
    /// Restores `img` in place; returns what happened, or why restore
    /// refused or failed. `tag` names the worker's scratch file.
    pub fn restore(&self, img: &mut Vec<u8>, tag: &str) -> Result<Outcome, String> {
        match self {
            Self::InProcess => {
                let mut d = MemDisk::new(std::mem::take(img));
                let r = match restore::validate(&mut d) {
                    Err(e) => Err(e.to_string()),
                    Ok(None) => Ok(Outcome::NoLog),
                    Ok(Some(log)) => restore::restore(&mut d, &log, &mut ())
                        .map(|()| Outcome::Restored)
                        .map_err(|e| e.to_string()),
                };
                *img = d.data;
                r
            }
            Self::Bowctl(bin) => MIRROR.with(|m| {
                let p = scratch(&format!("{tag}.img"));
                let mut m = m.borrow_mut();
                if !m
                    .as_ref()
                    .is_some_and(|x| x.path == p && x.data.len() == img.len())
                {
                    *m = Some(Mirror::create(p, img.len())?);
                }
                let Some(mm) = m.as_mut() else { unreachable!() };
                mm.load(img)?;
                let out = Command::new(bin)
                    .args(["restore", "--json"])
                    .arg(&mm.path)
                    .output()
                    .map_err(|e| format!("running {}: {e}", bin.display()))?;
                // Whatever happened, the mirror must match the file again.
                mm.reread()?;
                let stdout = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() {
                    return Err(format!(
                        "bowctl restore exited {:?}: {}{}",
                        out.status.code(),
                        stdout.trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                let v: serde_json::Value = serde_json::from_str(&stdout)
                    .map_err(|e| format!("bowctl restore --json printed {stdout:?}: {e}"))?;
                let o = match v["result"].as_str() {
                    Some("restored") => Outcome::Restored,
                    Some("nothing_to_restore") => Outcome::NoLog,
                    _ => return Err(format!("bowctl restore: unexpected result {v}")),
                };
                img.copy_from_slice(&mm.data);
                Ok(o)
            }),
        }
    }
}

/// A worker's image file for the bowctl binary, kept between states with a
/// copy of its content, so each state writes only the chunks that differ
/// (rewriting and freeing 48 MiB per state dominated the campaign's time).
struct Mirror {
    path: PathBuf,
    file: std::fs::File,
    data: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl Mirror {
    fn create(path: PathBuf, len: usize) -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.set_len(len as u64)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            path,
            file,
            data: vec![0; len],
        })
    }

    /// Makes the file hold `img`.
    fn load(&mut self, img: &[u8]) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        for (i, (want, have)) in img
            .chunks(CHUNK)
            .zip(self.data.chunks_mut(CHUNK))
            .enumerate()
        {
            if want != have {
                self.file
                    .write_all_at(want, (i * CHUNK) as u64)
                    .map_err(|e| format!("{}: {e}", self.path.display()))?;
                have.copy_from_slice(want);
            }
        }
        Ok(())
    }

    /// Reads the file back after bowctl wrote to it.
    fn reread(&mut self) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        self.file
            .read_exact_at(&mut self.data, 0)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

thread_local! {
    static MIRROR: std::cell::RefCell<Option<Mirror>> = const { std::cell::RefCell::new(None) };
}

/// The blocks (of `bs` bytes) that the filesystem in `img` itself lists as
/// free: ext4's block bitmaps (`dumpe2fs`), XFS's free-space btrees
/// (`xfs_db freesp -d`), as they are on disk.
pub fn fs_free(fs: &str, img: &[u8], bs: u32, tag: &str) -> Result<Vec<bool>> {
    let p = scratch(&format!("{tag}.freesp.img"));
    std::fs::write(&p, img)?;
    let run = |cmd: &mut Command| -> Result<String> {
        let out = cmd.output().context("running the filesystem's tools")?;
        anyhow::ensure!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut free = vec![false; img.len() / bs as usize];
    let mut mark = |first: u64, len: u64, fsb: u64| -> Result<()> {
        anyhow::ensure!(
            fsb == u64::from(bs),
            "filesystem block size {fsb}, target's {bs}"
        );
        for b in first..first + len {
            *free
                .get_mut(b as usize)
                .with_context(|| format!("free block {b} beyond the image"))? = true;
        }
        Ok(())
    };
    let r = (|| {
        match fs {
            "xfs" => {
                let sb = run(Command::new("xfs_db")
                    .args(["-r", "-c", "sb 0", "-c", "p agblocks blocksize"])
                    .arg(&p))?;
                let field = |k: &str| -> Result<u64> {
                    sb.lines()
                        .find_map(|l| l.strip_prefix(&format!("{k} = ")))
                        .with_context(|| format!("xfs_db printed no {k}"))?
                        .trim()
                        .parse()
                        .context(k.to_owned())
                };
                let (agblocks, fsb) = (field("agblocks")?, field("blocksize")?);
                let out = run(Command::new("xfs_db")
                    .args(["-r", "-c", "freesp -d"])
                    .arg(&p))?;
                for l in out.lines() {
                    let v: Vec<u64> = l.split_whitespace().map_while(|w| w.parse().ok()).collect();
                    if let [agno, agbno, len] = v[..] {
                        if l.split_whitespace().count() == 3 {
                            mark(agno * agblocks + agbno, len, fsb)?;
                        }
                    }
                }
            }
            _ => {
                let out = run(Command::new("dumpe2fs").arg(&p))?;
                let fsb: u64 = out
                    .lines()
                    .find_map(|l| l.strip_prefix("Block size:"))
                    .context("dumpe2fs printed no block size")?
                    .trim()
                    .parse()?;
                // Per group, indented: "  Free blocks: 1807-12287, 12300".
                for l in out.lines().filter_map(|l| l.strip_prefix("  Free blocks:")) {
                    for r in l.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        let (a, b) = r.split_once('-').unwrap_or((r, r));
                        let (a, b): (u64, u64) = (a.parse()?, b.parse()?);
                        mark(a, b + 1 - a, fsb)?;
                    }
                }
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&p);
    r.map(|()| free)
}

/// The files of an ext4 image, read without mounting (`debugfs rdump`):
/// path -> (kind, size, checksum of the content). `tag` names the scratch
/// files.
pub fn ext4_files(img: &[u8], tag: &str) -> Result<BTreeMap<String, String>> {
    let p = scratch(&format!("{tag}.files.img"));
    let d = scratch(&format!("{tag}.files"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    let r = (|| {
        std::fs::write(&p, img)?;
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump / {}", d.display()))
            .arg(&p)
            .output()
            .context("running debugfs")?;
        anyhow::ensure!(
            out.status.success(),
            "debugfs rdump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut files = BTreeMap::new();
        let mut stack = vec![d.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let path = e.path();
                let rel = path.strip_prefix(&d)?.to_string_lossy().into_owned();
                let ft = e.file_type()?;
                let v = if ft.is_dir() {
                    stack.push(path.clone());
                    "dir".to_owned()
                } else if ft.is_symlink() {
                    format!("link {}", std::fs::read_link(&path)?.display())
                } else {
                    let data = std::fs::read(&path)?;
                    format!("file {} {:08x}", data.len(), bow_core::crc::crc32(0, &data))
                };
                files.insert(rel, v);
            }
        }
        Ok(files)
    })();
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_dir_all(&d);
    r
}

/// The first difference between two file listings, described.
pub fn files_diff(
    got: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Option<String> {
    for (k, v) in want {
        match got.get(k) {
            None => return Some(format!("{k} is missing")),
            Some(g) if g != v => return Some(format!("{k}: {g}, expected {v}")),
            _ => {}
        }
    }
    got.keys()
        .find(|k| !want.contains_key(*k))
        .map(|k| format!("{k} should not exist"))
}

/// A crash state: a cut before entry `k`, with every write in the last
/// flush epoch kept (`subset: None`) or a random half of them (the seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub k: usize,
    pub subset: Option<u64>,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.subset {
            None => write!(f, "{}", self.k),
            Some(s) => write!(f, "{}:{s}", self.k),
        }
    }
}

impl std::str::FromStr for State {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.split_once(':') {
            None => Self {
                k: s.parse()?,
                subset: None,
            },
            Some((k, seed)) => Self {
                k: k.parse()?,
                subset: Some(seed.parse()?),
            },
        })
    }
}

/// What restore did with a crash state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Block 0 held no log (a cut before the checkpoint took hold).
    NoLog,
    /// A valid log was replayed.
    Restored,
}

/// The states to try for cuts in `from..=to`: every cut when there are at
/// most `limit`, else every flush/FUA boundary plus random cuts, and in
/// both cases up to `subsets` random subsets of the last epoch per cut
/// that has unflushed writes.
pub fn plan(
    case: &Case,
    from: usize,
    to: usize,
    limit: usize,
    subsets: usize,
    seed: u64,
) -> Vec<State> {
    let mut rng = Rng::new(seed);
    let ks: Vec<usize> = if to + 1 - from <= limit {
        (from..=to).collect()
    } else {
        let mut v: Vec<usize> = (from..=to)
            .filter(|&k| k == from || k == to || case.entries[k - 1].flags & (FLUSH | FUA) != 0)
            .collect();
        while v.len() < limit {
            v.push(from + rng.below((to + 1 - from) as u64) as usize);
        }
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut out = Vec::new();
    for k in ks {
        out.push(State { k, subset: None });
        let f = case.last_flush_before(k);
        let unflushed = case.entries[f..k]
            .iter()
            .filter(|e| e.is_write() && e.flags & FUA == 0)
            .count();
        if unflushed > 0 {
            for _ in 0..subsets {
                out.push(State {
                    k,
                    subset: Some(rng.next_u64() >> 1),
                });
            }
        }
    }
    out
}

/// Builds states in ascending cut order without replaying from the start
/// each time: the image at the cut and the image at the last flush advance
/// together.
pub struct Builder<'a> {
    case: &'a Case,
    cur: Vec<u8>,
    cur_k: usize,
    flushed: Vec<u8>,
    flushed_k: usize,
}

impl<'a> Builder<'a> {
    /// Starts at the base image.
    pub fn new(case: &'a Case) -> Self {
        Self {
            case,
            cur: case.base.clone(),
            cur_k: 0,
            flushed: case.base.clone(),
            flushed_k: 0,
        }
    }

    /// The image of state `s`; states must come in ascending `k`.
    pub fn build(&mut self, s: State) -> Vec<u8> {
        let mut v = Vec::new();
        self.build_into(s, &mut v);
        v
    }

    /// Like [`Builder::build`], into `out`, reusing its memory: a fresh
    /// 48 MiB allocation per state (mapped and faulted in anew each time)
    /// cost more than everything else the campaign does.
    pub fn build_into(&mut self, s: State, out: &mut Vec<u8>) {
        let c = self.case;
        assert!(s.k >= self.cur_k, "states out of order");
        for e in &c.entries[self.cur_k..s.k] {
            c.apply(&mut self.cur, e);
        }
        self.cur_k = s.k;
        let copy = |from: &[u8], out: &mut Vec<u8>| {
            if out.len() == from.len() {
                out.copy_from_slice(from);
            } else {
                *out = from.to_vec();
            }
        };
        match s.subset {
            None => copy(&self.cur, out),
            Some(seed) => {
                let f = c.last_flush_before(s.k);
                for e in &c.entries[self.flushed_k..f] {
                    c.apply(&mut self.flushed, e);
                }
                self.flushed_k = f;
                copy(&self.flushed, out);
                c.lose_some(out, f, s.k, seed);
            }
        }
    }
}

/// The result of one state.
pub enum Verdict {
    Pass(Outcome),
    Fail(String),
}

/// What a crash state must come back as.
#[derive(Clone, Copy)]
pub enum Expect<'a> {
    /// The checkpoint image, on every block not free at checkpoint.
    Checkpoint(&'a [u8]),
    /// During a commit: the checkpoint image while the log is still there,
    /// else (the commit is durable) exactly the committed view, every block.
    CheckpointOrCommitted(&'a [u8], &'a [u8]),
    /// After the commit (entry `from` on): never a log again, and every
    /// block no write since then touched holds the committed view.
    Committed { view: &'a [u8], from: usize },
}

/// Restores the crash image `img` of a cut after `k` entries with `r` and
/// checks it against `want`.
pub fn check(
    case: &Case,
    want: Expect<'_>,
    k: usize,
    mut img: Vec<u8>,
    r: &Restorer,
    tag: &str,
) -> (Verdict, Vec<u8>) {
    let bs = case.bs as usize;
    let v = match r.restore(&mut img, tag) {
        Err(e) => Verdict::Fail(format!("restore refused or failed: {e}")),
        Ok(o) => match (want, o) {
            (Expect::Committed { .. }, Outcome::Restored) => {
                Verdict::Fail("a log came back after the commit".into())
            }
            (Expect::Committed { view, from }, Outcome::NoLog) => {
                // Blocks written since the commit may hold either version,
                // as may those of writes before it not yet flushed at the cut.
                let from = from.min(case.last_flush_before(k));
                let mut touched = vec![false; img.len() / bs];
                for e in case.entries[from..k].iter().filter(|e| e.is_write()) {
                    let (a, b) = (
                        e.offset as usize / bs,
                        (e.offset + e.len).div_ceil(bs as u64) as usize,
                    );
                    for t in touched.iter_mut().take(b).skip(a) {
                        *t = true;
                    }
                }
                match (0..touched.len()).find(|&b| {
                    !touched[b] && img[b * bs..(b + 1) * bs] != view[b * bs..(b + 1) * bs]
                }) {
                    Some(b) => Verdict::Fail(format!(
                        "block {b}, untouched since the commit, differs from the committed view"
                    )),
                    None => Verdict::Pass(o),
                }
            }
            (Expect::CheckpointOrCommitted(_, view), Outcome::NoLog) => {
                match (0..img.len() / case.bs as usize).find(|&b| {
                    let r = b * case.bs as usize..(b + 1) * case.bs as usize;
                    img[r.clone()] != view[r]
                }) {
                    Some(b) => Verdict::Fail(format!(
                        "commit durable (no log) but block {b} differs from the committed view"
                    )),
                    None => Verdict::Pass(o),
                }
            }
            (Expect::Checkpoint(ck) | Expect::CheckpointOrCommitted(ck, _), _) => {
                match case.first_diff(&img, ck) {
                    Some(b) => Verdict::Fail(format!(
                        "block {b} (not free at checkpoint) differs from the checkpoint image ({o:?})"
                    )),
                    None => Verdict::Pass(o),
                }
            }
        },
    };
    (v, img)
}

#[cfg(test)]
mod tests {
    use super::files_diff;
    use std::collections::BTreeMap;

    fn m(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn files_diff_names_the_first_difference() {
        let want = m(&[("a", "file 1 00000001"), ("d", "dir")]);
        assert_eq!(files_diff(&want, &want), None);
        assert_eq!(
            files_diff(&m(&[("a", "file 1 00000002"), ("d", "dir")]), &want).as_deref(),
            Some("a: file 1 00000002, expected file 1 00000001")
        );
        assert_eq!(
            files_diff(&m(&[("d", "dir")]), &want).as_deref(),
            Some("a is missing")
        );
        assert_eq!(
            files_diff(
                &m(&[("a", "file 1 00000001"), ("d", "dir"), ("x", "dir")]),
                &want
            )
            .as_deref(),
            Some("x should not exist")
        );
    }
}
