//! comm-pd's port engine against an arbitrary normal world: any bytes anywhere in port_ctrl,
//! port_rx and port_tx, arbitrary control requests (framed or not), well-formed messages on any
//! port, polls in any order. The engine must never panic, never touch memory outside the regions
//! (AddressSanitizer watches the harness's allocations), answer every request, and keep every port
//! in a defined state.
#![no_main]

use arbitrary::Arbitrary;
use comm_pd::harness::{Area, Harness};
use comm_pd::PortConfig;
use libfuzzer_sys::fuzz_target;
use tzmk_interface::port::ring::{Producer, RingLayout};
use tzmk_interface::port::{Directory, Operation, PortState, Service, DIRECTORY_OFFSET};
use zerocopy::FromBytes;

/// Every service, with small rings so that wraps, full rings and pads come within a few actions
/// (comm-pd's own table has rings of up to 1 MiB; the code paths are the same).
static PORTS: [PortConfig; 6] = [
    PortConfig { id: 1, name: "echo", service: Service::Echo, rx_capacity: 256, tx_capacity: 256 },
    PortConfig { id: 2, name: "echo-page", service: Service::Echo, rx_capacity: 4096, tx_capacity: 4096 },
    PortConfig { id: 3, name: "sink", service: Service::Sink, rx_capacity: 1024, tx_capacity: 64 },
    PortConfig { id: 7, name: "attestation", service: Service::Attestation, rx_capacity: 256, tx_capacity: 0x4000 },
    PortConfig { id: 9, name: "rt", service: Service::RealTime, rx_capacity: 128, tx_capacity: 512 },
    // Forwarded to the harness's owner (a PortServer), whose rings the fuzzer scribbles on too:
    // a hostile owner must be cut off without harm to the rest.
    PortConfig { id: 11, name: "forward", service: Service::Forward, rx_capacity: 512, tx_capacity: 256 },
];

#[derive(Debug, Arbitrary)]
enum Action {
    /// Bytes at an offset of a region (taken modulo its size).
    Scribble { area: u8, offset: u32, bytes: Vec<u8> },
    /// Raw mailbox contents and the length its header claims.
    Request { bytes: Vec<u8>, claimed_length: u32 },
    /// A framed request with arbitrary fields.
    Control { operation: u8, port: u8, command: u32, payload: Vec<u8> },
    /// A well-formed message on a port's rx ring, as an honest client would send it (so that the
    /// fuzzer reaches the services, then corrupts what it finds).
    Send { port: u8, length: u16 },
    Poll,
}

/// Opens `port` through the mailbox, as tzcomm does.
fn open(harness: &mut Harness, id: u16) {
    let reply = harness.control(Operation::OpenId as u32, id.into(), 0, &[]).expect("an open is answered");
    assert_eq!(reply.error, 0, "opening port {id}");
}

/// An honest client's message on port `index`'s rx ring, if the ring accepts it.
fn send(harness: &Harness, index: usize, length: usize) {
    let mut bytes = [0u8; size_of::<Directory>()];
    harness.peek(Area::Ctrl, DIRECTORY_OFFSET, &mut bytes);
    // The directory as the normal world reads it: possibly scribbled on, so checked like any.
    let Ok(directory) = Directory::read_from_bytes(&bytes) else { return };
    let entry = directory.ports[index];
    let offset = entry.rx_offset as usize;
    let Ok(layout) = RingLayout::new(entry.rx_capacity.into()) else { return };
    let rx = harness.memory(Area::Rx);
    if offset.checked_add(layout.size()).is_none_or(|end| end > rx.size()) {
        return;
    }
    // SAFETY: the ring lies inside the harness's rx memory (checked above), which outlives the
    // producer (dropped at the end of this function); the engine is not running meanwhile.
    let base = unsafe { core::ptr::NonNull::new_unchecked(rx.base().as_ptr().add(offset)) };
    // SAFETY: as above.
    let Ok(mut producer) = (unsafe { Producer::attach(base, layout.size(), layout) }) else { return };
    let message = vec![0x5a; length.min(layout.max_message())];
    if producer.try_send(&message).is_ok() {
        producer.publish();
    }
}

fuzz_target!(|actions: Vec<Action>| {
    let mut harness = Harness::new(&PORTS).expect("comm-pd's table fits");
    for port in PORTS.iter() {
        open(&mut harness, port.id);
    }
    for action in actions.into_iter().take(64) {
        match action {
            Action::Scribble { area, offset, bytes } => {
                let areas = [Area::Ctrl, Area::Rx, Area::Tx, Area::Feed, Area::OwnerRequests, Area::OwnerReplies];
                let area = areas[usize::from(area) % areas.len()];
                harness.scribble_anywhere(area, offset as usize, &bytes);
            }
            Action::Request { bytes, claimed_length } => {
                // Length 0 is the header of a request being written: no request, no answer.
                let claimed_length = claimed_length.max(1);
                assert!(harness.request(&bytes, claimed_length).is_some(), "a request went unanswered");
            }
            Action::Control { operation, port, command, payload } => {
                let reply = harness.control(operation.into(), port.into(), command, &payload);
                assert!(reply.is_some(), "a request went unanswered");
            }
            Action::Send { port, length } => send(&harness, usize::from(port) % PORTS.len(), length.into()),
            Action::Poll => {
                harness.poll();
            }
        }
    }
    harness.poll();
    for port in PORTS.iter() {
        let state = harness.ports.status(port.id).expect("every configured port has a status").state;
        assert!(PortState::from_u8(state).is_some(), "port {} in undefined state {state}", port.name);
    }
});
