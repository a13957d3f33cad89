//! The in-seL4 cyclictest's guest side (`/bin/tzmk-rtbench RELEASES [SCENARIO...]`, docs/realtime.md):
//! for each scenario it restarts rt-task's statistics, runs Linux's load for RELEASES periods of
//! rt-task's grid, stops it and prints one `tzmk-rtbench: scenario=...` line with what rt-task
//! counted (tzmk_linux_guest::rtbench).
//!
//! rt-task measures itself (each release's lateness: start minus programmed expiry, on the
//! secure core's counter); this process only drives Linux and reads the figures through the rt
//! port. The restart is `rt set` with rt-task's current parameters (an accepted change restarts
//! the framework's statistics at the next release), so each histogram covers one scenario only. The load generators are here, with no tool
//! from outside: busy loops, memory copies and strides, timerfds and cross-core eventfd wakeups,
//! port traffic, and tzmk-hostile's GIC, SMC and PSCI storms, on every Linux core.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::libc;
use tzmk_interface::port::command;
use tzmk_interface::rt::{name_field, RtLatency, RtSetReply, RtSetRequest, RtSetStatus};
use tzmk_linux_guest::mmio::{Mmio, GICD_BASE, KICK, RT_TIMER};
use tzmk_linux_guest::rtbench::{Scenario, DONE, PREFIX, SCENARIOS};
use tzmk_linux_guest::{EXPECTED_CPUS, HOTPLUG_CPU};
use zerocopy::{FromBytes, IntoBytes};

/// rt-task's parameters for the bench: system.xml's (rt-task refuses a period below the
/// kernel's scheduling-context period, 1000 us, so the grid cannot be made finer from Linux).
const PERIOD_US: u32 = 1000;
const BUDGET_US: u32 = 200;
/// Linux cores that carry the load (`--cpus N`: cores 0..N; all by default).
static LOAD_CPUS: AtomicUsize = AtomicUsize::new(EXPECTED_CPUS);

fn load_cpus() -> std::ops::Range<usize> {
    0..LOAD_CPUS.load(Ordering::Relaxed)
}

fn fail(message: String) -> ! {
    println!("{PREFIX}FAIL: {message}");
    std::process::exit(1);
}

fn say(line: &str) {
    println!("{PREFIX}{line}");
}

/// A load thread pinned to `cpu`, repeating `work` (which returns the operations it did) until
/// `stop`; its total comes back on join.
fn on_cpu(cpu: usize, stop: &Arc<AtomicBool>, mut work: impl FnMut() -> u64 + Send + 'static) -> JoinHandle<u64> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut set = nix::sched::CpuSet::new();
        if set.set(cpu).is_ok() {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        }
        let mut total = 0u64;
        while !stop.load(Ordering::Relaxed) {
            total += work();
        }
        total
    })
}

/// The running load of a scenario: its threads by what they count, and what unblocks them.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<u64>)>,
    /// eventfds a thread may block on: written at the end so that every thread sees `stop`.
    wake: Vec<i32>,
}

impl Load {
    fn new() -> Load {
        Load { stop: Arc::new(AtomicBool::new(false)), threads: Vec::new(), wake: Vec::new() }
    }

    fn add(&mut self, what: &'static str, cpu: usize, work: impl FnMut() -> u64 + Send + 'static) {
        let handle = on_cpu(cpu, &self.stop, work);
        self.threads.push((what, handle));
    }

    /// Stops every thread; returns `what=count` per kind of operation, summed over the cores.
    fn finish(self) -> String {
        self.stop.store(true, Ordering::SeqCst);
        for &fd in &self.wake {
            let one = 1u64;
            // SAFETY: an 8-byte write from a local to our own eventfd.
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        }
        let mut totals: Vec<(&str, u64)> = Vec::new();
        for (what, handle) in self.threads {
            let count = handle.join().unwrap_or_else(|_| fail(format!("a {what} thread panicked")));
            match totals.iter_mut().find(|(w, _)| *w == what) {
                Some((_, total)) => *total += count,
                None => totals.push((what, count)),
            }
        }
        for fd in self.wake {
            // SAFETY: our own eventfd, no longer used by any thread (all joined).
            unsafe { libc::close(fd) };
        }
        if totals.is_empty() {
            return "none".into();
        }
        totals.iter().map(|(w, c)| format!("{w}={c}")).collect::<Vec<_>>().join(",")
    }
}

fn cpu_load(load: &mut Load) {
    for cpu in load_cpus() {
        let mut x = cpu as u64 + 1;
        load.add("spins", cpu, move || {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(
                    x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407),
                );
            }
            1_000_000
        });
    }
}

/// 32 MiB per core (beyond any cache of the boards tzmk aims at): a copy of one half over the
/// other, then a write every 64 bytes over the whole buffer. Counts MiB touched.
fn memory_load(load: &mut Load) {
    const SIZE: usize = 32 << 20;
    for cpu in load_cpus() {
        let mut buffer = vec![cpu as u8; SIZE];
        let mut round = 0u8;
        load.add("MiB", cpu, move || {
            let (low, high) = buffer.split_at_mut(SIZE / 2);
            if round.is_multiple_of(2) {
                high.copy_from_slice(low);
            } else {
                low.copy_from_slice(high);
            }
            round = round.wrapping_add(1);
            for i in (0..SIZE).step_by(64) {
                buffer[i] = buffer[i].wrapping_add(round);
            }
            std::hint::black_box(&buffer);
            (SIZE / 2 + SIZE) as u64 >> 20
        });
    }
}

fn eventfd() -> i32 {
    // SAFETY: creates a new file descriptor.
    let fd = unsafe { libc::eventfd(0, 0) };
    if fd < 0 {
        fail(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    fd
}

/// On every core: a timerfd every 20 us (each expiry an hrtimer interrupt and a wakeup), and a
/// member of a ring of eventfd wakeups passing tokens to the next core (each a reschedule IPI).
fn interrupt_load(load: &mut Load) {
    let cpus = load_cpus().len();
    let fds: Vec<i32> = (0..cpus).map(|_| eventfd()).collect();
    for cpu in load_cpus() {
        // SAFETY: creates a new file descriptor.
        let timer = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, 0) };
        if timer < 0 {
            fail(format!("timerfd_create: {}", std::io::Error::last_os_error()));
        }
        let every = libc::timespec { tv_sec: 0, tv_nsec: 20_000 };
        let spec = libc::itimerspec { it_interval: every, it_value: every };
        // SAFETY: arms our own timerfd with a local spec.
        if unsafe { libc::timerfd_settime(timer, 0, &spec, std::ptr::null_mut()) } != 0 {
            fail(format!("timerfd_settime: {}", std::io::Error::last_os_error()));
        }
        load.wake.push(timer);
        load.add("timer-expiries", cpu, move || {
            let mut expiries = 0u64;
            // SAFETY: an 8-byte read into a local from our own timerfd (it blocks until an expiry).
            unsafe { libc::read(timer, (&mut expiries as *mut u64).cast(), 8) };
            expiries
        });
        let (mine, next) = (fds[cpu], fds[(cpu + 1) % cpus]);
        load.add("wakeups", cpu, move || {
            let mut tokens = 0u64;
            // SAFETY: 8-byte reads and writes of locals on our own eventfds.
            unsafe {
                libc::read(mine, (&mut tokens as *mut u64).cast(), 8);
                let one = 1u64;
                libc::write(next, (&one as *const u64).cast(), 8);
            }
            1
        });
    }
    // A token per core in the ring.
    for &fd in &fds {
        let one = 1u64;
        // SAFETY: as above.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
    load.wake.extend(fds);
}

fn port_flood(load: &mut Load, tz: &tzcomm::Tz) {
    let mut sink = tz.open("sink").unwrap_or_else(|e| fail(format!("open sink: {e}")));
    let message = vec![0x5au8; 4096.min(sink.max_message())];
    load.add("sink-messages", 0, move || {
        sink.write(&message).unwrap_or_else(|e| fail(format!("sink: {e}")));
        1
    });
    for (cpu, port, size) in
        [(1, "echo", 64usize), (2, "echo-bulk", 4096)].into_iter().filter(|(c, _, _)| load_cpus().contains(c))
    {
        let mut echo = tz.open(port).unwrap_or_else(|e| fail(format!("open {port}: {e}")));
        echo.set_timeout(Some(Duration::from_secs(30)));
        let message = vec![0xa5u8; size.min(echo.max_message())];
        let mut reply = vec![0u8; message.len()];
        load.add("echo-round-trips", cpu, move || {
            echo.write(&message).unwrap_or_else(|e| fail(format!("{port}: {e}")));
            let n = echo.read(&mut reply).unwrap_or_else(|e| fail(format!("{port}: {e}")));
            if reply[..n] != message[..] {
                fail(format!("{port} answered {n} bytes that are not the message"));
            }
            1
        });
    }
}

/// Every core writes the kick's enable, pending, active, group, priority and configuration
/// registers (Group 0: ignored for a non-secure access) and its own bank of PPI 30's priority,
/// as fast as it can. Not GICD_CTLR (it would switch Linux's own interrupts off for the whole
/// scenario), not ITARGETSR (QEMU lets it through; the monitor re-aims the kick on each
/// notify_secure, tzmk-hostile shows it) and not GICD_SGIR (QEMU delivers it, GIC-400 does not:
/// docs/realtime.md).
fn gic_storm(load: &mut Load) {
    let (word, bit) = (4 * (KICK / 32), 1u32 << (KICK % 32));
    for cpu in load_cpus() {
        let gicd = Mmio::map(GICD_BASE).unwrap_or_else(|e| fail(format!("/dev/mem at {GICD_BASE:#x}: {e}")));
        let config = 0xc00 + 4 * (KICK / 16);
        let field = 3u32 << (2 * (KICK % 16));
        load.add("gicd-writes", cpu, move || {
            for offset in [0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0x080] {
                gicd.write(offset + word, bit);
            }
            gicd.write_byte(0x400 + KICK, 0xf0);
            let before = gicd.read(config);
            gicd.write(config, before ^ field);
            gicd.write_byte(0x400 + RT_TIMER, 0xf0);
            10
        });
    }
}

/// `notify_secure` (TZMK_IOC_KICK) as fast as it goes, from every core, each on a port of its own
/// (a port node opens once).
fn smc_storm(load: &mut Load) {
    for (cpu, port) in ["echo", "echo-small", "echo-bulk"].into_iter().enumerate().take(load_cpus().len()) {
        let path = format!("{}/{port}", tzcomm::driver::DEVICE_DIR);
        let file =
            OpenOptions::new().read(true).write(true).open(&path).unwrap_or_else(|e| fail(format!("{path}: {e}")));
        load.add("notify-secure", cpu, move || {
            for _ in 0..100 {
                // SAFETY: TZMK_IOC_KICK takes no argument.
                let result = unsafe { libc::ioctl(file.as_raw_fd(), tzmk_interface::driver::IOC_KICK as _, 0usize) };
                if result < 0 {
                    fail(format!("TZMK_IOC_KICK on {port}: {}", std::io::Error::last_os_error()));
                }
            }
            100
        });
    }
}

/// cpu HOTPLUG_CPU off and on again (PSCI CPU_OFF, AFFINITY_INFO, CPU_ON) from cpu 0, a busy
/// loop on the other core.
fn psci_storm(load: &mut Load) {
    let path = format!("/sys/devices/system/cpu/cpu{HOTPLUG_CPU}/online");
    load.add("off-on-cycles", 0, move || {
        for value in ["0", "1"] {
            std::fs::write(&path, value).unwrap_or_else(|e| fail(format!("{path} <- {value}: {e}")));
        }
        1
    });
    for cpu in load_cpus().filter(|&c| c != 0 && c != HOTPLUG_CPU) {
        let mut x = 7u64;
        load.add("spins", cpu, move || {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
            1_000_000
        });
    }
}

/// rt-task's latency block, as published after a refresh (rt-task publishes when comm-pd
/// notifies it, at once); `None` if the port gave none within ten seconds.
fn latency(rt: &tzcomm::Port) -> Option<RtLatency> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let _ = rt.call(command::RT_REFRESH, &[]);
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(bytes) = rt.call(command::RT_LATENCY, &[]) {
            if let Ok(latency) = RtLatency::read_from_bytes(&bytes) {
                return Some(latency);
            }
        }
    }
    None
}

/// Restarts rt-task's statistics: `rt set` with its own parameters, then waits for a
/// publication that counts fewer releases than before.
fn restart(rt: &tzcomm::Port) -> RtLatency {
    let before = latency(rt).unwrap_or_else(|| fail("the rt port gave no latency figures".into()));
    let request = RtSetRequest {
        task: name_field("rt-task").unwrap_or_else(|| fail("rt-task's name".into())),
        period_us: PERIOD_US,
        budget_us: BUDGET_US,
        deadline_us: 0,
        reserved: 0,
    };
    let started = Instant::now();
    loop {
        let output = rt.call(command::RT_SET, request.as_bytes()).unwrap_or_else(|e| fail(format!("rt set: {e}")));
        let reply =
            RtSetReply::read_from_bytes(&output).unwrap_or_else(|_| fail("an rt set reply of the wrong size".into()));
        match reply.status() {
            Some(RtSetStatus::Accepted) => break,
            Some(RtSetStatus::Busy) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => fail(format!("rt set --period {PERIOD_US} --budget {BUDGET_US}: {other:?}")),
        }
    }
    let started = Instant::now();
    loop {
        let now = latency(rt).unwrap_or_else(|| fail("the rt port gave no latency figures".into()));
        if now.releases + now.skipped < before.releases + before.skipped {
            return now;
        }
        if started.elapsed() > Duration::from_secs(30) {
            fail(format!(
                "rt-task's statistics did not restart within 30 s ({} releases before, {} now)",
                before.releases, now.releases
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One scenario: rt-task's statistics restarted with Linux idle, the load started at once and
/// run for `releases` periods of the grid (Linux's CLOCK_MONOTONIC and rt-task's grid count the
/// same system counter), stopped, then the statistics read. The window brackets the load by the
/// time of one rt-port call at each end (a few periods of an idle Linux); reading the figures
/// only once the load has stopped keeps the bench working when the load starves Linux's own
/// calls to the secure world (it does under QEMU 7.2's -icount: docs/realtime.md).
fn scenario(name: &str, releases: u64, tz: &tzcomm::Tz, rt: &tzcomm::Port) -> Scenario {
    let first = restart(rt);
    let mut load = Load::new();
    match name {
        "idle" => {}
        "cpu" => cpu_load(&mut load),
        "memory" => memory_load(&mut load),
        "interrupts" => interrupt_load(&mut load),
        "port-flood" => port_flood(&mut load, tz),
        "hostile-gic" => gic_storm(&mut load),
        "hostile-smc" => smc_storm(&mut load),
        "hostile-psci" => psci_storm(&mut load),
        other => fail(format!("no scenario {other:?}")),
    }
    let started = Instant::now();
    let window = Duration::from_micros(releases.saturating_sub(first.releases + first.skipped) * u64::from(PERIOD_US));
    std::thread::sleep(window);
    let millis = started.elapsed().as_millis() as u64;
    let load = load.finish();
    if name == "hostile-psci" {
        let path = format!("/sys/devices/system/cpu/cpu{HOTPLUG_CPU}/online");
        if std::fs::read_to_string(&path).map(|s| s.trim() != "1").unwrap_or(true) {
            std::fs::write(&path, "1").unwrap_or_else(|e| fail(format!("{path} <- 1: {e}")));
        }
    }
    // rt-task may not have taken its overdue timer yet when it publishes (a starved secure
    // core): wait for a publication whose grid reached the window's end, for up to 10 s.
    let waited = Instant::now();
    let last = loop {
        let now =
            latency(rt).unwrap_or_else(|| fail(format!("{name}: rt-task published nothing for 10 s after the load")));
        if now.releases + now.skipped + 2 >= releases || waited.elapsed() > Duration::from_secs(10) {
            break now;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Scenario {
        name: name.to_owned(),
        releases: last.releases,
        skipped: last.skipped,
        misses: last.misses,
        overruns: last.overruns,
        min_ns: last.min_ns,
        p50_ns: last.p50_ns,
        p99_ns: last.p99_ns,
        p999_ns: last.p999_ns,
        max_ns: last.max_ns,
        mean_ns: last.mean_ns,
        period_us: u64::from(last.period_us),
        millis,
        load,
    }
}

fn main() {
    tzcomm::process::default_sigpipe();
    let usage =
        || -> ! { fail("usage: tzmk-rtbench RELEASES [--cpus N] [SCENARIO...] (RELEASES > 0, N in 1..=3)".into()) };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let Some(releases) = args.first().and_then(|a| a.parse::<u64>().ok()).filter(|&r| r > 0) else { usage() };
    args.remove(0);
    if args.first().map(String::as_str) == Some("--cpus") {
        let Some(n) = args.get(1).and_then(|a| a.parse::<usize>().ok()).filter(|n| (1..=EXPECTED_CPUS).contains(n))
        else {
            usage()
        };
        LOAD_CPUS.store(n, Ordering::Relaxed);
        args.drain(..2);
    }
    let names: Vec<&str> = if !args.is_empty() {
        args.iter().map(String::as_str).collect()
    } else {
        SCENARIOS.iter().map(|(name, _)| *name).collect()
    };
    for name in &names {
        if !SCENARIOS.iter().any(|(n, _)| n == name) {
            fail(format!("no scenario {name:?}: {}", SCENARIOS.map(|(n, _)| n).join(", ")));
        }
    }
    // This thread reads the rt port and takes its doorbells on Linux's cpu 0, the core QEMU's
    // round-robin icount loop runs right after the secure core in every round: under QEMU 7.2's
    // -icount a busy vCPU takes every instruction up to the next timer deadline and the vCPUs
    // after it in the round get none (docs/realtime.md, "What -icount does to the figures").
    let mut set = nix::sched::CpuSet::new();
    if set.set(0).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
    let tz = tzcomm::Tz::driver().unwrap_or_else(|e| fail(format!("tzmk.ko: {e}")));
    let rt = tz.open("rt").unwrap_or_else(|e| fail(format!("open rt: {e}")));
    say(&format!(
        "{releases} periods of rt-task's grid per scenario, period {PERIOD_US} us, budget {BUDGET_US} us, load on Linux cpus {:?}",
        load_cpus()
    ));
    for name in names {
        let what = SCENARIOS.iter().find(|(n, _)| *n == name).map_or("", |(_, w)| *w);
        say(&format!("start {name}: {what}"));
        let result = scenario(name, releases, &tz, &rt);
        println!("{result}");
    }
    println!("{DONE}");
}
