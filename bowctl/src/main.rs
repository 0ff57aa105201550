//! bowctl: control and offline restore tool for the dm-bow target.

mod cli;
mod log;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Command};

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { device } => {
            let chain = log::read_chain(&device)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&chain)?);
            } else if chain.is_empty() {
                println!("{}: no checkpoint log in block 0", device.display());
            } else {
                for b in &chain {
                    println!(
                        "log block {} seq={} block_size={} sector0={} entries={}",
                        b.magic, b.sequence, b.block_size, b.sector0, b.entries.len()
                    );
                    for (i, e) in b.entries.iter().enumerate() {
                        let v = match e.checksum_ok {
                            None => "unchecked",
                            Some(true) => "ok",
                            Some(false) => "MISMATCH",
                        };
                        println!(
                            "  [{i}] source={} dest={} size={} checksum={:#010x} {v}",
                            e.source, e.dest, e.size, e.checksum
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
