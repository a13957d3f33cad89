//! Communication ports against the host's own transports, all in one run, as a table: one-way
//! throughput for 64 B, 4 KiB and 64 KiB messages (tzmk's `sink` port through the simulator, one
//! `Port::write` per message and one `Port::write_batch` for them all, a Unix domain socket, a
//! pipe, and a bare memcpy of the same bytes, the bound), and the round trip of a 64 B message
//! (tzmk's `echo` port, the socket, the pipe, and a bare eventfd ping-pong, the floor).
//!
//! `make -f build.mk bench-ports` (or `cargo bench -p tzctl --bench ports`).
//!
//! The secure world runs in this process's threads (the simulator), the client in the main
//! thread, so every column crosses threads the same way: writer on one core, reader on another.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use tzcomm::Tz;
use tzmk_sim::{Options, Simulator};

/// Bytes per throughput run, per message size.
fn volume(size: usize) -> u64 {
    match size {
        0..=64 => 32 << 20,
        _ => 512 << 20,
    }
}
const SIZES: [usize; 3] = [64, 4096, 65536];
const ROUND_TRIPS: u32 = 20_000;
const RUNS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// MiB/s of `run`, which moves `bytes` and returns how long it took; the median of RUNS.
fn throughput(bytes: u64, mut run: impl FnMut() -> Duration) -> f64 {
    median((0..RUNS).map(|_| bytes as f64 / run().as_secs_f64() / f64::from(1 << 20)).collect())
}

/// Microseconds per round trip, the median of RUNS.
fn round_trip(mut run: impl FnMut() -> Duration) -> f64 {
    median((0..RUNS).map(|_| run().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS)).collect())
}

/// `count` messages of `size` bytes into the sink: one `write` each, or one `write_batch`.
fn tzmk_stream(tz: &Tz, size: usize, batched: bool) -> Duration {
    let mut sink = tz.open("sink").expect("the sink port");
    let message = vec![0x5au8; size];
    let count = volume(size) / size as u64;
    let started = Instant::now();
    if batched {
        let sent = sink.write_batch(std::iter::repeat_n(&message[..], count as usize)).unwrap();
        assert_eq!(sent as u64, count);
    } else {
        for _ in 0..count {
            sink.write(&message).unwrap();
        }
    }
    sink.flush().unwrap();
    let elapsed = started.elapsed();
    let totals = sink.status().unwrap();
    assert_eq!(totals.bytes_in, count * size as u64, "the sink took every byte");
    assert_eq!(totals.messages_in, count, "the sink counted every message");
    elapsed
}

/// A writer thread writes `count` messages of `size` into `tx`; this thread reads them all.
fn host_stream<W: Write + Send + 'static, R: Read>(mut tx: W, mut rx: R, size: usize) -> Duration {
    let count = volume(size) / size as u64;
    let total = count * size as u64;
    let started = Instant::now();
    let writer = thread::spawn(move || {
        let message = vec![0x5au8; size];
        for _ in 0..count {
            tx.write_all(&message).unwrap();
        }
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut read = 0u64;
    while read < total {
        let n = rx.read(&mut buf).unwrap();
        assert!(n > 0, "end of stream after {read} of {total} bytes");
        read += n as u64;
    }
    let elapsed = started.elapsed();
    writer.join().unwrap();
    elapsed
}

const PAGE: usize = 4096;

/// The same bytes copied once, from a message buffer into an area as large as the sink's ring,
/// wrapping, laid out as the ring lays out records (each message after its
/// `tzmk_ring::RECORD_HEADER`, records 8-byte aligned): the same cache footprint and the same
/// copy as the port, without the other side. (A page-aligned destination, as this bound first
/// used, hits a slow path of glibc's memcpy on some x86 hosts at 16 KiB and up: ~2.5 GB/s against
/// ~30 GB/s one record header further on.)
fn memcpy_stream(size: usize, ring: usize) -> Duration {
    let message = vec![0x5au8; size];
    // The ring's data area starts HEADER_SIZE bytes into a page-aligned region: give the bound's
    // area the same alignment within a page, since memcpy's speed depends on it.
    let mut buffer = vec![0u8; ring + 2 * PAGE];
    let misalignment = (tzmk_ring::HEADER_SIZE + PAGE - buffer.as_ptr() as usize % PAGE) % PAGE;
    let area = &mut buffer[misalignment..misalignment + ring];
    let count = volume(size) / size as u64;
    let record = (tzmk_ring::RECORD_HEADER + size).next_multiple_of(8);
    let started = Instant::now();
    let mut at = 0;
    for _ in 0..count {
        if at + record > area.len() {
            at = 0;
        }
        let payload = at + tzmk_ring::RECORD_HEADER;
        area[payload..payload + size].copy_from_slice(std::hint::black_box(&message));
        at += record;
    }
    std::hint::black_box(&buffer);
    started.elapsed()
}

fn tzmk_round_trips(tz: &Tz) -> Duration {
    let mut echo = tz.open("echo").expect("the echo port");
    let (message, mut reply) = ([0x5au8; 64], [0u8; 64]);
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        echo.write(&message).unwrap();
        assert_eq!(echo.read(&mut reply).unwrap(), 64);
    }
    started.elapsed()
}

/// A 64 B ping-pong over a duplex byte stream: an echo thread on the far end.
fn host_round_trips(mut near: impl Read + Write, far: impl Read + Write + Send + 'static) -> Duration {
    let echo = thread::spawn(move || {
        let (mut far, mut buf) = (far, [0u8; 64]);
        for _ in 0..ROUND_TRIPS {
            far.read_exact(&mut buf).unwrap();
            far.write_all(&buf).unwrap();
        }
    });
    let (message, mut reply) = ([0x5au8; 64], [0u8; 64]);
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        near.write_all(&message).unwrap();
        near.read_exact(&mut reply).unwrap();
    }
    let elapsed = started.elapsed();
    echo.join().unwrap();
    elapsed
}

fn eventfd_round_trips() -> Duration {
    let (ping, pong) =
        (EventFd::from_flags(EfdFlags::EFD_CLOEXEC).unwrap(), EventFd::from_flags(EfdFlags::EFD_CLOEXEC).unwrap());
    thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..ROUND_TRIPS {
                ping.read().unwrap();
                pong.write(1).unwrap();
            }
        });
        let started = Instant::now();
        for _ in 0..ROUND_TRIPS {
            ping.write(1).unwrap();
            pong.read().unwrap();
        }
        started.elapsed()
    })
}

/// A pipe: its reading and its writing end.
fn pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    std::io::pipe().expect("a pipe")
}

/// Two pipes as one duplex stream: reads from one, writes to the other.
struct Duplex<R, W>(R, W);
impl<R: Read, W> Read for Duplex<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}
impl<R, W: Write> Write for Duplex<R, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run_dir = std::env::temp_dir().join(format!("tzmk-bench-ports-{}", std::process::id()));
    let options = Options { system: root.join("system.xml"), platform: None, run_dir };
    let simulator = Simulator::start(&options).expect("the simulator starts system.xml");
    let tz = Tz::sim(simulator.run_dir()).expect("attach");

    let mut rows: Vec<(&str, Vec<f64>, Option<f64>)> = Vec::new();
    let tzmk: Vec<f64> = SIZES.iter().map(|&s| throughput(volume(s), || tzmk_stream(&tz, s, false))).collect();
    rows.push(("tzmk port (simulator)", tzmk, Some(round_trip(|| tzmk_round_trips(&tz)))));
    let batched: Vec<f64> = SIZES.iter().map(|&s| throughput(volume(s), || tzmk_stream(&tz, s, true))).collect();
    rows.push(("tzmk port, write_batch (simulator)", batched, None));
    let unix: Vec<f64> = SIZES
        .iter()
        .map(|&s| {
            throughput(volume(s), || {
                let (a, b) = UnixStream::pair().unwrap();
                host_stream(a, b, s)
            })
        })
        .collect();
    let unix_rtt = round_trip(|| {
        let (near, far) = UnixStream::pair().unwrap();
        host_round_trips(near, far)
    });
    rows.push(("Unix domain socket", unix, Some(unix_rtt)));
    let pipes: Vec<f64> = SIZES
        .iter()
        .map(|&s| {
            throughput(volume(s), || {
                let (r, w) = pipe();
                host_stream(w, r, s)
            })
        })
        .collect();
    let pipe_rtt = round_trip(|| {
        let ((far_reads, near_writes), (near_reads, far_writes)) = (pipe(), pipe());
        host_round_trips(Duplex(near_reads, near_writes), Duplex(far_reads, far_writes))
    });
    rows.push(("pipe", pipes, Some(pipe_rtt)));
    let ring = tz.ports().unwrap().iter().find(|p| p.name == "sink").expect("a sink port").rx_capacity as usize;
    let memcpy: Vec<f64> = SIZES.iter().map(|&s| throughput(volume(s), || memcpy_stream(s, ring))).collect();
    rows.push(("memcpy (bound) / eventfd (floor)", memcpy, Some(round_trip(eventfd_round_trips))));
    simulator.shutdown();

    println!(
        "Throughput (MiB/s, one way, median of {RUNS}) and 64 B round trip (us, median of {RUNS} x {ROUND_TRIPS})"
    );
    println!();
    println!("| transport | 64 B | 4 KiB | 64 KiB | 64 B round trip |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, rates, rtt) in &rows {
        let rtt = rtt.map_or_else(|| "-".to_owned(), |rtt| format!("{rtt:.1}"));
        println!("| {name} | {:.0} | {:.0} | {:.0} | {rtt} |", rates[0], rates[1], rates[2]);
    }
    let (tzmk, batched, unix, memcpy) = (&rows[0], &rows[1], &rows[2], &rows[4]);
    let (tzmk_rtt, eventfd_rtt) = (tzmk.2.unwrap_or(f64::NAN), memcpy.2.unwrap_or(f64::NAN));
    println!();
    println!(
        "64 B messages per second: {:.1} M one at a time, {:.1} M batched",
        tzmk.1[0] * f64::from(1 << 20) / 64.0 / 1e6,
        batched.1[0] * f64::from(1 << 20) / 64.0 / 1e6
    );
    println!();
    println!("| goal | measured | met |");
    println!("| --- | ---: | --- |");
    let goal =
        |name: &str, value: f64, met: bool| println!("| {name} | {value:.2}x | {} |", if met { "yes" } else { "NO" });
    let r = tzmk.1[1] / unix.1[1];
    goal("4 KiB: tzmk >= 2x the Unix socket", r, r >= 2.0);
    let r = tzmk.1[2] / memcpy.1[2];
    goal("64 KiB: tzmk >= 0.5x memcpy", r, r >= 0.5);
    let r = tzmk_rtt / eventfd_rtt;
    goal("64 B round trip: tzmk <= 2x eventfd", r, r <= 2.0);
    let gib = batched.1[0] / 1024.0;
    println!("| 64 B: tzmk >= 1.5 GiB/s (write_batch) | {gib:.2} GiB/s | {} |", if gib >= 1.5 { "yes" } else { "NO" });
}
