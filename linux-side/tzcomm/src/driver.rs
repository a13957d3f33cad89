//! The kernel driver's backend: `/dev/tzmk/<port>` and its sysfs attributes (linux-side/driver).
//!
//! The driver owns the control mailbox; this process never maps `port_ctrl`. Listing reads the
//! port devices' attributes in `/sys/class/tzmk/`; opening a port opens its device node (one
//! owner at a time: `EBUSY` otherwise), asks `TZMK_IOC_PORT_INFO` for the geometry and maps the
//! port's two rings, over which the same tzmk-ring code runs as over the simulator's. The kick is
//! `TZMK_IOC_KICK`; the doorbell is `poll` on the port's file (the driver wakes it when comm-pd
//! announces news for that port). Calls and counters are ioctls; closing the file closes the port
//! in the secure world (the driver's `release`, also when the process is killed).

use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use nix::poll::PollFlags;
use nix::sys::mman::{mmap, MapFlags, ProtFlags};
use tzmk_interface::driver::{Call, PortInfo as DriverPortInfo, IOC_CALL, IOC_KICK, IOC_PORT_INFO, IOC_STATUS};
use tzmk_interface::port::{PortFault, PortState, PortStatus, Service, MAX_CONTROL_PAYLOAD, NAME_LEN};
use tzmk_interface::status::StatusPage;
use zerocopy::{FromBytes, FromZeros};

use crate::{Error, Interest, PortInfo, Result, Transport};

/// Where the driver's port nodes appear (devtmpfs makes `tzmk!<port>` `/dev/tzmk/<port>`).
pub const DEVICE_DIR: &str = "/dev/tzmk";
/// Where the port devices' attributes are.
pub const CLASS_DIR: &str = "/sys/class/tzmk";

/// The secure world through the kernel driver.
#[derive(Debug)]
pub struct Driver {
    devices: PathBuf,
    class: PathBuf,
}

impl Driver {
    /// The driver at its standard places, if it bound to a secure world.
    pub fn open() -> io::Result<Driver> {
        Driver::at(Path::new(DEVICE_DIR), Path::new(CLASS_DIR))
    }

    /// The driver with its nodes in `devices` and attributes in `class` (tests).
    pub fn at(devices: &Path, class: &Path) -> io::Result<Driver> {
        if !class.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no tzmk driver: {} is missing (load tzmk.ko; dmesg says why it did not bind, \
                     e.g. no secure world), and {} is not set for the simulator",
                    class.display(),
                    crate::SIM_ENV
                ),
            ));
        }
        Ok(Driver { devices: devices.to_owned(), class: class.to_owned() })
    }

    /// Every port, from the port devices' attributes.
    pub fn ports(&self) -> Result<Vec<PortInfo>> {
        let mut ports = Vec::new();
        for entry in std::fs::read_dir(&self.class)? {
            let dir = entry?.path();
            if !dir.join("id").exists() {
                continue;
            }
            ports.push(read_port(&dir)?);
        }
        ports.sort_by_key(|p| p.id);
        Ok(ports)
    }

    /// The status page, as the driver exports it (`status_page`, the page's bytes, on the
    /// platform device every port device hangs off).
    pub fn status_page(&self) -> Result<StatusPage> {
        for entry in std::fs::read_dir(&self.class)? {
            let path = entry?.path().join("device/status_page");
            if let Ok(bytes) = std::fs::read(&path) {
                return StatusPage::read_from_bytes(&bytes)
                    .map_err(|_| Error::SecureMisbehaviour(format!("{} holds {} bytes", path.display(), bytes.len())));
            }
        }
        Err(Error::NoDirectory)
    }

    /// Opens port `name`'s node: the driver opens the port in the secure world.
    pub fn open_port(&self, name: &str) -> Result<PortFile> {
        let path = self.devices.join(name);
        let file =
            OpenOptions::new().read(true).write(true).custom_flags(nix::libc::O_CLOEXEC).open(&path).map_err(|e| {
                match e.raw_os_error() {
                    Some(nix::libc::EBUSY) => {
                        Error::Io(io::Error::new(e.kind(), format!("port '{name}' is open by another process")))
                    }
                    _ => Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
                }
            })?;
        Ok(PortFile { file: Arc::new(file), name: name.to_owned() })
    }
}

fn attribute(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

/// A numeric attribute, decimal or `0x` hexadecimal (as the driver prints `last_fault`).
fn number<T: TryFrom<u64>>(dir: &Path, name: &str) -> Result<T> {
    let text = attribute(dir, name)?;
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed
        .and_then(|value| T::try_from(value).ok())
        .ok_or_else(|| Error::SecureMisbehaviour(format!("{}: '{text}' is no number", dir.join(name).display())))
}

fn read_port(dir: &Path) -> Result<PortInfo> {
    let service = attribute(dir, "service")?;
    let state = attribute(dir, "state")?;
    let rx_capacity: u32 = number(dir, "rx_capacity")?;
    let tx_capacity: u32 = number(dir, "tx_capacity")?;
    let optional = |name: &str| number::<u32>(dir, name).unwrap_or(0);
    Ok(PortInfo {
        id: number(dir, "id")?,
        name: attribute(dir, "name")?,
        service: Service::from_name(&service).or_else(|| service.parse().ok().and_then(Service::from_u8)),
        state: match state.as_str() {
            "closed" => Some(PortState::Closed),
            "open" => Some(PortState::Open),
            "faulted" => Some(PortState::Faulted),
            other => other.parse().ok().and_then(PortState::from_u8),
        },
        session: optional("session"),
        rx_offset: 0,
        rx_capacity,
        tx_offset: 0,
        tx_capacity,
        faults: optional("faults"),
        last_fault: Some(optional("last_fault")).filter(|&f| f != 0).map(PortFault),
        max_message: number(dir, "max_message")?,
    })
}

/// An open port node.
#[derive(Debug, Clone)]
pub struct PortFile {
    file: Arc<File>,
    name: String,
}

/// An ioctl whose argument is `T`.
///
/// # Safety
/// `request` must be an ioctl of the tzmk driver whose argument is a `T` (read, written or both).
unsafe fn ioctl<T>(file: &File, request: u32, argument: *mut T) -> io::Result<()> {
    // SAFETY: the caller's contract; `argument` points at a live T (or is null for _IO ioctls).
    let result = unsafe { nix::libc::ioctl(file.as_raw_fd(), request as _, argument) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl PortFile {
    pub fn info(&self) -> Result<DriverPortInfo> {
        let mut info = DriverPortInfo::new_zeroed();
        // SAFETY: IOC_PORT_INFO writes a `struct tzmk_port_info`, which DriverPortInfo is.
        unsafe { ioctl(&self.file, IOC_PORT_INFO, &mut info) }?;
        if info.name[..].iter().take_while(|&&b| b != 0).count() > NAME_LEN {
            return Err(Error::SecureMisbehaviour("a port name without its NUL".into()));
        }
        Ok(info)
    }

    pub fn status(&self) -> Result<PortStatus> {
        let mut status = PortStatus::new_zeroed();
        // SAFETY: IOC_STATUS writes a `struct tzmk_port_status`, which PortStatus is.
        unsafe { ioctl(&self.file, IOC_STATUS, &mut status) }?;
        Ok(status)
    }

    pub fn call(&self, command: u32, input: &[u8]) -> Result<Vec<u8>> {
        if input.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::TooLarge { length: input.len(), max: MAX_CONTROL_PAYLOAD });
        }
        let mut call = Call::new_zeroed();
        call.command = command;
        call.input_length = input.len() as u32;
        call.data[..input.len()].copy_from_slice(input);
        // SAFETY: IOC_CALL reads and writes a `struct tzmk_call`, which Call is.
        unsafe { ioctl(&self.file, IOC_CALL, &mut call) }.map_err(control_error)?;
        let length = call.output_length as usize;
        if length > MAX_CONTROL_PAYLOAD {
            return Err(Error::SecureMisbehaviour(format!("a call answered {length} bytes")));
        }
        Ok(call.data[..length].to_vec())
    }

    /// Maps `size` bytes of the port file at `offset` (one of the rings), until the
    /// [`RingMapping`] drops. (The driver keeps the port open while a mapping of it exists.)
    pub fn map(&self, offset: u64, size: u64) -> Result<RingMapping> {
        let length = usize::try_from(size).ok().and_then(NonZeroUsize::new).ok_or_else(|| {
            Error::SecureMisbehaviour(format!("port '{}': a ring mapping of {size} bytes", self.name))
        })?;
        let offset = i64::try_from(offset)
            .map_err(|_| Error::SecureMisbehaviour(format!("port '{}': mmap offset {offset:#x}", self.name)))?;
        // SAFETY: a fresh shared mapping of the port's ring at an address the kernel chooses,
        // owned by the RingMapping returned (unmapped when it drops).
        let base = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                self.file.as_fd(),
                offset,
            )
        }?;
        Ok(RingMapping { base: base.cast(), length })
    }

    /// One whole message through the driver's `write` (its own producer path, not the mapping).
    pub fn write_message(&self, message: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        (&*self.file).write(message)
    }

    /// The port's notification: kick by ioctl, the doorbell by poll.
    pub fn transport(&self) -> Box<dyn Transport> {
        Box::new(DriverTransport { file: self.file.clone() })
    }
}

/// A ring of a port file, mapped into this process; unmapped on drop.
#[derive(Debug)]
pub struct RingMapping {
    base: NonNull<u8>,
    length: NonZeroUsize,
}

// SAFETY: the mapping is shared memory accessed through the ring protocol; the pointer is an
// address, not a borrow, and the owner unmaps it once.
unsafe impl Send for RingMapping {}
// SAFETY: as above.
unsafe impl Sync for RingMapping {}

impl RingMapping {
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }
}

impl Drop for RingMapping {
    fn drop(&mut self) {
        // SAFETY: mapped by `PortFile::map` with this length; whoever used the ring through this
        // mapping (a Port's producer and consumer) is gone before the Port drops its mappings.
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.length.get()) };
    }
}

/// What the driver's ioctls answer when the secure world refused: the control error the driver
/// maps to an errno.
fn control_error(e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(nix::libc::ETIMEDOUT) => Error::Timeout,
        // The driver's errnos for the secure world's refusals (linux-side/driver/README.md).
        Some(nix::libc::EAGAIN) => Error::Control(tzmk_interface::port::ControlError::ServiceUnavailable),
        Some(nix::libc::EOPNOTSUPP) => Error::Control(tzmk_interface::port::ControlError::UnknownCommand),
        Some(nix::libc::EINVAL) => Error::Control(tzmk_interface::port::ControlError::BadArgument),
        Some(nix::libc::EPIPE) => Error::Io(io::Error::new(e.kind(), "the port was reset or closed")),
        _ => Error::Io(e),
    }
}

#[derive(Debug)]
struct DriverTransport {
    file: Arc<File>,
}

impl Transport for DriverTransport {
    fn kick(&self, _port: u16) -> io::Result<()> {
        // SAFETY: IOC_KICK takes no argument.
        unsafe { ioctl::<u8>(&self.file, IOC_KICK, std::ptr::null_mut()) }
    }

    fn clear(&self) -> io::Result<()> {
        // The driver's poll looks at the rings themselves: nothing to acknowledge.
        Ok(())
    }

    fn wait(&self, timeout: Duration, interest: Interest) -> io::Result<bool> {
        let events = match interest {
            Interest::Readable => PollFlags::POLLIN,
            Interest::Writable => PollFlags::POLLOUT,
            Interest::Any => PollFlags::POLLIN | PollFlags::POLLOUT,
        };
        crate::poll_fd(self.file.as_fd(), events, timeout)
    }

    fn doorbell(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn hold(&self, _port: u16, _session: u32) -> io::Result<()> {
        // The driver's release closes the port: nothing to tell.
        Ok(())
    }
}
