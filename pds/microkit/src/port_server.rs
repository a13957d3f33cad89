//! Serving a communication port from a PD other than comm-pd (ports.toml's
//! `service = "forward"`; docs/adding-a-pd.md). The PD writes only its logic, a [`PortService`]:
//! a message in, replies out, control calls. [`PortServer`] does the rest: it holds the PD's end
//! of the two secure rings it shares with comm-pd (tzmk_interface::forward has the protocol),
//! takes each request only when its reply fits, and tells comm-pd when there is something to
//! forward or room to send more. The PD never maps normal-world memory: comm-pd has validated
//! and copied every byte it gets.
//!
//! ```ignore
//! struct Hello { server: PortServer, logic: Logic }
//! impl Handler for Hello {
//!     fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
//!         if channels.contains(self.server.channel()) { self.server.notified(&mut self.logic); }
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Control calls come the same way as requests, by notification: comm-pd writes the call into
//! the call slot at the end of the requests region and the server writes the answer into the
//! one at the end of the replies region ([`CallSlot`]; tzmk_interface::forward). comm-pd never
//! waits for the answer: an owner that does not answer by comm-pd's deadline loses its port.
//!
//! [`PortServer::serve`] and [`PortServer::call`] are the event-free core (no system call), so a
//! PD's logic is tested on the host against real rings (pds/template's tests).

use core::fmt;
use core::ptr::NonNull;

use core::sync::atomic::{fence, Ordering};

use tzmk_interface::forward::{ring_bytes, slot_offset, CallHeader, CALL_HEADER_SIZE};
use tzmk_interface::port::ring::{
    Consumer, LayoutError, PeerMisbehaviour, PeerMisbehaviourOrLayout, Producer, RecvError, RingLayout, SendError,
};
use tzmk_interface::port::{ControlError, MAX_CONTROL_PAYLOAD};

use crate::{Channel, MemoryRegion};

/// The largest request a [`PortServer`] takes by default: a 4 KiB port's (a quarter of its ring,
/// less the record header).
pub const DEFAULT_MAX_REQUEST: usize = 1016;

/// A PD's logic behind a forwarded port.
pub trait PortService {
    /// One request (copied out of the ring: stable, and never longer than the port's largest
    /// message). Answer with [`Replies::send`], as often as the room asked for allows, or not at all.
    fn message(&mut self, request: &[u8], replies: &mut Replies<'_>);

    /// Bytes of reply ring a reply to a `length`-byte request may need; the request waits in its
    /// ring until that much is free (back-pressure: nothing is dropped). `largest` is the largest
    /// message the reply ring carries, the default (always safe). 0: this request gets no reply.
    fn reply_room(&self, length: usize, largest: usize) -> usize {
        let _ = length;
        largest
    }

    /// A control call (the normal world's `Call` on the port: `tzctl call`): writes its output
    /// (at most [`MAX_CONTROL_PAYLOAD`] bytes) and returns its length. By default there are none.
    fn call(&mut self, command: u32, input: &[u8], output: &mut [u8]) -> Result<usize, ControlError> {
        let _ = (command, input, output);
        Err(ControlError::UnknownCommand)
    }
}

/// Where a [`PortService`] answers one request.
#[derive(Debug)]
pub struct Replies<'a> {
    producer: &'a mut Producer,
    sent: &'a mut u64,
}

impl Replies<'_> {
    /// Sends one reply. Within the room [`PortService::reply_room`] asked for it cannot be refused.
    pub fn send(&mut self, message: &[u8]) -> Result<(), SendError> {
        self.producer.try_send(message)?;
        *self.sent += 1;
        Ok(())
    }

    /// The largest reply the ring carries.
    pub fn largest(&self) -> usize {
        self.producer.layout().max_message()
    }
}

/// One call slot of a forwarded port: the last `CALL_SLOT_SIZE` bytes of one of its two regions
/// (tzmk_interface::forward). Its writer (comm-pd for calls, the owner for answers) stores the
/// header word last; its reader copies under a sequence lock. Shared by both ends.
#[derive(Debug, Clone, Copy)]
pub struct CallSlot {
    region: MemoryRegion,
    offset: usize,
}

impl CallSlot {
    /// The slot at the end of `region`; `None` when the region is too small for one, or its end
    /// is not 8-byte aligned.
    pub fn at_end_of(region: MemoryRegion) -> Option<Self> {
        let offset = slot_offset(region.size())?;
        region.atomic_u64(offset).ok()?;
        Some(Self { region, offset })
    }

    /// Writes a message: the word and the payload (at most `MAX_CONTROL_PAYLOAD` bytes) first,
    /// then the header word with `sequence` and the length, with release ordering.
    pub fn write(&self, sequence: u32, word: u32, payload: &[u8]) {
        let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
        let mut tail = [0u8; 8];
        tail[..4].copy_from_slice(&word.to_le_bytes());
        // In bounds: `at_end_of` left CALL_SLOT_SIZE bytes, which hold a header and the payload.
        let _ = self.region.write_bytes(self.offset + 8, &tail);
        let _ = self.region.write_bytes(self.offset + CALL_HEADER_SIZE, payload);
        if let Ok(header) = self.region.atomic_u64(self.offset) {
            header.store(u64::from(sequence) | (payload.len() as u64) << 32, Ordering::Release);
        }
    }

    /// The sequence number the slot holds now (one atomic load).
    pub fn sequence(&self) -> u32 {
        self.region.atomic_u64(self.offset).map_or(0, |w| w.load(Ordering::Acquire)) as u32
    }

    /// Copies the message in the slot: its header (as written: the caller checks the length),
    /// and up to `out.len()` bytes of its payload into `out`. `None` when the writer changed the
    /// header word during the copy (look again when it next notifies).
    pub fn read(&self, out: &mut [u8; MAX_CONTROL_PAYLOAD]) -> Option<CallHeader> {
        let word = self.region.atomic_u64(self.offset).ok()?;
        let before = word.load(Ordering::Acquire);
        let mut tail = [0u8; 8];
        self.region.read_bytes(self.offset + 8, &mut tail).ok()?;
        let length = (before >> 32) as usize;
        self.region.read_bytes(self.offset + CALL_HEADER_SIZE, &mut out[..length.min(MAX_CONTROL_PAYLOAD)]).ok()?;
        // The copy's loads before the re-check's.
        fence(Ordering::Acquire);
        if word.load(Ordering::Relaxed) != before {
            return None;
        }
        let [a, b, c, d, e, f, g, h] = tail;
        Some(CallHeader {
            sequence: before as u32,
            length: (before >> 32) as u32,
            word: u32::from_le_bytes([a, b, c, d]),
            reserved: u32::from_le_bytes([e, f, g, h]),
        })
    }
}

/// Why a [`PortServer`] cannot serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortServerError {
    /// A region cannot hold a ring (`ring`: "requests" or "replies").
    Layout { ring: &'static str, error: LayoutError },
    /// The request ring carries longer requests than `MAX_REQUEST` holds.
    RequestsTooLarge { carries: usize, buffer: usize },
    /// comm-pd's end of the request ring is inconsistent.
    Peer(PeerMisbehaviour),
}

impl fmt::Display for PortServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortServerError::Layout { ring, error } => write!(f, "the {ring} region: {error}"),
            PortServerError::RequestsTooLarge { carries, buffer } => write!(
                f,
                "the requests ring carries messages of {carries} bytes, the server's buffer holds {buffer} (PortServer::<N>)"
            ),
            PortServerError::Peer(m) => write!(f, "the requests ring: {m}"),
        }
    }
}

/// What a [`PortServer`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStatus {
    pub requests: u64,
    pub replies: u64,
    pub calls: u64,
    /// Times a request waited for reply room.
    pub stalls: u64,
    /// How comm-pd broke a ring, if it did (then nothing more is served).
    pub fault: Option<PeerMisbehaviour>,
}

/// What one [`PortServer::serve`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests taken.
    pub requests: u64,
    /// comm-pd must be told (replies to forward, or room it waits for).
    pub notify: bool,
}

/// A PD's end of a forwarded port: the request ring (comm-pd produces), the reply ring (this PD
/// produces), the channel to comm-pd, and a buffer for one request of up to `MAX_REQUEST` bytes.
#[derive(Debug)]
pub struct PortServer<const MAX_REQUEST: usize = DEFAULT_MAX_REQUEST> {
    requests: Option<Consumer>,
    replies: Producer,
    /// comm-pd's calls (the requests region's slot) and this PD's answers (the replies region's).
    calls: CallSlot,
    answers: CallSlot,
    /// The sequence number of the last call answered (0: none; comm-pd's calls count from 1).
    answered: u32,
    channel: Channel,
    buffer: [u8; MAX_REQUEST],
    status: ServerStatus,
}

/// The ring of a forwarded-port region: all of it but the call slot at its end.
fn ring(region: &MemoryRegion, name: &'static str) -> Result<(NonNull<u8>, RingLayout), PortServerError> {
    let layout = RingLayout::largest_within(ring_bytes(region.size()))
        .map_err(|error| PortServerError::Layout { ring: name, error })?;
    let base =
        NonNull::new(region.as_ptr()).ok_or(PortServerError::Layout { ring: name, error: LayoutError::Misaligned })?;
    Ok((base, layout))
}

impl<const MAX_REQUEST: usize> PortServer<MAX_REQUEST> {
    /// Takes this PD's ends: attaches to the request ring (comm-pd resets it; zeroed memory is an
    /// empty ring), resets the reply ring and empties its answer slot. Each region is its ring
    /// and, at its end, a call slot (tzmk_interface::forward).
    ///
    /// # Safety
    /// Both regions stay mapped read-write for the PD's life and are shared with comm-pd only
    /// (system.xml; `tzmk audit` reports a region mapped elsewhere).
    pub unsafe fn new(
        requests: MemoryRegion,
        replies: MemoryRegion,
        channel: Channel,
    ) -> Result<Self, PortServerError> {
        let (request_base, request_layout) = ring(&requests, "requests")?;
        if request_layout.max_message() > MAX_REQUEST {
            return Err(PortServerError::RequestsTooLarge {
                carries: request_layout.max_message(),
                buffer: MAX_REQUEST,
            });
        }
        let (reply_base, reply_layout) = ring(&replies, "replies")?;
        // SAFETY: forwarded contract; the layouts fit in their regions.
        let consumer = unsafe { Consumer::attach(request_base, ring_bytes(requests.size()), request_layout) }.map_err(
            |e| match e {
                PeerMisbehaviourOrLayout::Layout(error) => PortServerError::Layout { ring: "requests", error },
                PeerMisbehaviourOrLayout::Peer(m) => PortServerError::Peer(m),
            },
        )?;
        // SAFETY: as above.
        let producer = unsafe { Producer::new(reply_base, ring_bytes(replies.size()), reply_layout) }
            .map_err(|error| PortServerError::Layout { ring: "replies", error })?;
        let slot = |region, ring| {
            CallSlot::at_end_of(region).ok_or(PortServerError::Layout { ring, error: LayoutError::Misaligned })
        };
        let (calls, answers) = (slot(requests, "requests")?, slot(replies, "replies")?);
        answers.write(0, 0, &[]);
        Ok(Self {
            requests: Some(consumer),
            replies: producer,
            calls,
            answers,
            answered: 0,
            channel,
            buffer: [0; MAX_REQUEST],
            status: ServerStatus::default(),
        })
    }

    /// The channel to comm-pd (system.xml's `setvar_id`).
    pub fn channel(&self) -> Channel {
        self.channel
    }

    pub fn status(&self) -> ServerStatus {
        self.status
    }

    /// comm-pd notified: answer its call, serve what waits, and notify it back if it must be told.
    pub fn notified(&mut self, service: &mut impl PortService) {
        if self.serve(service).notify {
            self.channel.notify();
        }
    }

    /// Answers comm-pd's call in the call slot if it is new: runs the service's call and writes
    /// the answer (the call's sequence, 0 or the error, the output). `true` when it answered
    /// (comm-pd must be told). A call whose input claims more than a call carries is answered
    /// `BadArgument`; a call rewritten during the copy waits for comm-pd's next notification.
    pub fn answer_call(&mut self, service: &mut impl PortService) -> bool {
        let sequence = self.calls.sequence();
        if sequence == 0 || sequence == self.answered {
            return false;
        }
        let mut input = [0u8; MAX_CONTROL_PAYLOAD];
        let Some(call) = self.calls.read(&mut input).filter(|c| c.sequence == sequence) else { return false };
        self.answered = sequence;
        let mut output = [0u8; MAX_CONTROL_PAYLOAD];
        let outcome = match input.get(..call.length as usize) {
            Some(input) => self.call(service, call.word, input, &mut output),
            None => Err(ControlError::BadArgument),
        };
        match outcome {
            Ok(length) => self.answers.write(sequence, 0, &output[..length]),
            Err(e) => self.answers.write(sequence, e as u32, &[]),
        }
        true
    }

    /// A control call, without the call slots.
    pub fn call(
        &mut self,
        service: &mut impl PortService,
        command: u32,
        input: &[u8],
        output: &mut [u8; MAX_CONTROL_PAYLOAD],
    ) -> Result<usize, ControlError> {
        self.status.calls += 1;
        let length = service.call(command, input, output)?;
        // A service that claims more than it may write is answered as unavailable, not believed.
        if length > MAX_CONTROL_PAYLOAD {
            return Err(ControlError::ServiceUnavailable);
        }
        Ok(length)
    }

    /// Sends a message comm-pd did not ask for (an event) to the port; `Full` when the reply ring
    /// has no room (the caller decides: keep it, or count it refused). Notify comm-pd with
    /// [`flush`](Self::flush).
    pub fn send(&mut self, message: &[u8]) -> Result<(), SendError> {
        self.replies.try_send(message)?;
        self.status.replies += 1;
        Ok(())
    }

    /// Publishes what [`send`](Self::send) sent; notifies comm-pd if it waits for it.
    pub fn flush(&mut self) {
        if self.replies.publish() {
            self.channel.notify();
        }
    }

    /// Answers a new control call and serves the requests waiting; no system call (the caller
    /// notifies comm-pd when [`Served::notify`] says so).
    pub fn serve(&mut self, service: &mut impl PortService) -> Served {
        let mut served = Served { notify: self.answer_call(service), ..Served::default() };
        let Some(requests) = self.requests.as_mut() else { return served };
        // Until the ring is dry or a reply does not fit: comm-pd only forwards what the normal
        // world sends, and this PD's own budget bounds the time it takes.
        let outcome = loop {
            let length = match requests.peek(&mut self.buffer) {
                Ok(Some(length)) => length,
                Ok(None) => match requests.request_signal() {
                    // Arrived meanwhile: go on.
                    Ok(true) => continue,
                    Ok(false) => break Ok(()),
                    Err(m) => break Err(m),
                },
                Err(RecvError::Peer(m)) => break Err(m),
                // `new` made the buffer hold any message of the ring.
                Err(RecvError::BufferTooSmall(_)) => break Err(PeerMisbehaviour::BadLength),
            };
            let largest = self.replies.layout().max_message();
            let room = service.reply_room(length, largest).min(largest);
            if room > 0 {
                match self.replies.fits_or_ask(room) {
                    Ok(true) => {}
                    Ok(false) => {
                        // comm-pd's release of reply room notifies this PD.
                        self.status.stalls += 1;
                        break Ok(());
                    }
                    Err(m) => break Err(m),
                }
            }
            requests.consume();
            served.requests += 1;
            self.status.requests += 1;
            service.message(
                &self.buffer[..length],
                &mut Replies { producer: &mut self.replies, sent: &mut self.status.replies },
            );
        };
        // comm-pd may wait for request room (told only when some was made: a release of nothing
        // would wake it to find none and ask again, without end), and for the replies.
        served.notify |= served.requests > 0 && requests.release();
        served.notify |= self.replies.publish();
        if let Err(m) = outcome {
            log::warn!("comm-pd broke the requests ring ({m}): no longer served");
            self.status.fault = Some(m);
            self.requests = None;
        }
        served
    }
}
