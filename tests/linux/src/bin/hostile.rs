//! A hostile normal-world process for the full-system test (/init runs it beside honest clients):
//!
//! - `tzmk-hostile rings PORT MILLIS`: opens PORT, maps its two rings and scribbles random words
//!   over them (headers, indices, records) while kicking and reading and writing through the
//!   driver, reopening the port whenever the secure side reset it; prints how many resets it saw.
//! - `tzmk-hostile calls PORT`: throws what a broken or hostile program would at a port node:
//!   random ioctl numbers and arguments, short read buffers, oversize writes, bad mmap offsets,
//!   sizes, flags and protections, a second open, a child killed while it holds ports; each must
//!   get an error code and change nothing else. Prints `tzmk-hostile: calls: N refused` or a
//!   `FAIL` line naming the call that was not refused.
//! - `tzmk-hostile unprivileged PORT`: as uid 1000, opening the root-only port must be refused.
//! - `tzmk-hostile gic HOLD_MS`: the normal world against the real-time task (issue 13): through
//!   /dev/mem it writes every GIC distributor register of the kick (SPI 144) and of rt-task's
//!   timer (PPI 30, this CPU's bank: the secure core's is out of any other core's reach), writes
//!   GICD_CTLR and aims GICD_SGIR at the secure core; it storms `notify_secure`, takes a CPU off
//!   and on line (PSCI CPU_OFF/CPU_ON) over and over, floods the sink port, and reads and writes
//!   secure RAM. Each case holds for HOLD_MS, reads back what the write did, and prints rt-task's
//!   releases, misses and overruns during it (`rt-task: ...` counts from the rt port); a register
//!   write to a Group 0 interrupt that took effect where GIC-400 ignores it, a case that stopped
//!   rt-task's releases, or secure RAM that answered is a FAIL.
//!
//! - `tzmk-hostile update-storm STORED MILLIS`: for MILLIS, resubmits the stored manifest (the
//!   file STORED) and copies of it with one signature byte flipped (a different byte each time)
//!   on the attestation port, as fast as the answers come, while a second process as uid 1000
//!   (`storm-client PORT MILLIS`) opens, queries, echoes on and closes PORT over and over: rt-task
//!   must keep releasing and each of the second uid's operations must complete within
//!   [`STORM_CLIENT_BOUND`].
//!
//! Exit status 0 when every expectation held.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::libc;
use tzmk_linux_guest::mmio::{Mmio, GICD_BASE, KICK, RT_TIMER, SECURE_RAM};

fn fail(message: String) -> ! {
    println!("tzmk-hostile: FAIL: {message}");
    std::process::exit(1);
}

/// xorshift64: the same sequence every run, so a failure replays.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn device(port: &str) -> String {
    format!("{}/{port}", tzcomm::driver::DEVICE_DIR)
}

fn rings(port: &str, millis: u64) {
    let driver = tzcomm::driver::Driver::open().unwrap_or_else(|e| fail(format!("no driver: {e}")));
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let (mut scribbles, mut resets) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_millis(millis);
    'session: while Instant::now() < deadline {
        let file = match driver.open_port(port) {
            Ok(file) => file,
            Err(e) => fail(format!("open {port}: {e}")),
        };
        let info = file.info().unwrap_or_else(|e| fail(format!("port info: {e}")));
        // Dropped with the session: the driver keeps a port open while a mapping of it exists.
        let rx_ring =
            file.map(info.rx_mmap_offset, info.rx_mmap_size).unwrap_or_else(|e| fail(format!("mmap rx: {e}")));
        let tx_ring =
            file.map(info.tx_mmap_offset, info.tx_mmap_size).unwrap_or_else(|e| fail(format!("mmap tx: {e}")));
        let (rx, tx) = (rx_ring.base(), tx_ring.base());
        // A second open of the same port must be refused while this one holds it.
        if OpenOptions::new().read(true).write(true).open(device(port)).is_ok() {
            fail(format!("a second open of {port} succeeded"));
        }
        let transport = file.transport();
        // Its own writes must never wait on a ring it has broken: non-blocking.
        let fd = transport.doorbell().as_raw_fd();
        // SAFETY: F_SETFL on our own open file.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
        while Instant::now() < deadline {
            // Half the lies at the ring headers' words (indices and flags: what the secure side
            // reads first), half over the first records of either ring.
            let (base, size) =
                if random.next().is_multiple_of(2) { (rx, info.rx_mmap_size) } else { (tx, info.tx_mmap_size) };
            let at = if random.next().is_multiple_of(2) {
                [0usize, 64, 128, 132][(random.next() % 4) as usize]
            } else {
                (random.next() % (size.min(8192) / 4)) as usize * 4
            };
            // SAFETY: `at` is inside the shared mapping of one of this port's rings (size bytes,
            // mapped for the process's life); the secure side treats these bytes as hostile,
            // which is the point.
            unsafe { base.as_ptr().add(at).cast::<u32>().write_volatile(random.next() as u32) };
            scribbles += 1;
            // Some traffic of its own, so that the secure side reads records as well as indices.
            let _ = file.write_message(&[0xa5; 200]);
            let _ = transport.kick(info.id);
            if file.info().is_ok_and(|now| now.state != tzcomm::PortState::Open as u8) {
                // The secure side reset it: take a new session (the old file closes on drop).
                resets += 1;
                continue 'session;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    println!("tzmk-hostile: rings: {scribbles} scribbles over {port}'s rings, {resets} resets seen");
}

/// A call that must fail: its result code, or a FAIL.
fn refused(what: &str, result: isize, refusals: &mut u64) {
    if result >= 0 {
        fail(format!("{what} succeeded ({result})"));
    }
    *refusals += 1;
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn calls(port: &str) {
    use tzmk_interface::driver::{IOCTL_MAGIC, IOC_CALL, IOC_KICK, IOC_PORT_INFO, IOC_STATUS};
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut refusals = 0u64;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: a read of an empty port answers at once.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(device(port))
        .unwrap_or_else(|e| fail(format!("open {port}: {e}")));
    let fd = file.as_raw_fd();
    let mut buffer = vec![0u8; 1 << 16];
    // Random ioctl numbers: every one the driver does not define must be ENOTTY, whatever its
    // argument (a valid buffer, null, a kernel address).
    let known = [IOC_PORT_INFO, IOC_CALL, IOC_KICK, IOC_STATUS];
    for round in 0..2000 {
        let number = match round % 3 {
            0 => random.next() as u32,
            1 => (u32::from(IOCTL_MAGIC) << 8) | (random.next() as u32 & 0xffff_00ff),
            _ => {
                (random.next() as u32 & 0xc000_00ff)
                    | (u32::from(IOCTL_MAGIC) << 8)
                    | ((random.next() as u32 & 0x3fff) << 16)
            }
        };
        if known.contains(&number) {
            continue;
        }
        let argument: usize = match round % 4 {
            0 => buffer.as_mut_ptr() as usize,
            1 => 0,
            2 => 0xffff_0000_0000_0000,
            _ => random.next() as usize,
        };
        // SAFETY: an ioctl of a number the driver does not define: it must not touch `argument`;
        // the valid buffer is ours and large enough for any size the number could encode.
        let result = unsafe { libc::ioctl(fd, number as _, argument) };
        if result >= 0 || errno() != libc::ENOTTY {
            fail(format!("ioctl {number:#010x} answered {result} (errno {}), not ENOTTY", errno()));
        }
        refusals += 1;
    }
    // The driver's own ioctls with hostile arguments: null and kernel pointers fault (EFAULT), a
    // call with a reserved field or an oversize input is EINVAL.
    for number in [IOC_PORT_INFO, IOC_CALL, IOC_STATUS] {
        for argument in [0usize, 0xffff_8000_0000_0000] {
            // SAFETY: the driver copies from/to `argument` with copy_{from,to}_user, which
            // refuse these addresses.
            let result = unsafe { libc::ioctl(fd, number as _, argument) };
            refused(&format!("ioctl {number:#x} at {argument:#x}"), result as isize, &mut refusals);
        }
    }
    let mut call = [0u8; std::mem::size_of::<tzmk_interface::driver::Call>()];
    call[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    // SAFETY: `call` is a whole struct tzmk_call.
    let result = unsafe { libc::ioctl(fd, IOC_CALL as _, call.as_mut_ptr()) };
    refused("a call with input_length 2^32-1", result as isize, &mut refusals);
    // Oversize writes and short reads.
    let mut info = [0u8; std::mem::size_of::<tzmk_interface::driver::PortInfo>()];
    // SAFETY: IOC_PORT_INFO writes one struct tzmk_port_info, the size of `info`.
    if unsafe { libc::ioctl(fd, IOC_PORT_INFO as _, info.as_mut_ptr()) } != 0 {
        fail(format!("port info: errno {}", errno()));
    }
    let info = <tzmk_interface::driver::PortInfo as zerocopy::FromBytes>::read_from_bytes(&info[..])
        .unwrap_or_else(|_| fail("a port info of the wrong size".into()));
    let oversize = vec![0x5au8; info.rx_max_message as usize + 1];
    match file.write(&oversize) {
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => refusals += 1,
        other => fail(format!("a write of {} bytes answered {other:?}, not EMSGSIZE", oversize.len())),
    }
    // A read into 0 bytes is no special case (linux-side/driver/README.md): nothing waits on this
    // port (every call above was refused), so a non-blocking read answers EAGAIN, whatever the size.
    match file.read(&mut buffer[..0]) {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => refusals += 1,
        other => fail(format!("a non-blocking read into 0 bytes of an empty port answered {other:?}, not EAGAIN")),
    }
    // mmap: offsets other than the two rings', sizes beyond them, private or executable maps.
    let page = 4096usize;
    for (offset, size, protection, flags, what) in [
        (page as i64, page, libc::PROT_READ, libc::MAP_SHARED, "offset one page in"),
        (1 << 40, page, libc::PROT_READ, libc::MAP_SHARED, "offset 2^40"),
        (0, 64 << 20, libc::PROT_READ, libc::MAP_SHARED, "64 MiB at the rx ring"),
        (0, page, libc::PROT_READ | libc::PROT_EXEC, libc::MAP_SHARED, "an executable map"),
        (0, page, libc::PROT_READ, libc::MAP_PRIVATE, "a private map"),
    ] {
        // SAFETY: a new mapping at an address the kernel chooses; never used (it must fail).
        let base = unsafe { libc::mmap(std::ptr::null_mut(), size, protection, flags, fd, offset) };
        if base != libc::MAP_FAILED {
            fail(format!("mmap of {what} succeeded"));
        }
        refusals += 1;
    }
    // A child opens ports and is killed holding them: the driver's release closes them.
    let others = ["rt"];
    let (mut told, mut tell) =
        std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| fail(format!("socketpair: {e}")));
    // SAFETY: this process runs no other thread; the child only opens files, writes to its end of
    // the socket and waits to be killed.
    match unsafe { libc::fork() } {
        0 => {
            // One byte per port held: the parent kills us only once every open succeeded.
            let held: Vec<_> =
                others.iter().map_while(|p| OpenOptions::new().read(true).write(true).open(device(p)).ok()).collect();
            let _ = tell.write_all(&vec![b'h'; held.len()]);
            drop(tell);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        child if child > 0 => {
            drop(tell);
            // Until the child's end closes: it held what it opened, or it died.
            let mut said = Vec::new();
            let _ = told.read_to_end(&mut said);
            let held = said.len();
            // Held for certain: a second open of each must be refused while the child lives.
            let busy = others.iter().all(|p| {
                OpenOptions::new().read(true).write(true).open(device(p)).err().and_then(|e| e.raw_os_error())
                    == Some(libc::EBUSY)
            });
            // SAFETY: our own child.
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, std::ptr::null_mut(), 0);
            }
            if held != others.len() || !busy {
                fail(format!(
                    "the child held {held} of {} ports ({others:?}) before it was killed{}",
                    others.len(),
                    if busy { "" } else { ", and a second open was not refused with EBUSY" }
                ));
            }
            for other in others {
                match OpenOptions::new().read(true).write(true).open(device(other)) {
                    Ok(_) => {}
                    Err(e) => fail(format!("{other} is still held after its owner was killed: {e}")),
                }
            }
        }
        _ => fail("fork failed".into()),
    }
    println!(
        "tzmk-hostile: calls: {refusals} refused, the killed child's ports were closed (it held {} before it was killed)",
        others.len()
    );
}

fn unprivileged(port: &str) {
    // SAFETY: setuid on ourselves; nothing else in this process depends on the uid.
    if unsafe { libc::setgid(1000) } != 0 || unsafe { libc::setuid(1000) } != 0 {
        fail(format!("setuid(1000): {}", std::io::Error::last_os_error()));
    }
    match OpenOptions::new().read(true).write(true).open(device(port)) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            println!("tzmk-hostile: unprivileged: uid 1000 refused {port} (EACCES)")
        }
        other => fail(format!("uid 1000 opened {port}: {other:?}")),
    }
}

/// rt-task's counters from the rt port: (releases, misses, overruns), as published after
/// `after` releases (rt-task publishes at its next release when asked, and once a second; under
/// TCG on a loaded host "next" can be tens of milliseconds away, and a loaded CI machine can stall
/// the guest for seconds). `None` if nothing newer came within ten seconds: rt-task stopped.
fn rt_counts(rt: &tzcomm::Port, after: Option<u64>) -> Option<(u64, u64, u64)> {
    use tzmk_interface::port::command;
    use zerocopy::FromBytes;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let _ = rt.call(command::RT_REFRESH, &[]);
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(bytes) = rt.call(command::RT_LATENCY, &[]) {
            if let Ok(latency) = tzmk_interface::rt::RtLatency::read_from_bytes(&bytes) {
                if after.is_none_or(|releases| latency.releases > releases) {
                    return Some((latency.releases, latency.misses, latency.overruns));
                }
            }
        }
    }
    None
}

/// What each hostile case checks the secure world with: rt-task's figures (the rt port) and a
/// round trip through comm-pd (the echo port).
struct Probes {
    rt: tzcomm::Port,
    echo: tzcomm::Port,
}

impl Probes {
    /// One echo round trip, with its bytes checked: comm-pd still moves records.
    fn echo(&mut self, case: &str) -> Result<(), String> {
        let message = format!("after {case}");
        self.echo.write(message.as_bytes()).map_err(|e| format!("echo: {e}"))?;
        let mut reply = [0u8; 128];
        let n = self.echo.read(&mut reply).map_err(|e| format!("echo: comm-pd no longer answers: {e}"))?;
        if &reply[..n] != message.as_bytes() {
            return Err(format!("echo answered {:?}", String::from_utf8_lossy(&reply[..n])));
        }
        Ok(())
    }
}

/// One hostile case: `action` runs for `hold` (repeating its writes) and says what it saw; then
/// the secure world must answer: rt-task publishes new releases and the echo port answers. What
/// QEMU cannot decide (rt-task's lateness under TCG's scheduling of the secure vCPU) is printed,
/// not asserted (docs/realtime.md).
fn hostile_case(
    probes: &mut Probes,
    name: &str,
    hold: Duration,
    action: impl FnOnce(Duration) -> Result<String, String>,
) {
    let before = rt_counts(&probes.rt, None).unwrap_or_else(|| fail("the rt port answered no latency figures".into()));
    let started = Instant::now();
    let effect = action(hold).unwrap_or_else(|reason| fail(format!("{name}: {reason}")));
    let after = rt_counts(&probes.rt, Some(before.0))
        .unwrap_or_else(|| fail(format!("{name}: rt-task published nothing new for 10 s after the case: it stopped")));
    probes.echo(name).unwrap_or_else(|reason| fail(format!("{name}: then {reason}")));
    let elapsed = started.elapsed();
    let (releases, misses, overruns) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    println!(
        "tzmk-hostile: gic: {name}: {effect}; rt-task: {releases} releases, {misses} misses, {overruns} overruns in {} ms; echo answered",
        elapsed.as_millis()
    );
}

/// Repeats `write` until `hold` has passed (at least once).
fn storm(hold: Duration, mut write: impl FnMut()) -> u64 {
    let started = Instant::now();
    let mut count = 0;
    while count == 0 || started.elapsed() < hold {
        write();
        count += 1;
    }
    count
}

/// A Group 0 register write must be ignored (GIC-400, and QEMU for these registers).
fn ignored(what: &str, before: u32, after: u32) -> Result<String, String> {
    if before == after {
        Ok(format!("{what} unchanged ({after:#010x}): ignored"))
    } else {
        Err(format!("{what} was {before:#010x}, is {after:#010x} after a non-secure write to a Group 0 interrupt"))
    }
}

/// `notify_secure` through tzmk.ko (TZMK_IOC_KICK on an open port node).
struct Kicker(std::fs::File);

impl Kicker {
    fn open(port: &str) -> Kicker {
        Kicker(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(device(port))
                .unwrap_or_else(|e| fail(format!("open {port}: {e}"))),
        )
    }

    fn kick(&self) -> Result<(), String> {
        // SAFETY: TZMK_IOC_KICK takes no argument.
        let result = unsafe { libc::ioctl(self.0.as_raw_fd(), tzmk_interface::driver::IOC_KICK as _, 0usize) };
        if result < 0 {
            return Err(format!("TZMK_IOC_KICK: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

fn gic(hold_ms: u64) {
    let hold = Duration::from_millis(hold_ms);
    let tz = tzcomm::Tz::driver().unwrap_or_else(|e| fail(format!("tzmk.ko: {e}")));
    let rt = tz.open("rt").unwrap_or_else(|e| fail(format!("open rt: {e}")));
    let mut echo = tz.open("echo").unwrap_or_else(|e| fail(format!("open echo: {e}")));
    echo.set_timeout(Some(Duration::from_secs(10)));
    let mut probes = Probes { rt, echo };
    let kicker = Kicker::open("echo-small");
    let gicd = Mmio::map(GICD_BASE).unwrap_or_else(|e| fail(format!("/dev/mem at {GICD_BASE:#x}: {e}")));
    let (word, bit) = (4 * (KICK / 32), 1u32 << (KICK % 32));
    // Bit registers of the kick: each write must leave the register as it was.
    for (name, set, clear) in [
        ("kick enable (GICD_ICENABLER)", 0x180, 0x100),
        ("kick pending (GICD_ISPENDR/ICPENDR)", 0x200, 0x280),
        ("kick active (GICD_ISACTIVER/ICACTIVER)", 0x300, 0x380),
        ("kick group (GICD_IGROUPR)", 0x080, 0x080),
    ] {
        hostile_case(&mut probes, name, hold, |hold| {
            let before = (gicd.read(set + word), gicd.read(clear + word));
            let writes = storm(hold, || {
                gicd.write(set + word, bit);
                gicd.write(clear + word, bit);
            });
            let after = (gicd.read(set + word), gicd.read(clear + word));
            ignored(&format!("{writes} x 2 writes: bit {}", KICK % 32), before.0 & bit, after.0 & bit)
                .and_then(|said| ignored("and its pair", before.1 & bit, after.1 & bit).map(|_| said))
        });
    }
    hostile_case(&mut probes, "kick priority (GICD_IPRIORITYR)", hold, |hold| {
        let before = gicd.read_byte(0x400 + KICK);
        let writes = storm(hold, || gicd.write_byte(0x400 + KICK, 0xf0));
        ignored(&format!("{writes} writes of 0xf0"), before.into(), gicd.read_byte(0x400 + KICK).into())
    });
    hostile_case(&mut probes, "kick configuration (GICD_ICFGR)", hold, |hold| {
        let offset = 0xc00 + 4 * (KICK / 16);
        let field = 3u32 << (2 * (KICK % 16));
        let before = gicd.read(offset);
        let writes = storm(hold, || gicd.write(offset, before ^ field));
        ignored(&format!("{writes} writes"), before & field, gicd.read(offset) & field)
    });
    // QEMU (unlike GIC-400) lets this one through: the monitor re-aims the kick at the secure
    // core on every notify_secure, before it pends it (docs/qemu-and-sel4-facts.md).
    hostile_case(&mut probes, "kick target (GICD_ITARGETSR)", hold, |hold| {
        let before = gicd.read_byte(0x800 + KICK);
        let writes = storm(hold, || gicd.write_byte(0x800 + KICK, 0x02));
        let hostile = gicd.read_byte(0x800 + KICK);
        kicker.kick()?;
        let after = gicd.read_byte(0x800 + KICK);
        if after != before {
            return Err(format!("after notify_secure the kick targets {after:#04x}, not {before:#04x}"));
        }
        Ok(format!(
            "{writes} writes of 0x02 read back {hostile:#04x} (QEMU deviation: GIC-400 ignores them); the monitor's \
             notify_secure re-aimed it at {after:#04x}"
        ))
    });
    // rt-task's timer is a PPI: its registers are banked per CPU, so a Linux core reaches only
    // its own copy. This CPU's copy changes; the secure core's cannot be named from here.
    hostile_case(&mut probes, "rt timer PPI 30 (this CPU's bank)", hold, |hold| {
        let priority = gicd.read_byte(0x400 + RT_TIMER);
        let enabled = gicd.read(0x100) & (1 << RT_TIMER);
        let writes = storm(hold, || {
            gicd.write(0x180, 1 << RT_TIMER);
            gicd.write(0x200, 1 << RT_TIMER);
            gicd.write(0x280, 1 << RT_TIMER);
            gicd.write_byte(0x400 + RT_TIMER, 0xf0);
        });
        let seen = gicd.read_byte(0x400 + RT_TIMER);
        gicd.write_byte(0x400 + RT_TIMER, priority);
        if enabled != 0 {
            gicd.write(0x100, enabled);
        }
        Ok(format!("{writes} x 4 writes; this CPU's PPI 30 priority read {seen:#04x} (banked: Linux's own copy)"))
    });
    hostile_case(&mut probes, "GICD_CTLR", hold, |hold| {
        let before = gicd.read(0);
        // A non-secure write reaches EnableGrp1 alone: Linux switches off its own interrupts
        // (busy-wait meanwhile: no timer interrupt comes), never the secure world's Group 0.
        let writes = storm(hold, || gicd.write(0, 0));
        let during = gicd.read(0);
        gicd.write(0, before);
        Ok(format!("{writes} writes of 0: read {during:#x} (Linux's Group 1 off), restored {before:#x}"))
    });
    // QEMU (unlike GIC-400) delivers these to the secure core: a non-secure write to GICD_SGIR
    // may only raise Group 1 SGIs, and seL4's are Group 0. seL4's debug kernel logs each one it
    // takes ("Received disabled IRQ: N") on the secure console at 115200 baud, so the case sends a
    // trickle (one every 10 ms, every id, NSATT 0 and 1) to show the effect without drowning it.
    hostile_case(&mut probes, "GICD_SGIR at the secure core", hold, |hold| {
        let mut id = 0u32;
        let started = Instant::now();
        while id == 0 || started.elapsed() < hold {
            // Target list: CPU interface 0 (the secure core).
            gicd.write(0xf00, (1 << 16) | ((id & 16) << 11) | (id & 15));
            id += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(format!("{id} SGIs (every id, NSATT 0 and 1): see seL4's console for the ones it took"))
    });
    hostile_case(&mut probes, "notify_secure storm", hold, |hold| {
        let mut refused = 0u64;
        let calls = storm(hold, || {
            if kicker.kick().is_err() {
                refused += 1;
            }
        });
        if refused > 0 {
            return Err(format!("{refused} of {calls} notify_secure calls failed"));
        }
        Ok(format!("{calls} notify_secure calls"))
    });
    let hotplug = format!("PSCI CPU_OFF/CPU_ON storm (Linux's cpu {})", tzmk_linux_guest::HOTPLUG_CPU);
    hostile_case(&mut probes, &hotplug, hold, |hold| {
        let path = format!("/sys/devices/system/cpu/cpu{}/online", tzmk_linux_guest::HOTPLUG_CPU);
        let path = path.as_str();
        let mut cycles = 0u64;
        let started = Instant::now();
        while cycles == 0 || started.elapsed() < hold {
            for value in ["0", "1"] {
                std::fs::write(path, value).map_err(|e| format!("{path} <- {value}: {e}"))?;
            }
            cycles += 1;
        }
        Ok(format!("{cycles} off/on cycles"))
    });
    hostile_case(&mut probes, "port flood (sink)", hold, |hold| {
        let mut sink = tz.open("sink").map_err(|e| format!("open sink: {e}"))?;
        let message = vec![0x5au8; 4096];
        let mut sent = 0u64;
        let started = Instant::now();
        while started.elapsed() < hold {
            sink.write(&message).map_err(|e| format!("sink: {e}"))?;
            sent += 1;
        }
        Ok(format!("{sent} messages of 4096 B"))
    });
    hostile_case(&mut probes, "secure RAM read and write", hold, |_| {
        let mut said = Vec::new();
        for write in [false, true] {
            // In a child: the access must end it with SIGBUS (an external abort), and nothing
            // of secure RAM may come back.
            // SAFETY: the child only maps, touches one word, prints and leaves (`_exit`); it
            // takes no lock another thread could hold (this process runs no other threads).
            match unsafe { libc::fork() } {
                0 => {
                    let code = match Mmio::map(SECURE_RAM) {
                        Err(_) => 3,
                        Ok(ram) => {
                            if write {
                                ram.write(0, 0xdead_beef);
                            }
                            let value = ram.read(0);
                            println!("tzmk-hostile: secure RAM answered {value:#x}");
                            4
                        }
                    };
                    // SAFETY: the child leaves at once.
                    unsafe { libc::_exit(code) }
                }
                -1 => return Err(format!("fork: {}", std::io::Error::last_os_error())),
                child => {
                    let mut status = 0;
                    // SAFETY: waiting for our own child.
                    unsafe { libc::waitpid(child, &mut status, 0) };
                    let what = if write { "write" } else { "read" };
                    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS {
                        said.push(format!("{what}: SIGBUS"));
                    } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3 {
                        said.push(format!("{what}: /dev/mem refused the mapping"));
                    } else {
                        return Err(format!("secure RAM {what}: the child ended with status {status:#x}"));
                    }
                }
            }
        }
        Ok(said.join(", "))
    });
    println!("tzmk-hostile: gic: every case held; the echo port answered after each");
}

/// The most one operation of the second uid (open, status, an echo, close) may take while the
/// storm runs: an update request costs the secure side at most one Ed25519 verification at a
/// time (in attestation-pd, below rt-task's priority, while comm-pd waits for it), far less
/// than this on QEMU; the bound leaves room for a loaded CI machine's stalls.
const STORM_CLIENT_BOUND: Duration = Duration::from_secs(3);

fn update_storm(stored_path: &str, millis: u64) {
    use tzmk_interface::attestation::{OK, OP_UPDATE};
    use tzmk_interface::port::AttestationReply;
    use tzmk_interface::update::{UpdateOutcome, UpdateReply, UpdateRequest, MANIFEST_BYTES};
    use zerocopy::{FromBytes, IntoBytes};
    const CLIENT_PORT: &str = "echo-small";
    let stored = std::fs::read(stored_path).unwrap_or_else(|e| fail(format!("{stored_path}: {e}")));
    if stored.len() != MANIFEST_BYTES {
        fail(format!("{stored_path}: {} bytes, not a manifest", stored.len()));
    }
    let tz = tzcomm::Tz::driver().unwrap_or_else(|e| fail(format!("tzmk.ko: {e}")));
    let rt = tz.open("rt").unwrap_or_else(|e| fail(format!("open rt: {e}")));
    let before = rt_counts(&rt, None).unwrap_or_else(|| fail("the rt port answered no latency figures".into()));
    let node = device(CLIENT_PORT);
    std::os::unix::fs::chown(&node, Some(1000), Some(1000)).unwrap_or_else(|e| fail(format!("chown {node}: {e}")));
    let client = std::process::Command::new(std::env::current_exe().unwrap_or_else(|e| fail(format!("{e}"))))
        .args(["storm-client", CLIENT_PORT, &millis.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(format!("storm-client: {e}")));
    let mut port = tz.open("attestation").unwrap_or_else(|e| fail(format!("open attestation: {e}")));
    port.set_timeout(Some(Duration::from_secs(30)));
    let mut reply = vec![0u8; port.max_message()];
    let (mut same, mut refused, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let started = Instant::now();
    let mut k = 0usize;
    while started.elapsed() < Duration::from_millis(millis) {
        let mut request =
            UpdateRequest { operation: OP_UPDATE, length: MANIFEST_BYTES as u64, manifest: [0; MANIFEST_BYTES] };
        request.manifest.copy_from_slice(&stored);
        let flipped = !k.is_multiple_of(2);
        if flipped {
            // A different signature byte (and bit) each time: never the last refused one.
            let byte = MANIFEST_BYTES - 64 + (k / 2) % 64;
            request.manifest[byte] ^= 1 << ((k / 128) % 8);
        }
        k += 1;
        let call = Instant::now();
        port.write(request.as_bytes()).unwrap_or_else(|e| fail(format!("update-storm: write: {e}")));
        let n = port.read(&mut reply).unwrap_or_else(|e| fail(format!("update-storm: read: {e}")));
        slowest = slowest.max(call.elapsed());
        let answer = AttestationReply::read_from_bytes(&reply[..n])
            .unwrap_or_else(|_| fail(format!("update-storm: {n} bytes are no attestation reply")));
        if answer.label != OK {
            fail(format!("update-storm: the attestation port refused the request (label {})", answer.label));
        }
        let outcome = UpdateOutcome::from_reply(&UpdateReply::from_words([answer.words[0], answer.words[1]]));
        match (flipped, outcome) {
            (false, outcome) if outcome.is_accepted() => same += 1,
            (true, UpdateOutcome::NotSigned { .. }) => refused += 1,
            (_, outcome) => fail(format!("update-storm: request {k} (flipped: {flipped}) answered {outcome}")),
        }
    }
    let output = client.wait_with_output().unwrap_or_else(|e| fail(format!("storm-client: {e}")));
    let said = String::from_utf8_lossy(&output.stdout);
    let _ = std::os::unix::fs::chown(&node, Some(0), Some(0));
    print!("{said}");
    if !output.status.success() {
        fail(format!("update-storm: the second uid's client failed: {}", said.lines().last().unwrap_or("no output")));
    }
    let after = rt_counts(&rt, Some(before.0)).unwrap_or_else(|| {
        fail("update-storm: rt-task published nothing new for 10 s after the storm: it stopped".into())
    });
    println!(
        "tzmk-hostile: update-storm: {} requests in {} ms ({same} stored manifest accepted again, {refused} flipped \
         signatures refused), slowest answer {} ms; rt-task: {} releases, {} misses, {} overruns",
        same + refused,
        started.elapsed().as_millis(),
        slowest.as_millis(),
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2
    );
}

/// The storm's second uid: open, status, one echo and close on `port` over and over for `millis`;
/// fails when one operation takes longer than [`STORM_CLIENT_BOUND`].
fn storm_client(port: &str, millis: u64) {
    // SAFETY: setgid/setuid on ourselves; nothing else in this process depends on the uid.
    if unsafe { libc::setgid(1000) } != 0 || unsafe { libc::setuid(1000) } != 0 {
        fail(format!("setuid(1000): {}", std::io::Error::last_os_error()));
    }
    let tz = tzcomm::Tz::driver().unwrap_or_else(|e| fail(format!("uid 1000: tzmk.ko: {e}")));
    let (mut rounds, mut slowest) = (0u64, (Duration::ZERO, ""));
    let mut check = |what: &'static str, at: Instant, result: Result<(), String>| {
        let took = at.elapsed();
        if let Err(e) = result {
            fail(format!("storm-client: uid 1000: {what} {port}: {e}"));
        }
        if took > slowest.0 {
            slowest = (took, what);
        }
        if took > STORM_CLIENT_BOUND {
            fail(format!("storm-client: uid 1000: {what} {port} took {} ms, above the bound", took.as_millis()));
        }
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(millis) {
        let at = Instant::now();
        let mut echo = tz.open(port).unwrap_or_else(|e| fail(format!("storm-client: uid 1000: open {port}: {e}")));
        check("open", at, Ok(()));
        echo.set_timeout(Some(STORM_CLIENT_BOUND * 2));
        let at = Instant::now();
        check("status", at, echo.status().map(|_| ()).map_err(|e| e.to_string()));
        let at = Instant::now();
        let mut buf = [0u8; 64];
        let echoed =
            echo.write(b"the second uid").and_then(|()| echo.read(&mut buf)).map_err(|e| e.to_string()).and_then(|n| {
                (&buf[..n] == b"the second uid").then_some(()).ok_or_else(|| format!("echo answered {:?}", &buf[..n]))
            });
        check("echo", at, echoed);
        let at = Instant::now();
        check("close", at, echo.close().map_err(|e| e.to_string()));
        rounds += 1;
    }
    println!(
        "tzmk-hostile: update-storm: uid 1000: {rounds} rounds of open, status, echo and close on {port}; slowest: {} {} ms (bound {} ms)",
        slowest.1,
        slowest.0.as_millis(),
        STORM_CLIENT_BOUND.as_millis()
    );
}

/// The state letter of process `pid` (`R`, `S`, `D`, ...) from /proc/PID/stat, if it still runs.
fn process_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ...`: the command may hold spaces and parentheses; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// One echo round trip on `port` through tzcomm: the port opens and the secure side answers.
fn echo_once(tz: &tzcomm::Tz, port: &str, what: &[u8]) -> Result<(), String> {
    let mut echo = tz.open(port).map_err(|e| format!("open {port}: {e}"))?;
    echo.set_timeout(Some(Duration::from_secs(10)));
    echo.write(what).map_err(|e| format!("{port}: {e}"))?;
    let mut reply = [0u8; 256];
    let n = echo.read(&mut reply).map_err(|e| format!("{port}: no answer: {e}"))?;
    if &reply[..n] != what {
        return Err(format!("{port} answered {:?}", &reply[..n]));
    }
    Ok(())
}

/// Counts of one stress round's calls that the driver answered and refused.
#[derive(Default)]
struct Tally {
    done: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

impl Tally {
    fn count(&self, ok: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if ok { &self.done } else { &self.refused }.fetch_add(1, Relaxed);
    }

    fn said(&self, what: &str) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        format!(
            "{what} {} ({} refused)",
            self.done.load(Relaxed) + self.refused.load(Relaxed),
            self.refused.load(Relaxed)
        )
    }
}

/// `tzmk-hostile stress PORT OTHER MILLIS` (issue 20, "driver stress"): in rounds, PORT is opened
/// and its tx ring mapped; a forked child holding the same file confirms it holds the port (its
/// PORT_INFO answers) and is killed mid-round, in the middle of its own control calls, while two
/// threads scribble over the mapped tx ring and others read, poll, write and make control calls
/// on the port. The hung-task detector is set to [`HUNG_TASK_SECS`] meanwhile. Afterwards the
/// kernel's log has no oops, WARN, BUG or hung task, PORT reopens and echoes, OTHER echoes.
fn stress(port: &str, other: &str, millis: u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tzmk_interface::driver::{IOC_CALL, IOC_PORT_INFO, IOC_STATUS};
    use tzmk_linux_guest::HUNG_TASK_SECS;
    const ROUNDS: u64 = 3;
    let hung = "/proc/sys/kernel/hung_task_timeout_secs";
    let saved = std::fs::read_to_string(hung)
        .unwrap_or_else(|e| fail(format!("{hung}: {e} (a kernel without the hung-task detector?)")));
    std::fs::write(hung, HUNG_TASK_SECS.to_string()).unwrap_or_else(|e| fail(format!("{hung}: {e}")));
    let driver = tzcomm::driver::Driver::open().unwrap_or_else(|e| fail(format!("no driver: {e}")));
    let round = Duration::from_millis(millis / ROUNDS);
    let (scribbles, reads, polls, calls, writes) =
        (Tally::default(), Tally::default(), Tally::default(), Tally::default(), Tally::default());
    let mut killed_in = Vec::new();
    for number in 0..ROUNDS {
        let file = driver.open_port(port).unwrap_or_else(|e| fail(format!("round {number}: open {port}: {e}")));
        let info = file.info().unwrap_or_else(|e| fail(format!("port info: {e}")));
        let tx_ring =
            file.map(info.tx_mmap_offset, info.tx_mmap_size).unwrap_or_else(|e| fail(format!("mmap tx: {e}")));
        let (tx, tx_size) = (tx_ring.base(), info.tx_mmap_size as usize);
        let transport = file.transport();
        let fd = transport.doorbell().as_raw_fd();
        // Nothing may wait for a message a broken ring never brings: non-blocking.
        // SAFETY: F_SETFL on our own open file.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
        let (mut told, mut tell) =
            std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| fail(format!("socketpair: {e}")));
        // SAFETY: no other thread runs in this process now (the last round's are joined); the
        // child makes ioctls on the file it inherited, writes one byte and loops until killed.
        let child = match unsafe { libc::fork() } {
            0 => {
                let mut info = [0u8; std::mem::size_of::<tzmk_interface::driver::PortInfo>()];
                // SAFETY: IOC_PORT_INFO writes one struct tzmk_port_info, the size of `info`.
                let holds = unsafe { libc::ioctl(fd, IOC_PORT_INFO as _, info.as_mut_ptr()) } == 0;
                let _ = tell.write_all(if holds { b"h" } else { b"n" });
                let mut status = [0u8; std::mem::size_of::<tzmk_interface::port::PortStatus>()];
                let mut call = [0u8; std::mem::size_of::<tzmk_interface::driver::Call>()];
                call[..4].copy_from_slice(&tzmk_interface::port::command::ECHO_TOTALS.to_ne_bytes());
                loop {
                    // SAFETY: whole structs of the sizes the ioctls read and write.
                    unsafe {
                        libc::ioctl(fd, IOC_STATUS as _, status.as_mut_ptr());
                        libc::ioctl(fd, IOC_CALL as _, call.as_mut_ptr());
                    }
                }
            }
            -1 => fail(format!("fork: {}", std::io::Error::last_os_error())),
            child => child,
        };
        drop(tell);
        let mut said = [0u8; 1];
        if told.read_exact(&mut said).is_err() || said != *b"h" {
            // SAFETY: our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
            fail(format!("round {number}: the forked child does not hold {port} (PORT_INFO failed in it)"));
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for seed in [0x2545_f491_4f6c_dd1d_u64, 0x9e37_79b9_7f4a_7c15] {
                let (stop, scribbles) = (&stop, &scribbles);
                let base = tx.as_ptr() as usize;
                scope.spawn(move || {
                    let mut random = Random(seed ^ number);
                    while !stop.load(Ordering::Relaxed) {
                        // Half at the header's words (indices and flags), half over the records.
                        let at = if random.next().is_multiple_of(2) {
                            [0usize, 64, 128, 132][(random.next() % 4) as usize]
                        } else {
                            (random.next() % (tx_size.min(8192) / 4) as u64) as usize * 4
                        };
                        // SAFETY: `at` is inside the shared mapping of the tx ring (tx_size bytes,
                        // mapped until the scope ends); the driver and the secure side treat its
                        // bytes as hostile, which is the point.
                        unsafe { (base as *mut u8).add(at).cast::<u32>().write_volatile(random.next() as u32) };
                        scribbles.count(true);
                    }
                });
            }
            scope.spawn(|| {
                let mut buffer = vec![0u8; 1 << 16];
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: a read into our own buffer of its length.
                    let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
                    reads.count(n >= 0);
                }
            });
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let mut poll = libc::pollfd { fd, events: libc::POLLIN | libc::POLLOUT, revents: 0 };
                    // SAFETY: one pollfd of ours.
                    let n = unsafe { libc::poll(&mut poll, 1, 10) };
                    polls.count(n >= 0);
                }
            });
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    calls.count(file.call(tzmk_interface::port::command::ECHO_TOTALS, &[]).is_ok());
                    calls.count(file.status().is_ok());
                }
            });
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    writes.count(file.write_message(&[0x5a; 200]).is_ok());
                }
            });
            std::thread::sleep(round / 2);
            let state = process_state(child).unwrap_or('?');
            // SAFETY: our own child.
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, std::ptr::null_mut(), 0);
            }
            killed_in.push(state);
            std::thread::sleep(round / 2);
            stop.store(true, Ordering::Relaxed);
        });
        drop(tx_ring);
        drop(transport);
        drop(file);
    }
    std::fs::write(hung, saved.trim()).unwrap_or_else(|e| fail(format!("{hung}: {e}")));
    let tz = tzcomm::Tz::driver().unwrap_or_else(|e| fail(format!("tzmk.ko: {e}")));
    for name in [port, other] {
        echo_once(&tz, name, b"after the driver stress").unwrap_or_else(|e| fail(format!("after the stress: {e}")));
    }
    let trouble = tzmk_linux_guest::kernel_trouble(&tzmk_linux_guest::kernel_log().unwrap_or_else(|e| fail(e)));
    if !trouble.is_empty() {
        fail(format!("the kernel log after the driver stress: {trouble:?}"));
    }
    let states: String = killed_in.iter().collect();
    println!(
        "tzmk-hostile: stress: {port}: {ROUNDS} rounds: {}, {}, {}, {}, {}; a child holding the file killed in each \
         (in state {states}); hung-task timeout {HUNG_TASK_SECS} s",
        scribbles.said("scribbles"),
        reads.said("reads"),
        polls.said("polls"),
        calls.said("control calls"),
        writes.said("writes"),
    );
    println!("tzmk-hostile: stress: no oops, WARN, BUG or hung task; {port} reopened and echoes, {other} echoes");
}

/// `tzmk-hostile flood PORT OTHER MILLIS` (issue 20, "the driver"): four threads flood PORT with
/// control calls and status requests while another process opens OTHER, asks its status and
/// closes it, over and over. The flood lasts MILLIS and then until that process has reported: it
/// must complete its calls while the flood runs (one file cannot starve the others). Prints how
/// long its calls took and how often it was seen in D state; no bound on either is asserted.
fn flood(port: &str, other: &str, millis: u64) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (mut parent_end, mut child_end) =
        std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| fail(format!("socketpair: {e}")));
    // SAFETY: no other thread runs in this process yet; the child opens, calls and closes a port
    // node and talks through its socket, then leaves with `_exit`.
    let child = match unsafe { libc::fork() } {
        0 => {
            drop(parent_end);
            let report = flood_other(other, &mut child_end);
            let _ = child_end.write_all(report.as_bytes());
            // SAFETY: the child leaves at once.
            unsafe { libc::_exit(0) }
        }
        -1 => fail(format!("fork: {}", std::io::Error::last_os_error())),
        child => child,
    };
    drop(child_end);
    let file = tzcomm::driver::Driver::open()
        .and_then(|driver| driver.open_port(port).map_err(std::io::Error::other))
        .unwrap_or_else(|e| fail(format!("open {port}: {e}")));
    let (stop, floods) = (AtomicBool::new(false), AtomicU64::new(0));
    let (mut samples, mut blocked) = (0u64, 0u64);
    let report = std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _ = file.call(tzmk_interface::port::command::ECHO_TOTALS, &[]);
                    let _ = file.status();
                    floods.fetch_add(2, Ordering::Relaxed);
                }
            });
        }
        // The flood is on before the other process starts.
        while floods.load(Ordering::Relaxed) < 100 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = parent_end.write_all(b"g");
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(millis) {
            samples += 1;
            blocked += u64::from(process_state(child) == Some('D'));
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = parent_end.write_all(b"s");
        // Still flooding: the other process's calls in flight complete under the flood.
        let mut report = String::new();
        let _ = parent_end.read_to_string(&mut report);
        stop.store(true, Ordering::Relaxed);
        report
    });
    // SAFETY: our own child, which has written its report and left.
    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    match report.split_once(' ') {
        Some(("ok", figures)) => println!(
            "tzmk-hostile: flood: {} calls and status requests on {port} by 4 threads; meanwhile another process's \
             {figures}; seen in D state in {blocked} of {samples} samples",
            floods.load(Ordering::Relaxed)
        ),
        _ => fail(format!("flood: the other process on {other}: {report:?}")),
    }
}

/// The other process of [`flood`]: waits for `g`, then opens `other`, asks its status and closes
/// it until `s` comes; `ok CYCLES ...` with the times, or what failed.
fn flood_other(other: &str, parent: &mut std::os::unix::net::UnixStream) -> String {
    let mut byte = [0u8; 1];
    if parent.read_exact(&mut byte).is_err() || byte != *b"g" {
        return "no go from the flooding process".into();
    }
    if let Err(e) = parent.set_nonblocking(true) {
        return format!("set_nonblocking: {e}");
    }
    let (mut cycles, mut slowest, mut total) = (0u64, Duration::ZERO, Duration::ZERO);
    loop {
        let started = Instant::now();
        let file = match OpenOptions::new().read(true).write(true).open(device(other)) {
            Ok(file) => file,
            Err(e) => return format!("open {other} in cycle {cycles}: {e}"),
        };
        let mut status = [0u8; std::mem::size_of::<tzmk_interface::port::PortStatus>()];
        // SAFETY: IOC_STATUS writes one struct tzmk_port_status, the size of `status`.
        if unsafe { libc::ioctl(file.as_raw_fd(), tzmk_interface::driver::IOC_STATUS as _, status.as_mut_ptr()) } != 0 {
            return format!("TZMK_IOC_STATUS on {other} in cycle {cycles}: {}", std::io::Error::last_os_error());
        }
        drop(file);
        let took = started.elapsed();
        (cycles, slowest, total) = (cycles + 1, slowest.max(took), total + took);
        match parent.read(&mut byte) {
            Ok(1) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => return format!("the flooding process went away ({other:?})"),
        }
    }
    format!(
        "ok {cycles} open/status/close cycles on {other} completed, the slowest in {} ms, {} ms on average",
        slowest.as_millis(),
        (total / cycles as u32).as_millis()
    )
}

fn main() {
    tzcomm::process::default_sigpipe();
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["rings", port, millis] => rings(port, millis.parse().unwrap_or_else(|_| fail(format!("{millis} ms?")))),
        ["calls", port] => calls(port),
        ["unprivileged", port] => unprivileged(port),
        ["gic", millis] => gic(millis.parse().unwrap_or_else(|_| fail(format!("{millis} ms?")))),
        ["stress", port, other, millis] => {
            stress(port, other, millis.parse().unwrap_or_else(|_| fail(format!("{millis} ms?"))))
        }
        ["flood", port, other, millis] => {
            flood(port, other, millis.parse().unwrap_or_else(|_| fail(format!("{millis} ms?"))))
        }
        ["update-storm", stored, millis] => {
            update_storm(stored, millis.parse().unwrap_or_else(|_| fail(format!("{millis} ms?"))))
        }
        ["storm-client", port, millis] => {
            storm_client(port, millis.parse().unwrap_or_else(|_| fail(format!("{millis} ms?"))))
        }
        _ => fail(
            "usage: tzmk-hostile rings PORT MILLIS | calls PORT | unprivileged PORT | gic MILLIS | \
             stress PORT OTHER MILLIS | flood PORT OTHER MILLIS | \
             update-storm STORED MILLIS | storm-client PORT MILLIS"
                .into(),
        ),
    }
}
