//! The system bench's runner (`make -f build.mk bench-system`, docs/system-bench.md): boots the
//! whole system (the monitor, seL4 and its PDs on core 0, Debian's Linux on cores 1-3) under QEMU
//! `-icount shift=0,sleep=off` with `tzmk.expect=bench`, so that /init runs `/bin/tzmk-bench`,
//! and prints its figures as a markdown table.
//!
//! Environment (build.mk sets it): TZMK_MONITOR_BIN, TZMK_LINUX_DIR (Image, initramfs.cpio and
//! the DTB named by TZMK_DTB), TZMK_LOADER_IMG; TZMK_BENCH_EL3, the EL3 instructions of
//! `notify_secure` with a secure world running from the monitor bench (optional: the split);
//! TZMK_BENCH_TIMEOUT in seconds (default 1800: one host thread runs all four cores).

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use tzmk_linux_guest::bench::{table, Report};

fn env_path(name: &str) -> Result<PathBuf, String> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{name} is not set: run this through build.mk (make -f build.mk bench-system)"))
}

fn run() -> Result<(), String> {
    let linux = env_path("TZMK_LINUX_DIR")?;
    let secure_log = linux.join("bench-system-monitor.log");
    let images = tzmk_sdf::qemu::Images {
        monitor: tzmk_sdf::qemu::private_flash(&env_path("TZMK_MONITOR_BIN")?, &linux.join("bench-system-flash.bin"))
            .map_err(|e| format!("cannot copy the flash image: {e}"))?,
        kernel: linux.join("Image"),
        dtb: linux.join(std::env::var("TZMK_DTB").unwrap_or_else(|_| "tzmk-bench.dtb".into())),
        initramfs: linux.join("initramfs.cpio"),
        loader: Some(env_path("TZMK_LOADER_IMG")?),
        secure_log: secure_log.clone(),
    };
    for path in [&images.monitor, &images.kernel, &images.dtb, &images.initramfs] {
        if !path.is_file() {
            return Err(format!("{} does not exist: build it with make -f build.mk bench-system", path.display()));
        }
    }
    let el3 = match std::env::var("TZMK_BENCH_EL3") {
        Ok(text) if !text.is_empty() => {
            Some(text.parse::<f64>().map_err(|_| format!("TZMK_BENCH_EL3={text:?} is not a number of instructions"))?)
        }
        _ => None,
    };
    let timeout = match std::env::var("TZMK_BENCH_TIMEOUT") {
        Ok(text) => {
            Duration::from_secs(text.parse().map_err(|_| format!("TZMK_BENCH_TIMEOUT={text:?} is not seconds"))?)
        }
        Err(_) => Duration::from_secs(1800),
    };
    let mut qemu = Command::new("qemu-system-aarch64");
    qemu.args(tzmk_sdf::qemu::arguments(&tzmk_sdf::Platform::qemu_virt(), &images, "stdio"));
    qemu.args(["-icount", "shift=0,sleep=off"]);
    let started = std::time::Instant::now();
    let run = tzmk_tests::run_qemu(qemu, timeout, |_| false);
    let console_path = linux.join("bench-system-console.log");
    let _ = std::fs::write(&console_path, &run.console);
    let report = Report::parse(&run.console);
    println!(
        "system bench: QEMU ran {:.0} s (console in {}, secure UART in {})\n",
        started.elapsed().as_secs_f64(),
        console_path.display(),
        secure_log.display()
    );
    println!("{}", table(&report, el3));
    if run.timed_out {
        return Err(format!("QEMU still ran after {timeout:?}"));
    }
    if !report.problems.is_empty() {
        return Err(format!("the bench reported: {}", report.problems.join("; ")));
    }
    if !report.done {
        let tail: Vec<&str> = run.console.lines().rev().take(30).collect();
        return Err(format!(
            "the bench did not finish; the console ended with:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; nothing else is taken.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: system bench: {e}");
            ExitCode::FAILURE
        }
    }
}
