//! `tzmk`: the host tool of the tzmk secure world.
//!
//! - `tzmk audit [system.xml]`: what a security reviewer runs (see tools/README.md).
//! - `tzmk sim [system.xml]`: the secure world in the host simulator, for a normal-world process.
//! - `tzmk demo`: the README's main job.
//! - `tzmk dtb`: Linux's device tree, generated from the platform description and system.xml.
//! - `tzmk run`: the real system on QEMU, interactive.
//! - `tzmk verify`: check attestation-pd's PSA attestation token against a nonce and reference
//!   values (docs/trusted-boot.md, "Tools").
//! - `tzmk sign`: the platform key pair and the signed image manifest (docs/trusted-boot.md).
//! - `tzmk flash`: the secure flash image: the monitor, the provisioning block, the manifest.
//! - `tzmk new-pd`: a new PD serving a port, from pds/template (docs/adding-a-pd.md).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod audit;
mod demo;
mod dtb;
mod flash;
mod new_pd;
mod run;
mod sign;
mod sim;
mod verify;

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
    /// Run system.xml in the host simulator (PDs as threads, regions as shared memory) until
    /// SIGINT/SIGTERM; prints `tzmk-sim: ready <run-dir>` once every PD is ready.
    Sim(sim::Args),
    /// The main job: start the simulator, attach as the normal world, kick the secure world and
    /// print what it answers.
    Demo(demo::Args),
    /// Write Linux's device tree for the platform's world partition: only Linux's cores and memory,
    /// PSCI by SMC, the shared window reserved, the tzmk device with its doorbell.
    Dtb(dtb::Args),
    /// Boot the real system on QEMU with this terminal as its console: seL4 and its PDs on core 0
    /// under the EL3 monitor, Linux on cores 1-3 (`make -f build.mk run` builds the images).
    Run(run::Args),
    /// Check a PSA attestation token (RFC 9783): COSE signature, nonce, profile, mandatory claims
    /// and every software component against refs.json. Exit codes: 0 accepted, 1 rejected,
    /// 2 unreadable input or bad arguments.
    Verify(verify::Args),
    /// Sign the boot images into a manifest with the platform key, or make a new key pair
    /// (--keygen). Exit codes: 0 done, 1 invalid input, 2 bad arguments or unreadable files.
    Sign(sign::Args),
    /// Compose the secure flash image (QEMU -bios): the monitor, the provisioning block (UDS,
    /// platform public key) and the signed manifest at the platform's [trust] offsets. Exit codes:
    /// 0 done, 1 invalid input, 2 bad arguments or unreadable files.
    Flash(flash::Args),
    /// Add a PD that serves a communication port: copies pds/template to pds/NAME and adds the
    /// crate, the PD with its regions and channel (system.xml), and the port (ports.toml), after
    /// the audit accepts them. Exit codes: 0 added, 1 refused (nothing written), 2 unreadable
    /// files or bad arguments.
    NewPd(new_pd::Args),
}

fn main() -> ExitCode {
    tzcomm::process::default_sigpipe();
    let cli = Cli::parse();
    match cli.command {
        Command::Audit(args) => audit::run(&args),
        Command::Sim(args) => sim::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Dtb(args) => dtb::run(&args),
        Command::Run(args) => run::run(args),
        Command::Verify(args) => verify::run(&args),
        Command::Sign(args) => sign::run(args),
        Command::Flash(args) => flash::run(&args),
        Command::NewPd(args) => new_pd::run(args),
    }
}
