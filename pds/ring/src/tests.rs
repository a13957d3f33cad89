//! Host tests of the ring: a model-checked round trip, the signalling rules, and hostile peers.

extern crate std;

use super::*;
use proptest::prelude::*;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

/// 64-byte aligned, zeroed memory for one ring.
struct Memory {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Memory {
    fn new(size: usize) -> Self {
        let layout = Layout::from_size_align(size, 64).unwrap();
        // SAFETY: the layout has a nonzero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }

    fn poke(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.layout.size());
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: inside the allocation (asserted).
            unsafe { self.ptr.as_ptr().add(offset + i).write_volatile(*b) };
        }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

fn ring(capacity: u64) -> (Memory, Producer, Consumer) {
    let layout = RingLayout::new(capacity).unwrap();
    let memory = Memory::new(layout.size());
    // SAFETY: the memory outlives both ends within each test (dropped last by declaration order
    // of the returned tuple's users).
    let producer = unsafe { Producer::new(memory.ptr, layout.size(), layout) }.unwrap();
    // SAFETY: as above.
    let consumer = unsafe { Consumer::new(memory.ptr, layout.size(), layout) }.unwrap();
    (memory, producer, consumer)
}

#[test]
fn layouts_are_checked() {
    assert_eq!(RingLayout::new(100), Err(LayoutError::BadCapacity(100)));
    assert_eq!(RingLayout::new(32), Err(LayoutError::BadCapacity(32)));
    let layout = RingLayout::new(4096).unwrap();
    assert_eq!((layout.size(), layout.max_message()), (4096 + 192, 1016));
    let memory = Memory::new(layout.size() + 64);
    // SAFETY: inside the allocation.
    let misaligned = unsafe { NonNull::new_unchecked(memory.ptr.as_ptr().add(8)) };
    // SAFETY: the memory is valid; only the layout check is exercised.
    assert_eq!(unsafe { Producer::new(misaligned, layout.size(), layout) }.unwrap_err(), LayoutError::Misaligned);
    // SAFETY: as above.
    let short = unsafe { Consumer::new(memory.ptr, 100, layout) }.unwrap_err();
    assert_eq!(short, LayoutError::TooSmall { needed: 4288, given: 100 });
}

#[test]
fn the_largest_ring_within_a_region() {
    let page = RingLayout::largest_within(4096).unwrap();
    assert_eq!((page.capacity(), page.size()), (2048, 2048 + 192));
    assert_eq!(RingLayout::largest_within(4096 + 192).unwrap().capacity(), 4096);
    assert_eq!(RingLayout::largest_within(4096 + 191).unwrap().capacity(), 2048);
    assert_eq!(RingLayout::largest_within(256).unwrap().capacity(), 64);
    assert_eq!(RingLayout::largest_within(255), Err(LayoutError::TooSmall { needed: 256, given: 255 }));
    assert_eq!(RingLayout::largest_within(usize::MAX).unwrap().capacity(), 1 << 30);
}

#[test]
fn messages_arrive_whole_and_in_order_across_the_wrap() {
    let (_memory, mut producer, mut consumer) = ring(256);
    let mut out = [0u8; 64];
    for round in 0u8..100 {
        let message: Vec<u8> = (0..(round % 50)).map(|i| i ^ round).collect();
        producer.try_send(&message).unwrap();
        producer.publish();
        assert_eq!(consumer.try_recv(&mut out), Ok(Some(message.len())));
        assert_eq!(&out[..message.len()], &message[..]);
        consumer.release();
        assert_eq!(consumer.try_recv(&mut out), Ok(None));
    }
}

#[test]
fn full_ring_refuses_and_recovers() {
    let (_memory, mut producer, mut consumer) = ring(128);
    let message = [7u8; 24]; // 32-byte records
    for _ in 0..4 {
        producer.try_send(&message).unwrap();
    }
    assert_eq!(producer.try_send(&message), Err(SendError::Full));
    assert_eq!(producer.try_send(&[0; 100]), Err(SendError::TooLarge));
    producer.publish();
    let mut out = [0u8; 24];
    assert_eq!(consumer.try_recv(&mut out), Ok(Some(24)));
    assert_eq!(producer.try_send(&message), Err(SendError::Full), "space returns only on release");
    consumer.release();
    producer.try_send(&message).unwrap();
}

#[test]
fn small_buffer_leaves_the_message_in_the_ring() {
    let (_memory, mut producer, mut consumer) = ring(256);
    producer.try_send(&[1; 20]).unwrap();
    producer.publish();
    assert_eq!(consumer.try_recv(&mut [0; 10]), Err(RecvError::BufferTooSmall(20)));
    assert_eq!(consumer.try_recv(&mut [0; 20]), Ok(Some(20)));
}

#[test]
fn signalling_notifies_only_a_waiting_consumer() {
    let (_memory, mut producer, mut consumer) = ring(256);
    // A fresh ring: the consumer has not asked; the first publish signals (flag clear at reset).
    producer.try_send(b"a").unwrap();
    assert!(producer.publish());
    producer.try_send(b"b").unwrap();
    assert!(!producer.publish(), "a consumer already signalled is not signalled again");
    // The consumer drains, then asks; data arrived meanwhile? No: it may wait.
    let mut out = [0u8; 8];
    while consumer.try_recv(&mut out).unwrap().is_some() {}
    consumer.release();
    assert_eq!(consumer.request_signal(), Ok(false));
    producer.try_send(b"c").unwrap();
    assert!(producer.publish(), "a waiting consumer is signalled");
    // Asking while data is pending withdraws the request: the consumer must not sleep.
    assert_eq!(consumer.request_signal(), Ok(true));
    producer.try_send(b"d").unwrap();
    assert!(!producer.publish());
}

#[test]
fn a_full_producer_is_signalled_once_space_is_released() {
    let (_memory, mut producer, mut consumer) = ring(256);
    while producer.try_send(&[7; 56]).is_ok() {}
    producer.publish();
    assert_eq!(producer.fits(56), Ok(false));
    // Nobody waits yet: releasing costs no notification.
    let mut out = [0u8; 64];
    consumer.try_recv(&mut out).unwrap();
    assert!(!consumer.release());
    while producer.try_send(&[7; 56]).is_ok() {}
    producer.publish();
    // The producer asks; no space meanwhile, so it may wait.
    assert_eq!(producer.request_space_signal(56), Ok(false));
    // Releasing nothing new still notifies a waiting producer at most once.
    consumer.try_recv(&mut out).unwrap();
    assert!(consumer.release(), "a waiting producer is signalled");
    assert!(!consumer.release(), "and only once");
    // Asking while space is free withdraws the request: the producer must not sleep.
    assert_eq!(producer.request_space_signal(56), Ok(true));
    consumer.try_recv(&mut out).unwrap();
    assert!(!consumer.release());
}

#[test]
fn peeked_messages_stay_until_consumed() {
    let (_memory, mut producer, mut consumer) = ring(256);
    producer.try_send(b"first").unwrap();
    producer.try_send(b"second").unwrap();
    producer.publish();
    let mut out = [0u8; 16];
    assert_eq!(consumer.peek(&mut out), Ok(Some(5)));
    assert_eq!(consumer.peek(&mut out), Ok(Some(5)), "a peek does not consume");
    consumer.consume();
    assert_eq!(consumer.peek(&mut out), Ok(Some(6)));
    assert_eq!(&out[..6], b"second");
    consumer.consume();
    consumer.consume();
    assert_eq!(consumer.try_recv(&mut out), Ok(None));
}

#[test]
fn lengths_are_checked_without_copying() {
    let (memory, mut producer, mut consumer) = ring(256);
    for length in [0usize, 5, 56] {
        producer.try_send(&vec![1u8; length]).unwrap();
    }
    producer.publish();
    for length in [0usize, 5, 56] {
        assert_eq!(consumer.peek_length(), Ok(Some(length)));
        consumer.consume();
    }
    assert_eq!(consumer.peek_length(), Ok(None));
    // A lying record is refused the same way as by `peek`.
    producer.try_send(&[2; 16]).unwrap();
    producer.publish();
    let at = HEADER_SIZE + 8 + 16 + 64;
    memory.poke(at, &200u32.to_le_bytes());
    assert_eq!(consumer.peek_length(), Err(PeerMisbehaviour::BadLength));
}

#[test]
fn a_ring_holding_only_a_pad_is_empty() {
    // Found by comm-pd's fuzz target: a producer that publishes a pad record and nothing after
    // it. The ring must read as empty, and asking for a signal must not report data (or the
    // engine's drain loop would never end).
    let layout = RingLayout::new(256).unwrap();
    let memory = Memory::new(layout.size());
    memory.poke(PRODUCER_OFFSET, &192u32.to_le_bytes());
    memory.poke(CONSUMER_OFFSET, &192u32.to_le_bytes());
    // SAFETY: the memory outlives the consumer.
    let mut consumer = unsafe { Consumer::attach(memory.ptr, layout.size(), layout) }.unwrap();
    memory.poke(HEADER_SIZE + 192, &PAD.to_le_bytes());
    memory.poke(PRODUCER_OFFSET, &256u32.to_le_bytes());
    let mut out = [0u8; 64];
    assert_eq!(consumer.try_recv(&mut out), Ok(None));
    assert_eq!(consumer.request_signal(), Ok(false));
    assert_eq!(consumer.pending(), Ok(0));
    // A message after the pad arrives as usual.
    memory.poke(HEADER_SIZE, &5u32.to_le_bytes());
    memory.poke(HEADER_SIZE + 8, b"after");
    memory.poke(PRODUCER_OFFSET, &(256u32 + 16).to_le_bytes());
    assert_eq!(consumer.try_recv(&mut out), Ok(Some(5)));
    assert_eq!(&out[..5], b"after");
}

#[test]
fn the_other_side_attaches_at_the_current_indices() {
    let layout = RingLayout::new(256).unwrap();
    let memory = Memory::new(layout.size());
    // SAFETY: the memory outlives both ends.
    let mut consumer = unsafe { Consumer::new(memory.ptr, layout.size(), layout) }.unwrap();
    // SAFETY: as above.
    let mut producer = unsafe { Producer::attach(memory.ptr, layout.size(), layout) }.unwrap();
    let mut out = [0u8; 16];
    for round in 0..40u8 {
        producer.try_send(&[round; 9]).unwrap();
        producer.publish();
        assert_eq!(consumer.try_recv(&mut out), Ok(Some(9)));
        consumer.release();
    }
    // A second producer (a new process) takes over where the first left off.
    let _ = producer;
    // SAFETY: as above.
    let mut producer = unsafe { Producer::attach(memory.ptr, layout.size(), layout) }.unwrap();
    producer.try_send(b"again").unwrap();
    producer.publish();
    assert_eq!(consumer.try_recv(&mut out), Ok(Some(5)));
    // An index that is no record boundary is refused.
    memory.poke(0, &3u32.to_le_bytes());
    // SAFETY: as above.
    let refused = unsafe { Producer::attach(memory.ptr, layout.size(), layout) }.unwrap_err();
    assert_eq!(refused, PeerMisbehaviourOrLayout::Peer(PeerMisbehaviour::IndexOutOfRange));
}

#[test]
fn lying_producer_index_is_refused() {
    let (memory, mut producer, mut consumer) = ring(256);
    producer.try_send(&[1; 16]).unwrap();
    producer.publish();
    let mut out = [0u8; 64];
    assert_eq!(consumer.try_recv(&mut out), Ok(Some(16)));
    // Beyond a capacity ahead.
    memory.poke(PRODUCER_OFFSET, &1000u32.to_le_bytes());
    assert_eq!(consumer.pending(), Err(PeerMisbehaviour::IndexOutOfRange));
    // Backwards (behind what was already seen).
    memory.poke(PRODUCER_OFFSET, &8u32.to_le_bytes());
    assert_eq!(consumer.pending(), Err(PeerMisbehaviour::IndexMovedBackwards));
}

#[test]
fn lying_records_are_refused() {
    let (memory, mut producer, mut consumer) = ring(256);
    producer.try_send(&[1; 16]).unwrap();
    producer.publish();
    let mut out = [0u8; 256];
    // A length beyond what was published.
    memory.poke(HEADER_SIZE, &200u32.to_le_bytes());
    assert_eq!(consumer.try_recv(&mut out), Err(RecvError::Peer(PeerMisbehaviour::BadLength)));
    // A pad where the data area does not end.
    memory.poke(HEADER_SIZE, &PAD.to_le_bytes());
    assert_eq!(consumer.try_recv(&mut out), Err(RecvError::Peer(PeerMisbehaviour::BadRecord)));
    // A nonzero reserved field.
    memory.poke(HEADER_SIZE, &16u32.to_le_bytes());
    memory.poke(HEADER_SIZE + 4, &1u32.to_le_bytes());
    assert_eq!(consumer.try_recv(&mut out), Err(RecvError::Peer(PeerMisbehaviour::BadRecord)));
}

#[test]
fn lying_consumer_index_is_refused() {
    let (memory, mut producer, _consumer) = ring(256);
    producer.try_send(&[1; 16]).unwrap();
    producer.publish();
    // The consumer claims to have consumed more than was produced.
    memory.poke(CONSUMER_OFFSET, &5000u32.to_le_bytes());
    assert_eq!(producer.free(), Err(PeerMisbehaviour::IndexOutOfRange));
    assert_eq!(producer.try_send(b"x"), Err(SendError::Peer(PeerMisbehaviour::IndexOutOfRange)));
    assert_eq!(producer.fits(16), Err(PeerMisbehaviour::IndexOutOfRange));
    assert_eq!(producer.request_space_signal(16), Err(PeerMisbehaviour::IndexOutOfRange));
}

#[test]
fn a_batch_reads_the_consumer_index_again_only_when_its_cache_runs_out() {
    let (memory, mut producer, _consumer) = ring(256);
    producer.try_send(&[1; 16]).unwrap();
    // Within the batch (no publish yet), a lie is not read while the cached index has room ...
    memory.poke(CONSUMER_OFFSET, &5000u32.to_le_bytes());
    let mut sent = 0;
    let refused = loop {
        match producer.try_send(&[2; 16]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    // ... and refused by the first send that needs more (before the producer could wait).
    assert_eq!(refused, SendError::Peer(PeerMisbehaviour::IndexOutOfRange));
    assert_eq!(sent, (256 - 24) / 24, "the sends the cached index had room for");
    producer.publish();
    // The next batch reads it first.
    memory.poke(CONSUMER_OFFSET, &0u32.to_le_bytes());
    assert_eq!(producer.try_send(&[3; 16]), Err(SendError::Full));
}

#[test]
fn a_batch_reads_the_producer_index_again_only_when_its_cache_runs_out() {
    let (memory, mut producer, mut consumer) = ring(256);
    let mut out = [0u8; 64];
    for round in 0..3u8 {
        producer.try_send(&[round; 8]).unwrap();
    }
    producer.publish();
    assert_eq!(consumer.try_recv(&mut out), Ok(Some(8)));
    // A producer index that lies now is not read while the cached one still covers records (in
    // this batch: no release yet): they were published before, and are delivered.
    memory.poke(PRODUCER_OFFSET, &4000u32.to_le_bytes());
    assert_eq!(consumer.try_recv(&mut out), Ok(Some(8)));
    assert_eq!((out[0], consumer.try_recv(&mut out), out[0]), (1, Ok(Some(8)), 2));
    // The cache says empty: the index is read, and refused.
    assert_eq!(consumer.try_recv(&mut out), Err(RecvError::Peer(PeerMisbehaviour::IndexOutOfRange)));
    assert_eq!(consumer.request_signal(), Err(PeerMisbehaviour::IndexOutOfRange));
    // An honest index again: the consumer goes on where it was.
    memory.poke(PRODUCER_OFFSET, &48u32.to_le_bytes());
    assert_eq!(consumer.try_recv(&mut out), Ok(None));
    producer.try_send(b"next").unwrap();
    producer.try_send(b"last").unwrap();
    producer.publish();
    assert_eq!(consumer.try_recv(&mut out), Ok(Some(4)));
    // After a release the next batch reads the index first: a lie is refused at once.
    consumer.release();
    memory.poke(PRODUCER_OFFSET, &4000u32.to_le_bytes());
    assert_eq!(consumer.try_recv(&mut out), Err(RecvError::Peer(PeerMisbehaviour::IndexOutOfRange)));
}

#[test]
fn a_revoked_ring_fails_the_peer_instead_of_leaving_it_waiting() {
    let layout = RingLayout::new(256).unwrap();
    let memory = Memory::new(layout.size());
    let mut out = [0u8; 64];
    // The secure side consumes; the peer produces, and has filled the ring (a capacity ahead).
    // SAFETY: the memory outlives both ends.
    let consumer = unsafe { Consumer::new(memory.ptr, layout.size(), layout) }.unwrap();
    // SAFETY: as above.
    let mut producer = unsafe { Producer::attach(memory.ptr, layout.size(), layout) }.unwrap();
    while producer.try_send(&[7; 24]).is_ok() {}
    producer.publish();
    consumer.revoke();
    assert_eq!(producer.try_send(&[7; 24]), Err(SendError::Peer(PeerMisbehaviour::IndexOutOfRange)));
    assert_eq!(producer.request_space_signal(8), Err(PeerMisbehaviour::IndexOutOfRange));
    // The secure side produces, after many wraps; the peer consumes, and has read everything.
    // SAFETY: as above.
    let mut producer = unsafe { Producer::new(memory.ptr, layout.size(), layout) }.unwrap();
    // SAFETY: as above.
    let mut consumer = unsafe { Consumer::attach(memory.ptr, layout.size(), layout) }.unwrap();
    for round in 0..100u8 {
        producer.try_send(&[round; 40]).unwrap();
        producer.publish();
        assert_eq!(consumer.try_recv(&mut out), Ok(Some(40)));
        consumer.release();
    }
    producer.revoke();
    assert!(matches!(consumer.try_recv(&mut out), Err(RecvError::Peer(_))));
    assert!(consumer.request_signal().is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Recv,
    Release,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![(0usize..70).prop_map(Op::Send), Just(Op::Recv), Just(Op::Release)]
}

/// 500 cases, or `PROPTEST_CASES` (`make -f build.mk miri` asks for fewer). Under Miri, which
/// isolates the tests from the file system, no regression file is read or written.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let mut config = ProptestConfig::with_cases(cases);
    if cfg!(miri) {
        config.failure_persistence = None;
    }
    config
}

/// Operations per queue case: fewer under Miri, where each costs ~1000x more, but still enough
/// to wrap a 256-byte ring several times.
fn max_ops() -> usize {
    if cfg!(miri) {
        60
    } else {
        300
    }
}

proptest! {
    #![proptest_config(config())]

    /// Against a model queue: every message sent is received once, whole, in order; `Full` only
    /// when the model has no room.
    #[test]
    fn ring_behaves_as_a_queue(ops in proptest::collection::vec(op(), 1..max_ops())) {
        let (_memory, mut producer, mut consumer) = ring(256);
        let mut in_flight: VecDeque<Vec<u8>> = VecDeque::new();
        let mut counter = 0u8;
        let mut out = [0u8; 64];
        for op in ops {
            match op {
                Op::Send(len) => {
                    let len = len.min(RingLayout::new(256).unwrap().max_message());
                    counter = counter.wrapping_add(1);
                    let message = vec![counter; len];
                    match producer.try_send(&message) {
                        Ok(()) => in_flight.push_back(message),
                        Err(SendError::Full) => {}
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                    producer.publish();
                }
                Op::Recv => match consumer.try_recv(&mut out) {
                    Ok(Some(n)) => {
                        let want = in_flight.pop_front().expect("received a message never sent");
                        prop_assert_eq!(&out[..n], &want[..]);
                    }
                    Ok(None) => prop_assert!(in_flight.is_empty()),
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                },
                Op::Release => {
                    consumer.release();
                }
            }
        }
    }

    /// Whatever a hostile producer writes anywhere in the ring, the consumer never panics, never
    /// reads outside the ring (the internal asserts would fire), and hands out at most a buffer.
    #[test]
    fn hostile_bytes_never_break_the_consumer(
        honest in proptest::collection::vec(0usize..60, 0..10),
        scribbles in proptest::collection::vec((0usize..(HEADER_SIZE + 256), any::<u8>()), 1..40),
    ) {
        let (memory, mut producer, mut consumer) = ring(256);
        for len in honest {
            let _ = producer.try_send(&vec![0xab; len]);
        }
        producer.publish();
        for (offset, byte) in scribbles {
            memory.poke(offset, &[byte]);
        }
        let mut out = [0u8; 64];
        for _ in 0..20 {
            match consumer.try_recv(&mut out) {
                Ok(Some(n)) => prop_assert!(n <= out.len()),
                Ok(None) | Err(_) => break,
            }
            consumer.release();
        }
    }

    /// Whatever a hostile consumer writes, the producer never panics nor writes outside the ring.
    #[test]
    fn hostile_bytes_never_break_the_producer(
        scribbles in proptest::collection::vec((0usize..HEADER_SIZE, any::<u8>()), 1..20),
        sends in proptest::collection::vec(0usize..60, 1..20),
    ) {
        let (memory, mut producer, _consumer) = ring(256);
        for (offset, byte) in scribbles {
            memory.poke(offset, &[byte]);
        }
        for len in sends {
            let _ = producer.try_send(&vec![1; len]);
            let _ = producer.publish();
        }
    }
}
