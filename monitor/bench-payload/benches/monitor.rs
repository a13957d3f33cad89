//! Times the EL3 monitor's SMC handling: boots QEMU with the monitor and the bench payload, prints a table beside TF-A's figures.
//!
//! `make -f build.mk bench-monitor` runs it (docs/monitor-bench.md). Settings, from the environment
//! or as `KEY=VALUE` arguments (`cargo bench -p tzmk-bench-payload --bench monitor -- KEY=VALUE`):
//!
//! - `MONITOR_BIN`: the monitor's flash image, started by QEMU at EL3 (`-bios`)
//! - `PAYLOAD`: the payload's ELF (`make -f build.mk bench-payload`)
//! - `TZMK_BENCH_CPU`: QEMU's `-cpu` (default cortex-a53; TF-A's figures are for cortex-a57 and max)
//! - `TZMK_BENCH_SECURE_LOG`: a file for the secure UART (default: discarded)
//! - `TZMK_BENCH_WITHOUT_MONITOR=1`: no monitor; QEMU's own PSCI answers (proves the payload, times
//!   no EL3 code)
//! - `TZMK_BENCH_TIMEOUT`: seconds the whole run may take (default 120)
//!
//! Relative paths are taken from the workspace's root.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bench_payload::qemu::{self, FirmwareImage, Setup};
use bench_payload::report::{self, Firmware, TF_A};
use bench_payload::{DONE, FAILED};
use object::{Architecture, Object};

const DEFAULT_CPU: &str = "cortex-a53";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long QEMU may take to end after the payload's `done` (its SYSTEM_OFF follows at once).
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-monitor: error: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Settings(HashMap<String, String>);

impl Settings {
    /// The environment, overridden by `KEY=VALUE` arguments (cargo's own `--bench` is skipped).
    fn gather() -> Result<Settings, String> {
        let mut map: HashMap<String, String> = std::env::vars().collect();
        for arg in std::env::args().skip(1).filter(|a| !a.starts_with("--")) {
            let (key, value) = arg.split_once('=').ok_or(format!("argument {arg:?} is not KEY=VALUE"))?;
            map.insert(key.to_string(), value.to_string());
        }
        Ok(Settings(map))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A path from the settings; a relative one is taken from the workspace's root (cargo runs
    /// benches in the package's directory, not where the user stood).
    fn path(&self, key: &str) -> Option<PathBuf> {
        let path = PathBuf::from(self.get(key)?);
        Some(if path.is_relative() { Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path) } else { path })
    }

    fn existing_file(&self, key: &str, what: &str) -> Result<PathBuf, String> {
        let path = self.path(key).ok_or(format!("{key} is not set: it names {what}"))?;
        if !path.is_file() {
            return Err(format!("{key}={}: no such file ({what})", path.display()));
        }
        path.canonicalize().map_err(|e| format!("{key}={}: {e}", path.display()))
    }
}

fn run() -> Result<(), String> {
    let settings = Settings::gather()?;
    let firmware = match settings.get("TZMK_BENCH_WITHOUT_MONITOR") {
        Some("1") => FirmwareImage::QemuPsci,
        Some(other) => return Err(format!("TZMK_BENCH_WITHOUT_MONITOR={other}: only 1 (or unset) means something")),
        None => FirmwareImage::Monitor(settings.existing_file(
            "MONITOR_BIN",
            "the EL3 monitor's flash image (QEMU -bios); TZMK_BENCH_WITHOUT_MONITOR=1 runs the payload without one",
        )?),
    };
    let payload = settings.existing_file("PAYLOAD", "the bench payload's ELF (make -f build.mk bench-payload)")?;
    let entry = payload_entry(&payload)?;
    let timeout = match settings.get("TZMK_BENCH_TIMEOUT") {
        Some(text) => {
            Duration::from_secs(text.parse().map_err(|_| format!("TZMK_BENCH_TIMEOUT={text} is not whole seconds"))?)
        }
        None => DEFAULT_TIMEOUT,
    };
    let setup = Setup {
        firmware,
        payload: payload.clone(),
        cpu: settings.get("TZMK_BENCH_CPU").unwrap_or(DEFAULT_CPU).to_string(),
        secure_log: settings.path("TZMK_BENCH_SECURE_LOG"),
    };
    let kind = setup.firmware.kind();
    let expected_el = match kind {
        Firmware::Monitor => 1,
        Firmware::QemuPsci => 2,
    };
    match &setup.firmware {
        FirmwareImage::Monitor(image) => eprintln!(
            "bench-monitor: monitor {}, payload {} (entry {entry:#x}: the monitor must enter it at NS-EL1, MMU off)",
            image.display(),
            payload.display()
        ),
        FirmwareImage::QemuPsci => {
            eprintln!("bench-monitor: no monitor: QEMU starts payload {} at EL2 (entry {entry:#x})", payload.display())
        }
    }

    let run = boot(&setup, timeout)?;
    let results = report::parse_serial(&run.serial).map_err(|e| {
        let secure =
            setup.secure_log.as_ref().map(|p| format!("; the secure UART is in {}", p.display())).unwrap_or_default();
        format!("{e}{secure}")
    })?;
    if results.exception_level != expected_el {
        return Err(format!(
            "the payload ran at EL{}, not EL{expected_el}: its figures would not be the monitor's",
            results.exception_level
        ));
    }

    println!(
        "bench-monitor: `-cpu {}`, `-icount shift=0,sleep=off`, {} calls per figure, counter {} Hz\n",
        setup.cpu,
        bench_payload::ITERATIONS,
        results.counter_hz
    );
    print!("{}", report::table(&results, &setup.cpu, kind));
    if !TF_A.iter().any(|r| r.cpu == setup.cpu) {
        println!(
            "\nTF-A was measured on -cpu {} and {} only: TZMK_BENCH_CPU={} compares on the same -cpu (the goal above uses {}'s).",
            TF_A[0].cpu, TF_A[1].cpu, TF_A[0].cpu, TF_A[0].cpu
        );
    }
    if kind == Firmware::QemuPsci {
        println!("\nQEMU answered these SMCs in its own C code: no EL3 instruction ran, so the figures only show the payload's loops cancel (0.0).");
    }
    if !run.qemu_exited {
        return Err(format!(
            "QEMU still ran {POWER_OFF_GRACE:?} after `{DONE}`: PSCI SYSTEM_OFF did not power the machine off"
        ));
    }
    Ok(())
}

/// Checks the payload is an AArch64 ELF and returns its entry.
fn payload_entry(path: &Path) -> Result<u64, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("PAYLOAD={}: {e}", path.display()))?;
    let file = object::File::parse(&*bytes).map_err(|e| format!("PAYLOAD={} is not an ELF: {e}", path.display()))?;
    if file.architecture() != Architecture::Aarch64 {
        return Err(format!("PAYLOAD={} is not an AArch64 ELF (built for the host?)", path.display()));
    }
    Ok(file.entry())
}

struct Run {
    serial: String,
    qemu_exited: bool,
}

/// Boots QEMU and collects the normal-world UART until the payload's last line, then waits for
/// QEMU to end (the payload's SYSTEM_OFF) and ends it itself if it does not.
fn boot(setup: &Setup, timeout: Duration) -> Result<Run, String> {
    let mut qemu = Command::new(qemu::PROGRAM)
        .args(qemu::arguments(setup))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {} ({e}): install Debian's qemu-system-arm", qemu::PROGRAM))?;
    let stdout = qemu.stdout.take().expect("stdout is piped");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let started = Instant::now();
    let mut serial = String::new();
    let mut finished = false;
    let mut failed = false;
    while !finished {
        let left = timeout.checked_sub(started.elapsed()).ok_or_else(|| {
            let _ = qemu.kill();
            let _ = qemu.wait();
            format!("no `{DONE}` within {timeout:?}; the serial output was:\n{serial}")
        })?;
        match lines.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim_end_matches('\r');
                eprintln!("  | {line}");
                failed = line.contains(FAILED);
                finished = failed || line == DONE;
                serial.push_str(line);
                serial.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            // QEMU ended before the payload finished: the parse says what is missing.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // A failed payload parks its core: nothing more will come.
    let grace = if failed { Duration::ZERO } else { POWER_OFF_GRACE };
    let waiting = Instant::now();
    let mut qemu_exited = false;
    while waiting.elapsed() < grace {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let line = line.trim_end_matches('\r');
                eprintln!("  | {line}");
                serial.push_str(line);
                serial.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(100)),
        }
        if qemu.try_wait().map_err(|e| format!("waiting for QEMU: {e}"))?.is_some() {
            qemu_exited = true;
            break;
        }
    }
    if !qemu_exited {
        let _ = qemu.kill();
        let _ = qemu.wait();
    }
    Ok(Run { serial, qemu_exited })
}
