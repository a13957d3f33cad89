//! Times the EL3 monitor's SMC handling: boots QEMU with the monitor and the bench payload, prints a table beside TF-A's figures.
//!
//! `make -f build.mk bench-monitor` runs it (docs/monitor-bench.md). Settings, from the environment
//! or as `KEY=VALUE` arguments (`cargo bench -p tzmk-bench-payload --bench monitor -- KEY=VALUE`):
//!
//! - `MONITOR_BIN`: the monitor's flash image, started by QEMU at EL3 (`-bios`): the monitor with
//!   the provisioning block and a manifest signing the payload (trusted boot stage 1 stops at a
//!   bare monitor.bin; build.mk composes `flash-bench-payload.bin`)
//! - `MONITOR_BIN_SECURE`: the flash image of the run with `SECURE` (its manifest also signs the
//!   secure image; default `MONITOR_BIN`)
//! - `PAYLOAD`: the payload's ELF (`make -f build.mk bench-payload`)
//! - `SECURE`: the bench's secure image (`make -f build.mk bench-secure`): given one, the bench runs
//!   twice, without it and then with it at the secure entry (its `go` puts the secure world in
//!   `Running`, so `notify_secure` takes the real path), and the table has a column for each run;
//!   then a third time, the secure image timing `UPDATE_MANIFEST` requests before its `go` (a
//!   table of its own, checked against the issue-20 bound: docs/monitor-bench.md, "Update requests")
//! - `TZMK_BENCH_CPU`: QEMU's `-cpu` (default cortex-a53; TF-A's figures are for cortex-a57 and max)
//! - `TZMK_BENCH_SECURE_LOG`: a file for the secure UART (default: discarded); the run with the
//!   secure image writes beside it, `.bench-secure` before the extension (`.bench-secure-updates`
//!   for the update bench's run, which keeps its secure UART in cargo's tmp dir without one)
//! - `TZMK_BENCH_WITHOUT_MONITOR=1`: no monitor; QEMU's own PSCI answers (proves the payload, times
//!   no EL3 code)
//! - `TZMK_BENCH_TIMEOUT`: seconds the whole run may take (default 120)
//! - `TZMK_BENCH_UPDATE_BOUND`: `check` (default) fails the bench when an update request the
//!   issue-20 bound covers costs more than `UPDATE_BOUND` EL3 instructions; `report` only says so
//!
//! Relative paths are taken from the workspace's root.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bench_payload::image;
use bench_payload::qemu::{self, FirmwareImage, Setup};
use bench_payload::report::{self, Column, Firmware, SecureImage, SerialError, TF_A};
use bench_payload::{DONE, FAILED};

const DEFAULT_CPU: &str = "cortex-a53";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long QEMU may take to end after the payload's `done` (its SYSTEM_OFF follows at once).
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);
/// What a boot's error ends with when the payload printed nothing.
const NOTHING: &str = "nothing came on the normal-world UART";
/// How often the run with a secure image looks at the secure UART's file for its failure line.
const SECURE_LOG_POLL: Duration = Duration::from_secs(1);

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
    let entry = image::layout(&read(&payload, "PAYLOAD")?, &format!("PAYLOAD={}", payload.display()))?.entry;
    let secure = match settings.get("SECURE") {
        None => None,
        Some(_) => {
            let path = settings.existing_file("SECURE", "the bench's secure image (make -f build.mk bench-secure)")?;
            let what = format!("SECURE={}", path.display());
            let problems = image::secure_image_problems(&image::layout(&read(&path, "SECURE")?, &what)?);
            if !problems.is_empty() {
                return Err(format!("{what} will not do as the secure image: {}", problems.join("; ")));
            }
            Some(path)
        }
    };
    let secure_firmware = match (&firmware, settings.get("MONITOR_BIN_SECURE")) {
        (FirmwareImage::Monitor(_), Some(_)) => FirmwareImage::Monitor(settings.existing_file(
            "MONITOR_BIN_SECURE",
            "the flash image whose manifest signs the secure image as well (build.mk: flash-bench-secure.bin)",
        )?),
        _ => firmware.clone(),
    };
    if secure.is_some() && firmware == FirmwareImage::QemuPsci {
        return Err("SECURE and TZMK_BENCH_WITHOUT_MONITOR=1: QEMU's own PSCI has no secure world to run it".into());
    }
    let timeout = match settings.get("TZMK_BENCH_TIMEOUT") {
        Some(text) => {
            Duration::from_secs(text.parse().map_err(|_| format!("TZMK_BENCH_TIMEOUT={text} is not whole seconds"))?)
        }
        None => DEFAULT_TIMEOUT,
    };
    let cpu = settings.get("TZMK_BENCH_CPU").unwrap_or(DEFAULT_CPU).to_string();
    let enforce_update_bound = match settings.get("TZMK_BENCH_UPDATE_BOUND") {
        None | Some("check") => true,
        Some("report") => false,
        Some(other) => return Err(format!("TZMK_BENCH_UPDATE_BOUND={other}: `check` (the default) or `report`")),
    };
    let kind = firmware.kind();
    let expected_el = match kind {
        Firmware::Monitor => 1,
        Firmware::QemuPsci => 2,
    };
    // First as before, with nothing in the secure world; then, given one, with the secure image;
    // then with the secure image's update bench before its `go` (its own table; the payload's
    // figures of that run are not shown: its reset figure counts the update bench).
    let mut configurations = vec![(SecureImage::Absent, None, false)];
    if let Some(path) = secure {
        configurations.push((SecureImage::BenchSecure, Some(path.clone()), false));
        configurations.push((SecureImage::BenchSecure, Some(path), true));
    }

    let mut runs = Vec::new();
    let mut updates = None;
    let mut powered_off = true;
    for (secure_image, secure_path, update_bench) in configurations {
        let log = settings.path("TZMK_BENCH_SECURE_LOG").map(|log| secure_log(&log, secure_image, update_bench));
        // The update bench's lines come on the secure UART: its run keeps it in a file always.
        let log = match (log, update_bench) {
            (None, true) => Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-monitor-secure.updates.log")),
            (log, _) => log,
        };
        let setup = Setup {
            firmware: if secure_path.is_some() { secure_firmware.clone() } else { firmware.clone() },
            payload: payload.clone(),
            secure_image: secure_path,
            cpu: cpu.clone(),
            secure_log: log,
            update_bench,
        };
        match (&setup.firmware, &setup.secure_image) {
            (FirmwareImage::Monitor(image), None) => eprintln!(
                "bench-monitor: monitor {}, payload {} (entry {entry:#x}: the monitor must enter it at NS-EL1, MMU off), no secure image",
                image.display(),
                payload.display()
            ),
            (FirmwareImage::Monitor(image), Some(secure)) if update_bench => eprintln!(
                "bench-monitor: monitor {}, secure image {} timing UPDATE_MANIFEST before its `go`, then payload {}",
                image.display(),
                secure.display(),
                payload.display()
            ),
            (FirmwareImage::Monitor(image), Some(secure)) => eprintln!(
                "bench-monitor: monitor {}, payload {}, secure image {} (entered at {:#x}, S-EL1; the payload starts only after its `go`)",
                image.display(),
                payload.display(),
                secure.display(),
                bench_payload::SECURE_ENTRY
            ),
            (FirmwareImage::QemuPsci, _) => {
                eprintln!("bench-monitor: no monitor: QEMU starts payload {} at EL2 (entry {entry:#x})", payload.display())
            }
        }
        // Without the secure world's `go` the monitor never enters the normal world.
        let no_go = match secure_image {
            SecureImage::BenchSecure => " (the monitor enters the normal world only after the secure world's `go`)",
            SecureImage::Absent => "",
        };
        let run = boot(&setup, timeout).map_err(|e| {
            let no_go = if e.ends_with(NOTHING) { no_go } else { "" };
            format!("{}: {e}{no_go}{}", secure_image.label(), secure_uart(&setup))
        })?;
        let results = report::parse_serial(&run.serial).map_err(|e| {
            let no_go = if e == SerialError::NoPayloadOutput { no_go } else { "" };
            format!("{}: {e}{no_go}{}", secure_image.label(), secure_uart(&setup))
        })?;
        if results.exception_level != expected_el {
            return Err(format!(
                "{}: the payload ran at EL{}, not EL{expected_el}: its figures would not be the monitor's",
                secure_image.label(),
                results.exception_level
            ));
        }
        if kind == Firmware::Monitor {
            let notify = results
                .calls
                .iter()
                .find(|c| c.function_id == tzmk_interface::smc::NOTIFY_SECURE)
                .expect("the payload's calls include notify_secure");
            let expected = secure_image.notify_secure_answer();
            if notify.last_x0 as i64 != expected {
                return Err(format!(
                    "{}: notify_secure answered {:#x}, not {expected}: its figure is not the path the table would name{}",
                    secure_image.label(),
                    notify.last_x0,
                    secure_uart(&setup)
                ));
            }
        }
        powered_off &= run.qemu_exited;
        if update_bench {
            let log = setup.secure_log.as_ref().expect("the update bench's run keeps its secure UART");
            let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
            updates =
                Some(report::parse_updates(&text).map_err(|e| format!("update bench: {e}{}", secure_uart(&setup)))?);
        } else {
            runs.push((secure_image, results));
        }
    }

    let counter_hz = runs[0].1.counter_hz;
    println!(
        "bench-monitor: `-cpu {cpu}`, `-icount shift=0,sleep=off`, {} calls per figure, counter {counter_hz} Hz\n",
        bench_payload::ITERATIONS
    );
    let columns: Vec<Column<'_>> =
        runs.iter().map(|(secure_image, results)| Column { secure_image: *secure_image, results }).collect();
    print!("{}", report::table(&columns, &cpu, kind));
    if runs.len() > 1 {
        println!(
            "\nWith bench-secure the secure core runs the secure image (its GIC Group 0 on, then `go`) before the \
             monitor releases the normal world: its reset -> first normal-world instruction counts that too. \
             After `go` it waits in `wfi` with the kick SPI disabled, so it adds nothing to the figures."
        );
    }
    let mut updates_within = true;
    if let Some(updates) = &updates {
        println!(
            "\n`UPDATE_MANIFEST` from bench-secure before its `go` (the candidate in `manifest_update`, the stored \
             manifest from slot A), each figure the difference of {} calls (fewer where the table says) and an \
             empty loop: the whole EL3 residency of one request, its log line included.\n",
            bench_payload::UPDATE_ITERATIONS
        );
        print!("{}", report::update_table(updates, &cpu));
        updates_within = report::updates_within_bound(updates);
    }
    if !TF_A.iter().any(|r| r.cpu == cpu) {
        println!(
            "\nTF-A was measured on -cpu {} and {} only: TZMK_BENCH_CPU={} compares on the same -cpu (the goal above uses {}'s).",
            TF_A[0].cpu, TF_A[1].cpu, TF_A[0].cpu, TF_A[0].cpu
        );
    }
    if kind == Firmware::QemuPsci {
        println!("\nQEMU answered these SMCs in its own C code: no EL3 instruction ran, so the figures only show the payload's loops cancel (0.0).");
    }
    if !updates_within && enforce_update_bound {
        return Err(format!(
            "an update request the bound covers kept the secure core at EL3 for more than {} instructions (the table above)",
            bench_payload::UPDATE_BOUND
        ));
    }
    if !powered_off {
        return Err(format!(
            "QEMU still ran {POWER_OFF_GRACE:?} after `{DONE}`: PSCI SYSTEM_OFF did not power the machine off"
        ));
    }
    Ok(())
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}={}: {e}", path.display()))
}

/// Where a run's secure UART goes: `TZMK_BENCH_SECURE_LOG` for the run without a secure image,
/// the same name with `.bench-secure` before its extension for the run with one, and
/// `.bench-secure-updates` for the update bench's.
fn secure_log(log: &Path, secure_image: SecureImage, update_bench: bool) -> PathBuf {
    let infix = match (secure_image, update_bench) {
        (SecureImage::Absent, _) => return log.to_path_buf(),
        (SecureImage::BenchSecure, false) => "bench-secure",
        (SecureImage::BenchSecure, true) => "bench-secure-updates",
    };
    let stem = log.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match log.extension() {
        Some(extension) => format!("{stem}.{infix}.{}", extension.to_string_lossy()),
        None => format!("{stem}.{infix}"),
    };
    log.with_file_name(name)
}

/// Whether the secure image said on the secure UART (its file) that it failed.
fn secure_image_failed(setup: &Setup) -> bool {
    match (&setup.secure_image, &setup.secure_log) {
        (Some(_), Some(log)) => {
            std::fs::read_to_string(log).is_ok_and(|text| text.contains(bench_payload::SECURE_FAILED))
        }
        _ => false,
    }
}

/// For an error message: where the secure UART went, and what the secure image or the monitor
/// said there of a failure.
fn secure_uart(setup: &Setup) -> String {
    let Some(log) = &setup.secure_log else {
        return "; TZMK_BENCH_SECURE_LOG=<file> keeps the secure UART (the monitor's log)".into();
    };
    let failures: Vec<String> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(bench_payload::SECURE_FAILED) || l.contains("ERROR") || l.contains("WARN"))
        .map(|l| format!("\n  secure UART: {}", l.trim_end()))
        .collect();
    format!("; the secure UART is in {}{}", log.display(), failures.concat())
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
            match serial.is_empty() {
                true => format!("no `{DONE}` within {timeout:?}, and {NOTHING}"),
                false => format!("no `{DONE}` within {timeout:?}; the serial output was:\n{serial}"),
            }
        })?;
        match lines.recv_timeout(left.min(SECURE_LOG_POLL)) {
            Ok(line) => {
                let line = line.trim_end_matches('\r');
                eprintln!("  | {line}");
                failed = line.contains(FAILED);
                finished = failed || line == DONE;
                serial.push_str(line);
                serial.push('\n');
            }
            // The secure image parks after saying it failed, and without its `go` the payload
            // never starts: no need to wait for the timeout.
            Err(mpsc::RecvTimeoutError::Timeout) if secure_image_failed(setup) => {
                let _ = qemu.kill();
                let _ = qemu.wait();
                return Err(if serial.is_empty() {
                    format!("the secure image failed, and {NOTHING}")
                } else {
                    format!("the secure image failed; the normal-world UART said:\n{serial}")
                });
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
