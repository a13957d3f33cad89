//! `tzmk`: the host tool of the tzmk secure world.
//!
//! - `tzmk audit [system.xml]`: what a security reviewer runs (see tools/README.md).
//! - `tzmk demo`: the README's main job.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod audit;

#[derive(Parser, Debug)]
#[command(name = "tzmk", version, about = "tzmk: an seL4 Microkit secure world for Arm TrustZone")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check system.xml against Microkit 2.3.0 and tzmk's isolation rules, and print each PD's
    /// authority. Exit codes: 0 clean, 1 violations, 2 unreadable input.
    Audit(audit::Args),
    /// The main job: audit the project's system.xml and show every PD's authority.
    Demo {
        /// The system description.
        #[arg(default_value = "system.xml")]
        system: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit(args) => audit::run(&args),
        Command::Demo { system } => {
            audit::run(&audit::Args { system, platform: None, json: false, dot: None, quiet: false })
        }
    }
}
