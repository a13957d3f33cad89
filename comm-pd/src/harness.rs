//! A host harness for the port engine: the three port regions, the scratch region and a secure
//! feed (rt-task's event ring, with the harness as its producer) in process memory, local
//! services (echo, sink, canned attestation and rt answers) and, for a table with a `forward`
//! port, its owner: the runtime's `PortServer` over the two secure rings and call slots,
//! answering each request with its bytes reversed (or, `silent`, never answering at all). For the engine's tests, its property tests and its fuzz target
//! (comm-pd/fuzz); not part of the PD.

extern crate std;

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use microkit::port_server::{PortServer, PortService, Replies as OwnerReplies};
use microkit::MemoryRegion;
use tzmk_interface::port::ring::{Producer, RingLayout};
use tzmk_interface::port::{
    command, AttestationReply, ControlError, PortStatus, Reply, Request, Service, SinkTotals, REPLY_OFFSET,
    REQUEST_OFFSET, SLOT_SIZE,
};
use tzmk_interface::rt::RtStats;
use zerocopy::{FromBytes, IntoBytes};

use crate::ports::{PortConfig, Ports, Replies, Services};

/// Page-aligned zeroed memory, freed on drop.
#[derive(Debug)]
pub struct Memory {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain memory; every access goes through MemoryRegion or the ring protocol.
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

impl Memory {
    pub fn new(size: usize) -> Memory {
        let layout = Layout::from_size_align(size, 4096).expect("a valid layout");
        // SAFETY: the layout's size is nonzero for every caller (regions are never empty).
        let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("memory");
        Memory { base, layout }
    }

    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    pub fn size(&self) -> usize {
        self.layout.size()
    }

    pub fn region(&self) -> MemoryRegion {
        // SAFETY: the allocation lives as long as `self`, which the harness keeps beside `Ports`.
        unsafe { MemoryRegion::new(self.base, self.layout.size()) }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// port_ctrl's size as system.xml maps it.
pub const CTRL_SIZE: usize = 0x1000;
/// rt_events's size as system.xml maps it.
pub const FEED_SIZE: usize = 0x1000;
/// Each of a forwarded port's two secure regions, as `tzmk new-pd` maps them for a 4 KiB port.
pub const OWNER_RING_SIZE: usize = 0x2000;

/// The harness's owner of a forwarded port: each request answered with its bytes reversed; call
/// command [`Reverser::REQUESTS`] answers the requests served so far (u64).
#[derive(Debug, Default)]
pub struct Reverser {
    pub requests: u64,
}

impl Reverser {
    pub const REQUESTS: u32 = 1;
}

impl PortService for Reverser {
    fn message(&mut self, request: &[u8], replies: &mut OwnerReplies<'_>) {
        self.requests += 1;
        let mut reversed = [0u8; 1016];
        let reversed = &mut reversed[..request.len()];
        reversed.copy_from_slice(request);
        reversed.reverse();
        let _ = replies.send(reversed);
    }

    fn reply_room(&self, length: usize, _largest: usize) -> usize {
        length
    }

    fn call(&mut self, command: u32, input: &[u8], output: &mut [u8]) -> Result<usize, ControlError> {
        match (command, input.is_empty()) {
            (Self::REQUESTS, true) => {
                output[..8].copy_from_slice(&self.requests.to_le_bytes());
                Ok(8)
            }
            (Self::REQUESTS, false) => Err(ControlError::BadArgument),
            _ => Err(ControlError::UnknownCommand),
        }
    }
}

/// A forwarded port's owner in the harness: its two regions and its end of them.
#[derive(Debug)]
pub struct Owner {
    pub id: u16,
    /// A hostile owner: it never runs, so it never answers anything (requests or calls).
    pub silent: bool,
    pub server: PortServer,
    pub logic: Reverser,
    pub requests: Memory,
    pub replies: Memory,
}

/// The port engine over host memory.
#[derive(Debug)]
pub struct Harness {
    pub ports: Ports,
    pub services: LocalServices,
    pub ctrl: Memory,
    pub rx: Memory,
    pub tx: Memory,
    /// The producing end of the feed the engine forwards to the table's first rt port, as
    /// rt-task holds it.
    pub feed: Producer,
    pub feed_memory: Memory,
    _scratch: Memory,
}

impl Harness {
    /// The engine serving `table` (comm-pd's own `PORTS`, or a test's).
    pub fn new(table: &'static [PortConfig]) -> Result<Harness, crate::ports::TableError> {
        // Each region as large as the table needs (whole pages): a scribble past a ring's end
        // is then past the allocation too, where AddressSanitizer sees it.
        let (rx_size, tx_size, scratch_size) = crate::ports::needed(table)?;
        let page = |size: usize| size.max(1).next_multiple_of(4096);
        let (ctrl, rx, tx, scratch) = (
            Memory::new(CTRL_SIZE),
            Memory::new(page(rx_size)),
            Memory::new(page(tx_size)),
            Memory::new(page(scratch_size)),
        );
        // SAFETY: the scratch memory is the harness's alone, and every region lives as long as
        // the harness that owns both it and `Ports`.
        let mut ports = unsafe { Ports::new(table, ctrl.region(), rx.region(), tx.region(), scratch.region()) }?;
        let feed_memory = Memory::new(FEED_SIZE);
        let layout = RingLayout::largest_within(FEED_SIZE).expect("a page holds a ring");
        // SAFETY: the feed memory lives as long as the harness, and only this producer and the
        // engine's consumer use it.
        let feed = unsafe { Producer::new(feed_memory.base(), FEED_SIZE, layout) }.expect("an aligned page");
        // SAFETY: as above.
        unsafe { ports.attach_feed(feed_memory.region(), Service::RealTime) }.expect("a fresh ring");
        let owner = match table.iter().find(|p| p.service == Service::Forward) {
            Some(port) => {
                let (requests, replies) = (Memory::new(OWNER_RING_SIZE), Memory::new(OWNER_RING_SIZE));
                // SAFETY: both regions live as long as the harness, and only the engine and the
                // owner's server use them.
                unsafe { ports.attach_owner(port.id, requests.region(), replies.region()) }
                    .expect("the harness's owner regions carry a 4 KiB port's messages");
                // SAFETY: as above.
                let server = unsafe { PortServer::new(requests.region(), replies.region(), microkit::Channel::new(0)) }
                    .expect("the harness's owner regions hold rings");
                Some(Owner { id: port.id, silent: false, server, logic: Reverser::default(), requests, replies })
            }
            None => None,
        };
        let services = LocalServices { owner, ..LocalServices::default() };
        Ok(Harness { ports, services, ctrl, rx, tx, feed, feed_memory, _scratch: scratch })
    }

    /// One run of comm-pd's handler: a poll, then the announcement of what it found; with an
    /// owner, the owner serves what the poll forwarded and comm-pd runs again while it has news
    /// (as its notification would make it).
    pub fn poll(&mut self) -> crate::ports::Poll {
        let mut poll = self.ports.poll(&mut self.services);
        self.ports.announce(poll.pending, &mut self.services);
        while let Some(owner) = self.services.owner.as_mut().filter(|owner| !owner.silent) {
            if !owner.server.serve(&mut owner.logic).notify {
                break;
            }
            let again = self.ports.poll(&mut self.services);
            self.ports.announce(again.pending, &mut self.services);
            poll.doorbell |= again.doorbell;
            poll.pending |= again.pending;
            poll.messages += again.messages;
            poll.faults += again.faults;
        }
        poll
    }

    pub fn memory(&self, area: Area) -> &Memory {
        match area {
            Area::Ctrl => &self.ctrl,
            Area::Rx => &self.rx,
            Area::Tx => &self.tx,
            Area::Feed => &self.feed_memory,
            Area::OwnerRequests => &self.services.owner.as_ref().expect("a table with a forward port").requests,
            Area::OwnerReplies => &self.services.owner.as_ref().expect("a table with a forward port").replies,
        }
    }

    /// Writes `bytes` at `offset` of a shared region, as the normal world may at any time.
    /// Panics when they do not fit (a harness user's mistake, not the engine's).
    pub fn scribble(&self, area: Area, offset: usize, bytes: &[u8]) {
        let memory = self.memory(area);
        assert!(offset.checked_add(bytes.len()).is_some_and(|end| end <= memory.size()), "scribble outside {area:?}");
        // SAFETY: inside the region (asserted); the engine is not running (it runs only in `poll`,
        // which needs `&mut self`), and it reads the regions as hostile bytes anyway.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), memory.base().as_ptr().add(offset), bytes.len()) };
    }

    /// As `scribble`, for arbitrary input: the offset wraps to the region, the bytes are cut at
    /// its end.
    pub fn scribble_anywhere(&self, area: Area, offset: usize, bytes: &[u8]) {
        let size = self.memory(area).size();
        let offset = offset % size;
        self.scribble(area, offset, &bytes[..bytes.len().min(size - offset)]);
    }

    /// Reads a shared region.
    pub fn peek(&self, area: Area, offset: usize, out: &mut [u8]) {
        let memory = self.memory(area);
        assert!(offset.checked_add(out.len()).is_some_and(|end| end <= memory.size()), "peek outside {area:?}");
        // SAFETY: as in `scribble`.
        unsafe { core::ptr::copy_nonoverlapping(memory.base().as_ptr().add(offset), out.as_mut_ptr(), out.len()) };
    }

    /// Puts `message` in the control mailbox with a header claiming `claimed_length` bytes, lets
    /// the engine run, and returns its reply header, or `None` when it did not answer this
    /// request (which it always must).
    pub fn request(&mut self, message: &[u8], claimed_length: u32) -> Option<Reply> {
        let message = &message[..message.len().min(SLOT_SIZE - 8)];
        let mut word = [0u8; 8];
        self.peek(Area::Ctrl, REQUEST_OFFSET, &mut word);
        let sequence = (u64::from_ne_bytes(word) as u32).wrapping_add(1);
        self.scribble(Area::Ctrl, REQUEST_OFFSET + 8, message);
        let header = u64::from(sequence) | u64::from(claimed_length) << 32;
        self.scribble(Area::Ctrl, REQUEST_OFFSET, &header.to_ne_bytes());
        if self.poll().requests != 1 {
            return None;
        }
        self.peek(Area::Ctrl, REPLY_OFFSET, &mut word);
        if u64::from_ne_bytes(word) as u32 != sequence {
            return None;
        }
        let mut reply = [0u8; core::mem::size_of::<Reply>()];
        self.peek(Area::Ctrl, REPLY_OFFSET + 8, &mut reply);
        Reply::read_from_bytes(&reply).ok()
    }

    /// A well-formed control request: header and payload.
    pub fn control(&mut self, operation: u32, port: u32, command: u32, payload: &[u8]) -> Option<Reply> {
        let mut message = Request { operation, port, command, length: payload.len() as u32 }.as_bytes().to_vec();
        message.extend_from_slice(payload);
        self.request(&message, message.len() as u32)
    }
}

/// The shared regions of the ports, and the secure feed's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Ctrl,
    Rx,
    Tx,
    Feed,
    /// A forwarded port's owner's rings (the owner can write both).
    OwnerRequests,
    OwnerReplies,
}

/// Echo and sink as comm-pd has them; attestation and rt answer canned values (the real ones
/// need attestation-pd and rt-task, which the simulator runs).
#[derive(Debug, Default)]
pub struct LocalServices {
    pub messages: u64,
    /// Every doorbell rung: (core, port hint), as the monitor would get them.
    pub rung: std::vec::Vec<(u32, u16)>,
    /// A core the monitor refuses (not a running Linux core).
    pub refused_core: Option<u32>,
    /// The owner of the table's first `forward` port, if it has one.
    pub owner: Option<Owner>,
}

impl Services for LocalServices {
    fn ring_doorbell(&mut self, core: u32, port: u16) -> bool {
        self.rung.push((core, port));
        self.refused_core != Some(core)
    }

    fn message(&mut self, port: &PortConfig, message: &[u8], replies: &mut Replies<'_>) {
        self.messages += 1;
        let _ = match port.service {
            Service::Echo => replies.send(message),
            Service::Sink => Ok(()),
            Service::Attestation => replies.send(AttestationReply::default().as_bytes()),
            Service::RealTime => replies.send(RtStats::default().as_bytes()),
            Service::Forward => Ok(()),
        };
    }

    fn call(
        &mut self,
        port: &PortConfig,
        status: &PortStatus,
        command: u32,
        _input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        match (port.service, command) {
            (Service::Echo, command::ECHO_TOTALS) | (Service::Sink, command::SINK_TOTALS) => {
                let totals = SinkTotals { messages: status.messages_in, bytes: status.bytes_in };
                output[..16].copy_from_slice(totals.as_bytes());
                Ok(16)
            }
            // The engine posts a forwarded port's calls to its owner itself (its call slots).
            (Service::Forward, _) => Err(ControlError::ServiceUnavailable),
            _ => Err(ControlError::UnknownCommand),
        }
    }
}
