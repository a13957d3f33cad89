//! The simulator's cost against the host's floor: notification and protected-procedure round
//! trips between two simulated PDs, next to a bare eventfd ping-pong and a bare futex
//! (Mutex + Condvar) ping-pong between two threads, all in one run. Prints a table.
//!
//! `make -f build.mk bench-sim` (or `cargo bench -p tzmk-sim --bench round_trips`).

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use microkit::sim::{ChannelConfig, IrqConfig, Kernel, Monitor, PdConfig};
use microkit::{Channel, ChannelSet, Handler, MessageInfo, SmcContext};
use nix::sys::eventfd::{EfdFlags, EventFd};

const ROUND_TRIPS: u32 = 20_000;
const RUNS: usize = 7;
const START_IRQ: u64 = 900;

struct NoMonitor;
impl Monitor for NoMonitor {
    fn smc(&self, _: &str, _: &SmcContext) -> SmcContext {
        [u64::MAX; 8]
    }
}

fn config(name: &str, priority: u8) -> PdConfig {
    PdConfig::new(name, priority)
}

/// Two PDs joined by channel 0 at both ends (`pp` from the first to the second when asked);
/// the first also takes IRQ `START_IRQ` on channel 1, which starts a measurement.
fn pair(pp: bool) -> Arc<Kernel> {
    let mut first = config("first", 100);
    let second = config("second", if pp { 200 } else { 100 });
    first.channels.push(ChannelConfig { id: 0, peer: 1, peer_id: 0, notify: true, pp });
    first.irqs.push(IrqConfig { id: 1, irq: START_IRQ });
    let mut second = second;
    second.channels.push(ChannelConfig { id: 0, peer: 0, peer_id: 0, notify: true, pp: false });
    let (events, _ignored) = mpsc::channel();
    std::mem::forget(_ignored);
    Kernel::new(vec![first, second], NoMonitor, events).expect("valid pair")
}

const PEER: Channel = Channel::new(0);
const START: Channel = Channel::new(1);

struct Pinger {
    remaining: u32,
    started: Instant,
    done: Sender<Duration>,
}

impl Handler for Pinger {
    type Error = std::convert::Infallible;
    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        if channels.contains(START) {
            START.irq_ack().expect("start IRQ");
            self.remaining = ROUND_TRIPS;
            self.started = Instant::now();
            PEER.notify();
        }
        if channels.contains(PEER) {
            self.remaining -= 1;
            if self.remaining == 0 {
                self.done.send(self.started.elapsed() / ROUND_TRIPS).unwrap();
            } else {
                PEER.notify();
            }
        }
        Ok(())
    }
}

struct Ponger;
impl Handler for Ponger {
    type Error = std::convert::Infallible;
    fn notified(&mut self, _: ChannelSet) -> Result<(), Self::Error> {
        PEER.notify();
        Ok(())
    }
    fn protected(&mut self, _: Channel, _: MessageInfo) -> Result<MessageInfo, Self::Error> {
        microkit::set_mr(0, microkit::get_mr(0) + 1);
        Ok(MessageInfo::new(0, 1))
    }
}

struct Caller {
    done: Sender<Duration>,
}

impl Handler for Caller {
    type Error = std::convert::Infallible;
    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        if channels.contains(START) {
            START.irq_ack().expect("start IRQ");
            let started = Instant::now();
            for i in 0..u64::from(ROUND_TRIPS) {
                microkit::set_mr(0, i);
                let reply = PEER.pp_call(MessageInfo::new(1, 1));
                assert!(reply.count() == 1 && microkit::get_mr(0) == i + 1);
            }
            self.done.send(started.elapsed() / ROUND_TRIPS).unwrap();
        }
        Ok(())
    }
}

fn measure(kernel: &Kernel, done: &mpsc::Receiver<Duration>) -> Vec<Duration> {
    thread::sleep(Duration::from_millis(50));
    (0..RUNS)
        .map(|_| {
            kernel.raise_irq(START_IRQ).unwrap();
            done.recv_timeout(Duration::from_secs(60)).expect("measurement finished")
        })
        .collect()
}

fn notification_round_trip() -> Vec<Duration> {
    let kernel = pair(false);
    let (done, results) = mpsc::channel();
    kernel.start(1, || Ponger);
    kernel.start(0, move || Pinger { remaining: 0, started: Instant::now(), done });
    let times = measure(&kernel, &results);
    kernel.shutdown();
    times
}

fn pp_round_trip() -> Vec<Duration> {
    let kernel = pair(true);
    let (done, results) = mpsc::channel();
    kernel.start(1, || Ponger);
    kernel.start(0, move || Caller { done });
    let times = measure(&kernel, &results);
    kernel.shutdown();
    times
}

fn eventfd_ping_pong() -> Vec<Duration> {
    (0..RUNS)
        .map(|_| {
            let ping = Arc::new(EventFd::from_flags(EfdFlags::empty()).unwrap());
            let pong = Arc::new(EventFd::from_flags(EfdFlags::empty()).unwrap());
            let (ping2, pong2) = (ping.clone(), pong.clone());
            let echo = thread::spawn(move || {
                for _ in 0..ROUND_TRIPS {
                    ping2.read().unwrap();
                    pong2.write(1).unwrap();
                }
            });
            let started = Instant::now();
            for _ in 0..ROUND_TRIPS {
                ping.write(1).unwrap();
                pong.read().unwrap();
            }
            let per = started.elapsed() / ROUND_TRIPS;
            echo.join().unwrap();
            per
        })
        .collect()
}

fn futex_ping_pong() -> Vec<Duration> {
    (0..RUNS)
        .map(|_| {
            // The turn: even is the pinger's, odd the echo's.
            let state = Arc::new((Mutex::new(0u64), Condvar::new()));
            let echo_state = state.clone();
            let echo = thread::spawn(move || {
                let (turn, changed) = &*echo_state;
                for round in 0..u64::from(ROUND_TRIPS) {
                    let mut t = changed.wait_while(turn.lock().unwrap(), |t| *t != 2 * round + 1).unwrap();
                    *t += 1;
                    changed.notify_one();
                }
            });
            let (turn, changed) = &*state;
            let started = Instant::now();
            for round in 0..u64::from(ROUND_TRIPS) {
                {
                    let mut t = turn.lock().unwrap();
                    *t += 1;
                    changed.notify_one();
                }
                drop(changed.wait_while(turn.lock().unwrap(), |t| *t != 2 * round + 2).unwrap());
            }
            let per = started.elapsed() / ROUND_TRIPS;
            echo.join().unwrap();
            per
        })
        .collect()
}

fn median(mut times: Vec<Duration>) -> (Duration, Duration, Duration) {
    times.sort();
    (times[0], times[times.len() / 2], times[times.len() - 1])
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent; measure only when benched.
    if !std::env::args().any(|a| a == "--bench") {
        println!("round_trips: run with `cargo bench` to measure");
        return;
    }
    let eventfd = median(eventfd_ping_pong());
    let futex = median(futex_ping_pong());
    let notification = median(notification_round_trip());
    let pp = median(pp_round_trip());
    let floor = eventfd.1.as_nanos() as f64;
    println!("\ntzmk simulator round trips: {ROUND_TRIPS} per run, {RUNS} runs, median (min .. max) per round trip\n");
    println!("| operation | median | min .. max | vs eventfd floor |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, (min, mid, max)) in [
        ("bare eventfd ping-pong, two threads (floor)", eventfd),
        ("bare futex (Mutex+Condvar) ping-pong, two threads", futex),
        ("simulator: notify round trip between two PDs", notification),
        ("simulator: pp call round trip (caller -> higher-priority callee)", pp),
    ] {
        println!(
            "| {name} | {:>8} ns | {} .. {} ns | {:.3}x |",
            mid.as_nanos(),
            min.as_nanos(),
            max.as_nanos(),
            mid.as_nanos() as f64 / floor
        );
    }
}
