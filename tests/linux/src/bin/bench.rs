//! `tzmk-bench`: the system bench's guest side (docs/system-bench.md). Run by /init with
//! `tzmk.expect=bench` under QEMU `-icount shift=0,sleep=off`, tzmk.ko loaded; prints the lines of
//! `tzmk_linux_guest::bench` and `tzmk-bench: done`.
//!
//! Time is the generic counter (`CNTVCT_EL0`, the secure side's `CNTPCT_EL0`: no EL2), so a
//! stamp taken in comm-pd and one taken here are on one clock. Under `-icount shift=0` a tick is
//! 10^9 / CNTFRQ instructions (16 at QEMU's 62.5 MHz): single samples are that coarse, loops
//! over thousands of iterations are not.
//!
//! Two helper modes run as the second process of the pipe figures: `tzmk-bench pipe-echo SIZE`
//! (echoes SIZE-byte messages from stdin to stdout until EOF) and `tzmk-bench pipe-sink BYTES`
//! (reads BYTES from stdin, then writes one byte).

#[cfg(target_arch = "aarch64")]
mod guest {
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Write};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::sync::mpsc;

    use tzcomm::{command, Tz};
    use tzmk_interface::port::SinkTotals;
    use tzmk_linux_guest::bench::{ns_from_ticks, Latency, Transfer, DONE, PREFIX};
    use zerocopy::FromBytes;

    /// Round trips per round-trip figure, and samples of the notification legs.
    const ROUND_TRIPS: usize = 2000;
    const LEG_SAMPLES: usize = 500;
    /// Bytes per transfer figure.
    const TRANSFER_BYTES: usize = 8 << 20;
    /// The CPU (Linux's numbering) the bench runs on, and the one its second process or reader
    /// thread runs on.
    const HOME_CPU: usize = 0;
    const OTHER_CPU: usize = 1;

    type Result<T> = std::result::Result<T, String>;

    fn counter() -> u64 {
        let ticks: u64;
        // SAFETY: reads a system register EL0 may read (Linux sets CNTKCTL_EL1.EL0VCTEN); the
        // isb keeps the read from being hoisted above earlier instructions.
        unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack)) };
        ticks
    }

    fn frequency() -> u64 {
        let hz: u64;
        // SAFETY: CNTFRQ_EL0 is readable at EL0.
        unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
        hz
    }

    fn pin(cpu: usize) -> Result<()> {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).map_err(|e| format!("cpu {cpu}: {e}"))?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .map_err(|e| format!("pinning to cpu {cpu}: {e}"))
    }

    /// The driver's and comm-pd's stamps (sysfs `stamps` of the tzmk platform device).
    #[derive(Debug, Clone, Copy, Default)]
    struct Stamps {
        kick_smc: u64,
        kick_seen: u64,
        doorbell_rung: u64,
        doorbell_taken: u64,
        kicks: u64,
    }

    fn stamps(file: &mut File) -> Result<Stamps> {
        use std::io::Seek;
        let mut text = String::new();
        file.seek(std::io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        file.read_to_string(&mut text).map_err(|e| format!("reading stamps: {e}"))?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let get = |name: &str| -> Result<u64> {
            let at = words.iter().position(|w| *w == name).ok_or_else(|| format!("no {name} in stamps {text:?}"))?;
            words.get(at + 1).and_then(|v| v.parse().ok()).ok_or_else(|| format!("{name} in stamps {text:?}"))
        };
        Ok(Stamps {
            kick_smc: get("kick_smc")?,
            kick_seen: get("kick_seen")?,
            doorbell_rung: get("doorbell_rung")?,
            doorbell_taken: get("doorbell_taken")?,
            kicks: get("kicks")?,
        })
    }

    fn open_port_file(name: &str) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/tzmk/{name}"))
            .map_err(|e| format!("/dev/tzmk/{name}: {e}"))
    }

    fn say(line: impl std::fmt::Display) {
        println!("{line}");
    }

    /// The notification legs: a reader thread on OTHER_CPU blocks in read(2) on echo; this
    /// thread writes one message (the driver kicks), and the reader stamps the counter as its
    /// read returns. A sample counts when exactly one kick was made and the stamps are in order.
    fn legs(hz: u64) -> Result<()> {
        let file = open_port_file("echo")?;
        let mut stamps_file =
            File::open("/sys/class/tzmk/tzmk!echo/device/stamps").map_err(|e| format!("stamps: {e}"))?;
        let mut reader = file.try_clone().map_err(|e| e.to_string())?;
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (woke_tx, woke_rx) = mpsc::channel::<Result<u64>>();
        let thread = std::thread::spawn(move || {
            if let Err(e) = pin(OTHER_CPU) {
                let _ = woke_tx.send(Err(e));
                return;
            }
            let mut buf = [0u8; 64];
            while go_rx.recv().is_ok() {
                let got = reader.read(&mut buf);
                let woke = counter();
                let _ = woke_tx.send(match got {
                    Ok(64) => Ok(woke),
                    other => Err(format!("echo read: {other:?}")),
                });
            }
        });
        let mut writer = file;
        let message = [0x5au8; 64];
        let (mut ns, mut sn_irq, mut sn) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..LEG_SAMPLES {
            go_tx.send(()).map_err(|_| "the reader thread ended")?;
            // Long enough (1 ms of virtual time) for the reader to be asleep in read(2).
            std::thread::sleep(std::time::Duration::from_millis(1));
            let before = stamps(&mut stamps_file)?;
            let written = writer.write(&message).map_err(|e| format!("echo write: {e}"))?;
            if written != message.len() {
                return Err(format!("echo write took {written} B"));
            }
            let woke = woke_rx.recv().map_err(|_| "the reader thread ended")??;
            let s = stamps(&mut stamps_file)?;
            if s.kicks != before.kicks + 1 || s.kick_seen < s.kick_smc || s.kick_smc <= before.kick_smc {
                continue;
            }
            ns.push(ns_from_ticks(s.kick_seen - s.kick_smc, hz));
            if s.doorbell_rung >= s.kick_seen && s.doorbell_taken >= s.doorbell_rung && woke >= s.doorbell_taken {
                sn_irq.push(ns_from_ticks(s.doorbell_taken - s.doorbell_rung, hz));
                sn.push(ns_from_ticks(woke - s.doorbell_rung, hz));
            }
        }
        drop(go_tx);
        let _ = thread.join();
        for (key, samples) in [("notify-ns", &ns), ("notify-sn-irq", &sn_irq), ("notify-sn", &sn)] {
            match Latency::of(key, samples) {
                Some(l) => say(l),
                None => return Err(format!("{key}: no sample had its stamps in order")),
            }
        }
        Ok(())
    }

    /// `ROUND_TRIPS` iterations of `one`, after 100 unmeasured ones: nanoseconds per iteration.
    fn per_round_trip(hz: u64, mut one: impl FnMut() -> Result<()>) -> Result<f64> {
        for _ in 0..100 {
            one()?;
        }
        let start = counter();
        for _ in 0..ROUND_TRIPS {
            one()?;
        }
        Ok(ns_from_ticks(counter() - start, hz) / ROUND_TRIPS as f64)
    }

    fn say_loop(key: &str, ns: f64) {
        say(Latency { key: key.to_owned(), samples: ROUND_TRIPS, mean: ns, p50: ns, min: ns, max: ns });
    }

    /// tzmk.ko's spin hint for comm-pd (`secure_spin_us`: -1 its own window, 0 none).
    fn secure_spin(micros: i32) -> Result<()> {
        std::fs::write("/sys/module/tzmk/parameters/secure_spin_us", micros.to_string())
            .map_err(|e| format!("setting tzmk.secure_spin_us={micros}: {e}"))
    }

    fn round_trip_rw(hz: u64, key: &str) -> Result<()> {
        let mut file = open_port_file("echo")?;
        let message = [0x5au8; 64];
        let mut buf = [0u8; 64];
        let ns = per_round_trip(hz, || {
            file.write_all(&message).map_err(|e| format!("echo write: {e}"))?;
            match file.read(&mut buf) {
                Ok(64) => Ok(()),
                other => Err(format!("echo read: {other:?}")),
            }
        })?;
        say_loop(key, ns);
        Ok(())
    }

    fn round_trip_mmap(hz: u64, tz: &Tz, spin: bool, key: &str) -> Result<()> {
        let mut port = tz.open("echo").map_err(|e| format!("tzcomm open echo: {e}"))?;
        if !spin {
            port.set_spin(std::time::Duration::ZERO);
        }
        let message = [0x5au8; 64];
        let mut buf = [0u8; 64];
        let ns = per_round_trip(hz, || {
            port.write(&message).map_err(|e| format!("echo write: {e}"))?;
            match port.read(&mut buf) {
                Ok(64) => Ok(()),
                other => Err(format!("echo read: {other:?}")),
            }
        })?;
        say_loop(key, ns);
        Ok(())
    }

    fn second_process(args: &[&str]) -> Result<(Child, ChildStdin, ChildStdout)> {
        let mut child = Command::new("/proc/self/exe")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the pipe's second process: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        Ok((child, stdin, stdout))
    }

    fn round_trip_pipe(hz: u64) -> Result<()> {
        let (mut child, mut to, mut from) = second_process(&["pipe-echo", "64"])?;
        let message = [0x5au8; 64];
        let mut buf = [0u8; 64];
        let ns = per_round_trip(hz, || {
            to.write_all(&message).map_err(|e| format!("pipe write: {e}"))?;
            from.read_exact(&mut buf).map_err(|e| format!("pipe read: {e}"))
        })?;
        drop(to);
        let _ = child.wait();
        say_loop("rt-pipe-64", ns);
        Ok(())
    }

    fn transfer_pipe(hz: u64, size: usize, key: &str) -> Result<()> {
        let (mut child, mut to, mut from) = second_process(&["pipe-sink", &TRANSFER_BYTES.to_string()])?;
        let message = vec![0x5au8; size];
        let start = counter();
        for _ in 0..TRANSFER_BYTES / size {
            to.write_all(&message).map_err(|e| format!("pipe write: {e}"))?;
        }
        let mut ack = [0u8; 1];
        from.read_exact(&mut ack).map_err(|e| format!("pipe ack: {e}"))?;
        let ns = ns_from_ticks(counter() - start, hz);
        drop(to);
        let _ = child.wait();
        say(Transfer { key: key.to_owned(), bytes: TRANSFER_BYTES as u64, ns: ns as u64 });
        Ok(())
    }

    /// Messages of `size` to the sink through the mapped ring until the sink has taken them all
    /// (`flush`), then the sink's own count of them (its session's totals).
    fn transfer_port(hz: u64, tz: &Tz, size: usize, key: &str) -> Result<()> {
        let count = (TRANSFER_BYTES / size) as u64;
        let message = vec![0x5au8; size];
        let mut port = tz.open("sink").map_err(|e| format!("tzcomm open sink: {e}"))?;
        let start = counter();
        for _ in 0..count {
            port.write(&message).map_err(|e| format!("sink write: {e}"))?;
        }
        port.flush().map_err(|e| format!("sink flush: {e}"))?;
        let ns = ns_from_ticks(counter() - start, hz);
        let reply = port.call(command::SINK_TOTALS, &[]).map_err(|e| format!("sink totals: {e}"))?;
        let totals = SinkTotals::read_from_bytes(&reply).map_err(|_| "a sink totals reply of the wrong size")?;
        if totals.messages != count {
            return Err(format!("{key}: the sink took {} of {count} messages", totals.messages));
        }
        say(Transfer { key: key.to_owned(), bytes: count * size as u64, ns: ns as u64 });
        Ok(())
    }

    pub fn bench() -> Result<()> {
        pin(HOME_CPU)?;
        let hz = frequency();
        say(format!("{PREFIX}start cntfrq={hz}"));
        let tz = Tz::driver().map_err(|e| format!("tzcomm: {e}"))?;
        legs(hz)?;
        round_trip_rw(hz, "rt-rw-64")?;
        round_trip_mmap(hz, &tz, true, "rt-mmap-64")?;
        secure_spin(0)?;
        round_trip_rw(hz, "rt-rw-64-nospin")?;
        round_trip_mmap(hz, &tz, false, "rt-mmap-64-nospin")?;
        secure_spin(-1)?;
        round_trip_pipe(hz)?;
        for (size, suffix) in [(4096, "4k"), (65536, "64k")] {
            transfer_port(hz, &tz, size, &format!("port-{suffix}"))?;
            transfer_pipe(hz, size, &format!("pipe-{suffix}"))?;
        }
        say(DONE);
        Ok(())
    }

    pub fn pipe_echo(size: usize) -> Result<()> {
        pin(OTHER_CPU)?;
        let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
        let mut buf = vec![0u8; size];
        loop {
            match input.read_exact(&mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
            output.write_all(&buf).and_then(|()| output.flush()).map_err(|e| e.to_string())?;
        }
    }

    pub fn pipe_sink(bytes: usize) -> Result<()> {
        pin(OTHER_CPU)?;
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; 1 << 16];
        let mut left = bytes;
        while left > 0 {
            let n = input.read(&mut buf[..left.min(1 << 16)]).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("EOF with {left} B to go"));
            }
            left -= n;
        }
        let mut output = std::io::stdout().lock();
        output.write_all(&[1]).and_then(|()| output.flush()).map_err(|e| e.to_string())
    }
}

#[cfg(target_arch = "aarch64")]
fn main() {
    tzcomm::process::default_sigpipe();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<usize>().ok());
    let result = match args.first().map(String::as_str) {
        None => guest::bench(),
        Some("pipe-echo") => number(1).ok_or_else(|| "pipe-echo SIZE".to_owned()).and_then(guest::pipe_echo),
        Some("pipe-sink") => number(1).ok_or_else(|| "pipe-sink BYTES".to_owned()).and_then(guest::pipe_sink),
        Some(other) => Err(format!("unknown mode {other:?}: tzmk-bench [pipe-echo SIZE | pipe-sink BYTES]")),
    };
    if let Err(e) = result {
        println!("{}failed: {e}", tzmk_linux_guest::bench::PREFIX);
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "aarch64"))]
fn main() {
    eprintln!("tzmk-bench runs inside tzmk's arm64 Linux guest (make -f build.mk bench-system)");
    std::process::exit(2);
}
