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
//! secure side and an interrupt back (the doorbell). A [`Backend`] provides those: the host
//! simulator's ([`sim::SimBackend`]) now; the kernel driver's later, behind the same trait.
//!
//! The secure side is trusted to be correct, but the library still checks what it reads there
//! (ring indices and records, directory, replies) so that a broken secure side gives an
//! [`Error`], never a crash of the application.

mod batch;
pub mod pattern;
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
    /// Waits until the doorbell rang (`Ok(true)`) or `timeout` passed (`Ok(false)`).
    fn wait(&self, timeout: Duration) -> io::Result<bool>;
    /// Readable when the doorbell rang: for poll/epoll.
    fn doorbell(&self) -> BorrowedFd<'_>;
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
    backend: Arc<dyn Backend>,
    control: Arc<dyn Transport>,
}

impl Tz {
    pub fn new(backend: Arc<dyn Backend>) -> Result<Tz> {
        let ctrl = backend.region(Region::Ctrl);
        if ctrl.size < PORT_CTRL_SIZE {
            return Err(Error::SecureMisbehaviour(format!("port_ctrl has {:#x} bytes", ctrl.size)));
        }
        let control = Arc::from(backend.attach()?);
        Ok(Tz { backend, control })
    }

    /// The simulator whose run directory is `dir`.
    pub fn sim(dir: impl AsRef<std::path::Path>) -> Result<Tz> {
        Tz::new(Arc::new(sim::SimBackend::open(dir.as_ref())?))
    }

    /// The simulator named by `TZMK_SIM`. (The kernel driver's backend will be the default when
    /// it exists.)
    pub fn from_env() -> Result<Tz> {
        match std::env::var_os(SIM_ENV) {
            Some(dir) => Tz::sim(dir),
            None => Err(Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no secure world: set {SIM_ENV} to a simulator's run directory (tzmk sim prints it)"),
            ))),
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn ctrl(&self) -> Mapping {
        self.backend.region(Region::Ctrl)
    }

    /// The port directory, copied under its sequence lock.
    fn directory(&self) -> Result<Directory> {
        let ctrl = self.ctrl();
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
        let directory = self.directory()?;
        Ok(directory.ports[..directory.count as usize].iter().map(info).collect())
    }

    fn find(&self, port: &str) -> Result<PortEntry> {
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
        let mut bytes = [0u8; std::mem::size_of::<StatusPage>()];
        for _ in 0..1000 {
            if snapshot(self.ctrl(), STATUS_SEQUENCE_OFFSET, STATUS_OFFSET, &mut bytes) {
                let page = StatusPage::read_from_bytes(&bytes).map_err(|_| Error::NoDirectory)?;
                return if page.magic == STATUS_MAGIC { Ok(page) } else { Err(Error::NoDirectory) };
            }
            std::thread::yield_now();
        }
        Err(Error::Timeout)
    }

    /// Kicks the secure world with no traffic: comm-pd refreshes the status page and rings back.
    pub fn refresh(&self) -> Result<StatusPage> {
        self.control.clear()?;
        self.control.kick(0)?;
        if !self.control.wait(CONTROL_TIMEOUT)? {
            return Err(Error::Timeout);
        }
        self.status_page()
    }

    /// One control request and its reply.
    fn control(&self, operation: Operation, port: u32, command: u32, payload: &[u8]) -> Result<(Reply, Vec<u8>)> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::TooLarge { length: payload.len(), max: MAX_CONTROL_PAYLOAD });
        }
        let _lock = self.backend.lock_control()?;
        let ctrl = self.ctrl();
        let request_word = word(ctrl, REQUEST_OFFSET);
        let reply_word = word(ctrl, REPLY_OFFSET);
        let sequence = (request_word.load(Ordering::Acquire) as u32).wrapping_add(1);
        let request = Request { operation: operation as u32, port, command, length: payload.len() as u32 };
        let mut message = request.as_bytes().to_vec();
        message.extend_from_slice(payload);
        write_bytes(ctrl, REQUEST_OFFSET + 8, &message);
        request_word.store(u64::from(sequence) | (message.len() as u64) << 32, Ordering::Release);
        self.control.clear()?;
        self.control.kick(0)?;
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
            self.control.wait(left.min(RECHECK))?;
            self.control.clear()?;
        }
    }

    /// Opens a port by name or id (a decimal number): a new session with both rings empty.
    pub fn open(&self, port: &str) -> Result<Port> {
        let entry = self.find(port)?;
        let name = entry.name().unwrap_or("?").to_owned();
        let (reply, payload) = self.control(Operation::OpenId, entry.id.into(), 0, &[])?;
        let entry = PortEntry::read_from_bytes(&payload)
            .map_err(|_| Error::SecureMisbehaviour("an open reply without the port entry".into()))?;
        let ring = |region: Region, offset: u32, capacity: u32| -> Result<(NonNull<u8>, RingLayout)> {
            let mapping = self.backend.region(region);
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
        Ok(Port {
            tz: self.clone(),
            transport: self.backend.attach()?,
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

    /// A port's counters.
    pub fn status(&self, port: &str) -> Result<PortStatus> {
        let entry = self.find(port)?;
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

    fn wait(&self, started: Instant) -> Result<()> {
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
        self.transport.wait(slice)?;
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
            self.wait(started)?;
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
            self.wait(started)?;
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
            self.wait(started)?;
        }
    }

    /// An ioctl-style call to the port's service: `command` with `input`, its output returned.
    pub fn call(&self, command: u32, input: &[u8]) -> Result<Vec<u8>> {
        let (_, output) = self.tz.control(Operation::Call, self.id.into(), command, input)?;
        Ok(output)
    }

    /// This port's counters in the secure world.
    pub fn status(&self) -> Result<PortStatus> {
        let (_, payload) = self.tz.control(Operation::Status, self.id.into(), 0, &[])?;
        PortStatus::read_from_bytes(&payload).map_err(|_| Error::SecureMisbehaviour("a status reply".into()))
    }

    /// Ends the session.
    pub fn close(self) -> Result<()> {
        self.tz.control(Operation::Close, self.id.into(), 0, &[])?;
        Ok(())
    }
}

/// The doorbell: readable when the secure world rang since the last `try_read`/`try_write` that
/// found nothing to do. Register it with epoll, and call `try_read`/`try_write` when it fires.
impl AsFd for Port {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.transport.doorbell()
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
