//! pd-template: a PD that serves one communication port (ports.toml `service = "forward"`).
//!
//! The logic is [`Logic`]: it answers each request with the request itself (so `tzctl echo
//! <port>` checks the whole path), and control call [`TOTALS`] with the requests and bytes
//! taken so far. Replace it with yours; everything else (the rings, back-pressure, notifications)
//! is the runtime's `PortServer`. The host tests below drive the logic through real rings, with
//! the test as comm-pd.
#![cfg_attr(not(test), no_std)]

use core::convert::Infallible;

use microkit::port_server::{PortServer, PortService, Replies};
use microkit::{channel, memory_region, ChannelSet, Handler};
use tzmk_interface::port::ControlError;

/// Control call: the requests and bytes taken so far, two little-endian u64: an echo port's
/// totals (`command::ECHO_TOTALS`, `SinkTotals`' layout), so `tzctl echo` checks them too.
pub const TOTALS: u32 = tzmk_interface::port::command::ECHO_TOTALS;

/// The PD's logic: what it does with a request.
#[derive(Debug, Default)]
pub struct Logic {
    pub requests: u64,
    pub bytes: u64,
}

impl PortService for Logic {
    fn message(&mut self, request: &[u8], replies: &mut Replies<'_>) {
        self.requests += 1;
        self.bytes += request.len() as u64;
        if let Err(e) = replies.send(request) {
            log::warn!("reply not sent: {e}");
        }
    }

    /// An echo's reply is as long as its request.
    fn reply_room(&self, length: usize, _largest: usize) -> usize {
        length
    }

    fn call(&mut self, command: u32, input: &[u8], output: &mut [u8]) -> Result<usize, ControlError> {
        match command {
            TOTALS if !input.is_empty() => Err(ControlError::BadArgument),
            TOTALS => {
                output[..8].copy_from_slice(&self.requests.to_le_bytes());
                output[8..16].copy_from_slice(&self.bytes.to_le_bytes());
                Ok(16)
            }
            _ => Err(ControlError::UnknownCommand),
        }
    }
}

/// The PD: its port server and its logic.
#[derive(Debug)]
pub struct Pd {
    server: PortServer,
    logic: Logic,
}

/// The PD's start: binds the regions and the channel system.xml gives it. Requests, control calls
/// and room for replies all arrive as notifications on that channel (`PortServer::notified`).
pub fn init() -> Pd {
    microkit::logger::init(log::LevelFilter::Info);
    let requests = memory_region!(requests_vaddr, requests_size);
    let replies = memory_region!(replies_vaddr, replies_size);
    let comm = channel!(comm_channel);
    // SAFETY: system.xml maps both regions read-write into this PD and comm-pd only, for the PD's
    // life (`tzmk audit`'s forwarded-port rule checks it).
    let server = match unsafe { PortServer::new(requests, replies, comm) } {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    };
    log::info!("ready: serving a port on channel {}", comm.index());
    Pd { server, logic: Logic::default() }
}

impl Handler for Pd {
    type Error = Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Infallible> {
        if channels.contains(self.server.channel()) {
            self.server.notified(&mut self.logic);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::ptr::NonNull;

    use microkit::port_server::CallSlot;
    use microkit::{Channel, MemoryRegion};
    use tzmk_interface::forward::{ring_bytes, CallHeader};
    use tzmk_interface::port::ring::{Consumer, Producer, RingLayout};
    use tzmk_interface::port::MAX_CONTROL_PAYLOAD;

    use super::*;

    /// A page-aligned region of host memory, as system.xml maps one (0x2000 bytes: a 4 KiB port).
    struct Region(NonNull<u8>);
    const SIZE: usize = 0x2000;
    impl Region {
        fn new() -> Self {
            // SAFETY: a nonzero size.
            Region(NonNull::new(unsafe { alloc_zeroed(Layout::from_size_align(SIZE, 4096).unwrap()) }).unwrap())
        }
        fn region(&self) -> MemoryRegion {
            // SAFETY: the allocation outlives every test's use of it.
            unsafe { MemoryRegion::new(self.0, SIZE) }
        }
    }
    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.0.as_ptr(), Layout::from_size_align(SIZE, 4096).unwrap()) }
        }
    }

    /// The server, and comm-pd's ends of its rings (comm-pd produces requests, resets that ring).
    fn rig(requests: &Region, replies: &Region) -> (PortServer, Producer, Consumer) {
        // Each region: its ring, then the call slot (tzmk_interface::forward).
        let ring = ring_bytes(SIZE);
        let layout = RingLayout::largest_within(ring).unwrap();
        // SAFETY: the regions outlive the rig; each ring has one producer and one consumer.
        let producer = unsafe { Producer::new(requests.0, ring, layout) }.unwrap();
        // SAFETY: as above.
        let server = unsafe { PortServer::new(requests.region(), replies.region(), Channel::new(0)) }.unwrap();
        // SAFETY: as above.
        let consumer = unsafe { Consumer::attach(replies.0, ring, layout) }.unwrap();
        (server, producer, consumer)
    }

    /// comm-pd's side of a control call: the call into the requests region's slot, the
    /// server's turn, the answer out of the replies region's slot.
    fn call(
        server: &mut PortServer,
        logic: &mut Logic,
        (requests, replies): (&Region, &Region),
        sequence: u32,
        command: u32,
        input: &[u8],
    ) -> (CallHeader, Vec<u8>) {
        CallSlot::at_end_of(requests.region()).unwrap().write(sequence, command, input);
        assert!(server.serve(logic).notify, "an answered call must notify comm-pd");
        let mut out = [0u8; MAX_CONTROL_PAYLOAD];
        let header = CallSlot::at_end_of(replies.region()).unwrap().read(&mut out).unwrap();
        (header, out[..header.length as usize].to_vec())
    }

    #[test]
    fn a_call_through_the_slots_is_answered_once() {
        let (requests, replies) = (Region::new(), Region::new());
        let (mut server, _comm, _answers) = rig(&requests, &replies);
        let mut logic = Logic { requests: 3, bytes: 7 };
        let (header, output) = call(&mut server, &mut logic, (&requests, &replies), 1, TOTALS, &[]);
        assert_eq!((header.sequence, header.word, header.length), (1, 0, 16));
        assert_eq!(output, [3u64.to_le_bytes(), 7u64.to_le_bytes()].concat());
        // The same call again is no new call: nothing to answer.
        assert!(!server.serve(&mut logic).notify);
        let (header, _) = call(&mut server, &mut logic, (&requests, &replies), 2, TOTALS, b"?");
        assert_eq!((header.sequence, header.word), (2, ControlError::BadArgument as u32));
        let (header, _) = call(&mut server, &mut logic, (&requests, &replies), 3, 9, &[]);
        assert_eq!((header.sequence, header.word), (3, ControlError::UnknownCommand as u32));
        assert_eq!(server.status().calls, 3);
    }

    #[test]
    fn every_request_is_answered_in_order_and_counted() {
        let (requests, replies) = (Region::new(), Region::new());
        let (mut server, mut comm, mut answers) = rig(&requests, &replies);
        let mut logic = Logic::default();
        let mut buf = [0u8; 1016];
        for round in 0..500usize {
            let message: Vec<u8> = (0..round % 1017).map(|i| (i ^ round) as u8).collect();
            comm.try_send(&message).unwrap();
            comm.publish();
            let served = server.serve(&mut logic);
            assert_eq!(served.requests, 1);
            let n = answers.try_recv(&mut buf).unwrap().expect("a reply");
            assert_eq!(&buf[..n], &message[..], "round {round}");
            answers.release();
        }
        let mut out = [0u8; MAX_CONTROL_PAYLOAD];
        assert_eq!(server.call(&mut logic, TOTALS, &[], &mut out), Ok(16));
        assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 500);
        assert_eq!(server.call(&mut logic, TOTALS, b"?", &mut out), Err(ControlError::BadArgument));
        assert_eq!(server.call(&mut logic, 9, &[], &mut out), Err(ControlError::UnknownCommand));
    }

    #[test]
    fn a_full_reply_ring_holds_requests_back_and_loses_none() {
        let (requests, replies) = (Region::new(), Region::new());
        let (mut server, mut comm, mut answers) = rig(&requests, &replies);
        let mut logic = Logic::default();
        let mut sent = 0u8;
        // Twice as many requests as the reply ring holds replies: the first ring-full is answered,
        // the second waits for room (nothing is dropped, nothing is taken unanswered).
        for round in 0..2 {
            while comm.try_send(&[sent; 500]).is_ok() {
                sent += 1;
            }
            comm.publish();
            let served = server.serve(&mut logic);
            if round == 0 {
                assert_eq!(served.requests, u64::from(sent), "{served:?}");
            } else {
                assert_eq!(served.requests, 0, "{served:?}");
            }
        }
        assert!(server.status().stalls > 0);
        let mut buf = [0u8; 1016];
        let mut next = 0u8;
        while next < sent {
            while let Some(n) = answers.try_recv(&mut buf).unwrap() {
                assert_eq!(&buf[..n], &[next; 500][..]);
                next += 1;
            }
            answers.release();
            server.serve(&mut logic);
        }
        assert_eq!(logic.requests, u64::from(sent));
    }

    #[test]
    fn a_lying_request_ring_stops_the_server_without_a_panic() {
        let (requests, replies) = (Region::new(), Region::new());
        let (mut server, _comm, _answers) = rig(&requests, &replies);
        // comm-pd's producer index, far past any capacity.
        // SAFETY: inside the region; the server is not running.
        unsafe { requests.0.cast::<u32>().write_volatile(100_000) };
        assert_eq!(server.serve(&mut Logic::default()).requests, 0);
        assert!(server.status().fault.is_some());
        assert_eq!(server.serve(&mut Logic::default()).requests, 0);
    }
}
