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
//!
//! Shared regions are plain files in `<run-dir>/regions/`, mapped `MAP_SHARED`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use microkit::sim::Kernel;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::memory::RunDir;
use crate::SimError;

pub use tzcomm::sim::{CONTROL_LOCK, HELLO, SOCKET_NAME};

/// The doorbells of every attached client, rung together by `notify_normal`.
#[derive(Debug, Default)]
pub(crate) struct Doorbells {
    attached: Mutex<Vec<(EventFd, UnixStream)>>,
}

impl Doorbells {
    pub(crate) fn ring(&self) {
        for (doorbell, _) in self.attached.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // The counter saturates rather than fails: a ring is a ring.
            let _ = doorbell.write(1);
        }
    }

    /// Forgets the doorbells of clients that closed their connection.
    fn prune(&self) {
        self.attached.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, stream)| {
            let mut probe = [0u8; 1];
            // A closed peer reads as end of file; an open one has nothing to say (EAGAIN).
            !matches!(
                nix::sys::socket::recv(stream.as_raw_fd(), &mut probe, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_PEEK),
                Ok(0)
            )
        });
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
            let (stop, kick) = (stop.clone(), kick.clone());
            thread::Builder::new()
                .name("tzmk-sim attach".into())
                .spawn(move || serve(listener, &stop, &kick, &doorbells))
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

fn serve(listener: UnixListener, stop: &AtomicBool, kick: &EventFd, doorbells: &Doorbells) {
    while !stop.load(Ordering::Acquire) {
        if !crate::fd_is_readable(&listener, POLL_INTERVAL) {
            doorbells.prune();
            continue;
        }
        let Ok((stream, _)) = listener.accept() else { continue };
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
            Ok(_) => attached.push((doorbell, stream)),
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
