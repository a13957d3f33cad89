//! The in-seL4 cyclictest's runner (`make -f build.mk bench-rt`, docs/realtime.md): boots the
//! whole system (the monitor, seL4 and its PDs on core 0, Debian's Linux on cores 1-3) once per
//! QEMU mode with `tzmk.expect=rtbench`, so that /init runs `/bin/tzmk-rtbench`, which drives
//! Linux through each scenario while rt-task measures its own releases; reads back the
//! scenario lines and prints one table: scenario x mode, the tail relative to the same mode's
//! idle run, and whether issue 13's claim holds (loaded p99.9 and max within 10% of idle, no
//! miss). A benchmark: it reports the claim, it never asserts it. It fails only when a run did
//! not finish (QEMU timed out, the guest reported a problem).
//!
//! Modes (TZMK_RT_BENCH_MODES, space-separated, default both):
//! - `mttcg`: QEMU's default for this machine, multi-threaded TCG (a host thread per vCPU);
//!   the guest's counter follows the host's clock.
//! - `icount`: `-icount shift=TZMK_RT_BENCH_SHIFT,sleep=off` (default shift 2: 4 ns of virtual
//!   time per instruction): one host thread runs the four vCPUs round-robin and the counter
//!   follows the instructions executed, so a run is deterministic (given the same inputs) and
//!   independent of the host's load. `sleep=off`: an idle guest's time jumps to the next timer.
//!
//! Environment (build.mk sets it), per mode (MTTCG, ICOUNT): TZMK_RT_BENCH_FLASH_<MODE> (its
//! flash image), TZMK_RT_BENCH_RELEASES_<MODE> (per scenario, as its kernel command line says:
//! for the header and the timeout), its DTB `tzmk-rtbench-<mode>.dtb` in TZMK_LINUX_DIR (with
//! Image and initramfs.cpio); TZMK_LOADER_IMG; TZMK_RT_BENCH_TIMEOUT (seconds per mode; default
//! from the releases).

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use tzmk_linux_guest::rtbench::{table, Report, DONE, SCENARIOS};

fn env_path(name: &str) -> Result<PathBuf, String> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{name} is not set: run this through build.mk (make -f build.mk bench-rt)"))
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => text.parse().map_err(|_| format!("{name}={text:?} is not a number")),
        _ => Ok(default),
    }
}

struct Mode {
    name: String,
    /// MTTCG or ICOUNT: the suffix of its environment variables, and of its images.
    tag: &'static str,
    arguments: Vec<String>,
}

fn modes(shift: u64) -> Result<Vec<Mode>, String> {
    let wanted = std::env::var("TZMK_RT_BENCH_MODES").unwrap_or_else(|_| "mttcg icount".into());
    wanted
        .split_ascii_whitespace()
        .map(|name| match name {
            "mttcg" => Ok(Mode {
                name: "MTTCG".into(),
                tag: "MTTCG",
                arguments: vec!["-accel".into(), "tcg,thread=multi".into()],
            }),
            "icount" => Ok(Mode {
                name: format!("icount shift={shift}"),
                tag: "ICOUNT",
                arguments: vec!["-icount".into(), format!("shift={shift},sleep=off")],
            }),
            other => Err(format!("TZMK_RT_BENCH_MODES: no mode {other:?} (mttcg, icount)")),
        })
        .collect()
}

fn run() -> Result<(), String> {
    let linux = env_path("TZMK_LINUX_DIR")?;
    let shift = env_number("TZMK_RT_BENCH_SHIFT", 2)?;
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    let mut header = Vec::new();
    for mode in modes(shift)? {
        let tag = mode.tag.to_ascii_lowercase();
        let releases = env_number(&format!("TZMK_RT_BENCH_RELEASES_{}", mode.tag), 100_000)?;
        header.push(format!("{}: {releases} periods", mode.name));
        // The scenarios' grid time (a period is 1 ms) four times over, and boot.
        let timeout = Duration::from_secs(env_number(
            "TZMK_RT_BENCH_TIMEOUT",
            SCENARIOS.len() as u64 * (releases / 1000 + 30) * 4 + 600,
        )?);
        let secure_log = linux.join(format!("bench-rt-{tag}-secure.log"));
        let images = tzmk_sdf::qemu::Images {
            monitor: tzmk_sdf::qemu::private_flash(
                &env_path(&format!("TZMK_RT_BENCH_FLASH_{}", mode.tag))?,
                &linux.join(format!("bench-rt-{tag}-flash.bin")),
            )
            .map_err(|e| format!("cannot copy the flash image: {e}"))?,
            kernel: linux.join("Image"),
            dtb: linux.join(format!("tzmk-rtbench-{tag}.dtb")),
            initramfs: linux.join("initramfs.cpio"),
            loader: Some(env_path("TZMK_LOADER_IMG")?),
            secure_log: secure_log.clone(),
        };
        for path in [&images.monitor, &images.kernel, &images.dtb, &images.initramfs] {
            if !path.is_file() {
                return Err(format!("{} does not exist: build it with make -f build.mk bench-rt", path.display()));
            }
        }
        let mut qemu = Command::new("qemu-system-aarch64");
        qemu.args(tzmk_sdf::qemu::arguments(&tzmk_sdf::Platform::qemu_virt(), &images, "stdio"));
        qemu.args(&mode.arguments);
        eprintln!(
            "bench-rt: {}: {releases} periods per scenario, {} scenarios (timeout {timeout:?})",
            mode.name,
            SCENARIOS.len()
        );
        let started = Instant::now();
        let run = tzmk_tests::run_qemu(qemu, timeout, |console| console.contains(DONE));
        let console_path = linux.join(format!("bench-rt-{tag}-console.log"));
        let _ = std::fs::write(&console_path, &run.console);
        let report = Report::parse(&run.console);
        eprintln!(
            "bench-rt: {}: QEMU ran {:.0} s (console in {}, secure UART in {})",
            mode.name,
            started.elapsed().as_secs_f64(),
            console_path.display(),
            secure_log.display()
        );
        for s in &report.scenarios {
            eprintln!("bench-rt: {}: {s}", mode.name);
        }
        if run.timed_out {
            problems.push(format!("{}: QEMU still ran after {timeout:?}", mode.name));
        }
        for p in &report.problems {
            problems.push(format!("{}: {p}", mode.name));
        }
        if !report.done && !run.timed_out {
            let tail: Vec<&str> = run.console.lines().rev().take(20).collect();
            problems.push(format!(
                "{}: the bench did not finish; the console ended with:\n{}",
                mode.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        reports.push((mode.name, report));
    }
    let runs: Vec<(&str, &Report)> = reports.iter().map(|(m, r)| (m.as_str(), r)).collect();
    println!(
        "\nin-seL4 cyclictest: rt-task's release lateness (start - programmed expiry), periods of 1000 us per scenario ({})\n",
        header.join(", ")
    );
    println!("{}", table(&runs));
    println!(
        "claim: loaded p99.9 and max within 10% of the same mode's idle run, and no miss (reported, not asserted)"
    );
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; nothing else is taken.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: rt bench: {e}");
            ExitCode::FAILURE
        }
    }
}
