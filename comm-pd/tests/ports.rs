//! comm-pd's port engine against tzcomm, in one process: the engine runs on host memory (the
//! harness) and a local backend runs it whenever the client kicks or waits, as the secure world
//! would run on a kick. The same client library the applications use drives it, so these tests
//! cover the protocol from both ends; tools/tzmk/tests run it across processes in the simulator.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use comm_pd::harness::{Area, Harness};
use comm_pd::ports::FeedStatus;
use comm_pd::{PortConfig, PORTS};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use proptest::prelude::*;
use tzcomm::pattern::{checksum, pattern};
use tzcomm::{Backend, Error, Mapping, Region, Transport, Tz};
use tzmk_interface::port::ring::{PeerMisbehaviour, SendError};
use tzmk_interface::port::{
    command, ControlError, Directory, Operation, PortFault, PortState, Reply, Request, Service, SinkTotals,
    DIRECTORY_OFFSET, REPLY_OFFSET, REQUEST_OFFSET,
};
use tzmk_interface::rt::{RtEvent, RtEventKind, RtStats, RT_EVENT_MAGIC};
use zerocopy::{FromBytes, IntoBytes};

/// The engine and every attachment's doorbell.
#[derive(Debug)]
struct Shared {
    harness: Mutex<Harness>,
    bells: Mutex<Vec<Weak<EventFd>>>,
}

impl Shared {
    fn harness(&self) -> MutexGuard<'_, Harness> {
        self.harness.lock().unwrap()
    }

    /// One run of comm-pd's event handler: poll, and ring every doorbell if it asks to.
    fn run(&self) -> comm_pd::ports::Poll {
        let poll = self.harness().poll();
        if poll.doorbell {
            let mut bells = self.bells.lock().unwrap();
            bells.retain(|bell| bell.upgrade().is_some_and(|bell| bell.write(1).is_ok()));
        }
        poll
    }

    fn mapping(&self, region: Region) -> Mapping {
        let harness = self.harness();
        let memory = match region {
            Region::Ctrl => &harness.ctrl,
            Region::Rx => &harness.rx,
            Region::Tx => &harness.tx,
        };
        Mapping { base: memory.base(), size: memory.size() }
    }

    fn directory(&self) -> Directory {
        let mut bytes = vec![0u8; std::mem::size_of::<Directory>()];
        self.harness().peek(Area::Ctrl, DIRECTORY_OFFSET, &mut bytes);
        Directory::read_from_bytes(&bytes).unwrap()
    }

    /// Bytes of a region, as the hostile normal world writes them.
    fn scribble(&self, area: Area, offset: usize, bytes: &[u8]) {
        self.harness().scribble(area, offset, bytes);
    }
}

#[derive(Debug)]
struct Local(Arc<Shared>);

impl Backend for Local {
    fn region(&self, region: Region) -> Mapping {
        self.0.mapping(region)
    }

    fn attach(&self) -> io::Result<Box<dyn Transport>> {
        let bell = Arc::new(EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?);
        self.0.bells.lock().unwrap().push(Arc::downgrade(&bell));
        Ok(Box::new(Attachment { shared: self.0.clone(), bell }))
    }

    fn lock_control(&self) -> io::Result<Box<dyn std::any::Any>> {
        // One process, and these tests use one thread per Tz.
        Ok(Box::new(()))
    }
}

#[derive(Debug)]
struct Attachment {
    shared: Arc<Shared>,
    bell: Arc<EventFd>,
}

impl Transport for Attachment {
    fn kick(&self, _port: u16) -> io::Result<()> {
        self.shared.run();
        Ok(())
    }

    fn clear(&self) -> io::Result<()> {
        match self.bell.read() {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The secure world gets a turn (as if its core ran meanwhile), then the doorbell is looked at.
    fn wait(&self, _timeout: Duration, _interest: tzcomm::Interest) -> io::Result<bool> {
        self.shared.run();
        let mut fds = [PollFd::new(self.bell.as_fd(), PollFlags::POLLIN)];
        Ok(poll(&mut fds, PollTimeout::ZERO)? > 0)
    }

    fn doorbell(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    /// Nothing stands for the driver here: this process's ports close when dropped.
    fn hold(&self, _port: u16, _session: u32) -> io::Result<()> {
        Ok(())
    }
}

fn local() -> (Arc<Shared>, Tz) {
    local_with(&PORTS)
}

fn local_with(table: &'static [PortConfig]) -> (Arc<Shared>, Tz) {
    let harness = Harness::new(table).expect("the table fits the regions");
    let shared = Arc::new(Shared { harness: Mutex::new(harness), bells: Mutex::new(Vec::new()) });
    let tz = Tz::new(Arc::new(Local(shared.clone()))).unwrap();
    (shared, tz)
}

/// Writes message `index` of `size` bytes and checks the echo is that message, byte for byte.
fn echo_once(port: &mut tzcomm::Port, index: u64, size: usize, message: &mut Vec<u8>, buf: &mut [u8]) {
    pattern(index, size, message);
    port.write(message).unwrap();
    let n = port.read(buf).unwrap();
    assert_eq!((n, checksum(&buf[..n])), (size, checksum(message)), "echo of message {index}");
}

#[test]
fn echo_round_trips_across_many_wraps() {
    let (shared, tz) = local();
    let mut port = tz.open("echo-small").unwrap();
    let max = port.max_message();
    let (mut message, mut buf) = (Vec::new(), vec![0u8; max]);
    let mut bytes = 0;
    for i in 0..3000u64 {
        // Every size from 0 to the largest, so records wrap at every offset of the 4 KiB ring.
        let size = (i as usize * 37) % (max + 1);
        echo_once(&mut port, i, size, &mut message, &mut buf);
        bytes += size as u64;
    }
    let status = port.status().unwrap();
    assert_eq!(
        (status.messages_in, status.bytes_in, status.messages_out, status.bytes_out),
        (3000, bytes, 3000, bytes)
    );
    assert_eq!(shared.harness().services.messages, 3000);
}

#[test]
fn a_full_reply_ring_holds_back_requests_and_loses_nothing() {
    let (_shared, tz) = local();
    let mut port = tz.open("echo-small").unwrap();
    let mut message = Vec::new();
    // Write without reading: the tx ring fills with replies, then the engine stops taking
    // messages (it has nowhere to put their replies), then the rx ring fills and writes refuse.
    let mut written = 0u64;
    loop {
        pattern(written, 100, &mut message);
        if !port.try_write(&message).unwrap() {
            break;
        }
        written += 1;
        assert!(written < 1000, "the port never pushed back");
    }
    let status = port.status().unwrap();
    assert!(status.stalls > 0, "the engine never waited for tx space: {status:?}");
    assert!(status.messages_in < written, "every message was taken although replies could not fit");
    // Reading makes room; every message comes back, in order, exactly once.
    let mut buf = vec![0u8; port.max_message()];
    for i in 0..written {
        let n = port.read(&mut buf).unwrap();
        pattern(i, 100, &mut message);
        assert_eq!(&buf[..n], &message[..], "reply {i}");
    }
    assert_eq!(port.try_read(&mut buf).unwrap(), None);
    let status = port.status().unwrap();
    assert_eq!((status.messages_in, status.messages_out), (written, written));
}

#[test]
fn sink_takes_a_stream_and_flush_waits_for_all_of_it() {
    let (_shared, tz) = local();
    let mut sink = tz.open("sink").unwrap();
    let mut message = Vec::new();
    for i in 0..1000 {
        pattern(i, 4096, &mut message);
        sink.write(&message).unwrap();
    }
    sink.flush().unwrap();
    let totals = SinkTotals::read_from_bytes(&sink.call(command::SINK_TOTALS, &[]).unwrap()).unwrap();
    assert_eq!((totals.messages, totals.bytes), (1000, 4096 * 1000));
}

#[test]
fn control_errors_are_typed() {
    let (_shared, tz) = local();
    assert!(matches!(tz.open("no-such-port"), Err(Error::NoSuchPort(name)) if name == "no-such-port"));
    let echo = tz.open("echo").unwrap();
    assert!(matches!(echo.call(99, &[]), Err(Error::Control(ControlError::UnknownCommand))));
    let big = tz.open("echo-bulk").unwrap();
    assert!(matches!(big.call(command::ECHO_TOTALS, &vec![0; 4096]), Err(Error::TooLarge { length: 4096, .. })));
    big.close().unwrap();
    // A closed port refuses calls, its handle is gone; the status still answers.
    assert_eq!(tz.status("echo-bulk").unwrap().state, PortState::Closed as u8);
    let mut sink = tz.open("sink").unwrap();
    let other = tz.open("sink").unwrap();
    // Someone else's open ends the first session: its handle says so when it next looks for data
    // or room, instead of mixing streams.
    assert!(matches!(sink.try_read(&mut [0; 64]), Err(Error::Lost { port }) if port == "sink"));
    other.close().unwrap();
    assert!(matches!(echo.call(99, &[]), Err(Error::Control(ControlError::UnknownCommand))));
}

/// A request written straight into the mailbox, as a hostile client would; the engine's reply.
fn raw_request(shared: &Shared, message: &[u8], claimed_length: u32) -> Reply {
    shared.harness().request(message, claimed_length).expect("the engine answers every request")
}

fn request(operation: u32, port: u32, command: u32, payload: &[u8]) -> Vec<u8> {
    let mut message = Request { operation, port, command, length: payload.len() as u32 }.as_bytes().to_vec();
    message.extend_from_slice(payload);
    message
}

#[test]
fn garbage_in_the_mailbox_gets_typed_errors() {
    let (shared, tz) = local();
    let error = |message: &[u8], length: u32| ControlError::from_u32(raw_request(&shared, message, length).error);
    let open = request(Operation::OpenId as u32, 1, 0, &[]);
    assert_eq!(error(&open, open.len() as u32), None, "a well-formed open succeeds");
    // Framing: a length shorter than a request, longer than the slot, or disagreeing with the
    // request's own payload length.
    assert_eq!(error(&open, 3), Some(ControlError::Malformed));
    assert_eq!(error(&open, 0xffff_ffff), Some(ControlError::Malformed));
    assert_eq!(error(&request(Operation::OpenId as u32, 1, 0, &[1, 2]), 16), Some(ControlError::Malformed));
    // Content: an unknown operation, port, or a name that is not UTF-8.
    assert_eq!(error(&request(77, 1, 0, &[]), 16), Some(ControlError::Malformed));
    assert_eq!(error(&request(Operation::Status as u32, 999, 0, &[]), 16), Some(ControlError::NoSuchPort));
    assert_eq!(error(&request(Operation::Status as u32, u32::MAX, 0, &[]), 16), Some(ControlError::NoSuchPort));
    let bad_name = request(Operation::OpenName as u32, 0, 0, &[0xff, 0xfe]);
    assert_eq!(error(&bad_name, bad_name.len() as u32), Some(ControlError::Malformed));
    let unknown_name = request(Operation::OpenName as u32, 0, 0, b"nope");
    assert_eq!(error(&unknown_name, unknown_name.len() as u32), Some(ControlError::NoSuchPort));
    assert_eq!(error(&request(Operation::Call as u32, 3, 1, &[]), 16), Some(ControlError::NotOpen));
    assert_eq!(error(&request(Operation::Close as u32, 3, 0, &[]), 16), Some(ControlError::NotOpen));
    // A close names the session it ends: a stale one (an earlier client's) leaves the port open.
    let echo = shared.directory().ports[0];
    assert_eq!((echo.name(), echo.state), (Some("echo"), PortState::Open as u8));
    let stale = request(Operation::Close as u32, echo.id.into(), echo.session.wrapping_sub(1), &[]);
    assert_eq!(error(&stale, 16), Some(ControlError::NotOpen));
    assert_eq!(shared.directory().ports[0].state, PortState::Open as u8, "a stale close closed the port");
    // The same sequence number twice is one request: nothing is handled again.
    assert_eq!(shared.run().requests, 0);
    // After all that, the library's own requests still work.
    let mut echo = tz.open("echo").unwrap();
    let (mut message, mut buf) = (Vec::new(), vec![0u8; 1024]);
    echo_once(&mut echo, 1, 1000, &mut message, &mut buf);
}

/// The mailbox's request header: (sequence, length).
fn request_header(shared: &Shared) -> (u32, u32) {
    let mut word = [0u8; 8];
    shared.harness().peek(Area::Ctrl, REQUEST_OFFSET, &mut word);
    let word = u64::from_ne_bytes(word);
    (word as u32, (word >> 32) as u32)
}

/// The sequence number of the mailbox's last reply.
fn reply_sequence(shared: &Shared) -> u32 {
    let mut word = [0u8; 8];
    shared.harness().peek(Area::Ctrl, REPLY_OFFSET, &mut word);
    u64::from_ne_bytes(word) as u32
}

/// Writes `message` as request `sequence` the way the driver does: body, then the header word.
fn write_request(shared: &Shared, sequence: u32, message: &[u8]) {
    shared.scribble(Area::Ctrl, REQUEST_OFFSET + 8, message);
    let header = u64::from(sequence) | (message.len() as u64) << 32;
    shared.scribble(Area::Ctrl, REQUEST_OFFSET, &header.to_ne_bytes());
}

/// The normal world's next request lands while comm-pd copies the current one: the driver gave
/// up on it (its timeout) and wrote an open of port 2 over the slot.
fn rewrite_during_copy(ctrl: &microkit::MemoryRegion) {
    let word = ctrl.atomic_u64(REQUEST_OFFSET).unwrap();
    let sequence = (word.load(std::sync::atomic::Ordering::Relaxed) as u32).wrapping_add(1);
    let open = request(Operation::OpenId as u32, 2, 0, &[]);
    ctrl.write_bytes(REQUEST_OFFSET + 8, &open).unwrap();
    word.store(u64::from(sequence) | (open.len() as u64) << 32, std::sync::atomic::Ordering::Release);
}

#[test]
fn a_request_rewritten_while_it_is_copied_never_runs() {
    let (shared, _tz) = local();
    let state = |id: u16| shared.harness().ports.status(id).unwrap().state;
    let (sequence, _) = request_header(&shared);
    shared.harness().ports.set_copy_hook(Some(rewrite_during_copy));
    // Request N opens port 1; between its copy and the re-check the slot becomes request N+1.
    write_request(&shared, sequence.wrapping_add(1), &request(Operation::OpenId as u32, 1, 0, &[]));
    let poll = shared.run();
    shared.harness().ports.set_copy_hook(None);
    assert_eq!(poll.requests, 0, "a request whose slot changed under the copy was handled");
    assert_eq!(state(1), PortState::Closed as u8, "the abandoned request (open port 1) ran");
    assert_ne!(reply_sequence(&shared), sequence.wrapping_add(1), "the abandoned request was answered");
    // The request that replaced it runs whole, once.
    assert_eq!(shared.run().requests, 1);
    assert_eq!(reply_sequence(&shared), sequence.wrapping_add(2));
    assert_eq!((state(1), state(2)), (PortState::Closed as u8, PortState::Open as u8));
    assert_eq!(shared.run().requests, 0, "a request ran twice");
}

#[test]
fn a_header_of_length_zero_is_a_request_being_written() {
    let (shared, _tz) = local();
    let (sequence, _) = request_header(&shared);
    let next = sequence.wrapping_add(1);
    // The header first, with length 0: the body that follows is not yet a request.
    shared.scribble(Area::Ctrl, REQUEST_OFFSET, &u64::from(next).to_ne_bytes());
    shared.scribble(Area::Ctrl, REQUEST_OFFSET + 8, &request(Operation::OpenId as u32, 1, 0, &[])[..7]);
    assert_eq!(shared.run().requests, 0);
    assert_ne!(reply_sequence(&shared), next);
    write_request(&shared, next, &request(Operation::OpenId as u32, 1, 0, &[]));
    assert_eq!(shared.run().requests, 1);
    assert_eq!(reply_sequence(&shared), next);
    assert_eq!(shared.harness().ports.status(1).unwrap().state, PortState::Open as u8);
}

/// Where a port's rx ring starts in port_rx, from the directory the engine published.
fn rx_offset(shared: &Shared, name: &str) -> usize {
    let directory = shared.directory();
    let entry = directory.ports[..directory.count as usize].iter().find(|e| e.name() == Some(name)).unwrap();
    entry.rx_offset as usize
}

#[test]
fn a_lying_ring_resets_only_its_port() {
    let (shared, tz) = local();
    let mut good = tz.open("echo").unwrap();
    let mut bad = tz.open("echo-small").unwrap();
    let (mut message, mut buf) = (Vec::new(), vec![0u8; good.max_message()]);
    let mut index = 0u64;
    for _ in 0..10 {
        echo_once(&mut good, index, 512, &mut message, &mut buf);
        echo_once(&mut bad, index, 512, &mut message, &mut buf);
        index += 1;
    }
    // The producer index of echo-small's rx ring (word 0 of the ring) jumps far past the
    // consumer: more data than the ring can hold.
    let offset = rx_offset(&shared, "echo-small");
    shared.scribble(Area::Rx, offset, &0x7fff_0000u32.to_ne_bytes());
    // Good-port traffic in flight while the engine finds the lie.
    pattern(index, 700, &mut message);
    good.write(&message).unwrap();
    let n = good.read(&mut buf).unwrap();
    assert_eq!(checksum(&buf[..n]), checksum(&message), "the good port's message in flight");
    let status = tz.status("echo-small").unwrap();
    assert_eq!(status.state, PortState::Faulted as u8);
    let fault = PortFault(status.last_fault);
    assert_eq!((fault.ring(), fault.misbehaviour()), ("rx", Some(PeerMisbehaviour::IndexOutOfRange)));
    // The liar's handle learns why; the engine no longer reads its rings.
    match bad.try_write(b"more") {
        Err(Error::Reset { port, fault }) => {
            assert_eq!(port, "echo-small");
            assert_eq!(fault.misbehaviour(), Some(PeerMisbehaviour::IndexOutOfRange));
        }
        other => panic!("a reset port answered {other:?}"),
    }
    // Every other port is untouched and keeps its session and counters.
    for i in 0..500 {
        echo_once(&mut good, index + i, (i as usize * 101) % 4000, &mut message, &mut buf);
    }
    let status = good.status().unwrap();
    assert_eq!((status.messages_in, status.messages_out, status.faults), (511, 511, 0));
    // Reopening gives the port a clean session; the fault stays counted.
    let mut again = tz.open("echo-small").unwrap();
    echo_once(&mut again, 0, 100, &mut message, &mut buf);
    let status = again.status().unwrap();
    assert_eq!((status.state, status.faults), (PortState::Open as u8, 1));
}

#[test]
fn a_lying_consumer_index_on_the_tx_ring_is_a_tx_fault() {
    let (shared, tz) = local();
    let mut port = tz.open("echo-small").unwrap();
    let (mut message, mut buf) = (Vec::new(), vec![0u8; 4096]);
    for i in 0..20 {
        echo_once(&mut port, i, 300, &mut message, &mut buf);
    }
    let directory = shared.directory();
    let entry = directory.ports.iter().find(|e| e.name() == Some("echo-small")).unwrap();
    // The client's consumer index of the tx ring (word 0 of its second cache line) goes back by
    // two records (312 bytes each), behind what the engine has already seen.
    let consumer = entry.tx_offset as usize + 64;
    let mut word = [0u8; 4];
    shared.harness().peek(Area::Tx, consumer, &mut word);
    let index = u32::from_ne_bytes(word);
    assert!(index >= 624, "20 records were consumed: {index}");
    shared.scribble(Area::Tx, consumer, &(index - 624).to_ne_bytes());
    pattern(99, 300, &mut message);
    let _ = port.try_write(&message);
    let status = tz.status("echo-small").unwrap();
    let fault = PortFault(status.last_fault);
    assert_eq!(status.state, PortState::Faulted as u8, "{status:?}");
    assert_eq!((fault.ring(), fault.misbehaviour()), ("tx", Some(PeerMisbehaviour::IndexMovedBackwards)));
}

/// An event as rt-task sends it on rt_events.
fn event(period: u64) -> RtEvent {
    RtEvent { magic: RT_EVENT_MAGIC, kind: RtEventKind::Summary as u32, period, ..RtEvent::default() }
}

/// rt-task's side of the feed: one event, refused (`false`) when the ring is full.
fn produce(shared: &Shared, period: u64) -> bool {
    let mut harness = shared.harness();
    let sent = match harness.feed.try_send(event(period).as_bytes()) {
        Ok(()) => true,
        Err(SendError::Full) => false,
        Err(e) => panic!("the engine broke the feed: {e}"),
    };
    harness.feed.publish();
    sent
}

fn feed_status(shared: &Shared) -> FeedStatus {
    let rt = PORTS.iter().find(|p| p.service == Service::RealTime).expect("comm-pd has an rt port");
    shared.harness().ports.feed_status(rt.id).expect("the harness has a feed")
}

fn read_event(port: &mut tzcomm::Port) -> Option<RtEvent> {
    let mut buf = [0u8; 64];
    let n = port.try_read(&mut buf).unwrap()?;
    Some(RtEvent::read_from_bytes(&buf[..n]).expect("an event, whole"))
}

#[test]
fn secure_feed_events_reach_the_rt_port_in_order() {
    let (shared, tz) = local();
    // Nobody has the rt port open: the engine takes the events and counts them unheard.
    for period in 1..=3 {
        assert!(produce(&shared, period));
    }
    shared.run();
    assert_eq!(feed_status(&shared), FeedStatus { unheard: 3, ..FeedStatus::default() });
    let mut rt = tz.open("rt").unwrap();
    assert_eq!(read_event(&mut rt), None, "unheard events are not delivered later");
    for period in 10..30 {
        assert!(produce(&shared, period));
    }
    shared.run();
    for period in 10..30 {
        assert_eq!(read_event(&mut rt), Some(event(period)));
    }
    assert_eq!(read_event(&mut rt), None);
    // A request on the same port still gets its statistics reply, between the events.
    assert!(produce(&shared, 30));
    rt.write(b"stats").unwrap();
    assert!(produce(&shared, 31));
    shared.run();
    let mut buf = [0u8; 64];
    let kinds: Vec<u32> = (0..3)
        .map(|_| {
            let n = rt.read(&mut buf).unwrap();
            u32::from_ne_bytes(buf[..4].try_into().unwrap()) | (n as u32) << 24
        })
        .collect();
    let (event_size, stats_size) = (size_of::<RtEvent>() as u32, size_of::<RtStats>() as u32);
    // The harness answers with default statistics (magic 0); events carry their magic. The
    // write's kick ran the engine before event 30 was forwarded: a turn serves the ports first.
    assert_eq!(kinds, [stats_size << 24, RT_EVENT_MAGIC | event_size << 24, RT_EVENT_MAGIC | event_size << 24]);
    let status = feed_status(&shared);
    assert_eq!((status.forwarded, status.unheard, status.fault), (22, 3, None));
}

#[test]
fn a_full_rt_port_holds_the_feed_back_and_the_producer_refuses_loses_nothing_else() {
    let (shared, tz) = local();
    let mut rt = tz.open("rt").unwrap();
    // The client does not read: the port's tx ring fills, the engine leaves events in the feed,
    // the feed fills, and the producer refuses (a real-time task never waits).
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for period in 0..400 {
        if produce(&shared, period) {
            accepted.push(period);
        } else {
            refused += 1;
        }
        shared.run();
    }
    let status = feed_status(&shared);
    assert!(status.stalls > 0 && refused > 0, "{status:?}, {refused} refused");
    assert!((status.forwarded as usize) < accepted.len(), "some events wait in the feed: {status:?}");
    // Reading makes room (the client's release kicks the engine): every accepted event arrives,
    // in order, exactly once.
    rt.set_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 64];
    for &period in &accepted {
        let n = rt.read(&mut buf).unwrap();
        assert_eq!(RtEvent::read_from_bytes(&buf[..n]).unwrap(), event(period));
    }
    shared.run();
    assert_eq!(read_event(&mut rt), None);
    assert_eq!(accepted.len() + refused, 400);
    assert_eq!(feed_status(&shared).forwarded, accepted.len() as u64);
}

#[test]
fn a_lying_feed_is_no_longer_read_and_the_ports_keep_working() {
    let (shared, tz) = local();
    let mut rt = tz.open("rt").unwrap();
    assert!(produce(&shared, 1));
    shared.run();
    assert_eq!(read_event(&mut rt), Some(event(1)));
    // The producer's index jumps past a capacity (word 0 of the feed ring).
    shared.scribble(Area::Feed, 0, &100_000u32.to_ne_bytes());
    shared.run();
    assert_eq!(feed_status(&shared).fault, Some(PeerMisbehaviour::IndexOutOfRange));
    // The feed is dropped; the ports are not.
    let mut echo = tz.open("echo").unwrap();
    let (mut message, mut buf) = (Vec::new(), vec![0u8; 4096]);
    echo_once(&mut echo, 0, 1000, &mut message, &mut buf);
    rt.write(b"stats").unwrap();
    rt.set_timeout(Some(Duration::from_secs(5)));
    assert_eq!(rt.read(&mut buf).unwrap(), size_of::<RtStats>());
    assert_eq!(tz.status("rt").unwrap().state, PortState::Open as u8);
}

/// One hostile write: where, and what.
#[derive(Debug, Clone)]
enum Scribble {
    Ctrl(usize, Vec<u8>),
    Rx(usize, Vec<u8>),
    Tx(usize, Vec<u8>),
    /// A request of arbitrary bytes and claimed length.
    Request(Vec<u8>, u32),
    /// A well-formed request of arbitrary fields.
    Control(u32, u32, u32),
}

fn scribble() -> impl Strategy<Value = Scribble> {
    let bytes = || proptest::collection::vec(any::<u8>(), 1..64);
    // Offsets near the rings of the first ports, where the headers and records are.
    let near = || prop_oneof![0usize..0x200, 0x1_0000usize..0x1_0400, 0usize..0x1f_ffc0];
    prop_oneof![
        (0usize..0xfc0, bytes()).prop_map(|(o, b)| Scribble::Ctrl(o, b)),
        (near(), bytes()).prop_map(|(o, b)| Scribble::Rx(o, b)),
        (near(), bytes()).prop_map(|(o, b)| Scribble::Tx(o, b)),
        (proptest::collection::vec(any::<u8>(), 0..64), any::<u32>()).prop_map(|(b, l)| Scribble::Request(b, l)),
        (0u32..7, 0u32..8, 0u32..4).prop_map(|(o, p, c)| Scribble::Control(o, p, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Arbitrary bytes anywhere in the shared regions and arbitrary control requests never make
    /// the engine panic or touch memory outside the regions (the harness would crash or Miri
    /// complain), every port stays in a defined state, and a clean open afterwards serves again.
    #[test]
    fn hostile_bytes_never_break_the_engine(scribbles in proptest::collection::vec(scribble(), 1..40)) {
        let (shared, tz) = local();
        let mut echo = tz.open("echo").unwrap();
        let _small = tz.open("echo-small").unwrap();
        let _sink = tz.open("sink").unwrap();
        let mut message = Vec::new();
        for i in 0..4 {
            pattern(i, 200, &mut message);
            echo.write(&message).unwrap();
        }
        for s in scribbles {
            match s {
                Scribble::Ctrl(o, b) => shared.harness().scribble_anywhere(Area::Ctrl, o, &b),
                Scribble::Rx(o, b) => shared.harness().scribble_anywhere(Area::Rx, o, &b),
                Scribble::Tx(o, b) => shared.harness().scribble_anywhere(Area::Tx, o, &b),
                // (Length 0 is the "being written" header: no request, no answer.)
                Scribble::Request(b, l) => { raw_request(&shared, &b, l.max(1)); }
                Scribble::Control(o, p, c) => {
                    shared.harness().control(o, p, c, &[]).expect("the engine answers every request");
                }
            }
            shared.run();
        }
        let harness = shared.harness();
        for port in PORTS.iter() {
            let state = harness.ports.status(port.id).unwrap().state;
            prop_assert!(PortState::from_u8(state).is_some(), "port {} in state {state}", port.name);
        }
        drop(harness);
        // A clean open, straight into the mailbox (the directory may have been scribbled on, and
        // an open republishes it), then the library's own open and an echo.
        let open = shared.harness().control(Operation::OpenId as u32, 1, 0, &[]);
        prop_assert_eq!(open.map(|reply| reply.error), Some(0));
        let mut echo = tz.open("echo").unwrap();
        let mut buf = vec![0u8; 4096];
        echo_once(&mut echo, 7, 3000, &mut message, &mut buf);
    }
}

#[test]
fn every_ring_has_pages_of_its_own() {
    let (shared, _tz) = local();
    let directory = shared.directory();
    let entries = &directory.ports[..directory.count as usize];
    for ring in [0, 1] {
        let mut spans: Vec<(u32, u32)> = entries
            .iter()
            .map(|e| if ring == 0 { (e.rx_offset, e.rx_capacity) } else { (e.tx_offset, e.tx_capacity) })
            .map(|(offset, capacity)| (offset, offset + capacity + tzmk_interface::port::ring::HEADER_SIZE as u32))
            .collect();
        spans.sort();
        for (start, _) in &spans {
            assert_eq!(start % 4096, 0, "a ring at {start:#x} does not start a page");
        }
        for pair in spans.windows(2) {
            assert!(pair[0].1.div_ceil(4096) * 4096 <= pair[1].0, "rings share a page: {spans:x?}");
        }
    }
}

/// The pending word and the doorbells rung: each port's news goes to the core where its reader
/// waits, as the driver wrote it; a control reply, an unknown or a refused core to the monitor's
/// choice.
#[test]
fn doorbells_are_aimed_at_the_readers_core() {
    use tzmk_interface::driver::{ANY_CORE, PENDING_ANY, PENDING_CONTROL, PENDING_OFFSET, READER_CORE_OFFSET};
    let (shared, tz) = local();
    // Pending word `word` (a core's, or the any word), taken as the driver's handler takes it.
    let take = |shared: &Shared, word: usize| {
        let mut bytes = [0u8; 8];
        shared.harness().peek(Area::Ctrl, PENDING_OFFSET + 8 * word, &mut bytes);
        shared.scribble(Area::Ctrl, PENDING_OFFSET + 8 * word, &[0; 8]);
        u64::from_ne_bytes(bytes)
    };
    let pending = |shared: &Shared| take(shared, PENDING_ANY);
    let rung = |shared: &Shared| std::mem::take(&mut shared.harness().services.rung);
    let mut echo = tz.open("echo").unwrap();
    assert_eq!(pending(&shared) & PENDING_CONTROL, PENDING_CONTROL, "the open's reply");
    assert!(rung(&shared).iter().all(|&(core, _)| core == ANY_CORE));
    // echo is the directory's port 0; its reader waits on core 2.
    shared.scribble(Area::Ctrl, READER_CORE_OFFSET, &2u32.to_le_bytes());
    echo.write(b"to core 2").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(echo.read(&mut buf).unwrap(), 9);
    assert_eq!(take(&shared, 2), 1, "only echo's bit, in core 2's word");
    assert_eq!(pending(&shared), 0, "nothing for the monitor's choice");
    assert_eq!(rung(&shared), [(2, 0)]);
    // A core the monitor refuses: the monitor's choice instead, never silence.
    shared.harness().services.refused_core = Some(2);
    // The reader asks for a doorbell (an empty ring: it would sleep), then the answer comes.
    assert_eq!(echo.try_read(&mut buf).unwrap(), None);
    echo.write(b"again").unwrap();
    assert_eq!(echo.read(&mut buf).unwrap(), 5);
    assert_eq!(rung(&shared), [(2, 0), (ANY_CORE, 0)]);
    assert_eq!(pending(&shared) & 1, 1, "a refused core's bits go to the any word");
}

/// comm-pd stamps the counter into port_ctrl just before each doorbell (the system bench's
/// "doorbell rung", docs/system-bench.md), a reading no older than the message's write.
#[test]
fn every_doorbell_is_stamped() {
    use tzmk_interface::driver::DOORBELL_RUNG_OFFSET;
    let (shared, tz) = local();
    let stamp = |shared: &Shared| {
        let mut bytes = [0u8; 8];
        shared.harness().peek(Area::Ctrl, DOORBELL_RUNG_OFFSET, &mut bytes);
        u64::from_ne_bytes(bytes)
    };
    let mut echo = tz.open("echo").unwrap();
    let opened = stamp(&shared);
    assert_ne!(opened, 0, "the open's reply rang the doorbell");
    let before = microkit::timer::now();
    echo.write(b"stamp me").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(echo.read(&mut buf).unwrap(), 8);
    let rung = stamp(&shared);
    assert!(rung >= before && rung <= microkit::timer::now(), "{before} <= {rung}");
}

/// The normal world's spin hint shortens comm-pd's spin window, never lengthens it; comm-pd
/// starts with its own window whatever the word held.
#[test]
fn the_spin_hint_only_shortens_the_window() {
    use tzmk_interface::driver::{SPIN_DEFAULT, SPIN_HINT_OFFSET};
    let mut harness = Harness::new(&PORTS).unwrap();
    let own = microkit::timer::ticks_from_micros(50);
    harness.ports.set_spin(own);
    let mut word = [0u8; 4];
    harness.peek(Area::Ctrl, SPIN_HINT_OFFSET, &mut word);
    assert_eq!(u32::from_le_bytes(word), SPIN_DEFAULT, "written at start");
    assert_eq!(harness.ports.spin_window(), own);
    let hint = |harness: &Harness, micros: u32| harness.scribble(Area::Ctrl, SPIN_HINT_OFFSET, &micros.to_le_bytes());
    hint(&harness, 0);
    assert_eq!(harness.ports.spin_window(), 0, "no spinning");
    hint(&harness, 10);
    assert_eq!(harness.ports.spin_window(), microkit::timer::ticks_from_micros(10));
    hint(&harness, 1_000_000);
    assert_eq!(harness.ports.spin_window(), own, "never longer than comm-pd's own");
    hint(&harness, SPIN_DEFAULT);
    assert_eq!(harness.ports.spin_window(), own);
}

// ---- Forwarded ports: the owner is another PD (the harness's `Reverser` over `PortServer`) ----

/// An echo port and a port forwarded to the harness's owner (4 KiB rings, as `tzmk new-pd` makes).
static FORWARDED: [PortConfig; 2] = [
    PortConfig { id: 1, name: "echo", service: Service::Echo, rx_capacity: 0x1000, tx_capacity: 0x1000 },
    PortConfig { id: 9, name: "hello", service: Service::Forward, rx_capacity: 0x1000, tx_capacity: 0x1000 },
];

fn reversed(message: &[u8]) -> Vec<u8> {
    message.iter().rev().copied().collect()
}

#[test]
fn a_forwarded_port_reaches_its_owner_and_its_replies_come_back_across_wraps() {
    let (shared, tz) = local_with(&FORWARDED);
    let mut port = tz.open("hello").unwrap();
    let max = port.max_message();
    let (mut message, mut buf) = (Vec::new(), vec![0u8; max]);
    for i in 0..2000u64 {
        // Every size up to the largest: records wrap at every offset of all four rings.
        let size = (i as usize * 37) % (max + 1);
        pattern(i, size, &mut message);
        port.write(&message).unwrap();
        let n = port.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], &reversed(&message)[..], "reply {i}");
    }
    let owner = shared.harness().services.owner.as_ref().unwrap().server.status();
    assert_eq!((owner.requests, owner.replies, owner.fault), (2000, 2000, None));
    // comm-pd's own services saw none of it.
    assert_eq!(shared.harness().services.messages, 0);
    // A control call reaches the owner's logic, and its refusals come back typed.
    let requests = port.call(comm_pd::harness::Reverser::REQUESTS, &[]).unwrap();
    assert_eq!(u64::from_le_bytes(requests[..].try_into().unwrap()), 2000);
    assert!(matches!(port.call(77, &[]), Err(Error::Control(ControlError::UnknownCommand))));
    assert!(matches!(port.call(1, b"x"), Err(Error::Control(ControlError::BadArgument))));
}

#[test]
fn a_forwarded_port_pushes_back_and_loses_nothing() {
    let (_shared, tz) = local_with(&FORWARDED);
    let mut port = tz.open("hello").unwrap();
    let mut message = Vec::new();
    // Write without reading: the port's tx ring fills, then the owner's reply ring, then the
    // owner stops taking requests, then the request ring, the rx ring, and writes refuse.
    let mut written = 0u64;
    loop {
        pattern(written, 300, &mut message);
        if !port.try_write(&message).unwrap() {
            break;
        }
        written += 1;
        assert!(written < 1000, "the port never pushed back");
    }
    assert!(port.status().unwrap().stalls > 0, "comm-pd never waited for the owner's request ring");
    let mut buf = vec![0u8; port.max_message()];
    for i in 0..written {
        let n = port.read(&mut buf).unwrap();
        pattern(i, 300, &mut message);
        assert_eq!(&buf[..n], &reversed(&message)[..], "reply {i}");
    }
    assert_eq!(port.try_read(&mut buf).unwrap(), None);
}

/// Where a ring's producer index is (word 0) and its consumer index (cache line 1).
const PRODUCER_INDEX: usize = 0;
const CONSUMER_INDEX: usize = 64;

#[test]
fn an_owner_that_breaks_a_ring_is_cut_off_and_every_other_port_goes_on() {
    for (area, offset) in [(Area::OwnerReplies, PRODUCER_INDEX), (Area::OwnerRequests, CONSUMER_INDEX)] {
        let (shared, tz) = local_with(&FORWARDED);
        let mut port = tz.open("hello").unwrap();
        port.write(b"ping").unwrap();
        let mut buf = vec![0u8; 64];
        assert_eq!(port.read(&mut buf).unwrap(), 4);
        // The owner writes an index no ring can have, and comm-pd next looks at it.
        shared.scribble(area, offset, &100_000u32.to_ne_bytes());
        let _ = port.try_write(b"ping");
        shared.run();
        let status = tz.status("hello").unwrap();
        assert_eq!(status.state, PortState::Faulted as u8, "{area:?}");
        assert_eq!(PortFault(status.last_fault).ring(), "owner's", "{area:?}: {status:?}");
        assert!(shared.harness().ports.is_cut_off(9));
        // The port stays closed to the normal world: nobody answers it any more.
        assert!(matches!(tz.open("hello"), Err(Error::Control(ControlError::ServiceUnavailable))), "{area:?}");
        let mut echo = tz.open("echo").unwrap();
        let (mut message, mut buf) = (Vec::new(), vec![0u8; 4096]);
        echo_once(&mut echo, 0, 1000, &mut message, &mut buf);
    }
}

#[test]
fn an_owner_region_too_small_for_the_port_is_refused_by_name() {
    use comm_pd::harness::Memory;
    static BIG: [PortConfig; 1] =
        [PortConfig { id: 3, name: "big", service: Service::Forward, rx_capacity: 0x10000, tx_capacity: 0x1000 }];
    let (ctrl, rx, tx, scratch) = (Memory::new(0x1000), Memory::new(0x11000), Memory::new(0x2000), Memory::new(0x4000));
    // SAFETY: every region outlives `ports`; the scratch is this test's alone.
    let mut ports =
        unsafe { comm_pd::Ports::new(&BIG, ctrl.region(), rx.region(), tx.region(), scratch.region()) }.unwrap();
    let (requests, replies) = (Memory::new(0x2000), Memory::new(0x2000));
    // SAFETY: as above.
    let refused = unsafe { ports.attach_owner(3, requests.region(), replies.region()) }.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "port 'big': its requests region holds a ring of 0x1000 bytes, the port's messages need 0x10000 (system.xml maps too little)"
    );
    // SAFETY: as above.
    let refused = unsafe { ports.attach_owner(4, requests.region(), replies.region()) }.unwrap_err();
    assert_eq!(refused.to_string(), "port 4 is no `forward` port of ports.toml");
}

#[test]
fn a_table_whose_replies_cannot_fit_is_refused_by_name() {
    static SHORT: [PortConfig; 1] =
        [PortConfig { id: 1, name: "short", service: Service::Echo, rx_capacity: 0x2000, tx_capacity: 0x1000 }];
    static EVIDENCE: [PortConfig; 1] = [PortConfig {
        id: 5,
        name: "attestation",
        service: Service::Attestation,
        rx_capacity: 0x2000,
        tx_capacity: 0x2000,
    }];
    assert_eq!(
        Harness::new(&SHORT).unwrap_err().to_string(),
        "port 'short': a reply may take 2040 bytes, its tx ring carries messages of at most 1016"
    );
    assert_eq!(
        Harness::new(&EVIDENCE).unwrap_err().to_string(),
        "port 'attestation': a reply may take 3072 bytes, its tx ring carries messages of at most 2040"
    );
}

/// The reply in the mailbox: its sequence and header.
fn mailbox_reply(shared: &Shared) -> (u32, Reply) {
    let mut bytes = [0u8; std::mem::size_of::<Reply>()];
    shared.harness().peek(Area::Ctrl, REPLY_OFFSET + 8, &mut bytes);
    (reply_sequence(shared), Reply::read_from_bytes(&bytes).unwrap())
}

/// Far beyond any test's run time: the deadline passes only when a test moves the clock.
const FAR: u64 = 1 << 60;

#[test]
fn an_owner_that_never_answers_a_call_costs_only_its_own_port() {
    let (shared, tz) = local_with(&FORWARDED);
    shared.harness().ports.set_call_deadline(FAR);
    let hello = tz.open("hello").unwrap();
    let mut echo = tz.open("echo").unwrap();
    assert_eq!(hello.call(comm_pd::harness::Reverser::REQUESTS, &[]).unwrap().len(), 8, "a live owner answers");
    // The owner goes silent. A call, straight into the mailbox (tzcomm would wait for its
    // answer): comm-pd posts it to the owner and does not wait.
    shared.harness().services.owner.as_mut().unwrap().silent = true;
    let call = shared.harness().control(Operation::Call as u32, 9, comm_pd::harness::Reverser::REQUESTS, &[]);
    assert!(call.is_none(), "a call the owner never answered was answered: {call:?}");
    let (call_sequence, _) = request_header(&shared);
    assert!(shared.harness().ports.call_pending(9));
    // Meanwhile every other port goes on, doorbells and all.
    let (mut message, mut buf) = (Vec::new(), vec![0u8; 4096]);
    let rung = shared.harness().services.rung.len();
    for i in 0..20 {
        echo_once(&mut echo, i, 1000, &mut message, &mut buf);
    }
    assert!(shared.harness().services.rung.len() > rung, "no doorbell rang while the call was pending");
    assert_ne!(reply_sequence(&shared), call_sequence, "the call was answered before its deadline");
    // The deadline passes: the call is refused with a typed error, the owner's port faulted.
    shared.harness().ports.advance_clock(FAR);
    shared.run();
    let (sequence, reply) = mailbox_reply(&shared);
    assert_eq!(sequence, call_sequence, "the call's request was never answered");
    assert_eq!(ControlError::from_u32(reply.error), Some(ControlError::ServiceUnavailable), "{reply:?}");
    assert!(!shared.harness().ports.call_pending(9));
    let status = tz.status("hello").unwrap();
    assert_eq!(status.state, PortState::Faulted as u8);
    assert_eq!(PortFault(status.last_fault), PortFault::owner_silent(), "{status:?}");
    assert!(shared.harness().ports.is_cut_off(9));
    assert!(matches!(tz.open("hello"), Err(Error::Control(ControlError::ServiceUnavailable))));
    // And the rest still works: control requests and echo.
    assert_eq!(tz.status("echo").unwrap().state, PortState::Open as u8);
    echo_once(&mut echo, 99, 1000, &mut message, &mut buf);
}

#[test]
fn the_mailbox_goes_on_while_an_owner_holds_a_call() {
    let (shared, tz) = local_with(&FORWARDED);
    shared.harness().ports.set_call_deadline(FAR);
    let _hello = tz.open("hello").unwrap();
    shared.harness().services.owner.as_mut().unwrap().silent = true;
    let call = shared.harness().control(Operation::Call as u32, 9, comm_pd::harness::Reverser::REQUESTS, &[]);
    assert!(call.is_none());
    // The normal world gives up on the call (the driver's timeout) and sends other requests:
    // each is answered; a second call to the same owner is refused at once.
    assert_eq!(tz.status("echo").unwrap().state, PortState::Closed as u8);
    assert_eq!(tz.status("hello").unwrap().state, PortState::Open as u8);
    let again = shared.harness().control(Operation::Call as u32, 9, comm_pd::harness::Reverser::REQUESTS, &[]);
    assert_eq!(again.map(|r| ControlError::from_u32(r.error)), Some(Some(ControlError::ServiceUnavailable)));
    let latest = reply_sequence(&shared);
    // The owner comes back and answers the abandoned call: it is not the mailbox's request any
    // more, so nothing is written over the latest reply.
    shared.harness().services.owner.as_mut().unwrap().silent = false;
    shared.run();
    assert!(!shared.harness().ports.call_pending(9));
    assert_eq!(reply_sequence(&shared), latest);
    assert_eq!(tz.status("hello").unwrap().state, PortState::Open as u8, "an owner that answered was cut off");
    shared.harness().ports.advance_clock(FAR);
    shared.run();
    assert_eq!(tz.status("hello").unwrap().state, PortState::Open as u8, "a deadline of an answered call ran");
}
