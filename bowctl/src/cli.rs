//! Command-line declarations only; the doc comments are the help text.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Control and offline restore tool for the dm-bow target.
///
/// Exit status: 0 success, 1 other failure, 2 bad usage, 4 invalid log,
/// 5 I/O error, 6 device busy.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read and validate the on-disk log of a device or image and dump its chain. Writes nothing.
    Inspect {
        /// Block device or image file.
        device: PathBuf,
    },
    /// Validate the log, then roll the device back to its checkpoint (offline).
    Restore {
        /// Block device or image file; it must not be mounted or in use.
        device: PathBuf,
        /// Print the plan and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// If the log is invalid, keep the new data and drop the checkpoint
        /// instead of refusing (Android's behaviour).
        #[arg(long)]
        roll_forward: bool,
    },
}
