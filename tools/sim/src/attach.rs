//! How a normal-world process attaches to the simulator: the host stand-in for the SMC and the
//! inter-processor interrupt.
//!
//! The simulator listens on `<run-dir>/sim.sock` (a Unix stream socket). To each connection it
//! sends one message: the bytes `tzmk-sim 1\n` (the protocol version) carrying two file
//! descriptors (SCM_RIGHTS): the **kick** eventfd and the **doorbell** eventfd, then closes it.
//! - Writing any value to the kick is `notify_secure`: the simulator pends the kick interrupt of
//!   the PD that claims it in system.xml (comm-pd), exactly as the monitor does on hardware.
//! - The doorbell becomes readable when a PD calls `notify_normal`; reading it (8 bytes) clears it,
//!   as the driver's interrupt handler acknowledges the doorbell interrupt.
//!
//! Shared regions are plain files in `<run-dir>/regions/`, mapped `MAP_SHARED`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use microkit::sim::Kernel;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::memory::RunDir;
use crate::SimError;

/// The socket's file name in the run directory.
pub const SOCKET_NAME: &str = "sim.sock";
/// The greeting, and the protocol version in it.
pub const HELLO: &[u8] = b"tzmk-sim 1\n";
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
        doorbell: Arc<EventFd>,
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
            let (stop, kick, doorbell) = (stop.clone(), kick.clone(), doorbell.clone());
            thread::Builder::new()
                .name("tzmk-sim attach".into())
                .spawn(move || serve(listener, &stop, &kick, &doorbell))
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

fn serve(listener: UnixListener, stop: &AtomicBool, kick: &EventFd, doorbell: &EventFd) {
    while !stop.load(Ordering::Acquire) {
        if !crate::fd_is_readable(&listener, POLL_INTERVAL) {
            continue;
        }
        let Ok((stream, _)) = listener.accept() else { continue };
        let fds = [kick.as_fd().as_raw_fd(), doorbell.as_fd().as_raw_fd()];
        let rights = [ControlMessage::ScmRights(&fds)];
        if let Err(e) = sendmsg::<()>(stream.as_raw_fd(), &[IoSlice::new(HELLO)], &rights, MsgFlags::empty(), None) {
            eprintln!("tzmk-sim: a normal-world client could not be attached: {e}");
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

/// A normal-world process's attachment to a running simulator.
#[derive(Debug)]
pub struct Attachment {
    kick: OwnedFd,
    doorbell: OwnedFd,
}

impl Attachment {
    /// Connects to the simulator whose run directory is `run_dir`.
    pub fn connect(run_dir: &Path) -> std::io::Result<Attachment> {
        let stream = UnixStream::connect(run_dir.join(SOCKET_NAME))?;
        let mut hello = [0u8; 32];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [IoSliceMut::new(&mut hello)];
        let message = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut fds = Vec::new();
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: SCM_RIGHTS just installed these descriptors in this process; nothing else
                // owns them.
                fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        let length = message.bytes;
        if &hello[..length] != HELLO || fds.len() != 2 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a tzmk simulator (greeting {:?}, {} descriptors)", &hello[..length], fds.len()),
            ));
        }
        let doorbell = fds.pop().expect("two descriptors");
        let kick = fds.pop().expect("two descriptors");
        Ok(Attachment { kick, doorbell })
    }

    /// `notify_secure`: kicks the secure world.
    pub fn kick(&self) -> std::io::Result<()> {
        nix::unistd::write(&self.kick, &1u64.to_ne_bytes())?;
        Ok(())
    }

    /// Waits for the doorbell; `true` if it rang (and clears it).
    pub fn wait_doorbell(&self, timeout: Duration) -> bool {
        if !crate::fd_is_readable(&self.doorbell, timeout) {
            return false;
        }
        let mut count = [0u8; 8];
        nix::unistd::read(&self.doorbell, &mut count).is_ok()
    }

    /// The doorbell descriptor, for epoll.
    pub fn doorbell(&self) -> std::os::fd::BorrowedFd<'_> {
        self.doorbell.as_fd()
    }
}

/// A region file of the run directory, mapped into this process (never unmapped: a client maps
/// each region once).
pub fn map_region(run_dir: &Path, name: &str) -> std::io::Result<microkit::MemoryRegion> {
    use nix::sys::mman::{mmap, MapFlags, ProtFlags};
    let path = run_dir.join("regions").join(name);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
    let size = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    let length = std::num::NonZeroUsize::new(size)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is empty", path.display())))?;
    // SAFETY: a fresh shared mapping of a file at an address the kernel chooses.
    let base = unsafe {
        mmap(None, length, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, file.as_fd(), 0)
    }?;
    // SAFETY: the mapping is `size` bytes and is never unmapped.
    Ok(unsafe { microkit::MemoryRegion::new(base.cast(), size) })
}

/// The secure world's status page from `port_ctrl`; `None` until comm-pd has written a valid one.
pub fn read_status(port_ctrl: &microkit::MemoryRegion) -> Option<tzmk_interface::status::StatusPage> {
    use tzmk_interface::status::{StatusPage, STATUS_MAGIC, STATUS_OFFSET, STATUS_SEQUENCE_OFFSET};
    use zerocopy::FromBytes;
    let mut bytes = [0u8; std::mem::size_of::<StatusPage>()];
    for _ in 0..64 {
        if port_ctrl.snapshot(STATUS_SEQUENCE_OFFSET, STATUS_OFFSET, &mut bytes).ok()? {
            let page = StatusPage::read_from_bytes(&bytes).ok()?;
            return (page.magic == STATUS_MAGIC).then_some(page);
        }
        std::thread::yield_now();
    }
    None
}
