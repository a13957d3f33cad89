//! The host simulator's backend: `tzmk sim`'s run directory.
//!
//! The simulator listens on `<run-dir>/sim.sock`. To each connection it sends the bytes
//! `tzmk-sim 1\n` with two descriptors (SCM_RIGHTS): the **kick** eventfd (writing it is
//! `notify_secure`) and a **doorbell** eventfd of this connection's own (readable once a PD has
//! called `notify_normal`; reading it clears it), and keeps the connection open until the client
//! closes it. The client may write lines `hold <port> <session>\n` on it: the simulator then
//! closes those sessions when the connection ends (the process exited or was killed), as the
//! kernel driver's `release` does on hardware. The regions shared with the normal world are files in `<run-dir>/regions/`, mapped
//! `MAP_SHARED`; `<run-dir>/control.lock` serialises control requests among processes (the kernel
//! driver does that on hardware). docs/simulator.md describes the whole protocol.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::poll::PollFlags;
use nix::sys::mman::{mmap, MapFlags, ProtFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::{Backend, Mapping, Region, Transport};

/// The socket's file name in the run directory.
pub const SOCKET_NAME: &str = "sim.sock";
/// The greeting, and the protocol version in it.
pub const HELLO: &[u8] = b"tzmk-sim 1\n";
/// The control lock's file name in the run directory.
pub const CONTROL_LOCK: &str = "control.lock";

/// A simulator's regions, mapped into this process.
#[derive(Debug)]
pub struct SimBackend {
    dir: PathBuf,
    ctrl: Mapping,
    rx: Mapping,
    tx: Mapping,
}

// SAFETY: the mappings are shared memory accessed only atomically or volatilely; the raw
// pointers are addresses, not borrows.
unsafe impl Send for SimBackend {}
// SAFETY: as above.
unsafe impl Sync for SimBackend {}

impl SimBackend {
    /// Maps the regions of the simulator running in `dir`.
    pub fn open(dir: &Path) -> io::Result<SimBackend> {
        if !dir.join(SOCKET_NAME).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no simulator runs here (start one with `tzmk sim --run-dir DIR`)", dir.display()),
            ));
        }
        Ok(SimBackend {
            dir: dir.to_owned(),
            ctrl: map_region(dir, "port_ctrl")?,
            rx: map_region(dir, "port_rx")?,
            tx: map_region(dir, "port_tx")?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Backend for SimBackend {
    fn region(&self, region: Region) -> Mapping {
        match region {
            Region::Ctrl => self.ctrl,
            Region::Rx => self.rx,
            Region::Tx => self.tx,
        }
    }

    fn attach(&self) -> io::Result<Box<dyn Transport>> {
        Ok(Box::new(Attachment::connect(&self.dir)?))
    }

    fn lock_control(&self) -> io::Result<Box<dyn std::any::Any>> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(self.dir.join(CONTROL_LOCK))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
        Ok(Box::new(lock))
    }
}

/// One attachment to a running simulator: the kick and a doorbell of its own.
#[derive(Debug)]
pub struct Attachment {
    kick: OwnedFd,
    doorbell: OwnedFd,
    /// Kept open: the simulator forgets the doorbell, and closes the sessions held, when it closes.
    connection: UnixStream,
}

impl Attachment {
    /// Connects to the simulator whose run directory is `dir`.
    pub fn connect(dir: &Path) -> io::Result<Attachment> {
        let stream = UnixStream::connect(dir.join(SOCKET_NAME)).map_err(|e| {
            let socket = dir.join(SOCKET_NAME);
            if e.kind() == io::ErrorKind::ConnectionRefused {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{}: no simulator runs here any more (a stale run directory: its {SOCKET_NAME} is left by \
                         a simulator that was killed). Remove the directory and start `tzmk sim` again",
                        dir.display()
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", socket.display()))
            }
        })?;
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
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a tzmk simulator (greeting {:?}, {} descriptors)", &hello[..length], fds.len()),
            ));
        }
        let doorbell = fds.pop().expect("two descriptors");
        let kick = fds.pop().expect("two descriptors");
        Ok(Attachment { kick, doorbell, connection: stream })
    }
}

impl Transport for Attachment {
    fn kick(&self, _port: u16) -> io::Result<()> {
        nix::unistd::write(&self.kick, &1u64.to_ne_bytes())?;
        Ok(())
    }

    fn clear(&self) -> io::Result<()> {
        let mut count = [0u8; 8];
        match nix::unistd::read(&self.doorbell, &mut count) {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn wait(&self, timeout: Duration, _interest: crate::Interest) -> io::Result<bool> {
        crate::poll_fd(self.doorbell.as_fd(), PollFlags::POLLIN, timeout)
    }

    fn doorbell(&self) -> BorrowedFd<'_> {
        self.doorbell.as_fd()
    }

    fn hold(&self, port: u16, session: u32) -> io::Result<()> {
        use std::io::Write;
        (&self.connection).write_all(format!("{HOLD} {port} {session}\n").as_bytes())
    }
}

/// The word of a `hold <port> <session>` line.
pub const HOLD: &str = "hold";

/// A region file of the run directory, mapped into this process for its whole life (a process
/// maps each region once per backend).
fn map_region(dir: &Path, name: &str) -> io::Result<Mapping> {
    let path = dir.join("regions").join(name);
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let size = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
    let length = std::num::NonZeroUsize::new(size)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{} is empty", path.display())))?;
    // SAFETY: a fresh shared mapping of a file at an address the kernel chooses.
    let base = unsafe {
        mmap(None, length, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, file.as_fd(), 0)
    }?;
    Ok(Mapping { base: NonNull::new(base.as_ptr().cast()).expect("mmap never returns null"), size })
}
