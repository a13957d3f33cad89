//! `tzmk sim`: runs system.xml in the host simulator until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use tzmk_sim::{Options, SimError, Simulator};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The system description.
    #[arg(default_value = "system.xml")]
    pub system: PathBuf,
    /// Where the shared regions and sim.sock appear (default: $TMPDIR/tzmk-sim-<pid>). Must be
    /// empty or absent; the simulator removes what it creates when it stops.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// The platform description (default: the built-in monitor/platform/qemu-virt.toml).
    #[arg(long)]
    pub platform: Option<PathBuf>,
}

pub fn default_run_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tzmk-sim-{}", std::process::id()))
}

/// Exit code of a system description the simulator refuses (as `tzmk audit`'s violations).
const BAD_SYSTEM: u8 = 1;
/// Exit code when an input cannot be read (as `tzmk audit`), or the host cannot provide what the
/// simulator needs.
const UNREADABLE_OR_HOST: u8 = 2;

pub fn exit_code(error: &SimError) -> ExitCode {
    match error {
        SimError::System(_) | SimError::Violations(_) | SimError::UnknownImage { .. } | SimError::Kernel(_) => {
            ExitCode::from(BAD_SYSTEM)
        }
        SimError::Unreadable(_) | SimError::RunDir { .. } | SimError::Host(_) | SimError::FaultAtBoot { .. } => {
            ExitCode::from(UNREADABLE_OR_HOST)
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    // Blocked before any thread starts, so every simulator thread inherits the mask and only the
    // waiting thread below ever takes the signal.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("tzmk-sim: cannot block SIGINT/SIGTERM: {e}");
        return ExitCode::from(UNREADABLE_OR_HOST);
    }
    tzmk_sim::install_fault_reporter("tzmk sim");
    let options =
        Options { system: args.system, platform: args.platform, run_dir: args.run_dir.unwrap_or_else(default_run_dir) };
    let simulator = match Simulator::start(&options) {
        Ok(simulator) => simulator,
        Err(e) => {
            eprintln!("tzmk-sim: {e}");
            return exit_code(&e);
        }
    };
    println!("tzmk-sim: ready {}", simulator.run_dir().display());

    let (stop, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            let _ = stop.send(signal);
        }
    });
    let signal = loop {
        if let Ok(signal) = stopped.try_recv() {
            break signal;
        }
        if let Some(microkit::sim::Event::Fault { pd, reason }) = simulator.next_event(Duration::from_millis(100)) {
            eprintln!("tzmk-sim: PD '{pd}' faulted and was stopped: {reason}");
        }
    };
    eprintln!("tzmk-sim: {signal:?}: stopping");
    simulator.shutdown();
    ExitCode::SUCCESS
}
