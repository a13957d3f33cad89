//! /init of tzmk's Linux guest test: checks CPUs, the monitor's SiP service and the secure world's doorbell (through tzmk_probe.ko), the port driver (tzmk.ko, /tzmk-check) and the timer, prints `tzmk-init: PASS` or `tzmk-init: FAIL: <reason>`, and powers off.
//!
//! Every line it prints starts with `tzmk-init: `; exactly one verdict line is printed, then
//! reboot(POWER_OFF) (PSCI SYSTEM_OFF), whatever happened. A watchdog thread turns a step that
//! never returns (an `smc` that does not come back, a sleep the timer never ends) into a FAIL.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::kmod::{delete_module, finit_module, DeleteModuleFlags, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, getpid, sync};

use tzmk_linux_guest::{
    check_cpus_online, check_doorbells, check_driver_test, check_echo_report, check_hotplug_offline, check_port_list,
    counter_delta, kernel_log, Expect, Probe, BENCH_PATH, DRIVER_CHECK_PATH, DRIVER_DEV_DIR, DRIVER_NO_SECURE_WORLD,
    DRIVER_PATH, DRIVER_STRESS_MS, ECHOES, ECHO_COUNT, HOSTILE_HOLD_MS, HOSTILE_PATH, HOTPLUG_CPU, MODULE_NAME,
    RTBENCH_PATH, RT_RELEASES_PARAMETER, TZCTL_PATH,
};

/// Where build.mk's linux-initramfs puts the module.
const MODULE_PATH: &str = "/tzmk_probe.ko";
/// The whole run takes about 2 s on QEMU TCG without the echoes, a minute or so with them on a
/// busy host; a step still running after this has hung.
const WATCHDOG: Duration = Duration::from_secs(200);
const TIMER_SLEEP: Duration = Duration::from_secs(1);
/// Where `tzctl attest -o` writes the token (and `.chain`) in the initramfs's root.
const EVIDENCE_PATH: &str = "/evidence.cbor";

/// What /init asks on the console for signed updates, and where it writes each (tmpfs root).
const UPDATE_PROMPT: &str = tzmk_linux_guest::UPDATE_PROMPT;
const UPDATE_PATH: &str = "/update.bin";

/// The step running now, for the watchdog's FAIL line.
static STEP: Mutex<&str> = Mutex::new("starting");
/// Set by whoever prints the verdict line first (the main thread or the watchdog).
static VERDICT: AtomicBool = AtomicBool::new(false);
/// Seconds the watchdog waits beyond [`WATCHDOG`]: the cyclictest runs for as long as its
/// releases take.
static WATCHDOG_EXTRA: AtomicU64 = AtomicU64::new(0);
/// The cyclictest's releases per scenario when the command line names none: issue 13's figure.
const RT_RELEASES_DEFAULT: u64 = 100_000;

fn say(line: &str) {
    println!("tzmk-init: {line}");
}

fn step(name: &'static str) {
    *STEP.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = name;
}

/// Prints the verdict (once per process) and powers the machine off.
fn finish(verdict: Result<(), String>) -> ! {
    if VERDICT.swap(true, Ordering::SeqCst) {
        // The other thread printed its verdict and is powering off.
        loop {
            std::thread::park();
        }
    }
    match verdict {
        Ok(()) => say("PASS"),
        Err(reason) => say(&format!("FAIL: {reason}")),
    }
    sync();
    let Err(error) = reboot(RebootMode::RB_POWER_OFF);
    // Exiting makes the kernel panic (pid 1 died); with panic=-1 it reboots.
    say(&format!("reboot(POWER_OFF) failed: {error}"));
    std::process::exit(1);
}

fn mount_filesystems() -> Result<(), String> {
    for (source, target, kind) in
        [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")]
    {
        fs::create_dir_all(target).map_err(|error| format!("mkdir {target}: {error}"))?;
        mount(Some(source), target, Some(kind), MsFlags::empty(), None::<&str>)
            .map_err(|error| format!("mount {kind} on {target}: {error}"))?;
    }
    Ok(())
}

/// Points stdin, stdout and stderr at /dev/console, in case the kernel found none to open before
/// devtmpfs was mounted (the initramfs itself carries no device nodes).
fn open_console() -> Result<(), String> {
    let console = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .map_err(|error| format!("open /dev/console: {error}"))?;
    dup2_stdin(&console)
        .and_then(|()| dup2_stdout(&console))
        .and_then(|()| dup2_stderr(&console))
        .map_err(|error| format!("dup2 /dev/console: {error}"))
}

fn read_trimmed(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map(|text| text.trim().to_owned()).map_err(|error| format!("reading {path}: {error}"))
}

fn load_module(path: &str, parameters: &std::ffi::CStr) -> Result<(), String> {
    let module = File::open(path).map_err(|error| format!("open {path}: {error}"))?;
    finit_module(&module, parameters, ModuleInitFlags::empty())
        .map_err(|error| format!("finit_module({path}): {error}"))
}

/// The port devices tzmk.ko made (the names in /dev/tzmk), sorted.
fn driver_ports() -> Vec<String> {
    let mut ports: Vec<String> = fs::read_dir(DRIVER_DEV_DIR)
        .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    ports.sort();
    ports
}

/// tzmk.ko after tzmk_probe (which holds the same doorbell interrupt, so it goes first): with a
/// secure world it must make the ports and /tzmk-check must pass on /dev/tzmk/echo; without one
/// its probe must refuse with the one "no secure world" line and make no port.
fn check_driver(expect: Expect) -> Result<(), String> {
    delete_module(c"tzmk_probe", DeleteModuleFlags::O_NONBLOCK)
        .map_err(|error| format!("delete_module(tzmk_probe): {error}"))?;
    load_module(DRIVER_PATH, c"")?;
    let ports = driver_ports();
    say(&format!("tzmk.ko loaded: ports [{}]", ports.join(" ")));
    match expect {
        Expect::Full => {
            if !ports.iter().any(|p| p == "echo") {
                return Err(format!("tzmk.ko made no {DRIVER_DEV_DIR}/echo"));
            }
            let output = std::process::Command::new(DRIVER_CHECK_PATH)
                .output()
                .map_err(|error| format!("running {DRIVER_CHECK_PATH}: {error}"))?;
            let text = String::from_utf8_lossy(&output.stdout);
            for line in text.lines() {
                println!("{line}");
            }
            check_driver_test(&text, output.status.success()).map_err(|reason| format!("tzmk-check: {reason}"))?;
            say("tzmk-check passed");
            step("signed updates from the console (tzctl update)");
            updates()?;
            step("tzctl through the driver: list, three pinned echoes at once, attest, rt stats");
            check_tzctl()?;
            step("a hostile normal world against rt-task: GIC registers, SGIs, notify_secure and PSCI storms, a port flood, secure RAM");
            run_hostile(&["gic", &HOSTILE_HOLD_MS.to_string()])?;
            step("the driver under stress: a scribbled tx ring, reads, polls, calls and a killed child on one port; a control-call flood beside another process's calls");
            // Two runs of DRIVER_STRESS_MS and their echoes on top of the usual run.
            WATCHDOG_EXTRA.fetch_add(30, Ordering::SeqCst);
            let millis = DRIVER_STRESS_MS.to_string();
            run_hostile(&["stress", "echo-bulk", "echo", &millis])?;
            run_hostile(&["flood", "echo-small", "echo", &millis])?;
            step("an update storm: the stored manifest and flipped signatures, beside rt-task and a second uid");
            WATCHDOG_EXTRA.fetch_add(20, Ordering::SeqCst);
            update_storm()?;
        }
        Expect::Standalone => {
            if !kernel_log()?.iter().any(|line| line == DRIVER_NO_SECURE_WORLD) {
                return Err(format!("tzmk.ko did not log {DRIVER_NO_SECURE_WORLD:?}"));
            }
            if !ports.is_empty() {
                return Err(format!("tzmk.ko made ports without a secure world: {ports:?}"));
            }
            say("tzmk.ko probe refused: no secure world, no ports");
        }
        Expect::Bench => {
            if !ports.iter().any(|p| p == "echo") || !ports.iter().any(|p| p == "sink") {
                return Err(format!("tzmk.ko made no {DRIVER_DEV_DIR}/echo or sink for the bench"));
            }
            step("the system bench (/bin/tzmk-bench)");
            let status = std::process::Command::new(BENCH_PATH)
                .status()
                .map_err(|error| format!("running {BENCH_PATH}: {error}"))?;
            if !status.success() {
                return Err(format!("{BENCH_PATH} failed ({status}): its last line says why"));
            }
        }
        Expect::RtBench => {
            if !ports.iter().any(|p| p == "rt") || !ports.iter().any(|p| p == "sink") {
                return Err(format!("tzmk.ko made no {DRIVER_DEV_DIR}/rt or sink for the cyclictest"));
            }
            let cmdline = read_trimmed("/proc/cmdline")?;
            // The last `key=value` of the command line wins, as for kernel parameters.
            // tzmk.rt_releases=N per scenario; tzmk.rt_cpus=N: the load on Linux's cores 0..N
            // only; tzmk.rt_scenarios=a,b: a subset.
            let value = |key: &str| {
                cmdline
                    .split_ascii_whitespace()
                    .filter_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                    .next_back()
            };
            let releases = match value(RT_RELEASES_PARAMETER) {
                None => RT_RELEASES_DEFAULT,
                Some(n) => n.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("{RT_RELEASES_PARAMETER}={n} on the kernel command line: expected a number of releases > 0")
                })?,
            };
            // Eight scenarios of `releases` milliseconds of rt-task's grid, with room for a slow
            // emulation (TCG on a loaded host runs the guest's clock ahead of its cores).
            let scenarios = tzmk_linux_guest::rtbench::SCENARIOS.len() as u64;
            WATCHDOG_EXTRA.store(scenarios * (releases / 1000 + 60) * 4, Ordering::SeqCst);
            step("the in-seL4 cyclictest (/bin/tzmk-rtbench)");
            let mut command = std::process::Command::new(RTBENCH_PATH);
            command.arg(releases.to_string());
            if let Some(cpus) = value("tzmk.rt_cpus") {
                command.args(["--cpus", cpus]);
            }
            if let Some(names) = value("tzmk.rt_scenarios") {
                command.args(names.split(',').filter(|n| !n.is_empty()));
            }
            let status = command.status().map_err(|error| format!("running {RTBENCH_PATH}: {error}"))?;
            if !status.success() {
                return Err(format!("{RTBENCH_PATH} failed ({status}): its last line says why"));
            }
        }
        Expect::Absent | Expect::Report => {}
    }
    Ok(())
}

/// Signed updates of the reference values (docs/trusted-boot.md, "Signed updates"): the manifests
/// cannot be in this initramfs (it is measured, and they name its digest), so the host test
/// (tests/qemu_linux.rs) types them on the console when asked: one manifest per line in hex, an
/// empty line to end. Each goes to `tzctl update`, whose one-line answer is printed as
/// `tzctl update: ...`, accepted or refused alike (the host judges).
fn updates() -> Result<(), String> {
    use std::io::BufRead;
    say(UPDATE_PROMPT);
    let mut lines = std::io::stdin().lock();
    loop {
        let mut line = String::new();
        let n = lines.read_line(&mut line).map_err(|e| format!("reading the console: {e}"))?;
        let hex = line.trim();
        if n == 0 || hex.is_empty() {
            break;
        }
        if let Some(millis) = hex.strip_prefix(tzmk_linux_guest::RESET_AFTER) {
            let millis: u64 = millis.trim().parse().map_err(|_| format!("{hex:?}: not a number of ms"))?;
            return update_then_reset(&mut lines, millis);
        }
        write_manifest_line(hex)?;
        let started = Instant::now();
        let output = tzctl(&["update", UPDATE_PATH], None)?
            .wait_with_output()
            .map_err(|error| format!("tzctl update: {error}"))?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        say(&format!("tzctl update: {} ({} ms)", text.trim(), started.elapsed().as_millis()));
        if text.starts_with("accepted") {
            // The manifest flash now holds: the update storm resubmits it.
            fs::copy(UPDATE_PATH, tzmk_linux_guest::STORED_MANIFEST_PATH)
                .map_err(|e| format!("{}: {e}", tzmk_linux_guest::STORED_MANIFEST_PATH))?;
        }
    }
    say("update: done");
    Ok(())
}

/// The reset-during-update sweep (tests/qemu_linux.rs `reset_during_update`): the next console
/// line's manifest goes to `tzctl update` on CPU 0, and `millis` ms after it started this process,
/// on CPU 1, resets the machine (reboot(RB_AUTOBOOT): PSCI SYSTEM_RESET from this core) whether
/// the update finished or not. It does not return: QEMU (`-no-reboot`) exits on the reset.
fn update_then_reset(lines: &mut impl std::io::BufRead, millis: u64) -> Result<(), String> {
    let mut line = String::new();
    lines.read_line(&mut line).map_err(|e| format!("reading the console: {e}"))?;
    write_manifest_line(line.trim())?;
    let mut set = nix::sched::CpuSet::new();
    set.set(1).map_err(|e| format!("cpu set: {e}"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| format!("affinity: {e}"))?;
    let started = Instant::now();
    let _update = tzctl(&["update", UPDATE_PATH], Some(0))?;
    std::thread::sleep(Duration::from_millis(millis));
    say(&format!("reset {} ms after tzctl update started", started.elapsed().as_millis()));
    let Err(error) = reboot(RebootMode::RB_AUTOBOOT);
    Err(format!("reboot(RB_AUTOBOOT): {error}"))
}

/// `tzmk-hostile update-storm` with the manifest the updates step stored (docs/trusted-boot.md,
/// "Update storms"); skipped, saying so, when no update was accepted this boot.
fn update_storm() -> Result<(), String> {
    let stored = tzmk_linux_guest::STORED_MANIFEST_PATH;
    if !std::path::Path::new(stored).exists() {
        say("update storm: skipped: no update was accepted this boot");
        return Ok(());
    }
    run_hostile(&["update-storm", stored, &tzmk_linux_guest::UPDATE_STORM_MS.to_string()])
}

/// `/bin/tzmk-hostile ARGS` to its end, its lines passed on to the console (the host test reads
/// them); an error when it failed (its last line says why).
fn run_hostile(args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new(HOSTILE_PATH)
        .args(args)
        .output()
        .map_err(|error| format!("{HOSTILE_PATH} {}: {error}", args[0]))?;
    let text = String::from_utf8_lossy(&output.stdout);
    for line in text.lines() {
        println!("{line}");
    }
    if !output.status.success() {
        return Err(format!("{HOSTILE_PATH} {} failed ({}): its last line says why", args[0], output.status));
    }
    Ok(())
}

/// A manifest typed on the console as one line of hex, written to UPDATE_PATH for `tzctl update`.
fn write_manifest_line(hex: &str) -> Result<(), String> {
    let bytes = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| format!("the console's update line is not hex: {:?}..", &hex[..hex.len().min(16)]))?;
    fs::write(UPDATE_PATH, &bytes).map_err(|e| format!("{UPDATE_PATH}: {e}"))
}

/// Runs `/bin/tzctl ARGS` (pinned to `cpu` if given) and returns its standard output.
fn tzctl(args: &[&str], cpu: Option<usize>) -> Result<std::process::Child, String> {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(TZCTL_PATH);
    command.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    if let Some(cpu) = cpu {
        // SAFETY: between fork and exec the child only sets its own affinity (async-signal-safe).
        unsafe {
            command.pre_exec(move || {
                let mut set = nix::sched::CpuSet::new();
                set.set(cpu).map_err(std::io::Error::from)?;
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(std::io::Error::from)
            });
        }
    }
    command.spawn().map_err(|error| format!("running {TZCTL_PATH} {args:?}: {error}"))
}

fn finished(child: std::process::Child, what: &str) -> Result<String, String> {
    let output = child.wait_with_output().map_err(|error| format!("{what}: {error}"))?;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(format!("{what} failed ({}): {}{}", output.status, stderr.trim(), stdout.trim()));
    }
    Ok(stdout.into_owned())
}

/// The ring scribbler over a port whose records comm-pd parses and copies (echo-small: every
/// record it takes is copied back into tx), while honest echoes run on echo and echo-bulk: they
/// keep every checksum, the secure side resets echo-small at least once, and echo-small answers
/// a clean session afterwards.
fn scribbled_echo_port() -> Result<(), String> {
    const SCRIBBLED: &str = "echo-small";
    const COUNT: u64 = 2000;
    let faults = || read_trimmed(&format!("/sys/class/tzmk/tzmk!{SCRIBBLED}/faults"));
    let faults_before = faults()?;
    let rings = std::process::Command::new(HOSTILE_PATH)
        .args(["rings", SCRIBBLED, "8000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("{HOSTILE_PATH} rings {SCRIBBLED}: {error}"))?;
    let honest = [("echo", 4096usize, 0usize), ("echo-bulk", 4096, 2)].map(|(port, size, cpu)| {
        let (count, size) = (COUNT.to_string(), size.to_string());
        (port, tzctl(&["echo", port, "--count", &count, "--size", &size], Some(cpu)))
    });
    for (port, child) in honest {
        let report = finished(child?, &format!("tzctl echo {port} beside the scribbler"))?;
        say(&format!("beside the {SCRIBBLED} scribbler: {}", report.trim()));
        check_echo_report(&report, COUNT).map_err(|e| format!("{port} beside the {SCRIBBLED} scribbler: {e}"))?;
    }
    let output = rings.wait_with_output().map_err(|error| format!("tzmk-hostile rings {SCRIBBLED}: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().for_each(say);
    if !output.status.success() {
        return Err(format!("tzmk-hostile rings {SCRIBBLED}: {}", text.lines().last().unwrap_or("no output")));
    }
    let faults_after = faults()?;
    say(&format!("{SCRIBBLED} faults: {faults_before} before the scribbler, {faults_after} after"));
    if faults_after == faults_before {
        return Err(format!("the scribbles over {SCRIBBLED}'s rings never made the secure side reset it"));
    }
    let clean = finished(tzctl(&["echo", SCRIBBLED, "--count", "100", "--size", "1000"], None)?, "tzctl echo")?;
    check_echo_report(&clean, 100).map_err(|e| format!("{SCRIBBLED} after the scribbler: {e}"))?;
    say(&format!("{SCRIBBLED} after the scribbler: {}", clean.trim()));
    Ok(())
}

/// tzctl, unchanged from the simulator, through the kernel driver: every port listed; echoes on
/// echo, echo-small and echo-bulk at once from processes pinned to Linux's three CPUs, every
/// checksum matching, each port's doorbells mostly on its reader's CPU; attestation and rt calls.
fn check_tzctl() -> Result<(), String> {
    let list = finished(tzctl(&["list"], None)?, "tzctl list")?;
    for line in list.lines() {
        say(&format!("tzctl list: {line}"));
    }
    check_port_list(&list)?;
    // The counters count since the driver loaded (tzmk-check used echo before): what the echoes
    // add is what counts.
    let doorbells = |port: &str, which: &str| read_trimmed(&format!("/sys/class/tzmk/tzmk!{port}/{which}"));
    let before: Vec<(String, String)> = ECHOES
        .iter()
        .map(|(port, _, _)| Ok((doorbells(port, "doorbells")?, doorbells(port, "doorbells_other")?)))
        .collect::<Result<_, String>>()?;
    // Hostile processes beside the honest ones: one scribbling over sink's mapped rings, one
    // throwing bad calls at the attestation port.
    let rings = std::process::Command::new(HOSTILE_PATH)
        .args(["rings", "sink", "15000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("{HOSTILE_PATH} rings: {error}"))?;
    let calls = std::process::Command::new(HOSTILE_PATH)
        .args(["calls", "attestation"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("{HOSTILE_PATH} calls: {error}"))?;
    let echoes = ECHOES.map(|(port, size, cpu)| {
        let count = ECHO_COUNT.to_string();
        let size = size.to_string();
        (port, cpu, tzctl(&["echo", port, "--count", &count, "--size", &size], Some(cpu)))
    });
    let mut reports = Vec::new();
    for (port, cpu, child) in echoes {
        reports.push((port, cpu, finished(child?, &format!("tzctl echo {port}"))));
    }
    for ((port, cpu, report), (aimed_before, other_before)) in reports.into_iter().zip(before) {
        let report = report?;
        say(&format!("cpu {cpu}: {}", report.trim()));
        check_echo_report(&report, ECHO_COUNT)?;
        let aimed = counter_delta(&aimed_before, &doorbells(port, "doorbells")?)?;
        let other = counter_delta(&other_before, &doorbells(port, "doorbells_other")?)?;
        say(&format!("doorbells of {port} during its echo (reader on cpu {cpu}): aimed here {aimed}; other {other}"));
        check_doorbells(&aimed, cpu).map_err(|reason| format!("port {port}: {reason}"))?;
    }
    for (child, what) in [(rings, "rings"), (calls, "calls")] {
        let output = child.wait_with_output().map_err(|error| format!("tzmk-hostile {what}: {error}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        for line in text.lines() {
            say(line);
        }
        if !output.status.success() {
            return Err(format!("tzmk-hostile {what}: {}", text.lines().last().unwrap_or("no output")));
        }
    }
    let faults = read_trimmed("/sys/class/tzmk/tzmk!sink/faults")?;
    say(&format!("sink reset by the secure side {faults} times while the echoes ran"));
    if faults == "0" {
        return Err("the hostile scribbles over sink's rings never made the secure side reset it".into());
    }
    scribbled_echo_port()?;
    let unprivileged = finished(
        std::process::Command::new(HOSTILE_PATH)
            .args(["unprivileged", "echo"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|error| format!("{HOSTILE_PATH} unprivileged: {error}"))?,
        "tzmk-hostile unprivileged",
    )?;
    say(unprivileged.trim());
    let broken = tzmk_linux_guest::kernel_trouble(&kernel_log()?);
    if !broken.is_empty() {
        return Err(format!("the kernel log has {broken:?}"));
    }
    say("kernel log: no oops, WARN, BUG or hung task");
    let interrupts = read_trimmed("/proc/interrupts")?;
    if let Some(line) = interrupts.lines().find(|l| l.contains("tzmk")) {
        say(&format!("/proc/interrupts: {}", line.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    let attest = finished(tzctl(&["attest"], None)?, "tzctl attest")?;
    say(&format!("tzctl attest: {}", attest.trim()));
    if attest.trim() != "attestation-pd interface v1" {
        return Err(format!("tzctl attest answered {attest:?}"));
    }
    // A runtime measurement first (a workload the normal world started): the token must carry it.
    let measured_path = "/measured-app";
    fs::write(measured_path, tzmk_linux_guest::RUNTIME_MEASUREMENT_BYTES)
        .map_err(|e| format!("{measured_path}: {e}"))?;
    let measure = finished(
        tzctl(&["measure", tzmk_linux_guest::RUNTIME_MEASUREMENT_NAME, "--file", measured_path], None)?,
        "tzctl measure",
    )?;
    say(&format!("tzctl measure: {}", measure.trim()));
    if !measure.contains("runtime measurement #0") {
        return Err(format!("tzctl measure answered {measure:?}"));
    }
    // Evidence from inside Linux: the host checks it with tzmk verify and an outside verifier
    // (tests/qemu_linux.rs, full_system), from these two lines.
    let evidence = finished(
        tzctl(&["attest", "--nonce", tzmk_linux_guest::EVIDENCE_NONCE, "-o", EVIDENCE_PATH], None)?,
        "tzctl attest --nonce",
    )?;
    say(&format!("tzctl attest --nonce: {}", evidence.trim()));
    for (what, path) in [("token", EVIDENCE_PATH.to_owned()), ("chain", format!("{EVIDENCE_PATH}.chain"))] {
        let bytes = fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        say(&format!("evidence {what} {hex}"));
    }
    // The rest of tzctl's commands, unchanged from the simulator.
    let status = finished(tzctl(&["status"], None)?, "tzctl status")?;
    say(&format!("tzctl status: {}", status.lines().next().unwrap_or("").trim()));
    if !status.contains("attestation-pd interface    v1") {
        return Err(format!("tzctl status: {status:?}"));
    }
    let reply = finished(tzctl(&["send", "echo", "hello secure world", "--reply"], None)?, "tzctl send")?;
    if reply.trim() != "hello secure world" {
        return Err(format!("tzctl send echo --reply answered {reply:?}"));
    }
    let events = finished(tzctl(&["events", "--count", "2"], None)?, "tzctl events")?;
    if events.lines().count() != 2 || !events.lines().all(|l| l.contains(" at period ")) {
        return Err(format!("tzctl events: {events:?}"));
    }
    let bench = finished(tzctl(&["bench", "sink", "--size", "4096", "--bytes", "4194304"], None)?, "tzctl bench")?;
    say(&format!("tzctl bench: {}", bench.trim()));
    if !bench.starts_with("1024 messages of 4096 B to 'sink'") {
        return Err(format!("tzctl bench: {bench:?}"));
    }
    let rt = finished(tzctl(&["call", "rt", "stats"], None)?, "tzctl call rt stats")?;
    say(&format!("tzctl call rt stats: {}", rt.trim()));
    if !rt.contains("periods of 1000 us") {
        return Err(format!("tzctl call rt stats answered {rt:?}"));
    }
    let latency = finished(tzctl(&["rt", "stats"], None)?, "tzctl rt stats")?;
    for line in latency.lines() {
        say(&format!("tzctl rt stats: {line}"));
    }
    tzmk_linux_guest::check_rt_latency(&latency).map_err(|e| format!("tzctl rt stats: {e}"))?;
    check_rt_control()
}

/// The control loop and `rt set` through the driver (docs/realtime.md): a setpoint from here, a
/// refusal with its reason, an accepted change seen in the loop's own parameters while the speed
/// settles on the setpoint, then system.xml's parameters back.
fn check_rt_control() -> Result<(), String> {
    let accepted = |args: &[&str]| -> Result<(), String> {
        let what = format!("tzctl {}", args.join(" "));
        let out = finished(tzctl(args, None)?, &what)?;
        say(&format!("{what}: {}", out.trim()));
        if !out.starts_with("accepted") {
            return Err(format!("{what} answered {out:?}"));
        }
        Ok(())
    };
    accepted(&["rt", "setpoint", "4"])?;
    let output = tzctl(&["rt", "set", "--period", "1000", "--budget", "1000"], None)?
        .wait_with_output()
        .map_err(|e| format!("tzctl rt set: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    say(&format!("tzctl rt set --period 1000 --budget 1000: {}", stderr.trim()));
    if output.status.success() || !stderr.contains("refused: the budget is not below the period") {
        return Err(format!("tzctl rt set with budget = period was not refused: {stderr:?}"));
    }
    accepted(&["rt", "set", "--period", "2000", "--budget", "150"])?;
    let started = std::time::Instant::now();
    loop {
        let control = finished(tzctl(&["rt", "control"], None)?, "tzctl rt control")?;
        if let Err(reason) = tzmk_linux_guest::check_rt_control(&control, "period 2000 us, budget 150 us", 4.0) {
            if started.elapsed() > std::time::Duration::from_secs(10) {
                return Err(format!("tzctl rt control after 10 s: {reason}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        for line in control.lines() {
            say(&format!("tzctl rt control: {line}"));
        }
        break;
    }
    accepted(&["rt", "set", "--period", "1000", "--budget", "200"])
}

fn run() -> Result<(), String> {
    step("mounting proc, sys and devtmpfs");
    mount_filesystems()?;
    open_console()?;
    say(&format!("linux {}", read_trimmed("/proc/sys/kernel/osrelease")?));

    let expect = Expect::from_cmdline(&read_trimmed("/proc/cmdline")?)?;
    say(&format!("expect {}", expect.name()));

    step("counting online cpus");
    let online = read_trimmed("/sys/devices/system/cpu/online")?;
    let count = check_cpus_online(&online)?;
    say(&format!("cpus online {online} ({count})"));

    step("loading tzmk_probe.ko (its init makes the SiP calls and waits up to 2 s for the doorbell)");
    // In bench mode the probe also runs the notification bench (tzmk_probe.c, bench_rounds).
    load_module(MODULE_PATH, if expect == Expect::Bench { c"bench_rounds=1000" } else { c"" })?;
    let probe = Probe::read(&Path::new("/sys/module").join(MODULE_NAME).join("parameters"))?;
    for line in probe.report() {
        say(&line);
    }
    probe.check(expect)?;
    if expect == Expect::Bench {
        // Before tzmk.ko takes the doorbell, tzmk_probe goes, and its parameters with it.
        let probe_bench = read_trimmed(&format!("/sys/module/{MODULE_NAME}/parameters/bench"))?;
        for line in tzmk_linux_guest::bench::kernel_legs(&probe_bench)? {
            println!("{line}");
        }
    }

    step("loading tzmk.ko (and in full mode running /tzmk-check on /dev/tzmk/echo)");
    check_driver(expect)?;
    if matches!(expect, Expect::Bench | Expect::RtBench) {
        return Ok(());
    }

    step("sleeping 1 s (the timer interrupt ends it)");
    let start = Instant::now();
    std::thread::sleep(TIMER_SLEEP);
    let slept = start.elapsed();
    if slept < TIMER_SLEEP {
        return Err(format!("timer: CLOCK_MONOTONIC advanced {slept:?} across a {TIMER_SLEEP:?} sleep"));
    }
    say(&format!("timer: slept {:.2} s", slept.as_secs_f64()));

    // Linux's CPU_OFF runs on the dying CPU; another then polls AFFINITY_INFO until the firmware
    // reports it off; bringing it back is a CPU_ON. On tzmk's monitor the core waits in EL3.
    step("taking the last cpu offline and online again (PSCI CPU_OFF, AFFINITY_INFO, CPU_ON)");
    let control = format!("/sys/devices/system/cpu/cpu{HOTPLUG_CPU}/online");
    fs::write(&control, "0").map_err(|e| format!("cpu {HOTPLUG_CPU} offline: writing {control}: {e}"))?;
    let offline = read_trimmed("/sys/devices/system/cpu/online")?;
    check_hotplug_offline(&offline)?;
    fs::write(&control, "1").map_err(|e| format!("cpu {HOTPLUG_CPU} online again: writing {control}: {e}"))?;
    let online = read_trimmed("/sys/devices/system/cpu/online")?;
    check_cpus_online(&online)?;
    say(&format!("cpu {HOTPLUG_CPU} offline (online {offline}) and back (online {online})"));
    Ok(())
}

fn main() {
    if getpid().as_raw() != 1 {
        eprintln!("tzmk-init: this is the initramfs's /init (pid 1), not a program to run here; it would power the machine off");
        std::process::exit(2);
    }
    let watchdog = std::thread::Builder::new().name("watchdog".to_owned()).spawn(|| {
        std::thread::sleep(WATCHDOG);
        loop {
            match WATCHDOG_EXTRA.swap(0, Ordering::SeqCst) {
                0 => break,
                extra => std::thread::sleep(Duration::from_secs(extra)),
            }
        }
        let step = *STEP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        finish(Err(format!("watchdog: {step} did not finish within {} s", WATCHDOG.as_secs())));
    });
    if let Err(error) = watchdog {
        finish(Err(format!("starting the watchdog thread: {error}")));
    }
    finish(run());
}
