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

use microkit::MemoryRegion;
use tzmk_interface::driver::{
    ANY_CORE, DOORBELL_RUNG_OFFSET, PENDING_ANY, PENDING_CONTROL, PENDING_CORES, PENDING_OFFSET, READER_CORE_OFFSET,
    SPIN_DEFAULT, SPIN_HINT_OFFSET,
};
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

/// Why the port table cannot be served from the regions system.xml maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    TooManyPorts(usize),
    /// A capacity that is no ring capacity (build.rs refuses these; kept for hand-made tables).
    BadCapacity {
        port: &'static str,
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

/// A ring from another secure PD (rt-task's `rt_events`) whose messages comm-pd forwards to one
/// port's tx ring: secure PD to secure PD traffic through the same ring API and the same checks
/// as the normal world's. The producer is a secure PD, but its ring is read like any other: copied
/// once, then validated, a broken protocol a typed [`PeerMisbehaviour`], never a panic.
#[derive(Debug)]
struct Feed {
    /// `None` once the producer broke the protocol: comm-pd stops reading it.
    ring: Option<Consumer>,
    /// The port (table index) that receives the messages.
    port: Option<usize>,
    status: FeedStatus,
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
    feed: Option<Feed>,
    /// Counter ticks to keep looking for more messages once the rings run dry, after a turn that
    /// took some, before asking for a kick (0: never; see [`set_spin`](Self::set_spin)).
    spin_ticks: u64,
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
        let ports = Self { table, ctrl, rx, tx, scratch, slots, directory, last_request: 0, feed: None, spin_ticks: 0 };
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
        let port = self.table.iter().position(|p| p.service == service);
        self.feed = Some(Feed { ring: Some(ring), port, status: FeedStatus::default() });
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

    /// The feed's counters (`None` without a feed).
    pub fn feed_status(&self) -> Option<FeedStatus> {
        self.feed.as_ref().map(|f| f.status)
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
            if let Some(forwarded) = self.forward() {
                poll.doorbell |= forwarded.doorbell;
                if let Some(index) = self.feed.as_ref().and_then(|f| f.port) {
                    poll.pending |= u64::from(forwarded.doorbell) << index;
                }
                more |= forwarded.more;
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
            if self.request_header().0 != self.last_request {
                return true;
            }
            if microkit::timer::now() >= deadline {
                return false;
            }
            core::hint::spin_loop();
        }
    }

    /// One turn of the feed: move what fits to its port's tx ring. `None` without a feed.
    fn forward(&mut self) -> Option<Turn> {
        let Self { feed, slots, scratch, .. } = self;
        let feed = feed.as_mut()?;
        let ring = feed.ring.as_mut()?;
        // SAFETY: as in `serve`: the scratch region is this PD's alone; the slice lives until the
        // end of this turn, and no other turn runs meanwhile.
        let scratch = unsafe { core::slice::from_raw_parts_mut(scratch.as_ptr(), scratch.size()) };
        let mut turn = Turn::default();
        // The port's tx ring broken by the normal world: that port is reset, the feed waits.
        let mut tx_broken = None;
        let mut blocked = false;
        let mut taken = 0;
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
            let open = feed.port.and_then(|index| {
                let slot = &mut slots[index];
                slot.tx.as_mut().map(|tx| (index, tx, &mut slot.status))
            });
            if let Some((index, tx, status)) = open {
                if length > tx.layout().max_message() {
                    break Err(PeerMisbehaviour::BadLength);
                }
                match tx.fits(length) {
                    Ok(true) => {}
                    Ok(false) => match tx.request_space_signal(length) {
                        Ok(true) => continue,
                        Ok(false) => {
                            feed.status.stalls += 1;
                            blocked = true;
                            break Ok(());
                        }
                        Err(m) => {
                            tx_broken = Some((index, m));
                            break Ok(());
                        }
                    },
                    Err(m) => {
                        tx_broken = Some((index, m));
                        break Ok(());
                    }
                }
                // Room was checked just above: within it a send cannot be refused.
                if (Replies { producer: tx, status }).send(&scratch[..length]).is_ok() {
                    feed.status.forwarded += 1;
                }
            } else {
                feed.status.unheard += 1;
            }
            ring.consume();
            taken += 1;
        };
        turn.messages = taken as u64;
        // The producer never waits for space (a real-time task refuses instead): nobody to notify.
        let _ = ring.release();
        if let Some(tx) = feed.port.and_then(|index| slots[index].tx.as_mut()) {
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
            log::warn!("the secure feed broke the ring protocol ({m}): no longer read");
        }
        if let Some((index, m)) = tx_broken {
            self.fault(index, PortFault::new(PortFault::TX, m));
            turn.doorbell = true;
        }
        Some(turn)
    }

    fn fault(&mut self, index: usize, fault: PortFault) {
        let slot = &mut self.slots[index];
        slot.end_session();
        slot.status.state = PortState::Faulted as u8;
        slot.status.faults += 1;
        slot.status.last_fault = fault.0;
        log::warn!("port '{}' reset: the normal world broke the {fault}", self.table[index].name);
        self.publish_directory();
    }

    /// One turn of one port: take up to [`MESSAGES_PER_TURN`] messages whose replies fit.
    fn serve(&mut self, index: usize, services: &mut impl Services) -> Result<Turn, PortFault> {
        let port = &self.table[index];
        let slot = &mut self.slots[index];
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
            let room = services.reply_room(port.service, length);
            if room > 0 && !tx.fits(room).map_err(tx_fault)? {
                if tx.request_space_signal(room).map_err(tx_fault)? {
                    continue;
                }
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
        if taken == MESSAGES_PER_TURN {
            turn.more = true;
        } else {
            turn.drained = !blocked;
            turn.stalled = blocked;
        }
        Ok(turn)
    }

    /// Handles the request in the mailbox if it is new; `true` if it was.
    fn control(&mut self, services: &mut impl Services) -> bool {
        let (sequence, length) = self.request_header();
        if sequence == self.last_request {
            return false;
        }
        self.last_request = sequence;
        let mut message = [0u8; MAX_CONTROL_MESSAGE];
        let mut reply = [0u8; MAX_CONTROL_MESSAGE];
        let (head, body) = reply.split_at_mut(core::mem::size_of::<Reply>());
        let header = match self.copy_request(length as usize, &mut message) {
            Some((request, payload)) => {
                let payload = &message[core::mem::size_of::<Request>()..][..payload];
                match self.handle(services, &request, payload, body) {
                    Ok((value, length)) => Reply { error: 0, port: request.port, value, length: length as u32 },
                    Err(e) => Reply { error: e as u32, port: request.port, value: 0, length: 0 },
                }
            }
            None => Reply { error: ControlError::Malformed as u32, ..Default::default() },
        };
        head.copy_from_slice(header.as_bytes());
        let length = head.len() + header.length as usize;
        // Body first, then the header word with the request's sequence: the normal world sees the
        // sequence only once the reply is whole.
        let _ = self.ctrl.write_bytes(REPLY_OFFSET + 8, &reply[..length]);
        if let Ok(word) = self.ctrl.atomic_u64(REPLY_OFFSET) {
            word.store(u64::from(sequence) | (length as u64) << 32, Ordering::Release);
        }
        true
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

    /// One checked control request: `(value, payload length)` of the reply.
    fn handle(
        &mut self,
        services: &mut impl Services,
        request: &Request,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<(u32, usize), ControlError> {
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
                Ok((entry.session, entry.as_bytes().len()))
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
                Ok((0, 0))
            }
            Operation::Status => {
                let status = self.slots[index].status;
                out[..status.as_bytes().len()].copy_from_slice(status.as_bytes());
                Ok((status.session, status.as_bytes().len()))
            }
            Operation::Call => {
                let slot = &self.slots[index];
                if slot.status.state != PortState::Open as u8 {
                    return Err(ControlError::NotOpen);
                }
                let out = &mut out[..MAX_CONTROL_PAYLOAD];
                let length = services.call(&self.table[index], &slot.status, request.command, payload, out)?;
                Ok((0, length.min(MAX_CONTROL_PAYLOAD)))
            }
        }
    }

    /// A new session of port `index`: both rings reset to empty, counters to zero.
    fn open(&mut self, index: usize) -> Result<(), ControlError> {
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
