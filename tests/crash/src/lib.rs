//! Crash states from a dm-log-writes recording of what dm-bow sent to its
//! disk, each restored with the shared restore code and checked against the
//! checkpoint image (spec 7).
//!
//! A case directory holds what one recorded run left (see
//! tests/crash/README.md): `base.img` (the disk when recording began),
//! `log.bin` (the recording), `free` (the target's free map at checkpoint,
//! `start+len` block ranges) and `meta` (`key=value` lines: `bs`, `label`).
//! The recording carries the marks `pre-checkpoint` (filesystem frozen, just
//! before `echo 1 > state`) and `checkpoint` (state 1 reached).

pub mod logwrites;

use anyhow::{Context, Result};
use bow_core::restore;
use bow_core::testimg::{MemDisk, Rng};
use logwrites::{Entry, FLUSH, FUA};
use std::path::Path;

/// One recorded run.
pub struct Case {
    /// Name for reports and reproducers.
    pub label: String,
    /// The target's block size.
    pub bs: u32,
    /// The disk when recording began.
    pub base: Vec<u8>,
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
        let commit = match (
            logwrites::find_mark(&entries, "pre-commit"),
            logwrites::find_mark(&entries, "commit"),
        ) {
            (Some(a), Some(b)) => Some((a, b, read("view.img")?)),
            _ => None,
        };
        Ok(Self {
            label,
            bs,
            base,
            log,
            entries,
            free,
            pre,
            ckpt,
            commit,
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

    /// Restores `img` in place; returns what happened.
    pub fn restore(&self, img: &mut Vec<u8>) -> Result<Outcome, restore::Error> {
        let mut d = MemDisk::new(std::mem::take(img));
        let r = match restore::validate(&mut d)? {
            None => Outcome::NoLog,
            Some(log) => {
                restore::restore(&mut d, &log, &mut ())?;
                Outcome::Restored
            }
        };
        *img = d.data;
        Ok(r)
    }

    /// The first block not free at checkpoint that differs from `want`.
    pub fn first_diff(&self, got: &[u8], want: &[u8]) -> Option<u64> {
        let bs = self.bs as usize;
        (0..self.free.len())
            .find(|&b| !self.free[b] && got[b * bs..(b + 1) * bs] != want[b * bs..(b + 1) * bs])
            .map(|b| b as u64)
    }
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
        let c = self.case;
        assert!(s.k >= self.cur_k, "states out of order");
        for e in &c.entries[self.cur_k..s.k] {
            c.apply(&mut self.cur, e);
        }
        self.cur_k = s.k;
        match s.subset {
            None => self.cur.clone(),
            Some(seed) => {
                let f = c.last_flush_before(s.k);
                for e in &c.entries[self.flushed_k..f] {
                    c.apply(&mut self.flushed, e);
                }
                self.flushed_k = f;
                let mut img = self.flushed.clone();
                c.lose_some(&mut img, f, s.k, seed);
                img
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
    /// After the commit: never a log again.
    NoLog,
}

/// Restores the crash image `img` and checks it against `want`.
pub fn check(case: &Case, want: Expect<'_>, mut img: Vec<u8>) -> (Verdict, Vec<u8>) {
    let v = match case.restore(&mut img) {
        Err(e) => Verdict::Fail(format!("restore refused or failed: {e}")),
        Ok(o) => match (want, o) {
            (Expect::NoLog, Outcome::Restored) => {
                Verdict::Fail("a log came back after the commit".into())
            }
            (Expect::NoLog, Outcome::NoLog) => Verdict::Pass(o),
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
