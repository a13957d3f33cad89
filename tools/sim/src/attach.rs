//! How a normal-world process attaches to the simulator: the host stand-in for the SMC and the
//! inter-processor interrupt. The server half; the client is linux-side's `tzcomm::sim`.
//!
//! The simulator listens on `<run-dir>/sim.sock` (a Unix stream socket). To each connection it
//! sends one message: the bytes `tzmk-sim 1\n` (the protocol version) carrying two file
//! descriptors (SCM_RIGHTS): the **kick** eventfd (shared by all) and a **doorbell** eventfd of the
//! connection's own, and keeps the connection until the client closes it.
//! - Writing any value to the kick is `notify_secure`: the simulator pends the kick interrupt of
//!   the PD that claims it in system.xml (comm-pd), exactly as the monitor does on hardware.
//! - Every doorbell becomes readable when a PD calls `notify_normal`; reading one (8 bytes) clears
//!   it. One doorbell per connection, as the kernel driver wakes every waiter on the interrupt:
//!   two processes sharing one eventfd could take each other's wake-ups.
//! - A client writes `hold <port> <session>\n` on its connection for each port session it opens
//!   through it. When the connection ends (the client closed it, exited, crashed or was killed),
//!   the simulator closes every such session that is still open, through the control mailbox as
//!   any client would: what the kernel driver's `release` does on hardware. comm-pd refuses a
//!   close of a session that is no longer the port's, so a late close never ends a newer one.
//!
//! Shared regions are plain files in `<run-dir>/regions/`, mapped `MAP_SHARED`.

use std::io::{IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use microkit::sim::Kernel;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::memory::RunDir;
use crate::SimError;

pub use tzcomm::sim::{CONTROL_LOCK, HELLO, HOLD, SOCKET_NAME};

/// One attached client: its doorbell, its connection, and the port sessions it holds.
#[derive(Debug)]
struct Client {
    doorbell: EventFd,
    stream: UnixStream,
    /// `(port, session)` of each `hold` line.
    held: Vec<(u16, u32)>,
    /// An incomplete line.
    partial: Vec<u8>,
}

/// The most sessions one connection may hold, and the longest line: a client that writes more is
/// disconnected (and what it held is closed), as a hostile one would be.
const MAX_HELD: usize = 64;
const MAX_LINE: usize = 64;

impl Client {
    /// Reads what the client wrote; `false` when the connection ended (or broke the protocol).
    fn read(&mut self) -> bool {
        let mut buffer = [0u8; 256];
        // What it wrote before it went away counts: the lines are taken first.
        let open = loop {
            match (&self.stream).read(&mut buffer) {
                Ok(0) => break false,
                Ok(n) => self.partial.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break false,
            }
        };
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            match parse_hold(&line[..end]) {
                Some(held) if self.held.len() < MAX_HELD => self.held.push(held),
                _ => return false,
            }
        }
        open && self.partial.len() <= MAX_LINE
    }
}

/// `hold <port> <session>`.
fn parse_hold(line: &[u8]) -> Option<(u16, u32)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    if words.next()? != HOLD {
        return None;
    }
    let port = words.next()?.parse().ok()?;
    let session = words.next()?.parse().ok()?;
    words.next().is_none().then_some((port, session))
}

/// The doorbells of every attached client, rung together by `notify_normal`.
#[derive(Debug, Default)]
pub(crate) struct Doorbells {
    attached: Mutex<Vec<Client>>,
}

impl Doorbells {
    pub(crate) fn ring(&self) {
        for client in self.attached.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // The counter saturates rather than fails: a ring is a ring.
            let _ = client.doorbell.write(1);
        }
    }

    /// Forgets the clients whose connection ended, and returns the sessions they held.
    fn prune(&self) -> Vec<(u16, u32)> {
        let mut abandoned = Vec::new();
        self.attached.lock().unwrap_or_else(|e| e.into_inner()).retain_mut(|client| {
            let alive = client.read();
            if !alive {
                abandoned.append(&mut client.held);
            }
            alive
        });
        abandoned
    }
}

/// Closes the sessions of clients that went away, as a client of the simulator's own (in a thread
/// of its own: the attach thread must go on accepting, this client among others). A session
/// the client closed itself, or that was reset or reopened since, is left alone (comm-pd would
/// refuse it anyway).
fn close_abandoned(run_dir: PathBuf, sessions: Vec<(u16, u32)>) {
    let closer = move || {
        let Ok(tz) = tzcomm::Tz::sim(&run_dir) else { return };
        let Ok(ports) = tz.ports() else { return };
        for (port, session) in sessions {
            let open =
                ports.iter().any(|p| p.id == port && p.session == session && p.state == Some(tzcomm::PortState::Open));
            if open {
                if let Err(e) = tz.close_session(port, session) {
                    eprintln!("tzmk-sim: port {port} (session {session}) of a client that went away: {e}");
                }
            }
        }
    };
    if let Err(e) = thread::Builder::new().name("tzmk-sim release".into()).spawn(closer) {
        eprintln!("tzmk-sim: no thread to close a departed client's ports: {e}");
    }
}
/// How often the simulator's threads look for a stop request.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(
        run_dir: &RunDir,
        kernel: Arc<Kernel>,
        kick_irq: Option<u64>,
        doorbells: Arc<Doorbells>,
    ) -> Result<Server, SimError> {
        let host = |what: String| SimError::Host(what);
        let kick = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map(Arc::new)
            .map_err(|e| host(format!("eventfd for the kick: {e}")))?;
        let listener =
            UnixListener::bind(run_dir.socket()).map_err(|e| host(format!("{}: {e}", run_dir.socket().display())))?;
        listener.set_nonblocking(true).map_err(|e| host(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));

        let accept = {
            let (stop, kick, dir) = (stop.clone(), kick.clone(), run_dir.path().to_owned());
            thread::Builder::new()
                .name("tzmk-sim attach".into())
                .spawn(move || serve(listener, &dir, &stop, &kick, &doorbells))
                .map_err(|e| host(e.to_string()))?
        };
        let kicker = {
            let stop = stop.clone();
            thread::Builder::new()
                .name("tzmk-sim kick".into())
                .spawn(move || forward_kicks(&kick, &kernel, kick_irq, &stop))
                .map_err(|e| host(e.to_string()))?
        };
        Ok(Server { stop, threads: vec![accept, kicker] })
    }

    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve(listener: UnixListener, run_dir: &Path, stop: &AtomicBool, kick: &EventFd, doorbells: &Doorbells) {
    while !stop.load(Ordering::Acquire) {
        let incoming = crate::fd_is_readable(&listener, POLL_INTERVAL);
        let abandoned = doorbells.prune();
        if !abandoned.is_empty() && !stop.load(Ordering::Acquire) {
            close_abandoned(run_dir.to_owned(), abandoned);
        }
        if !incoming {
            continue;
        }
        let Ok((stream, _)) = listener.accept() else { continue };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let doorbell = match EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK) {
            Ok(doorbell) => doorbell,
            Err(e) => {
                eprintln!("tzmk-sim: no eventfd for a client's doorbell: {e}");
                continue;
            }
        };
        let fds = [kick.as_fd().as_raw_fd(), doorbell.as_fd().as_raw_fd()];
        let rights = [ControlMessage::ScmRights(&fds)];
        // The doorbell is rung from the moment the client can kick: the list stays locked from
        // before the client has the kick descriptor until its doorbell is in it, or the answer
        // to its first kick could ring before it is listed and be lost.
        let mut attached = doorbells.attached.lock().unwrap_or_else(|e| e.into_inner());
        match sendmsg::<()>(stream.as_raw_fd(), &[IoSlice::new(HELLO)], &rights, MsgFlags::empty(), None) {
            Ok(_) => attached.push(Client { doorbell, stream, held: Vec::new(), partial: Vec::new() }),
            Err(e) => eprintln!("tzmk-sim: a normal-world client could not be attached: {e}"),
        }
    }
}

fn forward_kicks(kick: &EventFd, kernel: &Kernel, kick_irq: Option<u64>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        if !crate::fd_is_readable(kick, POLL_INTERVAL) {
            continue;
        }
        // Reading clears the counter: several kicks before the secure side runs are one interrupt,
        // as several SMCs before the PD takes the kick are one pending interrupt.
        if kick.read().is_err() {
            continue;
        }
        if let Some(irq) = kick_irq {
            // No PD claims the kick: the interrupt stays pending and nobody takes it, as on hardware.
            let _ = kernel.raise_irq(irq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_hold;

    #[test]
    fn hold_lines_are_parsed_strictly() {
        assert_eq!(parse_hold(b"hold 1 7"), Some((1, 7)));
        for bad in [&b"hold 1"[..], b"hold 1 7 8", b"hold x 7", b"hold 70000 1", b"keep 1 7", b"hold 1  7", b"\xff"] {
            assert_eq!(parse_hold(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
