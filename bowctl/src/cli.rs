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
    /// Commit a checkpoint (state 2): keep the new data, drop the backups.
    Commit {
        /// A device-mapper name, a device node, or a mountpoint.
        target: String,
    },
    /// Create a bow device over DEVICE through the device-mapper ioctls.
    Create {
        /// Name of the new device (/dev/mapper/NAME).
        name: String,
        /// The underlying block device.
        device: PathBuf,
        /// Block size in bytes: a power of two from 512 to 4096 (the table's
        /// block_size option). Default: the device's logical block size.
        #[arg(long)]
        block_size: Option<u32>,
    },
    /// Remove a bow device. In state 1 its checkpoint log stays on disk, for
    /// `bowctl restore` to roll back.
    Remove {
        /// Name of the device.
        name: String,
    },
}
