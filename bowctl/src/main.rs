//! bowctl: control and offline restore tool for the dm-bow target.

mod update;

use anyhow::Result;
use bow_core::restore::{self, Log, Progress, Step};
use bowctl::cli::{Cli, Command};
use bowctl::device::{self, BowDevice};
use bowctl::disk::FileDisk;
use bowctl::dm::{Control, Dev, Target};
use bowctl::error::{exit, Error};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A progress bar on stderr when it is a terminal; nothing otherwise.
struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    fn new(enabled: bool) -> Self {
        // Hidden until `phase` gives it a style: drawn earlier, the default
        // style would show an empty "0/0" bar.
        let bar = (enabled && std::io::stderr().is_terminal())
            .then(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()));
        Self { bar }
    }

    fn phase(&self, msg: &'static str, total: Option<u64>) {
        if let Some(b) = &self.bar {
            b.set_position(0);
            b.set_length(total.unwrap_or(0));
            b.set_message(msg);
            let style = if total.is_some() {
                "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{spinner} {msg:>10} {bytes} {bytes_per_sec}"
            };
            if let Ok(s) = ProgressStyle::with_template(style) {
                b.set_style(s.progress_chars("=> "));
            }
            b.set_draw_target(ProgressDrawTarget::stderr());
            b.enable_steady_tick(Duration::from_millis(200));
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn validated(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    fn copied(&mut self, done: u64, _total: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }
}

/// `n` and the noun, singular or plural: "1 entry", "2 entries".
fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_json(v: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[derive(Serialize)]
struct EntryJson {
    sequence: u32,
    index: u32,
    source: u64,
    dest: u64,
    size: u32,
    checksum: u32,
    checksum_verified: bool,
    /// A zero entry: a restore zeroes `size` bytes at `source`.
    zero: bool,
}

fn entries_json(log: &Log) -> Vec<EntryJson> {
    let mut v = Vec::new();
    for b in &log.blocks {
        for (i, e) in b.entries.iter().enumerate() {
            v.push(EntryJson {
                sequence: b.header.sequence,
                index: i as u32,
                source: e.source,
                dest: e.dest,
                size: e.size,
                checksum: e.checksum,
                checksum_verified: b.checked[i],
                zero: e.is_zero(),
            });
        }
    }
    v
}

/// Facts about a validated log, for inspect and restore.
#[derive(Serialize)]
struct Summary {
    block_size: u32,
    sequences: u32,
    entries: usize,
    checksums_verified: usize,
    sector0: u64,
    restoring: bool,
    bytes_to_restore: u64,
    copies: usize,
    /// Zero entries: free-at-checkpoint ranges written since, zeroed.
    zeroes: usize,
    /// Places of backups and saved log blocks cleared once read.
    clears: usize,
    fences: usize,
}

fn summary(log: &Log, plan: &[Step]) -> Summary {
    let newest = &log.blocks[0].header;
    Summary {
        block_size: log.block_size,
        sequences: log.blocks.len() as u32,
        entries: log.blocks.iter().map(|b| b.entries.len()).sum(),
        checksums_verified: log
            .blocks
            .iter()
            .map(|b| b.checked.iter().filter(|c| **c).count())
            .sum(),
        sector0: newest.sector0,
        restoring: newest.magic == bow_core::format::MAGIC_RESTORING,
        bytes_to_restore: log.bytes_to_restore(),
        copies: plan
            .iter()
            .filter(|s| matches!(s, Step::Copy { .. }))
            .count(),
        zeroes: plan
            .iter()
            .filter(|s| matches!(s, Step::Zero { .. }))
            .count(),
        clears: plan
            .iter()
            .filter(|s| matches!(s, Step::Clear { .. }))
            .count(),
        fences: plan
            .iter()
            .filter(|s| matches!(s, Step::Fence { .. }))
            .count(),
    }
}

fn print_summary(name: &str, s: &Summary) {
    println!("{name}: checkpoint log");
    println!("  block size          {} bytes", s.block_size);
    println!(
        "  log blocks          {} (sequences 0..{})",
        s.sequences,
        s.sequences.saturating_sub(1)
    );
    println!("  entries             {}", s.entries);
    println!(
        "  checksums verified  {} of {} (the rest are 0: not checked, as for the live block 0)",
        s.checksums_verified, s.entries
    );
    println!("  live block 0 at     sector {}", s.sector0);
    if s.restoring {
        println!("  restore in progress (WOB): a restore was interrupted; run restore again");
    }
    println!(
        "  to restore          {} bytes in {} and {}, {}; {} cleared",
        s.bytes_to_restore,
        plural(s.copies as u64, "copy", "copies"),
        plural(s.zeroes as u64, "zeroed range", "zeroed ranges"),
        plural(s.fences as u64, "fence", "fences"),
        plural(s.clears as u64, "place", "places")
    );
}

fn validate(d: &mut FileDisk, name: &str, bar: &mut Bar) -> Result<Option<Log>, Error> {
    bar.phase("validating", None);
    let r = restore::validate_with(d, bar);
    bar.finish();
    r.map_err(|e| Error::from_restore(name, e))
}

fn inspect(path: &Path, json: bool) -> Result<u8> {
    let name = path.display().to_string();
    let mut d = FileDisk::open(path, false)?;
    let mut bar = Bar::new(!json);
    match validate(&mut d, &name, &mut bar) {
        Ok(None) => {
            if json {
                print_json(
                    &json!({"device": name, "checkpoint": false, "verdict": "no checkpoint"}),
                )?;
            } else {
                println!("{name}: no checkpoint (block 0 holds no bow log)");
                println!("verdict: nothing to restore");
            }
            Ok(exit::SUCCESS)
        }
        Ok(Some(log)) => {
            let plan = restore::plan(&log);
            let s = summary(&log, &plan);
            if json {
                print_json(&json!({
                    "device": name, "checkpoint": true, "verdict": "valid",
                    "summary": s, "entries": entries_json(&log),
                }))?;
            } else {
                print_summary(&name, &s);
                for e in entries_json(&log) {
                    println!(
                        "  seq {:>3} [{:>3}] source {:>10} dest {:>10} size {:>7} checksum {:#010x} {}",
                        e.sequence,
                        e.index,
                        e.source,
                        e.dest,
                        e.size,
                        e.checksum,
                        if e.checksum_verified {
                            "ok"
                        } else if e.zero {
                            "zero"
                        } else {
                            "-"
                        }
                    );
                }
                println!("verdict: valid; restore would return the checkpoint image");
            }
            Ok(exit::SUCCESS)
        }
        Err(e @ Error::InvalidLog { .. }) => {
            if json {
                print_json(
                    &json!({"device": name, "checkpoint": true, "verdict": "invalid", "error": e.to_string(), "exit_code": e.exit_code()}),
                )?;
            } else {
                println!("verdict: INVALID: {e}");
            }
            Ok(e.exit_code())
        }
        // Not a verdict on the log: the device could not be read.
        Err(e) => Err(e.into()),
    }
}

/// One step of a restore plan as JSON (docs/bowctl.md, "JSON output").
/// Sectors are 512 bytes; `seq` is the sequence number of the log block the
/// step's entries are in.
fn step_json(log: &Log, s: &Step) -> serde_json::Value {
    let seq = |block: usize| log.blocks[block].header.sequence;
    match *s {
        Step::Copy {
            block,
            first,
            last,
            from,
            to,
            bytes,
        } => json!({"op": "copy", "seq": seq(block), "first_entry": first, "last_entry": last,
                    "from": from, "to": to, "bytes": bytes}),
        Step::Zero {
            block,
            entry,
            to,
            bytes,
        } => json!({"op": "zero", "seq": seq(block), "entry": entry, "to": to, "bytes": bytes}),
        Step::Clear {
            block,
            entry,
            at,
            bytes,
        } => json!({"op": "clear", "seq": seq(block), "entry": entry, "at": at, "bytes": bytes}),
        Step::Sync => json!({"op": "sync"}),
        Step::Fence { block, count } => {
            json!({"op": "fence", "seq": seq(block), "entries_left": count})
        }
    }
}

fn print_plan(name: &str, log: &Log, plan: &[Step]) {
    println!(
        "{name}: would copy or zero {} bytes in {}, newest entries first:",
        log.bytes_to_restore(),
        plural(plan.len() as u64, "step", "steps")
    );
    for s in plan {
        match *s {
            Step::Copy {
                block,
                first,
                last,
                from,
                to,
                bytes,
            } => {
                let seq = log.blocks[block].header.sequence;
                let which = if first == last {
                    format!("entry {first}")
                } else {
                    format!("entries {first}..={last}")
                };
                println!(
                    "  copy  seq {seq} {which}: {bytes} bytes from sector {from} to sector {to}"
                );
            }
            Step::Zero {
                block,
                entry,
                to,
                bytes,
            } => {
                let seq = log.blocks[block].header.sequence;
                println!("  zero  seq {seq} entry {entry}: {bytes} bytes at sector {to} (free at checkpoint, written since)");
            }
            Step::Clear {
                block,
                entry,
                at,
                bytes,
            } => {
                let seq = log.blocks[block].header.sequence;
                println!("  clear seq {seq} entry {entry}: {bytes} bytes at sector {at} (the copy's place, read)");
            }
            Step::Sync => println!("  sync"),
            Step::Fence { block, count } => println!(
                "  fence: sync, rewrite block 0 as WOB with {} of seq {}, sync",
                plural(count, "entry", "entries"),
                log.blocks[block].header.sequence
            ),
        }
    }
}

fn run_restore(path: &Path, dry_run: bool, roll_forward: bool, json: bool) -> Result<u8> {
    let name = path.display().to_string();
    let start = Instant::now();
    if !dry_run {
        device::check_not_in_use(path)?;
    }
    let mut d = FileDisk::open(path, !dry_run)?;
    let mut bar = Bar::new(!json);
    let log = match validate(&mut d, &name, &mut bar) {
        Ok(Some(log)) => log,
        Ok(None) => {
            if json {
                print_json(&json!({"device": name, "result": "nothing_to_restore"}))?;
            } else {
                println!("{name}: nothing to restore (no checkpoint log); nothing written");
            }
            return Ok(exit::SUCCESS);
        }
        Err(e @ Error::InvalidLog { .. }) if roll_forward => {
            restore::roll_forward(&mut d).map_err(|e2| Error::from_restore(&name, e2))?;
            if json {
                print_json(
                    &json!({"device": name, "result": "rolled_forward", "log_error": e.to_string()}),
                )?;
            } else {
                println!("{name}: {e}");
                println!("{name}: rolled forward: put the live block 0 back, kept the new data, dropped the checkpoint");
            }
            return Ok(exit::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let plan = restore::plan(&log);
    if dry_run {
        if json {
            print_json(
                &json!({"device": name, "result": "plan", "summary": summary(&log, &plan), "steps": plan.iter().map(|s| step_json(&log, s)).collect::<Vec<_>>()}),
            )?;
        } else {
            print_plan(&name, &log, &plan);
        }
        return Ok(exit::SUCCESS);
    }
    let validated = start.elapsed().as_secs_f64();
    let bytes = log.bytes_to_restore();
    bar.phase("restoring", Some(bytes));
    let r = restore::restore(&mut d, &log, &mut bar);
    bar.finish();
    r.map_err(|e| Error::from_restore(&name, e))?;
    let secs = start.elapsed().as_secs_f64();
    if json {
        print_json(
            &json!({"device": name, "result": "restored", "summary": summary(&log, &plan), "seconds": secs, "validate_seconds": validated}),
        )?;
    } else {
        println!(
            "{name}: restored the checkpoint: {bytes} bytes from {} in {:.2} s (validate {:.2} s, copy {:.2} s)",
            plural(log.replay_order().count() as u64, "entry", "entries"),
            secs,
            validated,
            secs - validated
        );
    }
    Ok(exit::SUCCESS)
}

fn device_json(d: &BowDevice) -> serde_json::Value {
    let status: serde_json::Map<String, serde_json::Value> = d
        .status
        .iter()
        .map(|(k, v)| {
            let val = v
                .parse::<u64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| serde_json::Value::from(v.clone()));
            (k.clone(), val)
        })
        .collect();
    json!({
        "name": d.name, "node": d.node, "major": d.major, "minor": d.minor,
        "table": d.table, "state": d.state, "state_name": d.state_name,
        "free": d.free, "status": status,
    })
}

fn print_device(d: &BowDevice) {
    let v = |k| d.status_value(k).unwrap_or("?");
    println!(
        "{} ({}, {}:{}): state {} ({}), free {} bytes, backed up {} bytes, log sequence {} with {}, {}, {} ENOSPC",
        d.name,
        d.node,
        d.major,
        d.minor,
        d.state,
        d.state_name,
        d.free,
        v("backed_up"),
        v("log_seq"),
        v("log_entries")
            .parse::<u64>()
            .map_or_else(|_| "? entries".into(), |n| plural(n, "entry", "entries")),
        v("copies")
            .parse::<u64>()
            .map_or_else(|_| "? copies".into(), |n| plural(n, "copy", "copies")),
        v("enospc"),
    );
}

fn status(target: Option<&str>, json: bool) -> Result<u8> {
    let ctl = Control::open()?;
    let devs = match target {
        Some(t) => vec![device::resolve(&ctl, t)?],
        None => device::all(&ctl)?,
    };
    if json {
        print_json(&devs.iter().map(device_json).collect::<Vec<_>>())?;
    } else if devs.is_empty() {
        println!("no bow devices");
    } else {
        devs.iter().for_each(print_device);
    }
    Ok(exit::SUCCESS)
}

/// FITRIM, then state 1, on the bow device mounted at `mountpoint`; returns
/// the bytes trimmed and the device afterwards.
fn do_checkpoint(ctl: &Control, mountpoint: &Path) -> Result<(u64, BowDevice)> {
    // FITRIM needs the filesystem: only a mountpoint will do, not a name.
    if !mountpoint.is_dir() {
        return Err(Error::NotFound(format!("{}: not a mountpoint", mountpoint.display())).into());
    }
    let dev = device::resolve(ctl, &mountpoint.to_string_lossy())?;
    match dev.state {
        0 => {}
        1 => {
            return Err(Error::NothingToDo(format!(
                "{}: already in state 1 (checkpoint); nothing to do",
                dev.name
            ))
            .into())
        }
        s => {
            return Err(Error::WrongState(format!(
                "{}: in state {s} ({}); a checkpoint can only start from state 0",
                dev.name,
                device::state_name(s)
            ))
            .into())
        }
    }
    let trimmed = device::fitrim(mountpoint)?;
    // Frozen across the transition: the checkpoint is a clean filesystem.
    let frozen = device::freeze(mountpoint)?;
    let r = device::set_state(&dev, 1);
    if let Some(f) = frozen {
        f.thaw()?;
    }
    r?;
    let after = device::probe(ctl, &dev.name, dev.major, dev.minor)?.unwrap_or(dev);
    Ok((trimmed, after))
}

fn checkpoint(mountpoint: &Path, json: bool) -> Result<u8> {
    device::need_dir(mountpoint, "the mountpoint")?;
    let ctl = Control::open()?;
    let (trimmed, after) = do_checkpoint(&ctl, mountpoint)?;
    if json {
        print_json(
            &json!({"result": "checkpoint", "trimmed": trimmed, "device": device_json(&after)}),
        )?;
    } else {
        println!(
            "{}: trimmed {trimmed} bytes; checkpoint started with {} bytes of free space for backups",
            after.name, after.free
        );
    }
    Ok(exit::SUCCESS)
}

/// State 2 on a bow device in state 1; returns the device afterwards.
fn do_commit(ctl: &Control, dev: BowDevice) -> Result<BowDevice> {
    match dev.state {
        1 => {}
        2 => {
            return Err(Error::NothingToDo(format!(
                "{}: already committed; nothing to do",
                dev.name
            ))
            .into())
        }
        s => {
            return Err(Error::WrongState(format!(
                "{}: in state {s} ({}): there is no checkpoint to commit",
                dev.name,
                device::state_name(s)
            ))
            .into())
        }
    }
    device::set_state(&dev, 2)?;
    Ok(device::probe(ctl, &dev.name, dev.major, dev.minor)?.unwrap_or(dev))
}

/// Loads a bow table over `under` as `name`; returns the table line and the
/// new device's numbers. The callers have checked their arguments before
/// opening the control node: `block_size` through the CLI's parser (the
/// table grammar), `under` with `device::need_block_device`.
fn do_create(
    ctl: &Control,
    name: &str,
    under: &Path,
    block_size: Option<u32>,
) -> Result<(String, u32, u32)> {
    let bytes = device::size_of(under)?;
    let unit = u64::from(block_size.unwrap_or(512));
    let sectors = bytes / unit * unit / 512;
    let mut params = under.display().to_string();
    if let Some(bs) = block_size {
        params.push_str(&format!(" 1 block_size:{bs}"));
    }
    // A DM UUID, as lvm2 (LVM-) and cryptsetup (CRYPT-) set theirs: the
    // kernel name of the device below and the bow device's name, both
    // stable, so tools can tell bow devices and what they protect.
    let below = std::fs::canonicalize(under)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "dev".into());
    let mut uuid = format!("BOW-{below}-{name}");
    while uuid.len() > 128 {
        uuid.pop();
    }
    let info = ctl
        .create(
            name,
            Some(&uuid),
            &[Target {
                start: 0,
                length: sectors,
                target_type: "bow".into(),
                params: params.clone(),
            }],
        )
        .map_err(|e| {
            anyhow::Error::new(Error::from(e))
                .context("the kernel refused the table; dmesg has its reason")
        })?;
    Ok((format!("0 {sectors} bow {params}"), info.major, info.minor))
}

fn create(name: &str, under: &Path, block_size: Option<u32>, json: bool) -> Result<u8> {
    device::need_block_device(under)?;
    let ctl = Control::open()?;
    let (table, major, minor) = do_create(&ctl, name, under, block_size)?;
    let dev = device::probe(&ctl, name, major, minor)?;
    if json {
        print_json(
            &json!({"result": "created", "name": name, "table": table, "device": dev.as_ref().map(device_json)}),
        )?;
    } else {
        println!("created /dev/mapper/{name} ({major}:{minor}): {table}");
    }
    Ok(exit::SUCCESS)
}

fn remove(name: &str, json: bool) -> Result<u8> {
    let ctl = Control::open()?;
    let dev = device::resolve(&ctl, name)?;
    let info = ctl.info(Dev::Name(&dev.name))?;
    if info.open_count > 0 {
        let mounts = device::mountpoints(dev.major, dev.minor);
        return Err(Error::Busy(if mounts.is_empty() {
            format!(
                "{}: open {}; close it first",
                dev.name,
                plural(info.open_count.max(0) as u64, "time", "times")
            )
        } else {
            format!(
                "{}: mounted at {}; unmount it first",
                dev.name,
                mounts.join(", ")
            )
        })
        .into());
    }
    ctl.remove(Dev::Name(&dev.name))?;
    if json {
        print_json(&json!({"result": "removed", "name": dev.name, "state": dev.state}))?;
    } else if dev.state == 1 {
        println!(
            "removed {} in state 1: its checkpoint log stays on {}; `bowctl restore` rolls it back",
            dev.name,
            dev.table.split_whitespace().next().unwrap_or("the device")
        );
    } else {
        println!("removed {} (state {})", dev.name, dev.state_name);
    }
    Ok(exit::SUCCESS)
}

fn run(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Inspect { device } => inspect(device, cli.json),
        Command::Restore {
            device,
            dry_run,
            roll_forward,
        } => run_restore(device, *dry_run, *roll_forward, cli.json),
        Command::Status { target } => status(target.as_deref(), cli.json),
        Command::Checkpoint { mountpoint } => checkpoint(mountpoint, cli.json),
        Command::Commit { target, record } => {
            update::commit(&record.record, target.as_deref(), cli.json)
        }
        Command::Start {
            retries,
            force,
            record,
        } => update::start(&record.record, *retries, *force, cli.json),
        Command::Boot {
            device,
            mountpoint,
            name,
            fstype,
            options,
            block_size,
            record,
        } => update::boot(
            &record.record,
            &update::BootArgs {
                device,
                mountpoint,
                name,
                fstype: fstype.as_deref(),
                options,
                block_size: *block_size,
            },
            cli.json,
        ),
        Command::Abort { record } => update::abort(&record.record, cli.json),
        Command::Pending { record } => update::pending(&record.record, cli.json),
        Command::Checkpointing { target } => update::checkpointing(target.as_deref(), cli.json),
        Command::Health {
            target,
            min_free,
            on_low,
            reboot,
            interval,
            once,
            record,
        } => update::health(
            &record.record,
            &update::HealthArgs {
                target: target.as_deref(),
                min_free: *min_free,
                on_low: *on_low,
                reboot: *reboot,
                interval: *interval,
                once: *once,
            },
            cli.json,
        ),
        Command::Create {
            name,
            device,
            block_size,
        } => create(name, device, *block_size, cli.json),
        Command::Remove { name } => remove(name, cli.json),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; a bad command line under
            // --json is reported as JSON, like every other error.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            if code != exit::SUCCESS && std::env::args().any(|a| a == "--json") {
                let msg = e.render().to_string();
                let first = msg
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                let _ = print_json(&json!({"error": first, "exit_code": code}));
                return ExitCode::from(code);
            }
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<Error>())
                .map_or(exit::FAILURE, Error::exit_code);
            if cli.json {
                let _ = print_json(&json!({"error": format!("{e:#}"), "exit_code": code}));
            }
            eprintln!("bowctl: {e:#}");
            ExitCode::from(code)
        }
    }
}
