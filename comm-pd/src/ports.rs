//! The port engine: comm-pd's port table over the shared regions, the control mailbox, and the
//! callbacks of the secure services.
//!
//! Everything here treats the normal world as hostile. Its control requests are copied once out
//! of `port_ctrl` and then parsed; its rings are read through `tzmk-ring`, which checks every
//! index and record. A port whose ring lies is reset and marked faulted in the directory; every
//! other port keeps being served. Nothing is dropped: a message whose reply does not fit in the
//! port's tx ring stays in the rx ring until the normal world has made room (back-pressure).

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use microkit::port_server::CallSlot;
use microkit::MemoryRegion;
use tzmk_interface::driver::{
    ANY_CORE, DOORBELL_RUNG_OFFSET, PENDING_ANY, PENDING_CONTROL, PENDING_CORES, PENDING_OFFSET, READER_CORE_OFFSET,
    SPIN_DEFAULT, SPIN_HINT_OFFSET,
};
use tzmk_interface::forward;
use tzmk_interface::port::ring::{
    Consumer, PeerMisbehaviour, PeerMisbehaviourOrLayout, Producer, RecvError, RingLayout, SendError,
};
use tzmk_interface::port::{
    encode_name, ControlError, Directory, Operation, PortEntry, PortFault, PortState, PortStatus, Reply, Request,
    Service, DIRECTORY_MAGIC, DIRECTORY_OFFSET, DIRECTORY_SEQUENCE_OFFSET, MAX_CONTROL_MESSAGE, MAX_CONTROL_PAYLOAD,
    MAX_PORTS, PORT_CTRL_SIZE, REPLY_OFFSET, REQUEST_OFFSET,
};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// One port of comm-pd's configuration (ports.toml, turned into a table by build.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    pub id: u16,
    pub name: &'static str,
    pub service: Service,
    /// Data capacity of the normal -> secure ring (a power of two).
    pub rx_capacity: u32,
    /// Data capacity of the secure -> normal ring.
    pub tx_capacity: u32,
}

/// The most distinct cores one announcement rings: Linux's cores on the platforms tzmk knows.
pub const MAX_DOORBELL_CORES: usize = 8;

/// Messages taken from one port before the others get their turn.
const MESSAGES_PER_TURN: usize = 64;

/// How long a forwarded port's owner has to answer a control call before comm-pd cuts it off
/// and faults its port ([`Ports::set_call_deadline`]): well inside the Linux driver's 5 s
/// control timeout, so that the caller gets the refusal rather than a timeout.
pub const OWNER_CALL_MICROS: u64 = 1_000_000;

/// Why the port table cannot be served from the regions system.xml maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    TooManyPorts(usize),
    /// A capacity that is no ring capacity (build.rs refuses these; kept for hand-made tables).
    BadCapacity {
        port: &'static str,
    },
    /// A reply of the port's service (`Service::reply_room`) can take `reply` bytes, its tx ring
    /// carries `carries`: such a message would wait in the rx ring for good (build.rs refuses
    /// these through tools/sdf; kept for hand-made tables).
    ReplyTooLarge {
        port: &'static str,
        reply: usize,
        carries: usize,
    },
    /// `region` holds `size` bytes, the rings need `needed`.
    RegionTooSmall {
        region: &'static str,
        needed: usize,
        size: usize,
    },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::TooManyPorts(n) => write!(f, "{n} ports configured, at most {MAX_PORTS} fit in the directory"),
            TableError::BadCapacity { port } => {
                write!(f, "port '{port}': ring capacity is not a power of two in 64..=2^30")
            }
            TableError::ReplyTooLarge { port, reply, carries } => write!(
                f,
                "port '{port}': a reply may take {reply} bytes, its tx ring carries messages of at most {carries}"
            ),
            TableError::RegionTooSmall { region, needed, size } => {
                write!(f, "system.xml maps {size:#x} bytes of {region}; the ports of ports.toml need {needed:#x}")
            }
        }
    }
}

/// Where one port's rings are in `port_rx` and `port_tx`.
#[derive(Debug, Clone, Copy)]
struct Place {
    rx_offset: usize,
    rx: RingLayout,
    tx_offset: usize,
    tx: RingLayout,
}

fn layouts(port: &PortConfig) -> Result<(RingLayout, RingLayout), TableError> {
    let bad = TableError::BadCapacity { port: port.name };
    Ok((
        RingLayout::new(port.rx_capacity.into()).map_err(|_| bad)?,
        RingLayout::new(port.tx_capacity.into()).map_err(|_| bad)?,
    ))
}

/// The granule rings are placed at: every ring starts on a page of its own and no other ring
/// shares its pages, so that the Linux driver can map one port's rings into its client (`mmap`
/// works in pages) without exposing any other port's.
pub const RING_ALIGN: usize = 4096;

const fn page_up(bytes: usize) -> usize {
    bytes.div_ceil(RING_ALIGN) * RING_ALIGN
}

/// The rings of `table[index]`: in table order, each on pages of its own ([`RING_ALIGN`]). With
/// `index == table.len()`, the bytes all rings need.
fn place(table: &[PortConfig], index: usize) -> Result<(usize, usize, Option<Place>), TableError> {
    let (mut rx_offset, mut tx_offset) = (0, 0);
    for (i, port) in table.iter().enumerate() {
        let (rx, tx) = layouts(port)?;
        if i == index {
            return Ok((rx_offset, tx_offset, Some(Place { rx_offset, rx, tx_offset, tx })));
        }
        rx_offset += page_up(rx.size());
        tx_offset += page_up(tx.size());
    }
    Ok((rx_offset, tx_offset, None))
}

/// The bytes `table` needs: (`port_rx`, `port_tx`, scratch).
pub fn needed(table: &[PortConfig]) -> Result<(usize, usize, usize), TableError> {
    let (rx_end, tx_end, _) = place(table, table.len())?;
    Ok((rx_end, tx_end, largest_message(table)))
}

/// The scratch buffer must hold the largest message of any rx ring, and a control message.
fn largest_message(table: &[PortConfig]) -> usize {
    table
        .iter()
        .filter_map(|p| RingLayout::new(p.rx_capacity.into()).ok())
        .map(|l| l.max_message())
        .max()
        .unwrap_or(0)
        .max(MAX_CONTROL_MESSAGE)
}

/// Checks that the table fits the regions and the scratch buffer: comm-pd refuses to start
/// otherwise, naming the region.
pub fn check_table(
    table: &[PortConfig],
    rx_size: usize,
    tx_size: usize,
    scratch_size: usize,
    ctrl_size: usize,
) -> Result<(), TableError> {
    if table.len() > MAX_PORTS {
        return Err(TableError::TooManyPorts(table.len()));
    }
    if ctrl_size < PORT_CTRL_SIZE {
        return Err(TableError::RegionTooSmall { region: "port_ctrl", needed: PORT_CTRL_SIZE, size: ctrl_size });
    }
    for port in table {
        let (rx, tx) = layouts(port)?;
        let reply = port.service.reply_room(rx.max_message());
        if reply > tx.max_message() {
            return Err(TableError::ReplyTooLarge { port: port.name, reply, carries: tx.max_message() });
        }
    }
    let (rx_end, tx_end, _) = place(table, table.len())?;
    if rx_end > rx_size {
        return Err(TableError::RegionTooSmall { region: "port_rx", needed: rx_end, size: rx_size });
    }
    if tx_end > tx_size {
        return Err(TableError::RegionTooSmall { region: "port_tx", needed: tx_end, size: tx_size });
    }
    let largest = largest_message(table);
    if largest > scratch_size {
        return Err(TableError::RegionTooSmall { region: "comm_scratch", needed: largest, size: scratch_size });
    }
    Ok(())
}

/// Where a secure service puts its answers to one message: the port's tx ring.
#[derive(Debug)]
pub struct Replies<'a> {
    producer: &'a mut Producer,
    status: &'a mut PortStatus,
}

impl Replies<'_> {
    /// Sends one message to the normal world. The engine made sure the room the service asked
    /// for ([`Services::reply_room`]) is free, so within that a send cannot be refused.
    pub fn send(&mut self, message: &[u8]) -> Result<(), SendError> {
        self.producer.try_send(message)?;
        self.status.messages_out += 1;
        self.status.bytes_out += message.len() as u64;
        Ok(())
    }
}

/// The secure services behind the ports: comm-pd calls them back on data and on control calls.
pub trait Services {
    /// Bytes of tx ring a reply to a `length`-byte message may need; 0 if the service never
    /// answers. The message waits in the rx ring until that much is free.
    /// By default, what the service's protocol says (`Service::reply_room`).
    fn reply_room(&self, service: Service, length: usize) -> usize {
        service.reply_room(length)
    }
    /// Whether the service looks at message bytes. One that does not (a sink that only counts)
    /// gets [`message`](Self::message) with an empty slice and the length checked: the bytes are
    /// never copied out of the ring (zero copy), and never read. By default, what the service's
    /// protocol says (`Service::reads_messages`).
    fn reads(&self, service: Service) -> bool {
        service.reads_messages()
    }
    /// Rings the normal world's doorbell at `core` (the monitor's core number, or
    /// [`ANY_CORE`]: the monitor's choice), naming `port` (a directory index) as a hint; `false`
    /// when the monitor refused that core (the engine then rings the monitor's choice). The
    /// engine calls it from [`Ports::announce`], once per core where a reader of a port with news
    /// waits; by default, nothing.
    fn ring_doorbell(&mut self, core: u32, port: u16) -> bool {
        let _ = (core, port);
        true
    }
    /// A message arrived on `port`: its bytes (copied out of shared memory, so stable), or an
    /// empty slice when the service does not [`read`](Self::reads) them.
    fn message(&mut self, port: &PortConfig, message: &[u8], replies: &mut Replies<'_>);
    /// comm-pd put messages on the request ring of forwarded `port`, or made room on its reply
    /// ring, and its owner asked to be told: notify it (by default, nothing).
    fn notify_owner(&mut self, port: &PortConfig) {
        let _ = port;
    }
    /// An ioctl-style call on `port`: writes its output into `output` and returns its length.
    fn call(
        &mut self,
        port: &PortConfig,
        status: &PortStatus,
        command: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, ControlError>;
}

/// One port's live state.
#[derive(Debug)]
struct Slot {
    rx: Option<Consumer>,
    tx: Option<Producer>,
    status: PortStatus,
}

impl Slot {
    /// Stops serving the rings and revokes them, so that a client still holding the session
    /// gets an error on its next read or write instead of waiting on rings nobody serves.
    fn end_session(&mut self) {
        if let Some(rx) = self.rx.take() {
            rx.revoke();
        }
        if let Some(tx) = self.tx.take() {
            tx.revoke();
        }
    }
}

/// What [`Ports::poll`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Poll {
    /// The normal world must be told (a reply, data, or space it waits for).
    pub doorbell: bool,
    /// Whom it concerns: bit `i` for the port at directory index `i`, [`PENDING_CONTROL`] for a
    /// control reply; what [`Ports::announce`] publishes in the pending word.
    pub pending: u64,
    /// Control requests handled.
    pub requests: u32,
    /// Ports reset because the normal world broke the protocol.
    pub faults: u32,
    /// Messages taken from rx rings.
    pub messages: u64,
}

/// A ring from another secure PD whose messages comm-pd forwards to one port's tx ring: a
/// forwarded port's replies, or rt-task's `rt_events`. Secure PD to secure PD traffic through the
/// same ring API and the same checks as the normal world's. The producer is a secure PD, but its
/// ring is read like any other: copied once, then validated, a broken protocol a typed
/// [`PeerMisbehaviour`], never a panic.
#[derive(Debug)]
struct Feed {
    /// `None` once the producer broke the protocol: comm-pd stops reading it.
    ring: Option<Consumer>,
    status: FeedStatus,
}

/// What ties one port to a secure PD other than comm-pd: the feed of its messages to the port's
/// tx ring and, for a [`Service::Forward`] port, the ring comm-pd copies the normal world's
/// messages into for that PD (its owner).
#[derive(Debug, Default)]
struct Link {
    /// comm-pd's producing end of the owner's request ring; `None` without an owner, or once the
    /// owner broke the protocol (then the port is faulted and refuses to open).
    requests: Option<Producer>,
    feed: Option<Feed>,
    /// The owner broke a ring or left a call unanswered: cut off for good.
    cut_off: bool,
    /// The call slots shared with the owner, and the call it has not answered yet.
    call: Option<OwnerCall>,
}

/// A forwarded port's control calls: comm-pd writes each into `to_owner` (the slot at the end of
/// the requests region) and notifies the owner; it answers in `from_owner` (the replies region's)
/// and notifies back (tzmk_interface::forward). comm-pd never waits for it: it goes on serving
/// and looks at the answer, or the deadline, on each poll.
#[derive(Debug)]
struct OwnerCall {
    to_owner: CallSlot,
    from_owner: CallSlot,
    pending: Option<PendingCall>,
}

/// A call posted to an owner and not answered yet.
#[derive(Debug, Clone, Copy)]
struct PendingCall {
    /// The control request it answers (its reply is written only while that is still the
    /// mailbox's latest request).
    request: u32,
    /// The call's own sequence number in the slots.
    call: u32,
    /// The counter reading after which the owner is cut off.
    deadline: u64,
}

/// Why a forwarded port's owner cannot be attached (comm-pd refuses to start, naming the port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// No port of the table has this id, or it is not a `forward` port.
    NotForwarded { id: u16 },
    /// A region cannot hold a ring (too small, misaligned).
    Layout { port: &'static str, ring: &'static str, error: tzmk_interface::port::ring::LayoutError },
    /// The ring carries smaller messages than the port's: `needed` bytes of ring data, `capacity`
    /// in the region.
    RingTooSmall { port: &'static str, ring: &'static str, needed: usize, capacity: usize },
    /// The owner's ring is not an empty or consistent ring (`attach` refused it).
    Peer { port: &'static str, misbehaviour: PeerMisbehaviour },
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::NotForwarded { id } => write!(f, "port {id} is no `forward` port of ports.toml"),
            LinkError::Layout { port, ring, error } => write!(f, "port '{port}': its {ring} region: {error}"),
            LinkError::RingTooSmall { port, ring, needed, capacity } => write!(
                f,
                "port '{port}': its {ring} region holds a ring of {capacity:#x} bytes, the port's messages need {needed:#x} (system.xml maps too little)"
            ),
            LinkError::Peer { port, misbehaviour } => write!(f, "port '{port}': the owner's reply ring: {misbehaviour}"),
        }
    }
}

/// What a feed did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStatus {
    /// Messages put on the port's tx ring.
    pub forwarded: u64,
    /// Messages taken while the port was not open (nobody to hear them).
    pub unheard: u64,
    /// Times the port's tx ring was full: the messages waited in the feed (the producer refuses
    /// and counts new ones when its ring fills: it never waits).
    pub stalls: u64,
    /// How the producer broke the protocol, if it did (then the feed is no longer read).
    pub fault: Option<PeerMisbehaviour>,
}

#[derive(Debug)]
pub struct Ports {
    table: &'static [PortConfig],
    ctrl: MemoryRegion,
    rx: MemoryRegion,
    tx: MemoryRegion,
    scratch: MemoryRegion,
    slots: [Slot; MAX_PORTS],
    directory: Directory,
    last_request: u32,
    /// By table index: the secure PDs behind the port other than comm-pd.
    links: [Link; MAX_PORTS],
    /// Counter ticks to keep looking for more messages once the rings run dry, after a turn that
    /// took some, before asking for a kick (0: never; see [`set_spin`](Self::set_spin)).
    spin_ticks: u64,
    /// Run between a control request's copy and its re-check, as the normal world may write at
    /// that instant (the harness's torn-request tests).
    #[cfg(feature = "harness")]
    copy_hook: Option<fn(&MemoryRegion)>,
    /// The next control call's sequence number (never 0).
    next_call: u32,
    /// Counter ticks an owner has to answer a call.
    call_ticks: u64,
    /// Ticks added to the counter (the harness's clock, which tests move by hand).
    #[cfg(feature = "harness")]
    clock_offset: u64,
}

impl Ports {
    /// Serves `table` over the regions; publishes the directory with every port closed.
    ///
    /// # Safety
    /// `scratch` must be mapped into this PD only (no other PD or world can write it), and the
    /// other regions must be mapped read-write for as long as `Ports` lives.
    pub unsafe fn new(
        table: &'static [PortConfig],
        ctrl: MemoryRegion,
        rx: MemoryRegion,
        tx: MemoryRegion,
        scratch: MemoryRegion,
    ) -> Result<Self, TableError> {
        check_table(table, rx.size(), tx.size(), scratch.size(), ctrl.size())?;
        let mut directory = Directory::new_zeroed();
        directory.magic = DIRECTORY_MAGIC;
        directory.count = table.len() as u32;
        for (i, port) in table.iter().enumerate() {
            let Place { rx_offset, rx: rx_layout, tx_offset, tx: tx_layout } =
                place(table, i)?.2.ok_or(TableError::TooManyPorts(i))?;
            directory.ports[i] = PortEntry {
                id: port.id,
                state: PortState::Closed as u8,
                service: port.service as u8,
                name: encode_name(port.name).ok_or(TableError::BadCapacity { port: port.name })?,
                rx_offset: rx_offset as u32,
                rx_capacity: rx_layout.capacity() as u32,
                tx_offset: tx_offset as u32,
                tx_capacity: tx_layout.capacity() as u32,
                ..Default::default()
            };
        }
        let slots = core::array::from_fn(|i| Slot {
            rx: None,
            tx: None,
            status: PortStatus {
                id: table.get(i).map_or(0, |p| p.id),
                service: table.get(i).map_or(0, |p| p.service as u8),
                ..Default::default()
            },
        });
        let links = core::array::from_fn(|_| Link::default());
        let ports = Self {
            table,
            ctrl,
            rx,
            tx,
            scratch,
            slots,
            directory,
            last_request: 0,
            links,
            spin_ticks: 0,
            #[cfg(feature = "harness")]
            copy_hook: None,
            next_call: 1,
            call_ticks: microkit::timer::ticks_from_micros(OWNER_CALL_MICROS),
            #[cfg(feature = "harness")]
            clock_offset: 0,
        };
        // The request slot may hold anything at boot: only a sequence number different from the
        // one found now is a request.
        let mut ports = ports;
        ports.last_request = ports.request_header().0;
        // Nobody waits yet, and nothing is pending.
        for index in 0..MAX_PORTS {
            let _ = ports.ctrl.write_bytes(READER_CORE_OFFSET + 4 * index, &ANY_CORE.to_le_bytes());
        }
        for word in 0..=PENDING_ANY {
            if let Ok(word) = ports.ctrl.atomic_u64(PENDING_OFFSET + 8 * word) {
                word.store(0, Ordering::Release);
            }
        }
        // comm-pd's own spin window until the normal world asks for less.
        let _ = ports.ctrl.write_bytes(SPIN_HINT_OFFSET, &SPIN_DEFAULT.to_le_bytes());
        ports.publish_directory();
        Ok(ports)
    }

    pub fn table(&self) -> &'static [PortConfig] {
        self.table
    }

    /// Forwards the messages of the ring in `region` (the whole region, produced by another
    /// secure PD, which resets it) to the first port of `service`: on each [`poll`](Self::poll),
    /// while that port is open and its tx ring has room; while it is not open they are taken and
    /// counted as unheard. A message longer than the port's tx ring carries breaks the feed.
    /// Without a port of `service` nothing is read (the producer's ring fills; it refuses).
    ///
    /// # Safety
    /// `region` must stay mapped read-write while `Ports` lives, and be touched by no one but the
    /// ring's producer (through the protocol or as arbitrary bytes: both are survived).
    pub unsafe fn attach_feed(
        &mut self,
        region: MemoryRegion,
        service: Service,
    ) -> Result<(), PeerMisbehaviourOrLayout> {
        let base = NonNull::new(region.as_ptr())
            .ok_or(PeerMisbehaviourOrLayout::Layout(tzmk_interface::port::ring::LayoutError::Misaligned))?;
        let layout = RingLayout::largest_within(region.size())?;
        // SAFETY: forwarded contract; the layout fits in the region.
        let ring = unsafe { Consumer::attach(base, region.size(), layout) }?;
        if let Some(index) = self.table.iter().position(|p| p.service == service) {
            self.links[index].feed = Some(Feed { ring: Some(ring), status: FeedStatus::default() });
        }
        Ok(())
    }

    /// Attaches the owner of the `forward` port `id`: `requests` is the ring comm-pd copies each
    /// of the normal world's messages into (comm-pd produces and resets it), `replies` the ring
    /// the owner answers on (it produces and resets it; zeroed memory is an empty ring), whose
    /// messages go to the port's tx ring as a feed's do. Each ring must carry the port's largest
    /// message. Until it is attached, the port refuses to open.
    ///
    /// # Safety
    /// Both regions must stay mapped read-write while `Ports` lives, and be touched by no one but
    /// the owner (through the ring protocol or as arbitrary bytes: both are survived).
    pub unsafe fn attach_owner(
        &mut self,
        id: u16,
        requests: MemoryRegion,
        replies: MemoryRegion,
    ) -> Result<(), LinkError> {
        let index = self
            .index_of(id)
            .filter(|&i| self.table[i].service == Service::Forward)
            .ok_or(LinkError::NotForwarded { id })?;
        let port = &self.table[index];
        let (rx, tx) = layouts(port).map_err(|_| LinkError::NotForwarded { id })?;
        // Each region: the ring, then the call slot at its end (tzmk_interface::forward).
        let ring = |region: &MemoryRegion, name: &'static str, carries: RingLayout| {
            let layout = RingLayout::largest_within(forward::ring_bytes(region.size()))
                .map_err(|error| LinkError::Layout { port: port.name, ring: name, error })?;
            if layout.max_message() < carries.max_message() {
                return Err(LinkError::RingTooSmall {
                    port: port.name,
                    ring: name,
                    needed: carries.capacity(),
                    capacity: layout.capacity(),
                });
            }
            let base = NonNull::new(region.as_ptr()).ok_or(LinkError::Layout {
                port: port.name,
                ring: name,
                error: tzmk_interface::port::ring::LayoutError::Misaligned,
            })?;
            Ok((base, layout))
        };
        let (request_base, request_layout) = ring(&requests, "requests", rx)?;
        let (reply_base, reply_layout) = ring(&replies, "replies", tx)?;
        // SAFETY: forwarded contract; each layout fits in its region.
        let producer = unsafe { Producer::new(request_base, forward::ring_bytes(requests.size()), request_layout) }
            .map_err(|error| LinkError::Layout { port: port.name, ring: "requests", error })?;
        // SAFETY: as above.
        let consumer = unsafe { Consumer::attach(reply_base, forward::ring_bytes(replies.size()), reply_layout) }
            .map_err(|e| match e {
                PeerMisbehaviourOrLayout::Layout(error) => {
                    LinkError::Layout { port: port.name, ring: "replies", error }
                }
                PeerMisbehaviourOrLayout::Peer(misbehaviour) => LinkError::Peer { port: port.name, misbehaviour },
            })?;
        let slot = |region, ring| {
            CallSlot::at_end_of(region).ok_or(LinkError::Layout {
                port: port.name,
                ring,
                error: tzmk_interface::port::ring::LayoutError::Misaligned,
            })
        };
        let (to_owner, from_owner) = (slot(requests, "requests")?, slot(replies, "replies")?);
        // comm-pd writes the requests region's slot: no call yet.
        to_owner.write(0, 0, &[]);
        self.links[index] = Link {
            requests: Some(producer),
            feed: Some(Feed { ring: Some(consumer), status: FeedStatus::default() }),
            cut_off: false,
            call: Some(OwnerCall { to_owner, from_owner, pending: None }),
        };
        Ok(())
    }

    /// After a poll that took messages, keep looking at the open rings for `ticks` of the counter
    /// (`microkit::timer`) before asking the normal world for a kick and returning: a client that
    /// is streaming or answering at once then costs no kick and no wake-up of this PD. The
    /// window restarts whenever a message arrives in it, and never runs longer than `ticks`
    /// without one: a client that stops costs at most one window. Ports stalled on a full tx ring
    /// are not looked at (the client's read kicks). 0, the default, returns at once.
    pub fn set_spin(&mut self, ticks: u64) {
        self.spin_ticks = ticks;
    }

    /// How long an owner has to answer a control call, in counter ticks (by default
    /// [`OWNER_CALL_MICROS`]): comm-pd looks at the deadline on every poll (every kick, owner
    /// notification and rt-task's statistics notification), so a silent owner is cut off within
    /// the deadline and the next event after it.
    pub fn set_call_deadline(&mut self, ticks: u64) {
        self.call_ticks = ticks;
    }

    /// Moves the engine's clock on by `ticks` (harness only: tests pass deadlines without waiting).
    #[cfg(feature = "harness")]
    pub fn advance_clock(&mut self, ticks: u64) {
        self.clock_offset += ticks;
    }

    /// The counter, as the engine's deadlines read it.
    fn now(&self) -> u64 {
        #[cfg(feature = "harness")]
        return microkit::timer::now().saturating_add(self.clock_offset);
        #[cfg(not(feature = "harness"))]
        microkit::timer::now()
    }

    /// Whether forwarded port `id` has a control call its owner has not answered yet.
    pub fn call_pending(&self, id: u16) -> bool {
        self.index_of(id).is_some_and(|i| self.links[i].call.as_ref().is_some_and(|c| c.pending.is_some()))
    }

    /// The counters of the feed to port `id` (`None` without one).
    pub fn feed_status(&self, id: u16) -> Option<FeedStatus> {
        self.links[self.index_of(id)?].feed.as_ref().map(|f| f.status)
    }

    /// Whether the owner of port `id` was cut off for breaking a ring.
    pub fn is_cut_off(&self, id: u16) -> bool {
        self.index_of(id).is_some_and(|i| self.links[i].cut_off)
    }

    /// A port's counters.
    pub fn status(&self, id: u16) -> Option<PortStatus> {
        self.index_of(id).map(|i| self.slots[i].status)
    }

    fn index_of(&self, id: u16) -> Option<usize> {
        self.table.iter().position(|p| p.id == id)
    }

    fn publish_directory(&mut self) {
        for (i, slot) in self.slots.iter().enumerate().take(self.table.len()) {
            let entry = &mut self.directory.ports[i];
            entry.state = slot.status.state;
            entry.session = slot.status.session;
            entry.faults = slot.status.faults;
            entry.last_fault = slot.status.last_fault;
        }
        // Bounds were checked in `new` (PORT_CTRL_SIZE).
        let _ = self.ctrl.publish(DIRECTORY_SEQUENCE_OFFSET, DIRECTORY_OFFSET, self.directory.as_bytes());
    }

    /// The request slot's header word: (sequence, length). One atomic load: a copy.
    fn request_header(&self) -> (u32, u32) {
        let word = self.ctrl.atomic_u64(REQUEST_OFFSET).map_or(0, |w| w.load(Ordering::Acquire));
        (word as u32, (word >> 32) as u32)
    }

    /// Handles a new control request (if any), then serves every open port. Call it on every kick
    /// and whenever a service may have room again.
    pub fn poll(&mut self, services: &mut impl Services) -> Poll {
        let mut poll = Poll::default();
        loop {
            if self.control(services) {
                poll.requests += 1;
                poll.doorbell = true;
                poll.pending |= PENDING_CONTROL;
            }
            self.calls(&mut poll);
            let mut more = false;
            // Ports drained this round (they ask for a kick before the engine returns), and ports
            // waiting for tx room (the client's release kicks).
            let (mut drained, mut stalled) = (0u32, 0u32);
            for index in 0..self.table.len() {
                match self.serve(index, services) {
                    Ok(turn) => {
                        poll.doorbell |= turn.doorbell;
                        poll.pending |= u64::from(turn.doorbell) << index;
                        poll.messages += turn.messages;
                        more |= turn.more;
                        drained |= u32::from(turn.drained) << index;
                        stalled |= u32::from(turn.stalled) << index;
                    }
                    Err(fault) => {
                        self.fault(index, fault);
                        poll.faults += 1;
                        poll.doorbell = true;
                        poll.pending |= 1 << index;
                    }
                }
            }
            for index in 0..self.table.len() {
                if let Some(forwarded) = self.forward(index, services) {
                    poll.doorbell |= forwarded.doorbell;
                    poll.pending |= u64::from(forwarded.doorbell) << index;
                    more |= forwarded.more;
                }
            }
            if !more && poll.messages > 0 && self.spin_ticks > 0 {
                // The client may be waiting for what this round sent: tell it before spinning.
                if poll.doorbell {
                    self.announce(poll.pending, services);
                    poll.doorbell = false;
                    poll.pending = 0;
                }
                more = self.spin(stalled);
            }
            if more {
                continue;
            }
            // Drained: ask for a kick on the next message, unless one arrived meanwhile.
            for index in (0..self.table.len()).filter(|i| drained & 1 << i != 0) {
                let Some(rx) = self.slots[index].rx.as_mut() else { continue };
                match rx.request_signal() {
                    Ok(arrived) => more |= arrived,
                    Err(m) => {
                        self.fault(index, PortFault::new(PortFault::RX, m));
                        poll.faults += 1;
                        poll.doorbell = true;
                        poll.pending |= 1 << index;
                    }
                }
            }
            if !more {
                return poll;
            }
        }
    }

    /// Tells the normal world about `pending` (a [`Poll::pending`]): ORs each bit into the
    /// pending word of the core it is aimed at, then rings the doorbell once per core where a reader of those ports waits
    /// (the driver's `reader_core` words: allegations, passed to the monitor, which refuses a core
    /// that is no running Linux core; the engine then rings the monitor's choice instead). A
    /// control reply, or more than [`MAX_DOORBELL_CORES`] cores, rings the monitor's choice.
    pub fn announce(&mut self, pending: u64, services: &mut impl Services) {
        if pending == 0 {
            return;
        }
        // (core, the bits aimed at it, a port to name as the hint)
        let mut cores = [(ANY_CORE, 0u64, 0u16); MAX_DOORBELL_CORES];
        let mut count = 0;
        let mut any = pending & PENDING_CONTROL;
        for index in (0..self.table.len()).filter(|i| pending & 1 << i != 0) {
            let core = self.reader_core(index);
            if core == ANY_CORE || core as usize >= PENDING_CORES {
                any |= 1 << index;
            } else if let Some(slot) = cores[..count].iter_mut().find(|(c, _, _)| *c == core) {
                slot.1 |= 1 << index;
            } else if count == MAX_DOORBELL_CORES {
                any |= 1 << index;
            } else {
                cores[count] = (core, 1 << index, index as u16);
                count += 1;
            }
        }
        for &(core, bits, port) in &cores[..count] {
            // Release: what the rings say now is visible before the bits that point at them.
            self.post(core as usize, bits);
            self.stamp(DOORBELL_RUNG_OFFSET, microkit::timer::now());
            if !services.ring_doorbell(core, port) {
                // The monitor refused the core: the monitor's choice takes these bits too.
                any |= bits;
            }
        }
        if any != 0 {
            self.post(PENDING_ANY, any);
            let port = (0..self.table.len()).find(|i| any & 1 << i != 0).unwrap_or(0);
            self.stamp(DOORBELL_RUNG_OFFSET, microkit::timer::now());
            services.ring_doorbell(ANY_CORE, port as u16);
        }
    }

    /// Writes a counter reading into one of `port_ctrl`'s stamps ([`KICK_SEEN_OFFSET`](tzmk_interface::driver::KICK_SEEN_OFFSET),
    /// [`DOORBELL_RUNG_OFFSET`]): a hint for the normal world's measurements, read by nothing here.
    pub fn stamp(&self, offset: usize, ticks: u64) {
        if let Ok(word) = self.ctrl.atomic_u64(offset) {
            word.store(ticks, Ordering::Relaxed);
        }
    }

    /// ORs `bits` into pending word `word` (a core's, or [`PENDING_ANY`]).
    fn post(&self, word: usize, bits: u64) {
        if let Ok(word) = self.ctrl.atomic_u64(PENDING_OFFSET + 8 * word) {
            word.fetch_or(bits, Ordering::Release);
        }
    }

    /// The spin window in ticks: [`set_spin`](Self::set_spin)'s, or less when the normal world's
    /// spin hint asks for less (one copy of the word; it can never make the window longer).
    pub fn spin_window(&self) -> u64 {
        let mut bytes = [0u8; 4];
        let hint = match self.ctrl.read_bytes(SPIN_HINT_OFFSET, &mut bytes) {
            Ok(()) => u32::from_le_bytes(bytes),
            Err(_) => SPIN_DEFAULT,
        };
        if hint == SPIN_DEFAULT {
            return self.spin_ticks;
        }
        self.spin_ticks.min(microkit::timer::ticks_from_micros(hint.into()))
    }

    /// The core where port `index`'s reader waits, as the driver wrote it: one copy of the word.
    fn reader_core(&self, index: usize) -> u32 {
        let mut bytes = [0u8; 4];
        match self.ctrl.read_bytes(READER_CORE_OFFSET + 4 * index, &mut bytes) {
            Ok(()) => u32::from_le_bytes(bytes),
            Err(_) => ANY_CORE,
        }
    }

    /// Looks at the open rings (but those in `stalled`) and the mailbox for up to the spin
    /// window; `true` as soon as something arrived (or a ring looks broken: `serve` says how).
    fn spin(&mut self, stalled: u32) -> bool {
        let ticks = self.spin_window();
        if ticks == 0 {
            return false;
        }
        let deadline = microkit::timer::now().saturating_add(ticks);
        loop {
            for (index, slot) in self.slots.iter_mut().enumerate().take(self.table.len()) {
                if stalled & 1 << index != 0 {
                    continue;
                }
                if let Some(rx) = slot.rx.as_mut() {
                    if rx.pending().map_or(true, |bytes| bytes > 0) {
                        return true;
                    }
                }
            }
            let (sequence, length) = self.request_header();
            if sequence != self.last_request && length != 0 {
                return true;
            }
            if microkit::timer::now() >= deadline {
                return false;
            }
            core::hint::spin_loop();
        }
    }

    /// One turn of port `index`'s feed: move what fits to its tx ring. `None` without a feed.
    fn forward(&mut self, index: usize, services: &mut impl Services) -> Option<Turn> {
        let Self { links, slots, scratch, table, .. } = self;
        let feed = links[index].feed.as_mut()?;
        let ring = feed.ring.as_mut()?;
        // SAFETY: as in `serve`: the scratch region is this PD's alone; the slice lives until the
        // end of this turn, and no other turn runs meanwhile.
        let scratch = unsafe { core::slice::from_raw_parts_mut(scratch.as_ptr(), scratch.size()) };
        let mut turn = Turn::default();
        // The port's tx ring broken by the normal world: that port is reset, the feed waits.
        let mut tx_broken = None;
        let mut blocked = false;
        let mut taken = 0;
        let slot = &mut slots[index];
        let outcome = loop {
            if taken == MESSAGES_PER_TURN {
                break Ok(());
            }
            let length = match ring.peek(scratch) {
                Ok(Some(length)) => length,
                Ok(None) => break Ok(()),
                Err(RecvError::Peer(m)) => break Err(m),
                // `check_table` made scratch hold any message of a ring up to the largest port's.
                Err(RecvError::BufferTooSmall(_)) => break Err(PeerMisbehaviour::BadLength),
            };
            if let Some(tx) = slot.tx.as_mut() {
                if length > tx.layout().max_message() {
                    break Err(PeerMisbehaviour::BadLength);
                }
                match tx.fits_or_ask(length) {
                    Ok(true) => {}
                    Ok(false) => {
                        feed.status.stalls += 1;
                        blocked = true;
                        break Ok(());
                    }
                    Err(m) => {
                        tx_broken = Some(m);
                        break Ok(());
                    }
                }
                // Room was checked just above: within it a send cannot be refused.
                if (Replies { producer: tx, status: &mut slot.status }).send(&scratch[..length]).is_ok() {
                    feed.status.forwarded += 1;
                }
            } else {
                feed.status.unheard += 1;
            }
            ring.consume();
            taken += 1;
        };
        turn.messages = taken as u64;
        // An owner that waits for room to answer in is told there is some (rt-task never waits:
        // it refuses instead). Only when some was made: a release of nothing would wake an owner
        // that finds no room and asks again, a notification ping-pong without progress.
        if taken > 0 && ring.release() {
            services.notify_owner(&table[index]);
        }
        if let Some(tx) = slot.tx.as_mut() {
            turn.doorbell |= tx.publish();
        }
        let outcome = match outcome {
            Ok(()) if taken == MESSAGES_PER_TURN => {
                turn.more = true;
                Ok(())
            }
            Ok(()) if !blocked && tx_broken.is_none() => ring.request_signal().map(|more| turn.more = more),
            outcome => outcome,
        };
        if let Err(m) = outcome {
            feed.ring = None;
            feed.status.fault = Some(m);
            if table[index].service == Service::Forward {
                self.cut_off(index, m);
            } else {
                log::warn!(
                    "the secure feed of port '{}' broke the ring protocol ({m}): no longer read",
                    table[index].name
                );
            }
            turn.doorbell = true;
        }
        if let Some(m) = tx_broken {
            self.fault(index, PortFault::new(PortFault::TX, m));
            turn.doorbell = true;
        }
        Some(turn)
    }

    /// The owner of forwarded port `index` broke one of its rings: it gets nothing more, the
    /// port's session ends as a faulted one and the port refuses to open again; every other
    /// port goes on.
    fn cut_off(&mut self, index: usize, misbehaviour: PeerMisbehaviour) {
        if let Some(feed) = self.links[index].feed.as_mut() {
            feed.status.fault.get_or_insert(misbehaviour);
        }
        log::warn!("port '{}': its owner broke a ring ({misbehaviour}): cut off", self.table[index].name);
        self.end_owner(index, PortFault::new(PortFault::OWNER, misbehaviour));
    }

    /// Cuts off forwarded port `index`'s owner: nothing more to it or from it (rings, calls),
    /// the port's session ends faulted by `fault` and the port refuses to open again.
    fn end_owner(&mut self, index: usize, fault: PortFault) {
        let link = &mut self.links[index];
        link.cut_off = true;
        link.requests = None;
        if let Some(feed) = link.feed.as_mut() {
            feed.ring = None;
        }
        if let Some(call) = link.call.as_mut() {
            call.pending = None;
        }
        self.end_faulted(index, fault);
    }

    /// Looks at every call posted to an owner: an answer is checked and becomes the control
    /// reply; an owner past its deadline is cut off, its port faulted
    /// ([`PortFault::owner_silent`]) and the call refused (`ServiceUnavailable`). A reply is
    /// written only while the call's request is still the mailbox's latest: a normal world that
    /// gave up on it and sent another has its new request answered instead.
    fn calls(&mut self, poll: &mut Poll) {
        let now = self.now();
        for index in 0..self.table.len() {
            let Some(call) = self.links[index].call.as_mut() else { continue };
            let Some(pending) = call.pending else { continue };
            let mut output = [0u8; MAX_CONTROL_PAYLOAD];
            let answer = match call.from_owner.sequence() == pending.call {
                true => call.from_owner.read(&mut output).filter(|a| a.sequence == pending.call),
                false => None,
            };
            let port = self.table[index].name;
            let outcome = match answer {
                Some(answer) => {
                    call.pending = None;
                    match forward::answer(&answer) {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            log::warn!("port '{port}': its owner answered a call wrongly ({e}): refused");
                            Err(ControlError::ServiceUnavailable)
                        }
                    }
                }
                None if now >= pending.deadline => {
                    log::warn!("port '{port}': its owner left a call unanswered past the deadline: cut off");
                    self.end_owner(index, PortFault::owner_silent());
                    poll.faults += 1;
                    poll.doorbell = true;
                    poll.pending |= 1 << index;
                    Err(ControlError::ServiceUnavailable)
                }
                None => continue,
            };
            if pending.request != self.last_request {
                continue;
            }
            let header = match outcome {
                Ok(length) => Reply { error: 0, port: self.table[index].id.into(), value: 0, length: length as u32 },
                Err(e) => Reply { error: e as u32, port: self.table[index].id.into(), value: 0, length: 0 },
            };
            self.write_reply(pending.request, &header, &output[..header.length as usize]);
            poll.doorbell = true;
            poll.pending |= PENDING_CONTROL;
        }
    }

    /// Posts a control call to forwarded port `index`'s owner for control request `request`: one
    /// call per owner at a time (another is refused until it answers or is cut off).
    fn post_call(
        &mut self,
        index: usize,
        request: u32,
        command: u32,
        input: &[u8],
        services: &mut impl Services,
    ) -> Result<(), ControlError> {
        let sequence = self.next_call;
        let deadline = self.now().saturating_add(self.call_ticks);
        let link = &mut self.links[index];
        let call = link.call.as_mut().filter(|_| !link.cut_off).ok_or(ControlError::ServiceUnavailable)?;
        if call.pending.is_some() {
            return Err(ControlError::ServiceUnavailable);
        }
        call.to_owner.write(sequence, command, input);
        call.pending = Some(PendingCall { request, call: sequence, deadline });
        self.next_call = sequence.wrapping_add(1).max(1);
        services.notify_owner(&self.table[index]);
        Ok(())
    }

    fn fault(&mut self, index: usize, fault: PortFault) {
        log::warn!("port '{}' reset: the normal world broke the {fault}", self.table[index].name);
        self.end_faulted(index, fault);
    }

    /// Ends port `index`'s session as faulted by `fault`, and says so in the directory.
    fn end_faulted(&mut self, index: usize, fault: PortFault) {
        let slot = &mut self.slots[index];
        slot.end_session();
        slot.status.state = PortState::Faulted as u8;
        slot.status.faults += 1;
        slot.status.last_fault = fault.0;
        self.publish_directory();
    }

    /// One turn of one port: take up to [`MESSAGES_PER_TURN`] messages whose replies fit.
    fn serve(&mut self, index: usize, services: &mut impl Services) -> Result<Turn, PortFault> {
        let table = self.table;
        let port = &table[index];
        let slot = &mut self.slots[index];
        // A forwarded port's messages go to its owner's request ring, not to a local service.
        let mut requests = match port.service {
            Service::Forward => match self.links[index].requests.as_mut() {
                Some(requests) => Some(requests),
                // Cut off (the session ended with it): nothing to serve.
                None => return Ok(Turn::default()),
            },
            _ => None,
        };
        let mut owner_broken = None;
        let (Some(rx), Some(tx)) = (slot.rx.as_mut(), slot.tx.as_mut()) else { return Ok(Turn::default()) };
        let rx_fault = |m: PeerMisbehaviour| PortFault::new(PortFault::RX, m);
        let tx_fault = |m: PeerMisbehaviour| PortFault::new(PortFault::TX, m);
        // SAFETY: `new`'s contract: the scratch region is this PD's alone, so no one else writes
        // it while the slice lives (until the end of this turn).
        let scratch = unsafe { core::slice::from_raw_parts_mut(self.scratch.as_ptr(), self.scratch.size()) };
        let mut turn = Turn::default();
        let mut blocked = false;
        let mut taken = 0;
        let reads = services.reads(port.service);
        while taken < MESSAGES_PER_TURN {
            let peeked = if reads { rx.peek(scratch) } else { rx.peek_length().map_err(RecvError::Peer) };
            let length = match peeked {
                Ok(Some(length)) => length,
                Ok(None) => break,
                Err(RecvError::Peer(m)) => return Err(rx_fault(m)),
                // `check_table` made the scratch region hold the largest message of every ring.
                Err(RecvError::BufferTooSmall(_)) => return Err(rx_fault(PeerMisbehaviour::BadLength)),
            };
            if let Some(requests) = requests.as_deref_mut() {
                // Room in the owner's ring, else the message waits (the owner's release notifies).
                match requests.fits_or_ask(length) {
                    Ok(true) => {}
                    Ok(false) => {
                        slot.status.stalls += 1;
                        blocked = true;
                        break;
                    }
                    Err(m) => {
                        owner_broken = Some(m);
                        break;
                    }
                }
                rx.consume();
                taken += 1;
                slot.status.messages_in += 1;
                slot.status.bytes_in += length as u64;
                // Within the room just checked, and `attach_owner` made the ring carry any message
                // of the port's rx ring: a send cannot be refused.
                if let Err(e) = requests.try_send(&scratch[..length]) {
                    log::warn!("port '{}': a message not forwarded: {e}", port.name);
                }
                continue;
            }
            let room = services.reply_room(port.service, length);
            if room > 0 && !tx.fits_or_ask(room).map_err(tx_fault)? {
                slot.status.stalls += 1;
                blocked = true;
                break;
            }
            rx.consume();
            taken += 1;
            slot.status.messages_in += 1;
            slot.status.bytes_in += length as u64;
            let message = if reads { &scratch[..length] } else { &[][..] };
            services.message(port, message, &mut Replies { producer: tx, status: &mut slot.status });
        }
        turn.messages = taken as u64;
        turn.doorbell |= rx.release();
        turn.doorbell |= tx.publish();
        if let Some(requests) = requests {
            if requests.publish() {
                services.notify_owner(port);
            }
        }
        if taken == MESSAGES_PER_TURN {
            turn.more = true;
        } else {
            turn.drained = !blocked && owner_broken.is_none();
            turn.stalled = blocked;
        }
        if let Some(m) = owner_broken {
            self.cut_off(index, m);
            turn.doorbell = true;
        }
        Ok(turn)
    }

    /// Runs `hook` between each control request's copy and its re-check (harness only).
    #[cfg(feature = "harness")]
    pub fn set_copy_hook(&mut self, hook: Option<fn(&MemoryRegion)>) {
        self.copy_hook = hook;
    }

    /// Handles the request in the mailbox if it is new; `true` if it was.
    ///
    /// The normal world may write the slot at any time: a driver that gave up waiting (its
    /// timeout) writes its next request while this one may still be copied. So the header word
    /// is read before and after the copy (a sequence lock, as `MemoryRegion::snapshot`), and a
    /// copy during which it changed is dropped unanswered and unrun: the request it was is
    /// abandoned, the one that replaced it is taken whole on the next look. A header with length
    /// 0 announces a request being written (docs/ports.md): it is no request yet.
    fn control(&mut self, services: &mut impl Services) -> bool {
        let (sequence, length) = self.request_header();
        if sequence == self.last_request || length == 0 {
            return false;
        }
        let mut message = [0u8; MAX_CONTROL_MESSAGE];
        let copied = self.copy_request(length as usize, &mut message);
        #[cfg(feature = "harness")]
        if let Some(hook) = self.copy_hook {
            hook(&self.ctrl);
        }
        // The copy's loads before the re-check's.
        core::sync::atomic::fence(Ordering::Acquire);
        if self.request_header() != (sequence, length) {
            log::warn!("control request {sequence} was rewritten while it was copied: dropped");
            return false;
        }
        // Taken once: from here on the request runs, whatever the slot says.
        self.last_request = sequence;
        let mut body = [0u8; MAX_CONTROL_PAYLOAD];
        let header = match copied {
            Some((request, payload)) => {
                let payload = &message[core::mem::size_of::<Request>()..][..payload];
                match self.handle(services, sequence, &request, payload, &mut body) {
                    Ok(Handled::Reply { value, length }) => {
                        Reply { error: 0, port: request.port, value, length: length as u32 }
                    }
                    // Answered when the owner answers, or refused at the deadline (`calls`).
                    Ok(Handled::Posted) => return true,
                    Err(e) => Reply { error: e as u32, port: request.port, value: 0, length: 0 },
                }
            }
            None => Reply { error: ControlError::Malformed as u32, ..Default::default() },
        };
        self.write_reply(sequence, &header, &body[..header.length as usize]);
        true
    }

    /// Writes the reply to control request `sequence`: the body first, then the header word with
    /// the request's sequence, so the normal world sees the sequence only once the reply is whole.
    fn write_reply(&self, sequence: u32, header: &Reply, body: &[u8]) {
        let mut reply = [0u8; MAX_CONTROL_MESSAGE];
        let (head, rest) = reply.split_at_mut(core::mem::size_of::<Reply>());
        head.copy_from_slice(header.as_bytes());
        let body = &body[..body.len().min(rest.len())];
        rest[..body.len()].copy_from_slice(body);
        let length = head.len() + body.len();
        let _ = self.ctrl.write_bytes(REPLY_OFFSET + 8, &reply[..length]);
        if let Ok(word) = self.ctrl.atomic_u64(REPLY_OFFSET) {
            word.store(u64::from(sequence) | (length as u64) << 32, Ordering::Release);
        }
    }

    /// Copies the request out of the mailbox (once) and checks its framing: the request header
    /// and the payload length it claims.
    fn copy_request(&self, length: usize, message: &mut [u8; MAX_CONTROL_MESSAGE]) -> Option<(Request, usize)> {
        let header_size = core::mem::size_of::<Request>();
        if !(header_size..=MAX_CONTROL_MESSAGE).contains(&length) {
            return None;
        }
        self.ctrl.read_bytes(REQUEST_OFFSET + 8, &mut message[..length]).ok()?;
        let request = Request::read_from_bytes(&message[..header_size]).ok()?;
        let payload = request.length as usize;
        (payload == length - header_size && payload <= MAX_CONTROL_PAYLOAD).then_some((request, payload))
    }

    /// One checked control request (number `sequence`): the reply's value and payload length, or
    /// a call posted to a forwarded port's owner, answered later.
    fn handle(
        &mut self,
        services: &mut impl Services,
        sequence: u32,
        request: &Request,
        payload: &[u8],
        out: &mut [u8; MAX_CONTROL_PAYLOAD],
    ) -> Result<Handled, ControlError> {
        let operation = Operation::from_u32(request.operation).ok_or(ControlError::Malformed)?;
        let index = match operation {
            Operation::OpenName => {
                let name = core::str::from_utf8(payload).map_err(|_| ControlError::Malformed)?;
                self.table.iter().position(|p| p.name == name).ok_or(ControlError::NoSuchPort)?
            }
            _ => {
                let id = u16::try_from(request.port).map_err(|_| ControlError::NoSuchPort)?;
                self.index_of(id).ok_or(ControlError::NoSuchPort)?
            }
        };
        match operation {
            Operation::OpenId | Operation::OpenName => {
                self.open(index)?;
                let entry = self.directory.ports[index];
                out[..entry.as_bytes().len()].copy_from_slice(entry.as_bytes());
                Ok(Handled::Reply { value: entry.session, length: entry.as_bytes().len() })
            }
            Operation::Close => {
                let slot = &mut self.slots[index];
                // The request names the session it ends: a client closing late (a dead process
                // whose port someone has reopened since) must not end the new session.
                if slot.status.state != PortState::Open as u8 || request.command != slot.status.session {
                    return Err(ControlError::NotOpen);
                }
                slot.end_session();
                slot.status.state = PortState::Closed as u8;
                self.publish_directory();
                Ok(Handled::Reply { value: 0, length: 0 })
            }
            Operation::Status => {
                let status = self.slots[index].status;
                out[..status.as_bytes().len()].copy_from_slice(status.as_bytes());
                Ok(Handled::Reply { value: status.session, length: status.as_bytes().len() })
            }
            Operation::Call => {
                let slot = &self.slots[index];
                if slot.status.state != PortState::Open as u8 {
                    return Err(ControlError::NotOpen);
                }
                // A forwarded port's owner answers by its call slot, never by a call that waits.
                if self.table[index].service == Service::Forward {
                    self.post_call(index, sequence, request.command, payload, services)?;
                    return Ok(Handled::Posted);
                }
                let length = services.call(&self.table[index], &slot.status, request.command, payload, out)?;
                Ok(Handled::Reply { value: 0, length: length.min(MAX_CONTROL_PAYLOAD) })
            }
        }
    }

    /// A new session of port `index`: both rings reset to empty, counters to zero.
    fn open(&mut self, index: usize) -> Result<(), ControlError> {
        // A forwarded port without its owner (none attached, or cut off) has nobody to answer.
        if self.table[index].service == Service::Forward && self.links[index].requests.is_none() {
            return Err(ControlError::ServiceUnavailable);
        }
        let place = place(self.table, index).ok().and_then(|(_, _, place)| place);
        let Place { rx_offset, rx: rx_layout, tx_offset, tx: tx_layout } = place.ok_or(ControlError::NoSuchPort)?;
        let ring = |region: &MemoryRegion, offset: usize| {
            NonNull::new(region.as_ptr().wrapping_add(offset)).ok_or(ControlError::NoSuchPort)
        };
        let rx_base = ring(&self.rx, rx_offset)?;
        let tx_base = ring(&self.tx, tx_offset)?;
        // SAFETY: `check_table` placed both rings inside their regions, 64-byte aligned; the
        // regions stay mapped while `self` lives (`new`'s contract) and only the port's normal-world
        // client touches them otherwise, through the ring protocol or as hostile bytes.
        let rx = unsafe { Consumer::new(rx_base, rx_layout.size(), rx_layout) };
        // SAFETY: as above.
        let tx = unsafe { Producer::new(tx_base, tx_layout.size(), tx_layout) };
        let (Ok(rx), Ok(tx)) = (rx, tx) else { return Err(ControlError::NoSuchPort) };
        let slot = &mut self.slots[index];
        let status = &mut slot.status;
        *status = PortStatus {
            id: status.id,
            service: status.service,
            state: PortState::Open as u8,
            session: status.session.wrapping_add(1),
            faults: status.faults,
            last_fault: status.last_fault,
            ..Default::default()
        };
        slot.rx = Some(rx);
        slot.tx = Some(tx);
        self.publish_directory();
        Ok(())
    }
}

/// What a control request came to.
#[derive(Debug, Clone, Copy)]
enum Handled {
    /// The reply: its value and payload length.
    Reply { value: u32, length: usize },
    /// A call posted to a forwarded port's owner: the reply comes with its answer.
    Posted,
}

#[derive(Debug, Default)]
struct Turn {
    doorbell: bool,
    more: bool,
    /// The rx ring ran dry: the engine asks for a kick before it returns.
    drained: bool,
    /// A reply did not fit in tx: the message waits (the client's read kicks).
    stalled: bool,
    messages: u64,
}

/// For comm-pd's log: why a send the engine made room for failed.
pub fn describe(error: SendError) -> &'static str {
    match error {
        SendError::Full => "the tx ring is full",
        SendError::TooLarge => "the reply is larger than the tx ring allows",
        SendError::Peer(_) => "the normal world broke the tx ring",
    }
}
