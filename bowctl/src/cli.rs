//! Command-line declarations only; the doc comments are the help text.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Control and offline restore tool for the dm-bow target.
///
/// Exit status: 0 success, 1 other failure, 2 bad usage, 3 nothing to do,
/// 4 invalid log (nothing written), 5 I/O error, 6 device busy,
/// 7 not a bow device or wrong state.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The update record, for the commands that keep one.
#[derive(Debug, clap::Args)]
pub struct RecordArg {
    /// The update record: a file on a partition of its own, outside the
    /// protected device.
    #[arg(long, env = "BOWCTL_RECORD", default_value = crate::lifecycle::DEFAULT_RECORD)]
    pub record: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the log of a device or image and dump its chain. Writes nothing.
    Inspect {
        /// Block device or image file.
        device: PathBuf,
    },
    /// Validate the log, then roll the device back to its checkpoint (offline).
    ///
    /// The device must not be mounted, held open, or have a bow target
    /// loaded above it. Safe to interrupt and run again.
    Restore {
        /// Block device or image file.
        device: PathBuf,
        /// Print the plan and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// If the log is invalid, keep the new data and drop the checkpoint
        /// instead of refusing (Android's behaviour).
        #[arg(long, conflicts_with = "dry_run")]
        roll_forward: bool,
    },
    /// Show the live state of one bow device, or of all of them.
    Status {
        /// A device-mapper name, a /dev/dm-N or /dev/mapper/NAME node, or a
        /// mountpoint.
        target: Option<String>,
    },
    /// Trim the mounted filesystem (FITRIM), then start a checkpoint (state 1).
    Checkpoint {
        /// Mountpoint of a filesystem on a bow device in state 0.
        mountpoint: PathBuf,
    },
    /// Commit a checkpoint (state 2): keep the new data, drop the backups,
    /// and close the pending update in the record.
    Commit {
        /// A device-mapper name, a device node, or a mountpoint. Default:
        /// the device of the pending update (the record).
        target: Option<String>,
        #[command(flatten)]
        record: RecordArg,
    },
    /// Request a checkpoint for the next boots: run when an update is
    /// installed. Writes the record; touches no device.
    Start {
        /// Boot attempts before the data is rolled back: 1 to 100, or
        /// `unlimited` (also -1, as vdc takes it): every boot retries until
        /// a commit or an abort.
        #[arg(long, value_parser = parse_retries, allow_negative_numbers = true)]
        retries: u32,
        /// Write the record even where the next boot may not find it: on
        /// the root filesystem (the record partition is not mounted) or on
        /// the device bow protects.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        record: RecordArg,
    },
    /// The one call an init script makes at every boot, before the data is
    /// used: rolls back, or sets up bow and checkpoints, or just mounts.
    ///
    /// With an update pending it restores what a failed attempt left, counts
    /// one attempt down, creates /dev/mapper/NAME over DEVICE, mounts it at
    /// MOUNTPOINT and starts the checkpoint. When the attempts are used up
    /// or an abort was requested it rolls back and mounts DEVICE itself.
    /// With nothing pending it mounts DEVICE. Safe to run again after a
    /// power cut at any point.
    Boot {
        /// The protected block device (the data partition).
        device: PathBuf,
        /// Where the filesystem is mounted.
        mountpoint: PathBuf,
        /// Name of the bow device.
        #[arg(long, default_value = "userdata")]
        name: String,
        /// Filesystem type. Default: from the superblock (ext4, xfs, f2fs, btrfs).
        #[arg(long = "type", short = 't')]
        fstype: Option<String>,
        /// Mount options, as mount(8)'s -o.
        #[arg(long, short = 'o', default_value = "")]
        options: String,
        /// The bow block size (the table's block_size option).
        #[arg(long, value_parser = parse_block_size)]
        block_size: Option<u32>,
        #[command(flatten)]
        record: RecordArg,
    },
    /// Whether an update is pending (vdc's needsCheckpoint): exit 0 if so,
    /// 3 if not.
    Pending {
        #[command(flatten)]
        record: RecordArg,
    },
    /// Whether a bow device is under a checkpoint, in state 1 (vdc's
    /// isCheckpointing): exit 0 if so, 3 if not.
    Checkpointing {
        /// A device-mapper name, a device node, or a mountpoint. Default:
        /// any bow device.
        target: Option<String>,
    },
    /// Request a rollback at the next boot (the update failed).
    Abort {
        #[command(flatten)]
        record: RecordArg,
    },
    /// Watch the free space left for backups on a device in state 1; below
    /// MIN_FREE, commit or abort and reboot, as configured.
    Health {
        /// A device-mapper name, a device node, or a mountpoint. Default:
        /// the device of the pending update (the record).
        target: Option<String>,
        /// The threshold, in bytes (K, M, G suffixes allowed).
        #[arg(long, default_value = "100M", value_parser = parse_size)]
        min_free: u64,
        /// What to do below the threshold: keep the new data (commit, as
        /// Android's vold does by default), or request a rollback (abort).
        #[arg(long, value_enum, default_value_t = OnLow::Commit)]
        on_low: OnLow,
        /// After an abort, reboot into the rollback through the init system
        /// (sys.powerctl on Android, systemctl reboot under systemd, else
        /// reboot), never reboot(2).
        #[arg(long)]
        reboot: bool,
        /// Seconds between checks.
        #[arg(long, default_value_t = 5)]
        interval: u64,
        /// Check once and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        record: RecordArg,
    },
    /// Create a bow device over DEVICE through the device-mapper ioctls.
    Create {
        /// Name of the new device (/dev/mapper/NAME).
        name: String,
        /// The underlying block device.
        device: PathBuf,
        /// Block size in bytes: a power of two from 512 to 4096 (the table's
        /// block_size option). Default: the device's logical block size.
        #[arg(long, value_parser = parse_block_size)]
        block_size: Option<u32>,
    },
    /// Remove a bow device. In state 1 its checkpoint log stays on disk, for
    /// `bowctl restore` to roll back.
    Remove {
        /// Name of the device.
        name: String,
    },
}

/// What `health` does when free space runs low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLow {
    /// Commit: keep the new data.
    Commit,
    /// Request a rollback at the next boot.
    Abort,
}

/// Parses a size: bytes, or a number with a K, M or G suffix (powers of 1024).
/// `retries` of the record for `--retries`: 1 to 100, or unlimited.
pub fn parse_retries(s: &str) -> Result<u32, String> {
    match s {
        "unlimited" | "-1" => Ok(crate::lifecycle::UNLIMITED),
        _ => match s.parse::<u32>() {
            Ok(n @ 1..=100) => Ok(n),
            _ => Err(format!("{s:?}: expected 1 to 100, or unlimited (-1)")),
        },
    }
}

/// A block size the target accepts (the kernel's own grammar, from the
/// shared core), checked before anything is opened.
pub fn parse_block_size(s: &str) -> Result<u32, String> {
    let word = format!("block_size:{s}");
    let args: [&[u8]; 3] = [b"dev", b"1", word.as_bytes()];
    match bow_core::table::parse_args(args) {
        Ok(a) => a
            .block_size
            .ok_or_else(|| format!("{s:?}: not a block size")),
        Err(e) => Err(format!("{s:?}: {}", e.as_str())),
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| {
            format!("{s:?}: expected a size in bytes, with an optional K, M or G suffix")
        })
}
