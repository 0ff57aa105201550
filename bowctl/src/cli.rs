//! Command-line declarations only; the doc comments are the help text.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Control and offline restore tool for the dm-bow target.
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
    /// Read the on-disk log of a device or image and dump its chain. Writes nothing.
    Inspect {
        /// Block device or image file.
        device: PathBuf,
    },
}
