//! The update lifecycle commands: start, boot, commit (with its record),
//! abort and health. The decision is `bowctl::lifecycle::decide`; this file
//! carries it out and reports each step.

use crate::{do_checkpoint, do_commit, do_create, print_json};
use anyhow::{Context, Result};
use bow_core::restore;
use bowctl::cli::OnLow;
use bowctl::device::{self, BowDevice};
use bowctl::disk::FileDisk;
use bowctl::dm::{Control, Dev};
use bowctl::error::{exit, Error};
use bowctl::lifecycle::{self, Decision, Loaded, LogState, Record, Then};
use bowctl::platform;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Prints the steps as they happen (text) or collects them (JSON).
struct Steps {
    json: bool,
    done: Vec<String>,
}

impl Steps {
    fn new(json: bool) -> Self {
        Self {
            json,
            done: Vec::new(),
        }
    }

    fn say(&mut self, s: impl Into<String>) {
        let s = s.into();
        if !self.json {
            println!("bowctl: {s}");
        }
        self.done.push(s);
    }
}

fn describe(rec: &Loaded) -> String {
    match rec {
        Loaded::Missing => "no update pending (no record)".into(),
        Loaded::Corrupt(why) => format!("the record is damaged ({why})"),
        Loaded::Valid(r) if r.committing => "an update whose commit was interrupted".into(),
        Loaded::Valid(r) if r.abort => "an update with a rollback requested".into(),
        Loaded::Valid(r) if r.retries == lifecycle::UNLIMITED => {
            "an update is pending: unlimited boot attempts".into()
        }
        Loaded::Valid(r) => format!(
            "an update is pending: {} of {} boot attempts left",
            r.remaining, r.retries
        ),
    }
}

pub fn start(record: &Path, retries: u32, force: bool, json: bool) -> Result<u8> {
    if let Err(e) = lifecycle::check_place(record) {
        if !force {
            return Err(e.into());
        }
        eprintln!("bowctl: warning (--force): {e}");
    }
    let old = lifecycle::load(record)?;
    let r = Record::new(retries);
    lifecycle::store(record, &r)?;
    let replaced = match &old {
        Loaded::Missing => None,
        other => Some(describe(other)),
    };
    if json {
        print_json(&json!({"result": "started", "record": r, "replaced": replaced}))?;
    } else {
        if let Some(p) = replaced {
            println!("bowctl: replaced the previous record ({p})");
        }
        let boots = match retries {
            lifecycle::UNLIMITED => "every boot runs until a commit or an abort".to_string(),
            1 => "the next boot runs".to_string(),
            n => format!("the next {n} boots run"),
        };
        println!(
            "bowctl: update pending: {boots} under a checkpoint; {} holds the record",
            record.display()
        );
    }
    Ok(exit::SUCCESS)
}

/// Validates the log on `dev` without writing.
fn log_state(dev: &Path) -> Result<(LogState, Option<Error>)> {
    let name = dev.display().to_string();
    let mut d = FileDisk::open(dev, false)?;
    Ok(match restore::validate(&mut d) {
        Ok(None) => (LogState::None, None),
        Ok(Some(_)) => (LogState::Valid, None),
        Err(e) => {
            let err = Error::from_restore(&name, e);
            match err {
                Error::InvalidLog { .. } => (LogState::Invalid(err.to_string()), Some(err)),
                other => return Err(other.into()),
            }
        }
    })
}

/// Restores the checkpoint on `dev` (offline); returns the bytes copied.
fn roll_back(dev: &Path) -> Result<u64> {
    let name = dev.display().to_string();
    device::check_not_in_use(dev)?;
    let mut d = FileDisk::open(dev, true)?;
    let log = match restore::validate(&mut d).map_err(|e| Error::from_restore(&name, e))? {
        Some(log) => log,
        None => return Ok(0),
    };
    restore::restore(&mut d, &log, &mut ()).map_err(|e| Error::from_restore(&name, e))?;
    Ok(log.bytes_to_restore())
}

fn mounted_at(major: u32, minor: u32, mountpoint: &Path) -> bool {
    let want = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    device::mountpoints(major, minor)
        .iter()
        .any(|m| Path::new(m) == want)
}

fn block_dev_numbers(p: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(p).ok()?;
    md.file_type()
        .is_block_device()
        .then(|| device::split_dev(md.rdev()))
}

/// Everything `boot` needs from the command line.
pub struct BootArgs<'a> {
    pub device: &'a Path,
    pub mountpoint: &'a Path,
    pub name: &'a str,
    pub fstype: Option<&'a str>,
    pub options: &'a str,
    pub block_size: Option<u32>,
}

/// Mounts the bow device (if needed) and moves it to state 1 (if needed).
fn mount_and_checkpoint(
    ctl: &Control,
    a: &BootArgs<'_>,
    dev: &BowDevice,
    steps: &mut Steps,
) -> Result<BowDevice> {
    let node = PathBuf::from(format!("/dev/mapper/{}", a.name));
    if !mounted_at(dev.major, dev.minor, a.mountpoint) {
        device::mount(&node, a.mountpoint, a.fstype, a.options)?;
        steps.say(format!(
            "mounted {} at {}",
            node.display(),
            a.mountpoint.display()
        ));
    }
    if dev.state == 0 {
        let (trimmed, after) = do_checkpoint(ctl, a.mountpoint)?;
        steps.say(format!(
            "checkpoint: trimmed {trimmed} bytes; state 1 with {} bytes free for backups",
            after.free
        ));
        return Ok(after);
    }
    Ok(dev.clone())
}

pub fn boot(record: &Path, a: &BootArgs<'_>, json: bool) -> Result<u8> {
    device::need_block_device(a.device)?;
    device::need_dir(a.mountpoint, "the mountpoint")?;
    let mut steps = Steps::new(json);
    let ctl = Control::open()?;
    let finish = |steps: &Steps, decision: &str, mounted: &Path, rec: Option<&Record>| {
        if json {
            print_json(&json!({
                "result": decision, "mounted": mounted, "mountpoint": a.mountpoint,
                "record": rec, "steps": steps.done,
            }))?;
        }
        Ok::<u8, anyhow::Error>(exit::SUCCESS)
    };
    // Run again in the same boot (an init script retried): finish the job.
    if let Ok(info) = ctl.info(Dev::Name(a.name)) {
        let dev = device::probe(&ctl, a.name, info.major, info.minor)?.ok_or_else(|| {
            Error::WrongState(format!(
                "{}: a device-mapper device of that name exists and is not bow",
                a.name
            ))
        })?;
        steps.say(format!(
            "{} already exists (state {}): finishing its setup",
            a.name, dev.state
        ));
        let after = mount_and_checkpoint(&ctl, a, &dev, &mut steps)?;
        let rec = match lifecycle::load(record)? {
            Loaded::Valid(r) => Some(r),
            _ => None,
        };
        return finish(
            &steps,
            &format!("attempt (state {})", after.state),
            Path::new(&format!("/dev/mapper/{}", a.name)),
            rec.as_ref(),
        );
    }
    if let Some((ma, mi)) = block_dev_numbers(a.device) {
        if mounted_at(ma, mi, a.mountpoint) {
            steps.say(format!(
                "{} is already mounted at {}",
                a.device.display(),
                a.mountpoint.display()
            ));
            return finish(&steps, "mounted", a.device, None);
        }
    }
    let mut loaded = lifecycle::load(record)?;
    steps.say(describe(&loaded));
    if let Loaded::Corrupt(why) = &loaded {
        let aside = lifecycle::set_aside(record)?;
        eprintln!(
            "bowctl: warning: {}: {why}; moved to {}; treated as no record (only a valid log is ever rolled back)",
            record.display(),
            aside.display()
        );
    }
    let (log, log_err) = log_state(a.device)?;
    steps.say(match &log {
        LogState::None => format!("{}: no checkpoint log", a.device.display()),
        LogState::Valid => format!(
            "{}: a valid checkpoint log (uncommitted)",
            a.device.display()
        ),
        LogState::Invalid(why) => {
            format!("{}: an INVALID checkpoint log: {why}", a.device.display())
        }
    });
    let decision = lifecycle::decide(&loaded, &log);
    let then = match decision {
        Decision::Refuse(_) => {
            let e = log_err.unwrap_or_else(|| Error::WrongState("invalid log".into()));
            return Err(anyhow::Error::new(e).context(
                "boot refuses to guess: nothing was written. Inspect it with `bowctl inspect`; `bowctl restore --roll-forward` keeps the new data and drops the checkpoint",
            ));
        }
        Decision::Mount => Then::ClearAndMount,
        Decision::Proceed(then, why) => {
            steps.say(why);
            then
        }
        Decision::RollBack(then, why) => {
            steps.say(format!("rolling back: {why}"));
            let bytes = roll_back(a.device)?;
            steps.say(format!(
                "rolled back: restored {bytes} bytes; the data is as it was at the checkpoint"
            ));
            then
        }
        Decision::RollForward => {
            steps.say("finishing an interrupted commit: keeping the new data");
            device::check_not_in_use(a.device)?;
            let mut d = FileDisk::open(a.device, true)?;
            restore::roll_forward(&mut d)
                .map_err(|e| Error::from_restore(&a.device.display().to_string(), e))?;
            steps.say("rolled forward: the checkpoint is dropped, the new data kept");
            Then::ClearAndMount
        }
    };
    match then {
        Then::ClearAndMount => {
            if matches!(loaded, Loaded::Valid(_)) {
                lifecycle::clear(record)?;
                steps.say("the update is closed (record removed)");
            }
            device::mount(a.device, a.mountpoint, a.fstype, a.options)?;
            steps.say(format!(
                "mounted {} at {} (no bow)",
                a.device.display(),
                a.mountpoint.display()
            ));
            finish(&steps, "mounted", a.device, None)
        }
        Then::Attempt => {
            let Loaded::Valid(ref mut r) = loaded else {
                unreachable!("an attempt needs a valid record");
            };
            if r.retries != lifecycle::UNLIMITED {
                r.remaining -= 1;
            }
            r.device = Some(a.name.to_owned());
            lifecycle::store(record, r)?;
            steps.say(if r.retries == lifecycle::UNLIMITED {
                "another attempt (unlimited): the device is recorded before anything changes".into()
            } else {
                format!(
                    "attempt {} of {}: counted before anything changes",
                    r.retries - r.remaining,
                    r.retries
                )
            });
            let (table, ma, mi) = do_create(&ctl, a.name, a.device, a.block_size)?;
            steps.say(format!("created /dev/mapper/{}: {table}", a.name));
            let dev = device::probe(&ctl, a.name, ma, mi)?
                .with_context(|| format!("{} vanished after its creation", a.name))?;
            let after = mount_and_checkpoint(&ctl, a, &dev, &mut steps)?;
            finish(
                &steps,
                &format!("attempt (state {})", after.state),
                Path::new(&format!("/dev/mapper/{}", a.name)),
                Some(r),
            )
        }
    }
}

/// The device a command acts on: the one named, else the record's.
fn target_of(target: Option<&str>, loaded: &Loaded, record: &Path) -> Result<String> {
    match (target, loaded) {
        (Some(t), _) => Ok(t.to_owned()),
        (
            None,
            Loaded::Valid(Record {
                device: Some(d), ..
            }),
        ) => Ok(d.clone()),
        _ => Err(Error::NotFound(format!(
            "no device given, and {} names none (no update attempt is running)",
            record.display()
        ))
        .into()),
    }
}

/// Commits, closing the record when it belongs to this device: the record
/// says "committing" first, so a cut before state 2 is durable still ends as
/// a commit at the next boot (roll forward), never as a rollback.
fn commit_with_record(
    ctl: &Control,
    dev: BowDevice,
    record: &Path,
    loaded: &Loaded,
) -> Result<(BowDevice, bool)> {
    let ours = matches!(loaded, Loaded::Valid(r) if r.device.as_deref() == Some(dev.name.as_str()));
    if !ours {
        return Ok((do_commit(ctl, dev)?, false));
    }
    let Loaded::Valid(r) = loaded else {
        unreachable!()
    };
    if dev.state == 1 {
        lifecycle::store(
            record,
            &Record {
                committing: true,
                ..r.clone()
            },
        )?;
        // Tests: a power cut between the record and the state change.
        if std::env::var_os("BOWCTL_TEST_STOP_AFTER_RECORD").is_some() {
            return Err(Error::WrongState(
                "stopped after writing the record (BOWCTL_TEST_STOP_AFTER_RECORD)".into(),
            )
            .into());
        }
    }
    let after = match do_commit(ctl, dev.clone()) {
        Ok(d) => d,
        // Already committed: the record was all that was left to do.
        Err(e)
            if dev.state == 2
                && e.downcast_ref::<Error>()
                    .is_some_and(|e| matches!(e, Error::NothingToDo(_))) =>
        {
            dev
        }
        Err(e) => return Err(e),
    };
    lifecycle::clear(record)?;
    Ok((after, true))
}

pub fn commit(record: &Path, target: Option<&str>, json: bool) -> Result<u8> {
    let loaded = lifecycle::load(record)?;
    let target = target_of(target, &loaded, record)?;
    let ctl = Control::open()?;
    let dev = device::resolve(&ctl, &target)?;
    let (after, closed) = commit_with_record(&ctl, dev, record, &loaded)?;
    if json {
        print_json(
            &json!({"result": "committed", "update_closed": closed, "device": crate::device_json(&after)}),
        )?;
    } else {
        println!(
            "{}: committed; the target is now a pass-through",
            after.name
        );
        if closed {
            println!("bowctl: the update is closed (record removed)");
        }
    }
    Ok(exit::SUCCESS)
}

fn request_abort(record: &Path) -> Result<Record> {
    let r = match lifecycle::load(record)? {
        Loaded::Valid(r) if r.committing => {
            return Err(Error::WrongState(
                "the update is being committed; it can no longer be aborted".into(),
            )
            .into())
        }
        Loaded::Valid(r) if r.abort => {
            return Err(Error::NothingToDo("a rollback is already requested".into()).into())
        }
        Loaded::Valid(r) => Record { abort: true, ..r },
        Loaded::Missing => {
            return Err(Error::NothingToDo(format!(
                "no update pending ({} does not exist); an uncommitted checkpoint is rolled back at boot anyway",
                record.display()
            ))
            .into())
        }
        // The user wants the old data back: a fresh record that says so.
        Loaded::Corrupt(_) => Record { abort: true, ..Record::new(0) },
    };
    lifecycle::store(record, &r)?;
    Ok(r)
}

pub fn abort(record: &Path, json: bool) -> Result<u8> {
    let r = request_abort(record)?;
    if json {
        print_json(&json!({"result": "abort_requested", "record": r}))?;
    } else {
        println!("bowctl: rollback requested: the next boot restores the checkpoint");
    }
    Ok(exit::SUCCESS)
}

/// `pending`: is an update pending (a valid record that no commit or abort
/// closed)?
pub fn pending(record: &Path, json: bool) -> Result<u8> {
    let loaded = lifecycle::load(record)?;
    let yes = matches!(&loaded, Loaded::Valid(r) if !r.committing && !r.abort);
    if json {
        print_json(&json!({"pending": yes, "record": describe(&loaded)}))?;
    } else {
        println!("bowctl: {}", describe(&loaded));
    }
    Ok(if yes {
        exit::SUCCESS
    } else {
        exit::NOTHING_TO_DO
    })
}

/// `checkpointing`: is `target` (or any bow device) in state 1?
pub fn checkpointing(target: Option<&str>, json: bool) -> Result<u8> {
    let ctl = Control::open()?;
    let devs = match target {
        Some(t) => vec![device::resolve(&ctl, t)?],
        None => device::all(&ctl)?,
    };
    let open: Vec<&str> = devs
        .iter()
        .filter(|d| d.state == 1)
        .map(|d| d.name.as_str())
        .collect();
    if json {
        print_json(&json!({"checkpointing": !open.is_empty(), "devices": open}))?;
    } else if open.is_empty() {
        println!("bowctl: no bow device is under a checkpoint");
    } else {
        println!("bowctl: under a checkpoint: {}", open.join(", "));
    }
    Ok(if open.is_empty() {
        exit::NOTHING_TO_DO
    } else {
        exit::SUCCESS
    })
}

/// Asks the platform's init for an orderly reboot (`sys.powerctl` on
/// Android, `systemctl reboot` under systemd, else `reboot`) and returns once
/// it accepted the request; the shutdown then stops this process too.
fn reboot_orderly() -> Result<()> {
    let platform = platform::detect(Path::new("/"));
    let mut cmd = platform::reboot_command(&platform);
    let shown = format!("{cmd:?}");
    eprintln!("bowctl: rebooting through the platform: {shown}");
    let status = cmd
        .status()
        .map_err(|e| Error::io(format!("reboot: could not run {shown}"), e))?;
    if !status.success() {
        return Err(Error::io(
            format!("reboot: {shown} failed ({status})"),
            std::io::Error::other("the init system refused the reboot"),
        )
        .into());
    }
    Ok(())
}

/// Options of `health`.
pub struct HealthArgs<'a> {
    pub target: Option<&'a str>,
    pub min_free: u64,
    pub on_low: OnLow,
    pub reboot: bool,
    pub interval: u64,
    pub once: bool,
}

pub fn health(record: &Path, h: &HealthArgs<'_>, json: bool) -> Result<u8> {
    let target = target_of(h.target, &lifecycle::load(record)?, record)?;
    let ctl = Control::open()?;
    loop {
        let loaded = lifecycle::load(record)?;
        let dev = device::resolve(&ctl, &target)?;
        if dev.state != 1 {
            let msg = format!(
                "{}: in state {} ({}): no checkpoint to watch",
                dev.name, dev.state, dev.state_name
            );
            if h.once {
                return Err(Error::NothingToDo(msg).into());
            }
            if json {
                print_json(
                    &json!({"result": "not_checkpointed", "device": crate::device_json(&dev)}),
                )?;
            } else {
                println!("bowctl: {msg}");
            }
            return Ok(exit::SUCCESS);
        }
        if dev.free < h.min_free {
            let low = format!(
                "{}: {} bytes free for backups, below {}",
                dev.name, dev.free, h.min_free
            );
            match h.on_low {
                OnLow::Commit => {
                    let (after, closed) = commit_with_record(&ctl, dev, record, &loaded)?;
                    if json {
                        print_json(
                            &json!({"result": "committed", "reason": low, "update_closed": closed, "device": crate::device_json(&after)}),
                        )?;
                    } else {
                        println!("bowctl: {low}: committed (the new data is kept)");
                    }
                }
                OnLow::Abort => {
                    let r = request_abort(record)?;
                    if json {
                        print_json(
                            &json!({"result": "abort_requested", "reason": low, "record": r, "reboot": h.reboot}),
                        )?;
                    } else {
                        println!("bowctl: {low}: rollback requested for the next boot");
                    }
                    if h.reboot {
                        reboot_orderly()?;
                    }
                }
            }
            return Ok(exit::SUCCESS);
        }
        if h.once {
            if json {
                print_json(
                    &json!({"result": "healthy", "min_free": h.min_free, "device": crate::device_json(&dev)}),
                )?;
            } else {
                println!(
                    "bowctl: {}: {} bytes free for backups (threshold {}): healthy",
                    dev.name, dev.free, h.min_free
                );
            }
            return Ok(exit::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_secs(h.interval.max(1)));
    }
}
