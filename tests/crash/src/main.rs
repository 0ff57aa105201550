//! bow-crash: replays the crash states of recorded dm-bow runs and checks
//! that restore returns the checkpoint image from each (spec 7).

use anyhow::{Context, Result};
use bow_crash::{
    check, ext4_files, files_diff, fs_free, plan, Builder, Case, Expect, Outcome, Restorer, State,
    Verdict,
};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Try the crash states of one case directory.
    Run {
        case: PathBuf,
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Rebuild one crash state (a reproducer), restore and check it.
    State {
        case: PathBuf,
        /// K or K:SEED, as printed for a failing state.
        state: State,
        /// Write the crash image (before restore) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Restore with this bowctl binary instead of the shared code.
        #[arg(long)]
        bowctl: Option<PathBuf>,
    },
}

#[derive(Serialize, Default, Clone)]
struct PhaseReport {
    phase: String,
    tried: usize,
    passed: usize,
    failed: usize,
    no_log: usize,
    restored: usize,
    fsck_runs: usize,
    fsck_failed: usize,
    /// States that the bowctl binary restored (all of them in the restore
    /// phase, the fsck sample in the others).
    bowctl_runs: usize,
    /// Sampled ext4 states whose files were compared with the checkpoint's.
    files_compared: usize,
}

#[derive(Serialize)]
struct Report {
    label: String,
    /// Whether fsck found the checkpoint image itself clean.
    baseline_fsck_clean: Option<bool>,
    entries: usize,
    seconds: f64,
    phases: Vec<PhaseReport>,
    failures: Vec<String>,
}

/// Runs fsck (read-only) on `img`; returns whether it was clean and its
/// report without the lines that depend on the host or the file name.
fn fsck(fs: &str, img: &[u8], label: &str, worker: usize) -> Result<(bool, String)> {
    with_image_file(img, label, worker, |p| fsck_file(fs, p))
}

/// Runs `f` on a temporary file holding `img` (one per case, process and
/// worker thread), removed afterwards whatever `f` returned.
fn with_image_file<T>(
    img: &[u8],
    label: &str,
    worker: usize,
    f: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let p = std::env::temp_dir().join(format!(
        "bow-crash-{}-{}-{worker}.img",
        label.replace('/', "_"),
        std::process::id()
    ));
    std::fs::write(&p, img)?;
    let r = f(&p);
    let _ = std::fs::remove_file(&p);
    r
}

fn fsck_file(fs: &str, p: &Path) -> Result<(bool, String)> {
    let out = match fs {
        "xfs" => std::process::Command::new("xfs_repair")
            .args(["-n", "-f"])
            .arg(p)
            .output(),
        _ => std::process::Command::new("e2fsck")
            .args(["-f", "-n"])
            .arg(p)
            .output(),
    }
    .context("running fsck")?;
    let text: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        // Dropped: lines about the host or the file name, and xfs_repair's
        // per-AG progress lines ("- agno = N"), which its worker threads
        // print in any order. Every finding stays in the report.
        .filter(|l| {
            !l.contains("host filesystem")
                && !l.contains(&*p.to_string_lossy())
                && !l.starts_with("e2fsck ")
                && !l.trim_start().starts_with("- agno = ")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    Ok((out.status.success(), text))
}

/// fsck of a committed (state 2) ext4 crash state: the filesystem is live
/// there, so its journal is replayed first (`e2fsck -E journal_only`, what
/// a mount would do) and then the full read-only check must be clean.
/// Returns whether it was, and why not. XFS has no user-space log replay
/// (only a mount replays it), so its committed states are not fsck'd here.
fn fsck_committed(img: &[u8], label: &str, worker: usize) -> Result<(bool, String)> {
    with_image_file(img, label, worker, |p| {
        let run = |args: &[&str]| {
            std::process::Command::new("e2fsck")
                .args(args)
                .arg(p)
                .output()
                .context("running e2fsck")
        };
        let replay = run(&["-E", "journal_only", "-p"])?;
        // 0: nothing to do or replayed; 1: replayed with corrections. Over
        // that, the replay itself failed.
        if replay.status.code().map_or(true, |c| c > 1) {
            return Ok((
                false,
                format!(
                    "journal replay: {}",
                    String::from_utf8_lossy(&replay.stdout)
                ),
            ));
        }
        let check = run(&["-f", "-n"])?;
        Ok((
            check.status.success(),
            String::from_utf8_lossy(&check.stdout).into_owned(),
        ))
    })
}

/// An fsck verdict is good when fsck is clean, or when it says exactly what
/// it says of the checkpoint image itself: a frozen XFS keeps changes in its
/// log that only a mount replays, and `xfs_repair -n` reports them (the VM
/// round trips check fsck after that mount).
fn fsck_ok(got: &(bool, String), baseline: &(bool, String)) -> bool {
    got.0 || got.1 == baseline.1
}

/// How `run` tries a case: what the checks need besides the states.
#[derive(Args)]
struct RunOpts {
    /// At most this many cuts per phase; beyond it, every flush/FUA
    /// boundary plus random cuts.
    #[arg(long, default_value_t = 400)]
    limit: usize,
    /// Random subsets of the last flush epoch per cut.
    #[arg(long, default_value_t = 2)]
    subsets: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run fsck on every Nth restored state (0: never).
    #[arg(long, default_value_t = 50)]
    fsck_every: usize,
    /// Filesystem type, for fsck: ext4 or xfs.
    #[arg(long)]
    fs: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// The bowctl binary: it restores every state of the restore phase,
    /// and every fsck-sampled state of the others, where its result
    /// must equal the shared code's byte for byte.
    #[arg(long)]
    bowctl: Option<PathBuf>,
}

/// The phases of a case: name, first and last entry (inclusive), and what a
/// crash state in that range must restore to. run_case replays them; the
/// `state` subcommand looks one state up in them.
fn phases<'a>(
    case: &'a Case,
    ckpt_image: &'a [u8],
) -> Vec<(&'static str, usize, usize, Expect<'a>)> {
    let end = case.entries.len();
    let mut phases = vec![("0->1", case.pre, case.ckpt, Expect::Checkpoint(ckpt_image))];
    match &case.commit {
        None => {
            let (last, rb) = match case.rollback {
                Some((pre, done)) => (pre, Some((pre + 1, done))),
                None => (end, None),
            };
            phases.push((
                "state 1",
                case.ckpt + 1,
                last,
                Expect::Checkpoint(ckpt_image),
            ));
            if let Some((from, to)) = rb {
                phases.push(("restore", from, to, Expect::Checkpoint(ckpt_image)));
            }
        }
        Some((pc, c, view)) => {
            phases.push((
                "state 1",
                case.ckpt + 1,
                *pc,
                Expect::Checkpoint(ckpt_image),
            ));
            phases.push((
                "1->2",
                *pc + 1,
                *c,
                Expect::CheckpointOrCommitted(ckpt_image, view),
            ));
            phases.push(("state 2", *c + 1, end, Expect::Committed { view, from: *c }));
        }
    }
    phases
}

fn run_case(dir: &Path, o: &RunOpts) -> Result<Report> {
    let (limit, subsets, seed, fsck_every, jobs) =
        (o.limit, o.subsets, o.seed, o.fsck_every, o.jobs);
    let (fs, bowctl) = (o.fs.as_deref(), o.bowctl.as_deref());
    let t0 = Instant::now();
    let case = Case::load(dir)?;
    // The checkpoint image: the frozen filesystem just before state 1,
    // rebuilt from the recording, and the same read below in the VM.
    let ckpt_image = case.prefix(case.pre);
    if let Some(b) = (0..case.free.len()).find(|&b| {
        let r = b * case.bs as usize..(b + 1) * case.bs as usize;
        case.reference.get(r.clone()) != ckpt_image.get(r)
    }) {
        anyhow::bail!(
            "{}: the checkpoint image rebuilt from the recording differs from the disk read below it at block {b}",
            case.label
        );
    }
    // The target's free map against the filesystem's own free list: a block
    // in use that the target took for free would lose its backup and its
    // comparison at once.
    if let Some(fs) = fs {
        let fsfree = fs_free(fs, &case.reference, case.bs, &case.label)?;
        if let Some(b) = (0..case.free.len()).find(|&b| case.free[b] && !fsfree[b]) {
            anyhow::bail!(
                "{}: the target's free map names block {b} free at checkpoint; the filesystem ({fs}) uses it",
                case.label
            );
        }
    }
    let baseline = match fs {
        Some(fs) if fsck_every > 0 => Some(fsck(fs, &ckpt_image, &case.label, 99)?),
        _ => None,
    };
    // Files are compared where they can be read without mounting: ext4.
    let ckpt_files = match fs {
        Some("ext4") if fsck_every > 0 => {
            Some(ext4_files(&ckpt_image, &format!("{}-ckpt", case.label))?)
        }
        _ => None,
    };
    let end = case.entries.len();
    let shared = Restorer::InProcess;
    let binary = bowctl.map(|b| Restorer::Bowctl(b.to_path_buf()));
    let phases = phases(&case, &ckpt_image);
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (name, from, to, want) in phases {
        let states = plan(&case, from, to, limit, subsets, seed);
        // A committed phase is short (tens of states): sampled 4x as often.
        let every = match want {
            Expect::Committed { .. } => (fsck_every / 4).max(1),
            _ => fsck_every,
        };
        let chunks: Vec<&[State]> = states
            .chunks(states.len().div_ceil(jobs.max(1)).max(1))
            .collect();
        let results: Vec<(PhaseReport, Vec<String>)> = std::thread::scope(|sc| {
            let hs: Vec<_> = chunks
                .iter()
                .enumerate()
                .map(|(ci, chunk)| {
                    let (case, baseline, ckpt_files) = (&case, &baseline, &ckpt_files);
                    let (shared, binary) = (&shared, &binary);
                    sc.spawn(move || {
                        let mut r = PhaseReport::default();
                        let mut fails = Vec::new();
                        let mut b = Builder::new(case);
                        let mut buf = Vec::new();
                        let tag = format!("{}-{ci}", case.label);
                        // The restore phase is bowctl's own: the binary restores it.
                        let restorer = match (name, binary) {
                            ("restore", Some(bin)) => bin,
                            _ => shared,
                        };
                        for (i, &s) in chunk.iter().enumerate() {
                            r.tried += 1;
                            let sampled = fsck_every > 0 && (i + ci) % every == 0;
                            b.build_into(s, &mut buf);
                            let img = std::mem::take(&mut buf);
                            // The binary must do exactly what the shared code does.
                            let by_binary = match (binary, restorer) {
                                (Some(bin), Restorer::InProcess) if sampled => {
                                    r.bowctl_runs += 1;
                                    let mut copy = img.clone();
                                    Some(bin.restore(&mut copy, &tag).map(|_| copy))
                                }
                                _ => None,
                            };
                            if matches!(restorer, Restorer::Bowctl(_)) {
                                r.bowctl_runs += 1;
                            }
                            let (v, restored) = check(case, want, s.k, img, restorer, &tag);
                            let v = match (v, by_binary) {
                                (Verdict::Pass(_), Some(Err(e))) => Verdict::Fail(format!("bowctl restore failed where the shared code passed: {e}")),
                                (Verdict::Pass(_), Some(Ok(img))) if img != restored => Verdict::Fail("bowctl restore's result differs from the shared code's".into()),
                                (v, _) => v,
                            };
                            let v = match (v, ckpt_files, want) {
                                (Verdict::Pass(o), Some(cf), Expect::Checkpoint(_)) if sampled => {
                                    r.files_compared += 1;
                                    match ext4_files(&restored, &tag) {
                                        Err(e) => Verdict::Fail(format!("reading the restored files: {e:#}")),
                                        Ok(got) => match files_diff(&got, cf) {
                                            Some(d) => Verdict::Fail(format!("restored files differ from the checkpoint's: {d}")),
                                            None => Verdict::Pass(o),
                                        },
                                    }
                                }
                                (v, _, _) => v,
                            };
                            match v {
                                Verdict::Pass(o) => {
                                    r.passed += 1;
                                    if o == Outcome::NoLog { r.no_log += 1 } else { r.restored += 1 }
                                    if let (Some("ext4"), Expect::Committed { .. }) = (fs, want) {
                                        if sampled {
                                            r.fsck_runs += 1;
                                            let (ok, why) = fsck_committed(&restored, &case.label, ci).unwrap_or_else(|e| (false, format!("{e:#}")));
                                            if !ok {
                                                r.fsck_failed += 1;
                                                let why = why.lines().filter(|l| !l.starts_with("Pass ")).take(6).collect::<Vec<_>>().join("; ");
                                                fails.push(format!("{}: state {s}: fsck of the committed filesystem (journal replayed) failed: {why}; reproduce: bow-crash state {} {s}", case.label, dir.display()));
                                            }
                                        }
                                    }
                                    if let (Some(fs), Some(base), Expect::Checkpoint(_)) = (fs, baseline, want) {
                                        if sampled {
                                            r.fsck_runs += 1;
                                            let got = fsck(fs, &restored, &case.label, ci).unwrap_or((false, String::new()));
                                            if !fsck_ok(&got, base) {
                                                r.fsck_failed += 1;
                                                fails.push(format!("{}: state {s}: fsck failed; reproduce: bow-crash state {} {s}", case.label, dir.display()));
                                            }
                                        }
                                    }
                                }
                                Verdict::Fail(why) => {
                                    r.failed += 1;
                                    fails.push(format!("{}: state {s}: {why}; reproduce: bow-crash state {} {s}", case.label, dir.display()));
                                }
                            }
                            buf = restored;
                        }
                        (r, fails)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("worker panicked"))
                .collect()
        });
        let mut total = PhaseReport {
            phase: name.into(),
            ..Default::default()
        };
        for (r, f) in results {
            total.tried += r.tried;
            total.passed += r.passed;
            total.failed += r.failed;
            total.no_log += r.no_log;
            total.restored += r.restored;
            total.fsck_runs += r.fsck_runs;
            total.fsck_failed += r.fsck_failed;
            total.bowctl_runs += r.bowctl_runs;
            total.files_compared += r.files_compared;
            failures.extend(f);
        }
        reports.push(total);
    }
    Ok(Report {
        label: case.label.clone(),
        baseline_fsck_clean: baseline.as_ref().map(|b| b.0),
        entries: end,
        seconds: t0.elapsed().as_secs_f64(),
        phases: reports,
        failures,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run { case, opts } => run_case(&case, &opts).map(|rep| {
            for f in rep.failures.iter().take(20) {
                eprintln!("FAIL {f}");
            }
            let failed: usize = rep.phases.iter().map(|p| p.failed + p.fsck_failed).sum();
            println!("{}", serde_json::to_string(&rep).unwrap_or_default());
            failed == 0
        }),
        Cmd::State {
            case,
            state,
            out,
            bowctl,
        } => (|| {
            let c = Case::load(&case)?;
            let ckpt_image = c.prefix(c.pre);
            let img = c.state(state);
            if let Some(o) = out {
                std::fs::write(&o, &img)?;
            }
            // What run_case expects of the phase the state falls in.
            let want = phases(&c, &ckpt_image)
                .into_iter()
                .find(|(_, from, to, _)| (*from..=*to).contains(&state.k))
                .map_or(Expect::Checkpoint(&ckpt_image), |(.., want)| want);
            let r = bowctl.map_or(Restorer::InProcess, Restorer::Bowctl);
            let (v, _) = check(&c, want, state.k, img, &r, "state");
            Ok(match v {
                Verdict::Pass(o) => {
                    println!("{}: state {state}: pass ({o:?})", c.label);
                    true
                }
                Verdict::Fail(why) => {
                    println!("{}: state {state}: FAIL: {why}", c.label);
                    false
                }
            })
        })(),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bow-crash: {e:#}");
            ExitCode::from(2)
        }
    }
}
