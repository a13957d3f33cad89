//! tzcomm: a normal-world application's communication ports to tzmk's secure world.
//!
//! ```no_run
//! # fn main() -> Result<(), tzcomm::Error> {
//! let tz = tzcomm::Tz::sim("/tmp/tzmk-sim")?; // or from TZMK_SIM: tzcomm::Tz::from_env()
//! let mut echo = tz.open("echo")?;
//! echo.write(b"hello")?;
//! let mut buf = [0u8; 64];
//! let n = echo.read(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! # Ok(()) }
//! ```
//!
//! Underneath, a port is two rings in memory shared with the secure world (tzmk-ring), the
//! control mailbox and port directory in `port_ctrl` (tzmk-interface `port`), an SMC to kick the
//! secure side and an interrupt back (the doorbell). Two ways to reach them: a [`Backend`] that
//! maps the shared regions itself (the host simulator's, [`sim::SimBackend`]), or the kernel
//! driver ([`driver::Driver`]), which keeps `port_ctrl` to itself and maps only a port's own rings
//! into this process. The rings are read and written by the same code either way.
//!
//! The secure side is trusted to be correct, but the library still checks what it reads there
//! (ring indices and records, directory, replies) so that a broken secure side gives an
//! [`Error`], never a crash of the application.

mod batch;
pub mod driver;
pub mod pattern;
pub mod process;
pub mod sim;

pub use batch::PUBLISH_BYTES;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tzmk_interface::port::ring::{Consumer, PeerMisbehaviour, Producer, RecvError, RingLayout, SendError};
use tzmk_interface::port::{
    ControlError, Directory, Operation, PortEntry, PortStatus, Reply, Request, Service, DIRECTORY_MAGIC,
    DIRECTORY_OFFSET, DIRECTORY_SEQUENCE_OFFSET, MAX_CONTROL_MESSAGE, MAX_CONTROL_PAYLOAD, PORT_CTRL_SIZE,
    REPLY_OFFSET, REQUEST_OFFSET,
};
use tzmk_interface::status::{StatusPage, STATUS_MAGIC, STATUS_OFFSET, STATUS_SEQUENCE_OFFSET};
use zerocopy::{FromBytes, IntoBytes};

pub use tzmk_interface::port::{command, PortFault, PortState, Service as PortService};

/// The environment variable naming a simulator's run directory.
pub const SIM_ENV: &str = "TZMK_SIM";
/// How long a control request may take before the secure world is declared unresponsive.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a blocking read or write keeps looking at its ring before it sleeps on the doorbell
/// (`Port::set_spin`): a secure side that answers or makes room within it costs no doorbell and
/// no wake-up of this thread.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// A blocked read or write re-checks its port's state this often.
const RECHECK: Duration = Duration::from_millis(500);

/// The shared regions of the secure world's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Status page, port directory, control mailbox.
    Ctrl,
    /// The rings the secure world receives on.
    Rx,
    /// The rings the secure world sends on.
    Tx,
}

/// A mapped region: base and size.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub base: NonNull<u8>,
    pub size: usize,
}

/// How a process reaches the secure world: the regions, and attachments for notification.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The region's mapping, valid as long as the backend lives.
    fn region(&self, region: Region) -> Mapping;
    /// A new attachment: a kick and a doorbell of its own (every attachment hears every doorbell).
    fn attach(&self) -> io::Result<Box<dyn Transport>>;
    /// Serialises control requests among every user of the secure world; held while it lives.
    fn lock_control(&self) -> io::Result<Box<dyn std::any::Any>>;
}

/// One attachment's notification: kick the secure side, wait for its doorbell.
pub trait Transport: Send + Sync + fmt::Debug {
    /// `notify_secure(port)`.
    fn kick(&self, port: u16) -> io::Result<()>;
    /// Clears the doorbell (before a re-check that precedes waiting).
    fn clear(&self) -> io::Result<()>;
    /// Waits until the doorbell rang, or (the driver) the port became ready for `interest`
    /// (`Ok(true)`), or `timeout` passed (`Ok(false)`).
    fn wait(&self, timeout: Duration, interest: Interest) -> io::Result<bool>;
    /// Readable when the doorbell rang: for poll/epoll.
    fn doorbell(&self) -> BorrowedFd<'_>;
    /// Tells what stands for the kernel driver (the simulator; the driver itself knows) that this
    /// attachment holds session `session` of `port`, so that the port is closed when the
    /// attachment ends, however its process ends: exit, crash or kill.
    fn hold(&self, port: u16, session: u32) -> io::Result<()>;
}

/// What a wait is for: a message to read, room to write, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Readable,
    Writable,
    Any,
}

#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The regions hold no port directory: the secure world has not started, or this is not tzmk.
    NoDirectory,
    NoSuchPort(String),
    /// The secure world refused a control request.
    Control(ControlError),
    /// The secure world reset the port because this side broke the ring protocol.
    Reset {
        port: String,
        fault: PortFault,
    },
    /// The port was closed or reopened by someone else.
    Lost {
        port: String,
    },
    TooLarge {
        length: usize,
        max: usize,
    },
    /// The secure side broke the protocol (a bug of the secure world, reported, not trusted).
    SecureMisbehaviour(String),
    /// No answer within the time allowed.
    Timeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::NoDirectory => f.write_str("no port directory in port_ctrl: the secure world is not running tzmk"),
            Error::NoSuchPort(name) => write!(f, "no port '{name}' (tzctl list shows the ports)"),
            Error::Control(e) => write!(f, "the secure world refused: {e}"),
            Error::Reset { port, fault } => {
                write!(f, "port '{port}' was reset by the secure world: this side broke the {fault}")
            }
            Error::Lost { port } => write!(f, "port '{port}' was closed or reopened by another client"),
            Error::TooLarge { length, max } => {
                write!(f, "a message of {length} bytes is larger than the port's limit of {max}")
            }
            Error::SecureMisbehaviour(what) => write!(f, "the secure side broke the protocol: {what}"),
            Error::Timeout => f.write_str("the secure world did not answer in time"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A port as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub id: u16,
    pub name: String,
    pub service: Option<Service>,
    pub state: Option<PortState>,
    pub session: u32,
    /// Where the port's rings are in `port_rx` and `port_tx`, and their data capacities.
    pub rx_offset: u32,
    pub rx_capacity: u32,
    pub tx_offset: u32,
    pub tx_capacity: u32,
    pub faults: u32,
    pub last_fault: Option<PortFault>,
    /// The largest message either way.
    pub max_message: usize,
}

/// The secure world as one process sees it.
#[derive(Debug, Clone)]
pub struct Tz {
    link: Link,
}

/// How this process reaches the secure world.
#[derive(Debug, Clone)]
enum Link {
    /// It maps the shared regions itself (the simulator), and holds an attachment for control.
    Shared { backend: Arc<dyn Backend>, control: Arc<dyn Transport> },
    /// Through the kernel driver, which keeps `port_ctrl` to itself.
    Driver(Arc<driver::Driver>),
}

/// The shared-memory link's backend and control attachment.
type SharedLink<'a> = (&'a Arc<dyn Backend>, &'a Arc<dyn Transport>);

/// How an open port reaches the secure world besides its rings.
#[derive(Debug)]
enum PortLink {
    Shared,
    /// The port file and its two rings' mappings (rx, tx), unmapped when the Port drops: then
    /// the driver's release closes the port.
    Driver {
        file: driver::PortFile,
        _mappings: [driver::RingMapping; 2],
    },
}

fn unsupported(what: &str) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::Unsupported, format!("{what} is not offered by the kernel driver")))
}

impl Tz {
    pub fn new(backend: Arc<dyn Backend>) -> Result<Tz> {
        let ctrl = backend.region(Region::Ctrl);
        if ctrl.size < PORT_CTRL_SIZE {
            return Err(Error::SecureMisbehaviour(format!("port_ctrl has {:#x} bytes", ctrl.size)));
        }
        let control = Arc::from(backend.attach()?);
        Ok(Tz { link: Link::Shared { backend, control } })
    }

    /// The secure world through the kernel driver (`/dev/tzmk`).
    pub fn driver() -> Result<Tz> {
        Ok(Tz { link: Link::Driver(Arc::new(driver::Driver::open()?)) })
    }

    /// The shared-memory link's backend and control attachment.
    fn shared(&self, what: &str) -> Result<SharedLink<'_>> {
        match &self.link {
            Link::Shared { backend, control } => Ok((backend, control)),
            Link::Driver(_) => Err(unsupported(what)),
        }
    }

    /// The simulator whose run directory is `dir`.
    pub fn sim(dir: impl AsRef<std::path::Path>) -> Result<Tz> {
        Tz::new(Arc::new(sim::SimBackend::open(dir.as_ref())?))
    }

    /// The simulator named by `TZMK_SIM`, or else the kernel driver.
    pub fn from_env() -> Result<Tz> {
        match std::env::var_os(SIM_ENV) {
            Some(dir) => Tz::sim(dir),
            None => Tz::driver(),
        }
    }

    /// The shared-memory backend (the simulator's); `None` through the kernel driver.
    pub fn backend(&self) -> Option<&Arc<dyn Backend>> {
        match &self.link {
            Link::Shared { backend, .. } => Some(backend),
            Link::Driver(_) => None,
        }
    }

    /// Whether this is the kernel driver's link.
    pub fn is_driver(&self) -> bool {
        matches!(self.link, Link::Driver(_))
    }

    fn ctrl(&self) -> Result<Mapping> {
        Ok(self.shared("port_ctrl")?.0.region(Region::Ctrl))
    }

    /// The port directory, copied under its sequence lock.
    fn directory(&self) -> Result<Directory> {
        let ctrl = self.ctrl()?;
        let mut bytes = [0u8; std::mem::size_of::<Directory>()];
        for _ in 0..1000 {
            if snapshot(ctrl, DIRECTORY_SEQUENCE_OFFSET, DIRECTORY_OFFSET, &mut bytes) {
                let directory = Directory::read_from_bytes(&bytes).map_err(|_| Error::NoDirectory)?;
                if directory.magic != DIRECTORY_MAGIC || directory.count as usize > directory.ports.len() {
                    return Err(Error::NoDirectory);
                }
                return Ok(directory);
            }
            std::thread::yield_now();
        }
        Err(Error::Timeout)
    }

    /// Every port the secure world offers.
    pub fn ports(&self) -> Result<Vec<PortInfo>> {
        if let Link::Driver(driver) = &self.link {
            return driver.ports();
        }
        let directory = self.directory()?;
        Ok(directory.ports[..directory.count as usize].iter().map(info).collect())
    }

    /// A port by name or id (a decimal number).
    pub fn find(&self, port: &str) -> Result<PortInfo> {
        let ports = self.ports()?;
        let found = match port.parse::<u16>() {
            Ok(id) => ports.into_iter().find(|p| p.id == id),
            Err(_) => ports.into_iter().find(|p| p.name == port),
        };
        found.ok_or_else(|| Error::NoSuchPort(port.to_owned()))
    }

    fn find_entry(&self, port: &str) -> Result<PortEntry> {
        let directory = self.directory()?;
        let entries = &directory.ports[..directory.count as usize];
        let found = match port.parse::<u16>() {
            Ok(id) => entries.iter().find(|e| e.id == id),
            Err(_) => entries.iter().find(|e| e.name() == Some(port)),
        };
        found.copied().ok_or_else(|| Error::NoSuchPort(port.to_owned()))
    }

    /// The secure world's status page.
    pub fn status_page(&self) -> Result<StatusPage> {
        if let Link::Driver(driver) = &self.link {
            return driver.status_page();
        }
        let ctrl = self.ctrl()?;
        let mut bytes = [0u8; std::mem::size_of::<StatusPage>()];
        for _ in 0..1000 {
            if snapshot(ctrl, STATUS_SEQUENCE_OFFSET, STATUS_OFFSET, &mut bytes) {
                let page = StatusPage::read_from_bytes(&bytes).map_err(|_| Error::NoDirectory)?;
                return if page.magic == STATUS_MAGIC { Ok(page) } else { Err(Error::NoDirectory) };
            }
            std::thread::yield_now();
        }
        Err(Error::Timeout)
    }

    /// Kicks the secure world with no traffic: comm-pd refreshes the status page and rings back.
    /// (Through the driver: the page as comm-pd last wrote it.)
    pub fn refresh(&self) -> Result<StatusPage> {
        let Link::Shared { control, .. } = &self.link else { return self.status_page() };
        control.clear()?;
        control.kick(0)?;
        if !control.wait(CONTROL_TIMEOUT, Interest::Any)? {
            return Err(Error::Timeout);
        }
        self.status_page()
    }

    /// One control request and its reply.
    fn control(&self, operation: Operation, port: u32, command: u32, payload: &[u8]) -> Result<(Reply, Vec<u8>)> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::TooLarge { length: payload.len(), max: MAX_CONTROL_PAYLOAD });
        }
        let (backend, control) = self.shared("the control mailbox")?;
        let _lock = backend.lock_control()?;
        let ctrl = backend.region(Region::Ctrl);
        let request_word = word(ctrl, REQUEST_OFFSET);
        let reply_word = word(ctrl, REPLY_OFFSET);
        let sequence = (request_word.load(Ordering::Acquire) as u32).wrapping_add(1);
        let request = Request { operation: operation as u32, port, command, length: payload.len() as u32 };
        let mut message = request.as_bytes().to_vec();
        message.extend_from_slice(payload);
        // (sequence, length 0) first, "a request being written" (docs/ports.md): comm-pd drops a
        // copy of the previous request that this write tears.
        request_word.store(u64::from(sequence), Ordering::Release);
        std::sync::atomic::fence(Ordering::Release);
        write_bytes(ctrl, REQUEST_OFFSET + 8, &message);
        request_word.store(u64::from(sequence) | (message.len() as u64) << 32, Ordering::Release);
        control.clear()?;
        control.kick(0)?;
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        loop {
            let answer = reply_word.load(Ordering::Acquire);
            if answer as u32 == sequence {
                let length = (answer >> 32) as usize;
                if !(std::mem::size_of::<Reply>()..=MAX_CONTROL_MESSAGE).contains(&length) {
                    return Err(Error::SecureMisbehaviour(format!("a control reply of {length} bytes")));
                }
                let mut bytes = vec![0u8; length];
                read_bytes(ctrl, REPLY_OFFSET + 8, &mut bytes);
                let (reply, rest) = Reply::read_from_prefix(&bytes).map_err(|_| Error::NoDirectory)?;
                if reply.length as usize != rest.len() {
                    return Err(Error::SecureMisbehaviour("a control reply's length".into()));
                }
                if reply.error != 0 {
                    return Err(match ControlError::from_u32(reply.error) {
                        Some(e) => Error::Control(e),
                        None => Error::SecureMisbehaviour(format!("control error code {}", reply.error)),
                    });
                }
                return Ok((reply, rest.to_vec()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            control.wait(left.min(RECHECK), Interest::Any)?;
            control.clear()?;
        }
    }

    /// Closes session `session` of `port`: the secure side refuses (`NotOpen`) when the port is
    /// not open or holds another session now, so a late close never ends someone else's session.
    pub fn close_session(&self, port: u16, session: u32) -> Result<()> {
        self.control(Operation::Close, port.into(), session, &[])?;
        Ok(())
    }

    /// Opens a port by name or id (a decimal number): a new session with both rings empty. The
    /// session ends when the [`Port`] is closed or dropped, or its process ends.
    pub fn open(&self, port: &str) -> Result<Port> {
        if let Link::Driver(driver) = &self.link {
            let name = self.find(port)?.name;
            return self.open_driver(driver.open_port(&name)?, name);
        }
        let (backend, _) = self.shared("open")?;
        let entry = self.find_entry(port)?;
        let name = entry.name().unwrap_or("?").to_owned();
        let (reply, payload) = self.control(Operation::OpenId, entry.id.into(), 0, &[])?;
        let entry = PortEntry::read_from_bytes(&payload)
            .map_err(|_| Error::SecureMisbehaviour("an open reply without the port entry".into()))?;
        let ring = |region: Region, offset: u32, capacity: u32| -> Result<(NonNull<u8>, RingLayout)> {
            let mapping = backend.region(region);
            let layout = RingLayout::new(capacity.into())
                .map_err(|e| Error::SecureMisbehaviour(format!("port '{name}': {e}")))?;
            let offset = offset as usize;
            if offset.checked_add(layout.size()).is_none_or(|end| end > mapping.size) {
                return Err(Error::SecureMisbehaviour(format!("port '{name}': a ring outside its region")));
            }
            Ok((NonNull::new(mapping.base.as_ptr().wrapping_add(offset)).expect("inside a mapping"), layout))
        };
        let (rx_base, rx_layout) = ring(Region::Rx, entry.rx_offset, entry.rx_capacity)?;
        let (tx_base, tx_layout) = ring(Region::Tx, entry.tx_offset, entry.tx_capacity)?;
        let broken = |e| Error::SecureMisbehaviour(format!("port '{name}': {e}"));
        // SAFETY: both rings lie inside regions the backend keeps mapped while it lives, and the
        // Port holds the backend; this process produces into rx and consumes tx of this session
        // only through this Port.
        let producer = unsafe { Producer::attach(rx_base, rx_layout.size(), rx_layout) }.map_err(broken)?;
        // SAFETY: as above.
        let consumer = unsafe { Consumer::attach(tx_base, tx_layout.size(), tx_layout) }.map_err(broken)?;
        let transport = backend.attach()?;
        if let Err(e) = transport.hold(entry.id, reply.value) {
            let _ = self.close_session(entry.id, reply.value);
            return Err(e.into());
        }
        Ok(Port {
            tz: self.clone(),
            transport,
            link: PortLink::Shared,
            closed: false,
            id: entry.id,
            name,
            session: reply.value,
            service: Service::from_u8(entry.service),
            producer,
            consumer,
            max_message: rx_layout.max_message(),
            timeout: None,
            spin: DEFAULT_SPIN,
        })
    }

    /// A port opened through the driver: its rings mapped from the port file.
    fn open_driver(&self, file: driver::PortFile, name: String) -> Result<Port> {
        let info = file.info()?;
        let broken = |e| Error::SecureMisbehaviour(format!("port '{name}': {e}"));
        let rx_layout = RingLayout::new(info.rx_capacity.into()).map_err(broken)?;
        let tx_layout = RingLayout::new(info.tx_capacity.into()).map_err(broken)?;
        let fits = |size: u64, layout: RingLayout| size as usize >= layout.size();
        if !fits(info.rx_mmap_size, rx_layout) || !fits(info.tx_mmap_size, tx_layout) {
            return Err(Error::SecureMisbehaviour(format!("port '{name}': a ring mapping smaller than its ring")));
        }
        let rx_mapping = file.map(info.rx_mmap_offset, info.rx_mmap_size)?;
        let tx_mapping = file.map(info.tx_mmap_offset, info.tx_mmap_size)?;
        let (rx_base, tx_base) = (rx_mapping.base(), tx_mapping.base());
        let broken = |e| Error::SecureMisbehaviour(format!("port '{name}': {e}"));
        // SAFETY: both rings are shared mappings of this port's file, at least a ring long
        // (checked), that the Port keeps until it drops (the producer and consumer with it); this
        // process produces into rx and consumes tx only through this Port.
        let producer = unsafe { Producer::attach(rx_base, info.rx_mmap_size as usize, rx_layout) }.map_err(broken)?;
        // SAFETY: as above.
        let consumer = unsafe { Consumer::attach(tx_base, info.tx_mmap_size as usize, tx_layout) }.map_err(broken)?;
        Ok(Port {
            tz: self.clone(),
            transport: file.transport(),
            link: PortLink::Driver { file, _mappings: [rx_mapping, tx_mapping] },
            closed: false,
            id: info.id,
            name,
            session: info.session,
            service: Service::from_u8(info.service),
            producer,
            consumer,
            max_message: rx_layout.max_message(),
            timeout: None,
            spin: DEFAULT_SPIN,
        })
    }

    /// A port's counters (the simulator's mailbox; through the driver, open the port and ask
    /// [`Port::status`]).
    pub fn status(&self, port: &str) -> Result<PortStatus> {
        let entry = self.find_entry(port)?;
        let (_, payload) = self.control(Operation::Status, entry.id.into(), 0, &[])?;
        PortStatus::read_from_bytes(&payload).map_err(|_| Error::SecureMisbehaviour("a status reply".into()))
    }
}

fn info(entry: &PortEntry) -> PortInfo {
    let max = |capacity: u32| RingLayout::new(capacity.into()).map_or(0, |l| l.max_message());
    PortInfo {
        id: entry.id,
        name: entry.name().unwrap_or("?").to_owned(),
        service: Service::from_u8(entry.service),
        state: PortState::from_u8(entry.state),
        session: entry.session,
        rx_offset: entry.rx_offset,
        rx_capacity: entry.rx_capacity,
        tx_offset: entry.tx_offset,
        tx_capacity: entry.tx_capacity,
        faults: entry.faults,
        last_fault: (entry.last_fault != 0).then_some(PortFault(entry.last_fault)),
        max_message: max(entry.rx_capacity).min(max(entry.tx_capacity)),
    }
}

/// An open communication port.
#[derive(Debug)]
pub struct Port {
    tz: Tz,
    transport: Box<dyn Transport>,
    link: PortLink,
    /// The session was ended by [`close`](Port::close): nothing left for `drop` to do.
    closed: bool,
    id: u16,
    name: String,
    session: u32,
    service: Option<Service>,
    producer: Producer,
    consumer: Consumer,
    max_message: usize,
    timeout: Option<Duration>,
    spin: Duration,
}

impl Port {
    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn service(&self) -> Option<Service> {
        self.service
    }

    /// The largest message this port carries towards the secure world.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// How long blocking reads and writes wait (`None`: for ever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// How long a blocking [`read`](Self::read) or [`write`](Self::write) looks at the ring
    /// before it sleeps on the doorbell ([`DEFAULT_SPIN`]; zero: sleep at once). Spinning costs
    /// this thread's core for at most that long per wait, and saves a wake-up (tens of
    /// microseconds on a busy host) whenever the secure side answers within it.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Is the port still this session's? A reset or a reopen by someone else ends it.
    fn check(&self) -> Result<()> {
        if let PortLink::Driver { file, .. } = &self.link {
            let info = match file.info() {
                Ok(info) => info,
                // The driver could not read the directory now (comm-pd republishing it): that
                // says nothing about this port; the rings' own checks still catch a reset.
                Err(Error::Io(e)) if e.raw_os_error() == Some(nix::libc::EAGAIN) => return Ok(()),
                Err(e) => return Err(e),
            };
            return match PortState::from_u8(info.state) {
                Some(PortState::Open) if info.session == self.session => Ok(()),
                Some(PortState::Faulted) => {
                    let fault = self.tz.find(&self.name).ok().and_then(|p| p.last_fault).unwrap_or(PortFault(0));
                    Err(Error::Reset { port: self.name.clone(), fault })
                }
                _ => Err(Error::Lost { port: self.name.clone() }),
            };
        }
        let directory = self.tz.directory()?;
        let entry = directory.ports[..directory.count as usize].iter().find(|e| e.id == self.id);
        let entry = entry.ok_or_else(|| Error::NoSuchPort(self.name.clone()))?;
        if entry.session != self.session {
            return Err(Error::Lost { port: self.name.clone() });
        }
        match PortState::from_u8(entry.state) {
            Some(PortState::Open) => Ok(()),
            Some(PortState::Faulted) => {
                Err(Error::Reset { port: self.name.clone(), fault: PortFault(entry.last_fault) })
            }
            _ => Err(Error::Lost { port: self.name.clone() }),
        }
    }

    fn peer(&self, misbehaviour: PeerMisbehaviour) -> Error {
        // A ring that looks broken is most often a port the secure side has reset.
        match self.check() {
            Err(e) => e,
            Ok(()) => Error::SecureMisbehaviour(format!("port '{}': {misbehaviour}", self.name)),
        }
    }

    /// Sends one message if there is room now: `Ok(false)` when the ring is full, in which case
    /// the doorbell (see [`AsFd`]) will ring once the secure side has made room.
    pub fn try_write(&mut self, message: &[u8]) -> Result<bool> {
        loop {
            if self.send(message)? {
                return Ok(true);
            }
            self.transport.clear()?;
            if !self.producer.request_space_signal(message.len()).map_err(|m| self.peer(m))? {
                self.check()?;
                return Ok(false);
            }
        }
    }

    /// Sends one message if it fits now, without asking for a doorbell otherwise.
    fn send(&mut self, message: &[u8]) -> Result<bool> {
        match self.producer.try_send(message) {
            Ok(()) => {
                if self.producer.publish() {
                    self.transport.kick(self.id)?;
                }
                Ok(true)
            }
            Err(SendError::TooLarge) => Err(Error::TooLarge { length: message.len(), max: self.max_message }),
            Err(SendError::Peer(m)) => Err(self.peer(m)),
            Err(SendError::Full) => Ok(false),
        }
    }

    /// Receives one message into `buf` if one is there: `Ok(None)` when the ring is empty, in
    /// which case the doorbell will ring when one arrives.
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        loop {
            if let Some(length) = self.take(buf)? {
                return Ok(Some(length));
            }
            self.transport.clear()?;
            if !self.consumer.request_signal().map_err(|m| self.peer(m))? {
                self.check()?;
                return Ok(None);
            }
        }
    }

    /// Receives one message if one is there, without asking for a doorbell otherwise.
    fn take(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        match self.consumer.try_recv(buf) {
            Ok(Some(length)) => {
                if self.consumer.release() {
                    self.transport.kick(self.id)?;
                }
                Ok(Some(length))
            }
            Ok(None) => Ok(None),
            Err(RecvError::BufferTooSmall(length)) => Err(Error::TooLarge { length, max: buf.len() }),
            Err(RecvError::Peer(m)) => Err(self.peer(m)),
        }
    }

    fn wait(&self, started: Instant, interest: Interest) -> Result<()> {
        let slice = match self.timeout {
            Some(timeout) => {
                let left = timeout.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(Error::Timeout);
                }
                left.min(RECHECK)
            }
            None => RECHECK,
        };
        self.transport.wait(slice, interest)?;
        Ok(())
    }

    /// Whether a wait that started at `started` may still spin (see [`set_spin`](Self::set_spin));
    /// spins a little when it may.
    fn spinning(&self, started: Instant) -> bool {
        let spin = self.spin.min(self.timeout.unwrap_or(self.spin));
        if started.elapsed() >= spin {
            return false;
        }
        std::hint::spin_loop();
        true
    }

    /// Sends one message, waiting for room (back-pressure: nothing is dropped). Many small
    /// messages go faster with [`write_batch`](Self::write_batch).
    pub fn write(&mut self, message: &[u8]) -> Result<()> {
        // The clock is read only once the ring is full: a send that fits costs no `Instant::now`.
        let mut first_wait = None;
        while !self.send(message)? {
            let started = *first_wait.get_or_insert_with(Instant::now);
            if self.spinning(started) {
                continue;
            }
            if self.try_write(message)? {
                return Ok(());
            }
            self.wait(started, Interest::Writable)?;
        }
        Ok(())
    }

    /// Receives one message into `buf`, waiting for it; returns its length.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        // As in `write`: the clock is read only once the ring is empty.
        let mut first_wait = None;
        loop {
            if let Some(length) = self.take(buf)? {
                return Ok(length);
            }
            let started = *first_wait.get_or_insert_with(Instant::now);
            if self.spinning(started) {
                continue;
            }
            if let Some(length) = self.try_read(buf)? {
                return Ok(length);
            }
            self.wait(started, Interest::Readable)?;
        }
    }

    /// Waits until the secure side has taken everything written so far.
    pub fn flush(&mut self) -> Result<()> {
        let started = Instant::now();
        let capacity = self.producer.layout().capacity();
        loop {
            if self.producer.free().map_err(|m| self.peer(m))? == capacity {
                return Ok(());
            }
            self.transport.clear()?;
            // No message is that large: the request stays, and every release rings the doorbell.
            self.producer.request_space_signal(usize::MAX).map_err(|m| self.peer(m))?;
            if self.producer.free().map_err(|m| self.peer(m))? == capacity {
                return Ok(());
            }
            self.check()?;
            if matches!(self.link, PortLink::Driver { .. }) {
                // The driver's poll says when a largest message fits, not when the ring is
                // empty: look again shortly instead.
                std::thread::sleep(Duration::from_micros(200));
                if self.timeout.is_some_and(|t| started.elapsed() > t) {
                    return Err(Error::Timeout);
                }
                continue;
            }
            self.wait(started, Interest::Writable)?;
        }
    }

    /// An ioctl-style call to the port's service: `command` with `input`, its output returned.
    pub fn call(&self, command: u32, input: &[u8]) -> Result<Vec<u8>> {
        if let PortLink::Driver { file, .. } = &self.link {
            return file.call(command, input);
        }
        let (_, output) = self.tz.control(Operation::Call, self.id.into(), command, input)?;
        Ok(output)
    }

    /// This port's counters in the secure world.
    pub fn status(&self) -> Result<PortStatus> {
        if let PortLink::Driver { file, .. } = &self.link {
            return file.status();
        }
        let (_, payload) = self.tz.control(Operation::Status, self.id.into(), 0, &[])?;
        PortStatus::read_from_bytes(&payload).map_err(|_| Error::SecureMisbehaviour("a status reply".into()))
    }

    /// This port's session number (the directory's, at open).
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Ends the session, and says whether the secure side agreed (dropping the port ends it
    /// too, silently).
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        match self.link {
            // Closing the file (when `self` drops) is the driver's close.
            PortLink::Driver { .. } => Ok(()),
            PortLink::Shared => self.tz.close_session(self.id, self.session),
        }
    }
}

/// A dropped port closes its session: nobody is left to read it, and a port left open would keep
/// being fed (rt events pile up in its ring) and look busy to `tzctl list`.
impl Drop for Port {
    fn drop(&mut self) {
        if !self.closed && matches!(self.link, PortLink::Shared) {
            // Refused when the secure side already ended the session (a reset, a reopen): fine.
            let _ = self.tz.close_session(self.id, self.session);
        }
    }
}

/// The doorbell: readable when the secure world rang since the last `try_read`/`try_write` that
/// found nothing to do. Register it with epoll, and call `try_read`/`try_write` when it fires.
impl AsFd for Port {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.transport.doorbell()
    }
}

/// Waits until `fd` has one of `events`, or `timeout` passes: `Ok(false)` then, or when a
/// signal interrupted the wait (the caller re-checks and waits again).
pub(crate) fn poll_fd(fd: BorrowedFd<'_>, events: nix::poll::PollFlags, timeout: Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollTimeout};
    let mut fds = [PollFd::new(fd, events)];
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    match poll(&mut fds, PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn word(mapping: Mapping, offset: usize) -> &'static AtomicU64 {
    assert!(offset + 8 <= mapping.size && (mapping.base.as_ptr() as usize + offset).is_multiple_of(8));
    // SAFETY: inside the mapping and 8-aligned (asserted); the backend keeps the mapping for the
    // process's life (mappings are never unmapped), and the secure side accesses it atomically.
    unsafe { AtomicU64::from_ptr(mapping.base.as_ptr().add(offset).cast()) }
}

fn read_bytes(mapping: Mapping, offset: usize, out: &mut [u8]) {
    assert!(offset + out.len() <= mapping.size);
    for (i, byte) in out.iter_mut().enumerate() {
        // SAFETY: inside the mapping (asserted); volatile: the secure side writes concurrently.
        *byte = unsafe { mapping.base.as_ptr().add(offset + i).read_volatile() };
    }
}

fn write_bytes(mapping: Mapping, offset: usize, data: &[u8]) {
    assert!(offset + data.len() <= mapping.size);
    for (i, byte) in data.iter().enumerate() {
        // SAFETY: as in `read_bytes`.
        unsafe { mapping.base.as_ptr().add(offset + i).write_volatile(*byte) };
    }
}

/// A copy of a block the secure side publishes under a sequence lock; `false`: retry.
fn snapshot(mapping: Mapping, sequence: usize, offset: usize, out: &mut [u8]) -> bool {
    let word = word(mapping, sequence);
    let before = word.load(Ordering::Acquire);
    read_bytes(mapping, offset, out);
    std::sync::atomic::fence(Ordering::Acquire);
    before & 1 == 0 && word.load(Ordering::Relaxed) == before
}
