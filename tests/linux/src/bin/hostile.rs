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
//!
//! Exit status 0 when every expectation held.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::libc;

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
    match file.read(&mut buffer[..0]) {
        Ok(0) | Err(_) => refusals += 1,
        Ok(n) => fail(format!("a read into 0 bytes returned {n}")),
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
    // A child opens two ports and is killed holding them: the driver's release closes both.
    let others = ["rt"];
    // SAFETY: the child only opens files and waits to be killed.
    match unsafe { libc::fork() } {
        0 => {
            let held: Vec<_> =
                others.iter().filter_map(|p| OpenOptions::new().read(true).write(true).open(device(p)).ok()).collect();
            println!("tzmk-hostile: child holds {} ports", held.len());
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        child if child > 0 => {
            std::thread::sleep(Duration::from_millis(500));
            // SAFETY: our own child.
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, std::ptr::null_mut(), 0);
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
    println!("tzmk-hostile: calls: {refusals} refused, the killed child's ports were closed");
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["rings", port, millis] => rings(port, millis.parse().unwrap_or_else(|_| fail(format!("{millis} ms?")))),
        ["calls", port] => calls(port),
        ["unprivileged", port] => unprivileged(port),
        _ => fail("usage: tzmk-hostile rings PORT MILLIS | calls PORT | unprivileged PORT".into()),
    }
}
