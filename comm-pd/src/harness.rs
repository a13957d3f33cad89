//! A host harness for the port engine: the three port regions and the scratch region in process
//! memory, and local services (echo, sink, canned attestation and rt answers). For the engine's
//! tests, its property tests and its fuzz target (comm-pd/fuzz); not part of the PD.

extern crate std;

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use microkit::MemoryRegion;
use tzmk_interface::port::{command, AttestationReply, ControlError, PortStatus, Service, SinkTotals};
use tzmk_interface::rt::RtStats;
use zerocopy::IntoBytes;

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

/// Sizes as system.xml maps them.
pub const CTRL_SIZE: usize = 0x1000;
pub const RING_REGION_SIZE: usize = 0x20_0000;
pub const SCRATCH_SIZE: usize = 0x4_0000;

/// The port engine over host memory.
#[derive(Debug)]
pub struct Harness {
    pub ports: Ports,
    pub services: LocalServices,
    pub ctrl: Memory,
    pub rx: Memory,
    pub tx: Memory,
    _scratch: Memory,
}

impl Harness {
    /// The engine serving `table` (comm-pd's own `PORTS`, or a test's).
    pub fn new(table: &'static [PortConfig]) -> Result<Harness, crate::ports::TableError> {
        let (ctrl, rx, tx, scratch) = (
            Memory::new(CTRL_SIZE),
            Memory::new(RING_REGION_SIZE),
            Memory::new(RING_REGION_SIZE),
            Memory::new(SCRATCH_SIZE),
        );
        // SAFETY: the scratch memory is the harness's alone, and every region lives as long as
        // the harness that owns both it and `Ports`.
        let ports = unsafe { Ports::new(table, ctrl.region(), rx.region(), tx.region(), scratch.region()) }?;
        Ok(Harness { ports, services: LocalServices::default(), ctrl, rx, tx, _scratch: scratch })
    }

    pub fn poll(&mut self) -> crate::ports::Poll {
        self.ports.poll(&mut self.services)
    }
}

/// Echo and sink as comm-pd has them; attestation and rt answer canned values (the real ones
/// need attestation-pd and rt-task, which the simulator runs).
#[derive(Debug, Default)]
pub struct LocalServices {
    pub messages: u64,
}

impl Services for LocalServices {
    fn reply_room(&self, service: Service, length: usize) -> usize {
        match service {
            Service::Echo => length,
            Service::Sink => 0,
            Service::Attestation => core::mem::size_of::<AttestationReply>(),
            Service::RealTime => core::mem::size_of::<RtStats>(),
        }
    }

    fn message(&mut self, port: &PortConfig, message: &[u8], replies: &mut Replies<'_>) {
        self.messages += 1;
        let _ = match port.service {
            Service::Echo => replies.send(message),
            Service::Sink => Ok(()),
            Service::Attestation => replies.send(AttestationReply::default().as_bytes()),
            Service::RealTime => replies.send(RtStats::default().as_bytes()),
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
            _ => Err(ControlError::UnknownCommand),
        }
    }
}
