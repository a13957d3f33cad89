//! `tzmk demo`: the README's main job. Starts the secure world of system.xml in the host simulator,
//! attaches as the normal world would, kicks it and reads its answers, and prints a summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tzmk_sim::attach::{self, Attachment};
use tzmk_sim::{Options, Simulator};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The system description.
    #[arg(default_value = "system.xml")]
    pub system: PathBuf,
    /// Kick -> doorbell round trips to make.
    #[arg(long, default_value_t = 2000)]
    pub kicks: u32,
}

pub fn run(args: Args) -> ExitCode {
    tzmk_sim::install_fault_reporter();
    let options = Options { system: args.system, platform: None, run_dir: crate::sim::default_run_dir() };
    let booted = Instant::now();
    let simulator = match Simulator::start(&options) {
        Ok(simulator) => simulator,
        Err(e) => {
            eprintln!("tzmk demo: {e}");
            return crate::sim::exit_code(&e);
        }
    };
    let boot = booted.elapsed();
    let names: Vec<&str> = simulator.kernel().pds().iter().map(|pd| pd.name()).collect();
    println!("tzmk demo: {} PDs ready in the host simulator in {boot:.1?}: {}", names.len(), names.join(", "));
    let result = exchange(&simulator, args.kicks);
    simulator.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tzmk demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exchange(simulator: &Simulator, kicks: u32) -> Result<(), String> {
    let run_dir = simulator.run_dir();
    let attachment = Attachment::connect(run_dir).map_err(|e| format!("attaching to {}: {e}", run_dir.display()))?;
    let port_ctrl = attach::map_region(run_dir, "port_ctrl").map_err(|e| format!("mapping port_ctrl: {e}"))?;
    println!("tzmk demo: attached as the normal world through {}", run_dir.join(attach::SOCKET_NAME).display());

    let mut round_trips = Vec::with_capacity(kicks as usize);
    for kick in 0..kicks {
        let sent = Instant::now();
        attachment.kick().map_err(|e| format!("kick: {e}"))?;
        if !attachment.wait_doorbell(Duration::from_secs(2)) {
            return Err(format!("kick {kick}: comm-pd did not ring the doorbell within 2 s"));
        }
        round_trips.push(sent.elapsed());
    }
    // Let rt-task publish a second of statistics and comm-pd pick them up on one more kick.
    std::thread::sleep(Duration::from_millis(1100));
    attachment.kick().map_err(|e| format!("kick: {e}"))?;
    attachment.wait_doorbell(Duration::from_secs(2));
    let status = attach::read_status(&port_ctrl).ok_or("port_ctrl holds no valid status page")?;

    round_trips.sort();
    let percentile = |p: usize| round_trips[(round_trips.len() - 1) * p / 100];
    println!();
    println!("| kick -> comm-pd -> doorbell ({kicks} round trips) | {:>10} |", "");
    println!("| --- | ---: |");
    println!("| median | {:>10.1?} |", percentile(50));
    println!("| 99th percentile | {:>10.1?} |", percentile(99));
    println!("| max | {:>10.1?} |", percentile(100));
    println!();
    println!("status page written by comm-pd in port_ctrl:");
    println!("  kicks taken by comm-pd        {}", status.kicks);
    println!("  attestation-pd interface      v{}", status.attestation_version);
    let rt = status.rt;
    let mean = rt.total_lateness_ns.checked_div(rt.periods).unwrap_or(0);
    println!(
        "  rt-task                        {} periods of {} us, {} overruns, release lateness mean {} us, max {} us",
        rt.periods,
        rt.period_us,
        rt.overruns,
        mean / 1000,
        rt.max_lateness_ns / 1000
    );
    if status.kicks != u64::from(kicks) + 1 {
        return Err(format!("comm-pd counted {} kicks, the demo sent {}", status.kicks, kicks + 1));
    }
    if rt.periods == 0 {
        return Err("rt-task has not completed a period".into());
    }
    println!("\ntzmk demo: ok");
    Ok(())
}
