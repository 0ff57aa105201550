//! bowctl: control and offline restore tool for the dm-bow target.

mod cli;
mod disk;

use anyhow::{Context, Result};
use bow_core::restore::{self, Error as RestoreError, Log};
use clap::Parser;
use cli::{Cli, Command};
use disk::FileDisk;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

/// Exit codes, documented in `docs/bowctl.md`.
mod exit {
    pub const FAILURE: u8 = 1;
    pub const INVALID_LOG: u8 = 4;
    pub const IO: u8 = 5;
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
}

#[derive(Serialize)]
struct InspectJson<'a> {
    device: &'a str,
    checkpoint: bool,
    valid: bool,
    error: Option<String>,
    block_size: Option<u32>,
    sequences: Option<u32>,
    sector0: Option<u64>,
    restoring: Option<bool>,
    bytes_to_restore: Option<u64>,
    entries: Vec<EntryJson>,
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
            });
        }
    }
    v
}

fn code_for(e: &RestoreError) -> u8 {
    match e {
        RestoreError::Corrupt { .. } | RestoreError::Truncated => exit::INVALID_LOG,
        RestoreError::Io(_) => exit::IO,
    }
}

fn inspect(path: &Path, json: bool) -> Result<u8> {
    let mut d =
        FileDisk::open(path, false).with_context(|| format!("cannot open {}", path.display()))?;
    let r = restore::validate(&mut d);
    let name = path.display().to_string();
    let mut out = InspectJson {
        device: &name,
        checkpoint: true,
        valid: false,
        error: None,
        block_size: None,
        sequences: None,
        sector0: None,
        restoring: None,
        bytes_to_restore: None,
        entries: Vec::new(),
    };
    let code = match &r {
        Ok(None) => {
            out.checkpoint = false;
            out.valid = true;
            0
        }
        Ok(Some(log)) => {
            let newest = &log.blocks[0].header;
            out.valid = true;
            out.block_size = Some(log.block_size);
            out.sequences = Some(log.blocks.len() as u32);
            out.sector0 = Some(newest.sector0);
            out.restoring = Some(newest.magic == bow_core::format::MAGIC_RESTORING);
            out.bytes_to_restore = Some(log.bytes_to_restore());
            out.entries = entries_json(log);
            0
        }
        Err(e) => {
            out.error = Some(e.to_string());
            code_for(e)
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if !out.checkpoint {
        println!("{name}: no checkpoint (block 0 holds no bow log)");
    } else if let Some(e) = &out.error {
        println!("{name}: INVALID: {e}");
    } else {
        println!(
            "{name}: checkpoint log, block_size {} bytes, {} log block(s), live block 0 at sector {}{}",
            out.block_size.unwrap_or(0),
            out.sequences.unwrap_or(0),
            out.sector0.unwrap_or(0),
            if out.restoring == Some(true) { ", restore in progress (WOB)" } else { "" }
        );
        for e in &out.entries {
            println!(
                "  seq {:>3} [{:>3}] source {:>10} dest {:>10} size {:>6} checksum {:#010x} {}",
                e.sequence,
                e.index,
                e.source,
                e.dest,
                e.size,
                e.checksum,
                if e.checksum_verified {
                    "ok"
                } else {
                    "unchecked"
                }
            );
        }
        println!(
            "verdict: valid, {} bytes to restore",
            out.bytes_to_restore.unwrap_or(0)
        );
    }
    Ok(code)
}

fn run_restore(path: &Path, dry_run: bool, roll_forward: bool, json: bool) -> Result<u8> {
    let mut d = FileDisk::open(path, !dry_run)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let name = path.display().to_string();
    match restore::validate(&mut d) {
        Ok(None) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"device": name, "result": "nothing_to_restore"})
                );
            } else {
                println!("{name}: nothing to restore (no checkpoint log)");
            }
            Ok(0)
        }
        Ok(Some(log)) => {
            let bytes = log.bytes_to_restore();
            let entries = log.replay_order().count();
            if dry_run {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"device": name, "result": "plan", "entries": entries_json(&log), "bytes": bytes})
                    );
                } else {
                    println!(
                        "{name}: would replay {entries} entries ({bytes} bytes), newest first:"
                    );
                    for (seq, i, e) in log.replay_order() {
                        println!(
                            "  seq {seq} [{i}] copy {} bytes from sector {} to sector {}",
                            e.size, e.dest, e.source
                        );
                    }
                }
                return Ok(0);
            }
            restore::restore(&mut d, &log, &mut ())
                .map_err(|e| anyhow::anyhow!("restore failed: {e}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"device": name, "result": "restored", "entries": entries, "bytes": bytes})
                );
            } else {
                println!("{name}: restored the checkpoint ({entries} entries, {bytes} bytes)");
            }
            Ok(0)
        }
        Err(e) if roll_forward && matches!(e, RestoreError::Corrupt { .. }) && !dry_run => {
            restore::roll_forward(&mut d)
                .map_err(|e2| anyhow::anyhow!("roll forward failed: {e2} (log: {e})"))?;
            println!("{name}: log invalid ({e}); rolled forward: kept the new data, dropped the checkpoint");
            Ok(0)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"device": name, "result": "refused", "error": e.to_string()})
                );
            }
            eprintln!("bowctl: {name}: {e}; nothing was written");
            Ok(code_for(&e))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::Inspect { device } => inspect(device, cli.json),
        Command::Restore {
            device,
            dry_run,
            roll_forward,
        } => run_restore(device, *dry_run, *roll_forward, cli.json),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("bowctl: {e:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
