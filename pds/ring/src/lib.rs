//! A single-producer single-consumer ring of variable-length messages in memory shared between two
//! parties that do not trust each other (the normal and the secure world).
//!
//! Layout (docs/ring-protocol.md has the picture), at a 64-byte aligned address:
//! - cache line 0, written only by the producer: `producer`, a free-running byte index (u32);
//! - cache line 1, written only by the consumer: `consumer`, likewise;
//! - cache line 2, written by both, only around a wait: `consumer_signalled` (sDDF's flag) and
//!   `producer_waiting` (the same protocol for free space; see below);
//! - the data area, `capacity` bytes, a power of two.
//!
//! A message is a record: an 8-byte header (`length: u32`, `reserved: u32` = 0) and the payload,
//! padded to 8 bytes. A record never wraps: when it does not fit before the end of the data
//! area, the producer writes a *pad* header (`length = PAD`) and continues at offset 0. Messages are
//! at most [`RingLayout::max_message`] bytes (a quarter of the capacity), so a record always fits.
//!
//! Each side keeps its own index in private memory and only ever *writes* it to the ring; the
//! other side's index, record headers and payloads are allegations, read once (volatile), copied,
//! then checked. A peer that lies gets [`PeerMisbehaviour`] and nothing outside the ring's bytes
//! is touched.
//!
//! The fast path (as in LMAX- and Aeron-style rings): each side also keeps the last peer index it
//! accepted, and within a batch (until its next [`Producer::publish`] or [`Consumer::release`])
//! reads the shared one again only when that cached copy says the message does not fit
//! (producer) or the ring is empty (consumer). The first operation of every batch reads it, as
//! does the re-check of every wait ([`Producer::request_space_signal`],
//! [`Consumer::request_signal`]). Every index read is validated as before; a cached index is one
//! that passed, and a peer's honest index only ever moves forward, so the cache never claims more
//! room or data than there is. A one-message batch (send, publish) reads the peer's index as
//! often as before this cache; a batch of [`Producer::try_send`] calls ends with one `publish`:
//! one index store, and one index load while the ring has room.
//!
//! Signalling follows the sDDF queues: after consuming everything, the consumer clears
//! `consumer_signalled` ([`Consumer::request_signal`]) and re-checks for data; the producer, after
//! publishing, notifies only if the flag is clear and sets it ([`Producer::publish`] returns
//! whether to notify). No wake-up is lost and a busy consumer costs no notifications.
//! Back-pressure is the mirror image: a producer that finds the ring full sets `producer_waiting`
//! and re-checks the free space ([`Producer::request_space_signal`]); the consumer, after
//! releasing space, notifies only if that flag is set and clears it ([`Consumer::release`]).
//!
//! Who resets: the secure world owns every ring's life. It takes its end with `new` (which resets
//! the ring to empty); the normal world takes the other end with `attach` (at the indices it
//! finds, which it validates like everything else).
#![no_std]

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU32, Ordering};

/// Record header length field of a pad record.
pub const PAD: u32 = u32::MAX;
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 8;
/// Bytes of the ring header (three cache lines).
pub const HEADER_SIZE: usize = 3 * CACHE_LINE;
const CACHE_LINE: usize = 64;
/// How far `revoke` moves an index: farther than any capacity (2^30 at most) can explain.
pub const REVOKE_DISTANCE: u32 = 1 << 31;
/// Where the ring header's words are (u32 each): the producer's and the consumer's free-running
/// byte indices, `consumer_signalled` and `producer_waiting`. Public for the C side of the ring
/// (the Linux driver's `tzmk_abi.h`).
pub const PRODUCER_OFFSET: usize = 0;
pub const CONSUMER_OFFSET: usize = CACHE_LINE;
pub const SIGNALLED_OFFSET: usize = 2 * CACHE_LINE;
pub const PRODUCER_WAITING_OFFSET: usize = 2 * CACHE_LINE + 4;

/// Where a ring lives and how big it is: both sides derive it from configuration, never from the
/// shared memory itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    capacity: u32,
}

/// A layout that cannot be a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// Capacity not a power of two, or below 64 bytes, or above 2^30.
    BadCapacity(u64),
    /// The memory given is smaller than header plus capacity.
    TooSmall { needed: usize, given: usize },
    /// The memory does not start at a 64-byte boundary.
    Misaligned,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::BadCapacity(c) => write!(f, "ring capacity {c} is not a power of two in 64..=2^30"),
            LayoutError::TooSmall { needed, given } => write!(f, "a ring needs {needed} bytes, {given} given"),
            LayoutError::Misaligned => f.write_str("a ring must start at a 64-byte boundary"),
        }
    }
}

impl RingLayout {
    pub const fn new(capacity: u64) -> Result<Self, LayoutError> {
        if capacity < 64 || capacity > (1 << 30) || !capacity.is_power_of_two() {
            return Err(LayoutError::BadCapacity(capacity));
        }
        Ok(Self { capacity: capacity as u32 })
    }

    /// The largest ring (header included) that fits in `bytes`: for a region that holds one ring.
    pub const fn largest_within(bytes: usize) -> Result<Self, LayoutError> {
        if bytes < HEADER_SIZE + 64 {
            return Err(LayoutError::TooSmall { needed: HEADER_SIZE + 64, given: bytes });
        }
        let data = bytes - HEADER_SIZE;
        let capacity = 1usize << (usize::BITS - 1 - data.leading_zeros());
        let capacity = if capacity > 1 << 30 { 1 << 30 } else { capacity };
        Self::new(capacity as u64)
    }

    pub const fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Header plus data: the bytes the ring occupies.
    pub const fn size(&self) -> usize {
        HEADER_SIZE + self.capacity as usize
    }

    /// The largest message payload.
    pub const fn max_message(&self) -> usize {
        self.capacity as usize / 4 - RECORD_HEADER
    }
}

/// What a lying peer did. The ring is unusable after any of these until both sides reset it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum PeerMisbehaviour {
    /// The peer's index is more than a capacity away from ours.
    IndexOutOfRange = 1,
    /// The peer's index went backwards.
    IndexMovedBackwards = 2,
    /// A record claims more bytes than a message may have, or than the producer published.
    BadLength = 3,
    /// A pad record where the data area does not end, or with a nonzero reserved field.
    BadRecord = 4,
}

impl fmt::Display for PeerMisbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerMisbehaviour::IndexOutOfRange => "the peer's ring index is out of range",
            PeerMisbehaviour::IndexMovedBackwards => "the peer's ring index moved backwards",
            PeerMisbehaviour::BadLength => "a ring record has an impossible length",
            PeerMisbehaviour::BadRecord => "a ring record header is malformed",
        })
    }
}

/// Why a message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Not enough free space now: retry after the consumer has made progress (back-pressure).
    Full,
    /// Larger than [`RingLayout::max_message`].
    TooLarge,
    Peer(PeerMisbehaviour),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str("the ring is full"),
            SendError::TooLarge => f.write_str("the message is larger than the ring allows"),
            SendError::Peer(p) => p.fmt(f),
        }
    }
}

/// Why a message could not be received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// The buffer is smaller than the next message (which stays in the ring); its length is given.
    BufferTooSmall(usize),
    Peer(PeerMisbehaviour),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::BufferTooSmall(n) => write!(f, "the next message has {n} bytes, more than the buffer"),
            RecvError::Peer(p) => p.fmt(f),
        }
    }
}

/// Why [`Producer::attach`] or [`Consumer::attach`] refused a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMisbehaviourOrLayout {
    Layout(LayoutError),
    Peer(PeerMisbehaviour),
}

impl From<LayoutError> for PeerMisbehaviourOrLayout {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}

impl From<PeerMisbehaviour> for PeerMisbehaviourOrLayout {
    fn from(e: PeerMisbehaviour) -> Self {
        Self::Peer(e)
    }
}

impl fmt::Display for PeerMisbehaviourOrLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(e) => e.fmt(f),
            Self::Peer(e) => e.fmt(f),
        }
    }
}

/// The shared bytes of one ring. All access is atomic (indices) or volatile (data).
#[derive(Debug, Clone, Copy)]
struct Shared {
    base: NonNull<u8>,
    layout: RingLayout,
}

impl Shared {
    /// # Safety
    /// `base..base + layout.size()` must stay mapped, readable and writable while the ring is used,
    /// and be accessed by others only through this protocol or as plain bytes (a hostile peer may
    /// write anything at any time; that is allowed).
    unsafe fn new(base: NonNull<u8>, len: usize, layout: RingLayout) -> Result<Self, LayoutError> {
        if !(base.as_ptr() as usize).is_multiple_of(CACHE_LINE) {
            return Err(LayoutError::Misaligned);
        }
        if len < layout.size() {
            return Err(LayoutError::TooSmall { needed: layout.size(), given: len });
        }
        Ok(Self { base, layout })
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: offset is one of the three header words, 4-byte aligned inside the mapped ring
        // (checked in `new`); the memory outlives `self` by the contract of `new`.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    fn data(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.layout.capacity());
        self.base.as_ptr().wrapping_add(HEADER_SIZE + offset)
    }

    /// Copies `out.len()` bytes from data offset `at` (which must not run past the data area).
    ///
    /// Word-wise volatile loads: the peer may change the bytes while we copy (we then copy garbage,
    /// which is validated like any other), and the compiler must neither elide nor repeat a load.
    /// A hand-written loop because `core` has no stable volatile memcpy.
    fn read(&self, at: usize, out: &mut [u8]) {
        assert!(at + out.len() <= self.layout.capacity(), "read past the ring's data area");
        let src = self.data(at);
        let aligned = (src as usize).is_multiple_of(8);
        let mut words = out.chunks_exact_mut(8);
        let mut i = 0;
        if aligned {
            for chunk in &mut words {
                // SAFETY: 8 bytes inside the data area (asserted above), 8-aligned (checked).
                let word = unsafe { src.add(i).cast::<u64>().read_volatile() };
                chunk.copy_from_slice(&word.to_ne_bytes());
                i += 8;
            }
        }
        let rest = if aligned { words.into_remainder() } else { out };
        for byte in rest.iter_mut() {
            // SAFETY: inside the data area (asserted above), which is mapped by `new`'s contract.
            *byte = unsafe { src.add(i).read_volatile() };
            i += 1;
        }
    }

    /// Copies `data` to data offset `at` (which must not run past the data area).
    ///
    /// A plain memcpy, unlike [`read`](Self::read): what we write is ours, nothing we do depends
    /// on the bytes afterwards, and the Release store of our index in `publish` orders the copy
    /// before the peer may look. A peer that reads early reads garbage of its own making.
    fn write(&self, at: usize, data: &[u8]) {
        assert!(at + data.len() <= self.layout.capacity(), "write past the ring's data area");
        // SAFETY: inside the data area (asserted), mapped by `new`'s contract; `data` is private
        // memory of the caller, so the two do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.data(at), data.len()) };
    }

    /// The record header at data offset `at` (8-aligned, checked by the caller): one volatile
    /// 8-byte load into private memory, which is then split and checked (no double fetch).
    fn read_header(&self, at: usize) -> (u32, u32) {
        assert!(at + RECORD_HEADER <= self.layout.capacity() && at.is_multiple_of(RECORD_HEADER));
        // SAFETY: 8 bytes inside the data area (asserted), which starts 64-byte aligned (`new`),
        // so 8-aligned; mapped by `new`'s contract. Volatile: the peer may write it concurrently.
        let word = unsafe { self.data(at).cast::<u64>().read_volatile() };
        let bytes = word.to_ne_bytes();
        let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let reserved = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        (length, reserved)
    }

    fn write_header(&self, at: usize, length: u32) {
        let mut bytes = [0u8; RECORD_HEADER];
        bytes[..4].copy_from_slice(&length.to_le_bytes());
        self.write(at, &bytes);
    }
}

const fn padded(length: usize) -> usize {
    (length + 7) & !7
}

/// The producing end. Keeps its index privately; reads the consumer's as an allegation.
#[derive(Debug)]
pub struct Producer {
    shared: Shared,
    producer: u32,
    /// The consumer index last read and accepted: to refuse it moving backwards, and the cached
    /// copy free space is computed from until a message does not fit (at most a capacity behind
    /// `producer`: every send fits in the free space it leaves).
    consumer_seen: u32,
    /// Whether `consumer_seen` was read in this batch (since the last `publish`): only then does a
    /// send trust it without reading the shared index.
    cached: bool,
    /// The index last made visible to the consumer.
    published: u32,
}

// SAFETY: a Producer is the only writer of its index and of the free data area; moving it to
// another thread moves that role with it.
unsafe impl Send for Producer {}

impl Producer {
    /// Takes the producing end of the ring at `base` and resets it to empty.
    ///
    /// # Safety
    /// As for the shared memory of a ring: `base..base + len` stays mapped while the producer
    /// lives, and nobody else in this program produces into it.
    pub unsafe fn new(base: NonNull<u8>, len: usize, layout: RingLayout) -> Result<Self, LayoutError> {
        // SAFETY: forwarded contract.
        let shared = unsafe { Shared::new(base, len, layout) }?;
        shared.word(PRODUCER_OFFSET).store(0, Ordering::Release);
        shared.word(CONSUMER_OFFSET).store(0, Ordering::Release);
        shared.word(SIGNALLED_OFFSET).store(0, Ordering::Release);
        shared.word(PRODUCER_WAITING_OFFSET).store(0, Ordering::Release);
        Ok(Self { shared, producer: 0, consumer_seen: 0, cached: false, published: 0 })
    }

    /// Takes the producing end of a ring the other side has reset, at the indices found in it.
    ///
    /// # Safety
    /// As for [`Producer::new`].
    pub unsafe fn attach(base: NonNull<u8>, len: usize, layout: RingLayout) -> Result<Self, PeerMisbehaviourOrLayout> {
        // SAFETY: forwarded contract.
        let shared = unsafe { Shared::new(base, len, layout) }?;
        let producer = shared.word(PRODUCER_OFFSET).load(Ordering::Acquire);
        let consumer = shared.word(CONSUMER_OFFSET).load(Ordering::Acquire);
        if producer.wrapping_sub(consumer) > layout.capacity || !producer.is_multiple_of(RECORD_HEADER as u32) {
            return Err(PeerMisbehaviourOrLayout::Peer(PeerMisbehaviour::IndexOutOfRange));
        }
        Ok(Self { shared, producer, consumer_seen: consumer, cached: false, published: producer })
    }

    /// The consumer's index, checked: at most a capacity behind ours and never backwards.
    fn consumer(&mut self) -> Result<u32, PeerMisbehaviour> {
        let consumer = self.shared.word(CONSUMER_OFFSET).load(Ordering::Acquire);
        let used = self.producer.wrapping_sub(consumer);
        if used > self.shared.layout.capacity {
            return Err(PeerMisbehaviour::IndexOutOfRange);
        }
        if consumer.wrapping_sub(self.consumer_seen) > self.producer.wrapping_sub(self.consumer_seen) {
            return Err(PeerMisbehaviour::IndexMovedBackwards);
        }
        self.consumer_seen = consumer;
        self.cached = true;
        Ok(consumer)
    }

    pub fn layout(&self) -> RingLayout {
        self.shared.layout
    }

    /// Free bytes now (as the consumer claims): always reads the consumer's index.
    pub fn free(&mut self) -> Result<usize, PeerMisbehaviour> {
        self.consumer()?;
        Ok(self.free_cached())
    }

    /// Free bytes as the consumer index cached in this batch says (at most what
    /// [`free`](Self::free) would say); 0 before it was read in this batch.
    fn free_cached(&self) -> usize {
        if !self.cached {
            return 0;
        }
        self.shared.layout.capacity() - self.producer.wrapping_sub(self.consumer_seen) as usize
    }

    /// Whether `needed` ring bytes are free: per the cached consumer index, or else per the
    /// shared one, read and checked.
    fn has_room(&mut self, needed: usize) -> Result<bool, PeerMisbehaviour> {
        Ok(self.free_cached() >= needed || self.free()? >= needed)
    }

    /// Whether a message of `length` bytes could be sent now. Reads the consumer's index unless
    /// the one cached in this batch says it fits.
    pub fn fits(&mut self, length: usize) -> Result<bool, PeerMisbehaviour> {
        if length > self.shared.layout.max_message() {
            return Ok(false);
        }
        let needed = self.needed(length);
        self.has_room(needed)
    }

    /// Ring bytes a message of `length` bytes takes at the current position, pad included.
    fn needed(&self, length: usize) -> usize {
        let capacity = self.shared.layout.capacity();
        let record = RECORD_HEADER + padded(length);
        let to_end = capacity - (self.producer as usize & (capacity - 1));
        if record <= to_end {
            record
        } else {
            to_end + record
        }
    }

    /// Before waiting for free space: asks the consumer to notify when it releases some. Returns
    /// `true` when a message of `length` bytes fits meanwhile, in which case the producer must
    /// go on instead of waiting (and the request is withdrawn).
    ///
    /// The re-check reads the consumer's index whenever the cached one says the message does not
    /// fit (a cached index that says it fits is right: space is only ever released).
    pub fn request_space_signal(&mut self, length: usize) -> Result<bool, PeerMisbehaviour> {
        let shared = self.shared;
        shared.word(PRODUCER_WAITING_OFFSET).store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.fits(length)? {
            shared.word(PRODUCER_WAITING_OFFSET).store(0, Ordering::Relaxed);
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether a message of `length` bytes fits now; when it does not, asks the consumer to
    /// notify on its next release ([`request_space_signal`](Self::request_space_signal), which
    /// also says whether room appeared meanwhile). `false`: wait for that notification.
    pub fn fits_or_ask(&mut self, length: usize) -> Result<bool, PeerMisbehaviour> {
        Ok(self.fits(length)? || self.request_space_signal(length)?)
    }

    /// Ends the ring for the consumer (the secure side closing or resetting a session): the
    /// producer index jumps half the index space ahead, which no consumer can accept, so the
    /// peer's next receive reports [`PeerMisbehaviour`] instead of waiting on a ring nobody
    /// serves. (An honest consumer is at most a capacity, at most 2^30, behind our index, so it
    /// sees at least 2^31 - 2^30 > capacity bytes claimed.)
    pub fn revoke(self) {
        let revoked = self.producer.wrapping_add(REVOKE_DISTANCE);
        self.shared.word(PRODUCER_OFFSET).store(revoked, Ordering::Release);
    }

    /// Appends one message; it becomes visible to the consumer at the next [`publish`](Self::publish).
    /// Reads the consumer's index, unless the one cached in this batch says the message fits: a
    /// consumer that lies is caught by the first send of the next batch, or when the cache runs
    /// out (before any wait for space).
    pub fn try_send(&mut self, message: &[u8]) -> Result<(), SendError> {
        let layout = self.shared.layout;
        if message.len() > layout.max_message() {
            return Err(SendError::TooLarge);
        }
        let record = RECORD_HEADER + padded(message.len());
        let capacity = layout.capacity();
        let at = self.producer as usize & (capacity - 1);
        let to_end = capacity - at;
        let needed = self.needed(message.len());
        if !self.has_room(needed).map_err(SendError::Peer)? {
            return Err(SendError::Full);
        }
        let mut at = at;
        if record > to_end {
            // A pad header needs 8 bytes; records are 8-aligned, so to_end >= 8 always.
            self.shared.write_header(at, PAD);
            self.producer = self.producer.wrapping_add(to_end as u32);
            at = 0;
        }
        self.shared.write(at + RECORD_HEADER, message);
        self.shared.write_header(at, message.len() as u32);
        self.producer = self.producer.wrapping_add(record as u32);
        Ok(())
    }

    /// Makes everything sent so far visible. Returns whether the consumer must be notified (it
    /// asked for a signal and nobody has sent one since).
    pub fn publish(&mut self) -> bool {
        // A batch ends: the next one reads the consumer's index before it trusts it.
        self.cached = false;
        if self.published == self.producer {
            return false;
        }
        self.published = self.producer;
        self.shared.word(PRODUCER_OFFSET).store(self.producer, Ordering::Release);
        // The flag is read after the index is visible: a consumer that clears the flag and then
        // re-checks the index sees our message, or we see its cleared flag (sDDF's argument).
        fence(Ordering::SeqCst);
        let signalled = self.shared.word(SIGNALLED_OFFSET);
        if signalled.load(Ordering::Relaxed) == 0 {
            signalled.store(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// The consuming end. Keeps its index privately; reads the producer's and every record as an
/// allegation.
#[derive(Debug)]
pub struct Consumer {
    shared: Shared,
    consumer: u32,
    /// The producer index last read and accepted: to refuse it moving backwards, and the cached
    /// copy records are taken from until it says the ring is empty (never behind `consumer`, at
    /// most a capacity ahead).
    producer_seen: u32,
    /// Whether `producer_seen` was read in this batch (since the last `release`): only then are
    /// records taken on its word without reading the shared index.
    cached: bool,
    /// Where the consumer index goes when the message last [`peek`](Self::peek)ed is consumed.
    peeked: Option<u32>,
}

// SAFETY: as for Producer: the role moves with the value.
unsafe impl Send for Consumer {}

impl Consumer {
    /// Takes the consuming end of the ring at `base` and resets it to empty.
    ///
    /// # Safety
    /// As for [`Producer::new`].
    pub unsafe fn new(base: NonNull<u8>, len: usize, layout: RingLayout) -> Result<Self, LayoutError> {
        // SAFETY: forwarded contract.
        let shared = unsafe { Shared::new(base, len, layout) }?;
        shared.word(PRODUCER_OFFSET).store(0, Ordering::Release);
        shared.word(CONSUMER_OFFSET).store(0, Ordering::Release);
        shared.word(SIGNALLED_OFFSET).store(0, Ordering::Release);
        shared.word(PRODUCER_WAITING_OFFSET).store(0, Ordering::Release);
        Ok(Self { shared, consumer: 0, producer_seen: 0, cached: false, peeked: None })
    }

    /// Takes the consuming end of a ring the other side has reset, at the indices found in it.
    ///
    /// # Safety
    /// As for [`Producer::new`].
    pub unsafe fn attach(base: NonNull<u8>, len: usize, layout: RingLayout) -> Result<Self, PeerMisbehaviourOrLayout> {
        // SAFETY: forwarded contract.
        let shared = unsafe { Shared::new(base, len, layout) }?;
        let consumer = shared.word(CONSUMER_OFFSET).load(Ordering::Acquire);
        if !consumer.is_multiple_of(RECORD_HEADER as u32) {
            return Err(PeerMisbehaviourOrLayout::Peer(PeerMisbehaviour::IndexOutOfRange));
        }
        let mut this = Self { shared, consumer, producer_seen: consumer, cached: false, peeked: None };
        this.pending()?;
        Ok(this)
    }

    /// The producer's index, checked: at most a capacity ahead of ours and never backwards.
    fn producer(&mut self) -> Result<u32, PeerMisbehaviour> {
        let producer = self.shared.word(PRODUCER_OFFSET).load(Ordering::Acquire);
        if producer.wrapping_sub(self.consumer) > self.shared.layout.capacity {
            return Err(if self.producer_seen.wrapping_sub(producer) <= self.shared.layout.capacity {
                PeerMisbehaviour::IndexMovedBackwards
            } else {
                PeerMisbehaviour::IndexOutOfRange
            });
        }
        if producer.wrapping_sub(self.consumer) < self.producer_seen.wrapping_sub(self.consumer) {
            return Err(PeerMisbehaviour::IndexMovedBackwards);
        }
        self.producer_seen = producer;
        self.cached = true;
        Ok(producer)
    }

    pub fn layout(&self) -> RingLayout {
        self.shared.layout
    }

    /// Bytes published and not yet consumed (as the producer claims): always reads the
    /// producer's index.
    pub fn pending(&mut self) -> Result<usize, PeerMisbehaviour> {
        Ok(self.producer()?.wrapping_sub(self.consumer) as usize)
    }

    /// Copies the next message into `out`: `Ok(Some(length))`, or `Ok(None)` when the ring is empty.
    /// The message leaves the ring at the next [`release`](Self::release).
    pub fn try_recv(&mut self, out: &mut [u8]) -> Result<Option<usize>, RecvError> {
        let length = self.peek(out)?;
        self.consume();
        Ok(length)
    }

    /// Copies the next message into `out` without consuming it: the next `peek` or `try_recv`
    /// copies (and checks) it again, unless [`consume`](Self::consume) is called first. For a
    /// consumer that can only take a message when it has somewhere to put the answer.
    pub fn peek(&mut self, out: &mut [u8]) -> Result<Option<usize>, RecvError> {
        self.peek_into(Some(out))
    }

    /// Checks the next message's record like [`peek`](Self::peek) and returns its length, without
    /// copying its bytes: for a consumer that only counts messages (zero copy). The bytes stay in
    /// the ring, where the producer may still change them; never act on them.
    pub fn peek_length(&mut self) -> Result<Option<usize>, PeerMisbehaviour> {
        self.peek_into(None).map_err(|e| match e {
            RecvError::Peer(m) => m,
            // Not produced without an output buffer.
            RecvError::BufferTooSmall(_) => PeerMisbehaviour::BadLength,
        })
    }

    fn peek_into(&mut self, out: Option<&mut [u8]>) -> Result<Option<usize>, RecvError> {
        self.peeked = None;
        let layout = self.shared.layout;
        let capacity = layout.capacity();
        loop {
            // The producer index cached in this batch first; the shared one is read (and
            // checked) when there is none or it says the ring is empty. An honest producer
            // publishes record boundaries only, so every record before a cached index ends at
            // or before it.
            let mut available = if self.cached { self.producer_seen.wrapping_sub(self.consumer) as usize } else { 0 };
            if available == 0 {
                available = self.pending().map_err(RecvError::Peer)?;
                if available == 0 {
                    return Ok(None);
                }
            }
            if available < RECORD_HEADER {
                return Err(RecvError::Peer(PeerMisbehaviour::BadLength));
            }
            let at = self.consumer as usize & (capacity - 1);
            // Records start 8-aligned, so the header never straddles the end of the data area,
            // unless the peer misaligned the indices.
            if !at.is_multiple_of(RECORD_HEADER) {
                return Err(RecvError::Peer(PeerMisbehaviour::BadRecord));
            }
            let (length, reserved) = self.shared.read_header(at);
            if length == PAD {
                let to_end = capacity - at;
                if reserved != 0 || available < to_end {
                    return Err(RecvError::Peer(PeerMisbehaviour::BadRecord));
                }
                // A pad carries nothing: it is consumed as soon as it is seen, even when no
                // message follows it yet. (Left in place, a ring holding only a pad would look
                // non-empty to `pending` and empty to `peek` for ever: a consumer that re-checks
                // before sleeping would spin.)
                self.consumer = self.consumer.wrapping_add(to_end as u32);
                continue;
            }
            let length = length as usize;
            if reserved != 0 {
                return Err(RecvError::Peer(PeerMisbehaviour::BadRecord));
            }
            let record = RECORD_HEADER + padded(length);
            if length > layout.max_message() || record > available || record > capacity - at {
                return Err(RecvError::Peer(PeerMisbehaviour::BadLength));
            }
            if let Some(out) = out {
                if length > out.len() {
                    return Err(RecvError::BufferTooSmall(length));
                }
                self.shared.read(at + RECORD_HEADER, &mut out[..length]);
            }
            self.peeked = Some(self.consumer.wrapping_add(record as u32));
            return Ok(Some(length));
        }
    }

    /// Consumes the message last [`peek`](Self::peek)ed (nothing if there is none).
    pub fn consume(&mut self) {
        if let Some(next) = self.peeked.take() {
            self.consumer = next;
        }
    }

    /// Ends the ring for the producer, as [`Producer::revoke`] does for a consumer: the consumer
    /// index jumps half the index space ahead of ours, so the producer's next send reports
    /// [`PeerMisbehaviour::IndexOutOfRange`] (an honest producer is at most a capacity ahead of
    /// us; it sees at least 2^31 - 2^30 bytes in use).
    pub fn revoke(self) {
        let revoked = self.consumer.wrapping_add(REVOKE_DISTANCE);
        self.shared.word(CONSUMER_OFFSET).store(revoked, Ordering::Release);
    }

    /// Hands the consumed space back to the producer. Returns whether the producer must be
    /// notified (it is waiting for space).
    pub fn release(&mut self) -> bool {
        // A batch ends: the next one reads the producer's index before it trusts it.
        self.cached = false;
        self.shared.word(CONSUMER_OFFSET).store(self.consumer, Ordering::Release);
        // As in `Producer::publish`: the producer sets its flag and then re-checks our index.
        fence(Ordering::SeqCst);
        let waiting = self.shared.word(PRODUCER_WAITING_OFFSET);
        if waiting.load(Ordering::Relaxed) != 0 {
            waiting.store(0, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Before waiting: asks the producer to notify on its next publish. Returns `true` when data
    /// arrived meanwhile, in which case the consumer must go on consuming instead of waiting (and
    /// the request is withdrawn). The re-check always reads the producer's index.
    pub fn request_signal(&mut self) -> Result<bool, PeerMisbehaviour> {
        let shared = self.shared;
        shared.word(SIGNALLED_OFFSET).store(0, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.pending()? > 0 {
            shared.word(SIGNALLED_OFFSET).store(1, Ordering::Relaxed);
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
