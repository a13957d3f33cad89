//! comm-pd: the secure world's face to the normal world.
//!
//! It serves the communication ports of ports.toml over the regions system.xml shares with Linux
//! (`port_ctrl`, `port_rx`, `port_tx`; the engine is [`ports`]), takes the kick interrupt (the
//! monitor pends it when Linux calls `notify_secure`), keeps the status page at the start of
//! `port_ctrl`, and rings Linux's doorbell by SMC (`notify_normal`). Behind the ports are the
//! secure services: echo and sink here, attestation-pd by protected procedure call, rt-task
//! through its statistics block and channel, rt-task's event ring (`rt_events`), which the
//! engine forwards to the `rt` port, and any PD that owns a `forward` port of ports.toml: the
//! engine copies the port's messages to it over a secure ring pair and forwards its replies
//! (docs/ports.md, "Forwarded ports"); its control calls go through a call slot, never a call
//! that waits, so an owner that stops answering costs its own port only.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "harness")]
pub mod harness;
pub mod ports;

use core::fmt;

use microkit::{channel, memory_region, smc_call, Channel, ChannelSet, Handler, MemoryRegion, MessageInfo};
use tzmk_interface::attestation::{
    ERR_MALFORMED, MAX_EVIDENCE, MAX_NONCE, MEASURE_NAME_SIZE, OK, OP_EVIDENCE, OP_MEASURE, OP_UPDATE, OP_VERSION,
};
use tzmk_interface::driver::{ANY_CORE, KICK_SEEN_OFFSET, PENDING_CONTROL};
use tzmk_interface::port::{
    command, parse_attestation_request, AttestationCall, AttestationReply, ControlError, PortStatus, Service,
    SinkTotals,
};
use tzmk_interface::rt::{
    pack, unpack, RtControl, RtLatency, RtSetReply, RtSetRequest, RtSetpointRequest, RtStats, RT_CONTROL_MAGIC,
    RT_CONTROL_OFFSET, RT_CONTROL_SEQUENCE_OFFSET, RT_LATENCY_MAGIC, RT_LATENCY_OFFSET, RT_LATENCY_SEQUENCE_OFFSET,
    RT_OP_SET, RT_OP_SETPOINT, RT_REPORT_EVERY, RT_SEQUENCE_OFFSET, RT_SET_REPLY_WORDS, RT_STATS_MAGIC,
    RT_STATS_OFFSET,
};
use tzmk_interface::smc;
use tzmk_interface::status::{StatusPage, STATUS_MAGIC, STATUS_OFFSET, STATUS_SEQUENCE_OFFSET, STATUS_VERSION};
use tzmk_interface::update::MANIFEST_BYTES;
use zerocopy::{FromBytes, IntoBytes};

pub use ports::{PortConfig, Ports, Replies, Services};

mod config {
    use crate::ports::PortConfig;
    use tzmk_interface::port::Service;

    /// A forwarded port's owner as system.xml binds it into comm-pd.
    #[derive(Debug)]
    pub struct Owner {
        pub id: u16,
        pub owner: &'static str,
        pub requests: microkit::MemoryRegion,
        pub replies: microkit::MemoryRegion,
        pub channel: microkit::Channel,
    }

    include!(concat!(env!("OUT_DIR"), "/ports.rs"));
}

/// The port table of comm-pd/ports.toml.
pub use config::PORTS;
/// How long comm-pd keeps looking for more messages once a busy client's rings run dry, before it
/// asks for a kick and waits (`Ports::set_spin`). A client streaming or answering within this
/// window costs no kick, no wake-up of comm-pd and no doorbell; one that stops costs one window of
/// the secure core (of comm-pd's 500 us budget; rt-task preempts it as always).
pub const SPIN_MICROS: u64 = 50;
/// How often a reader retries a sequence-locked block the writer keeps changing.
const SNAPSHOT_TRIES: usize = 64;

/// Reads rt-task's release-lateness distribution; `None` when it is not (yet) valid.
pub fn read_rt_latency(region: &MemoryRegion) -> Option<RtLatency> {
    let mut bytes = [0u8; core::mem::size_of::<RtLatency>()];
    for _ in 0..SNAPSHOT_TRIES {
        if region.snapshot(RT_LATENCY_SEQUENCE_OFFSET, RT_LATENCY_OFFSET, &mut bytes).ok()? {
            let latency = RtLatency::read_from_bytes(&bytes).ok()?;
            return (latency.magic == RT_LATENCY_MAGIC).then_some(latency);
        }
        core::hint::spin_loop();
    }
    None
}

/// Reads rt-task's statistics block; `None` when it is not (yet) valid.
/// rt-task's control block (its last release), when a snapshot of it is consistent.
pub fn read_rt_control(region: &MemoryRegion) -> Option<RtControl> {
    let mut bytes = [0u8; core::mem::size_of::<RtControl>()];
    for _ in 0..8 {
        if region.snapshot(RT_CONTROL_SEQUENCE_OFFSET, RT_CONTROL_OFFSET, &mut bytes).ok()? {
            let control = RtControl::read_from_bytes(&bytes).ok()?;
            return (control.magic == RT_CONTROL_MAGIC).then_some(control);
        }
    }
    None
}

pub fn read_rt_stats(region: &MemoryRegion) -> Option<RtStats> {
    let mut bytes = [0u8; core::mem::size_of::<RtStats>()];
    for _ in 0..SNAPSHOT_TRIES {
        if region.snapshot(RT_SEQUENCE_OFFSET, RT_STATS_OFFSET, &mut bytes).ok()? {
            let stats = RtStats::read_from_bytes(&bytes).ok()?;
            return (stats.magic == RT_STATS_MAGIC).then_some(stats);
        }
        core::hint::spin_loop();
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `port_ctrl` is too small for the status page (system.xml maps too little).
    StatusPage(microkit::OutOfBounds),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::StatusPage(e) => write!(f, "port_ctrl: {e}"),
        }
    }
}

/// The services behind comm-pd's ports.
#[derive(Debug)]
pub struct SecureServices {
    attestation: Channel,
    rt: Channel,
    rt_shared: MemoryRegion,
    /// Where attestation-pd writes evidence (read-only here).
    evidence: MemoryRegion,
    /// Where an update's manifest goes for attestation-pd (written here, read there).
    update: MemoryRegion,
    /// The last statistics read whole: answered when rt-task keeps rewriting the block for as
    /// long as a snapshot tries (it preempts comm-pd, so a read can straddle its updates).
    rt_last: Option<RtStats>,
    /// By port table index: the channel to a forwarded port's owner, and the owner's name.
    owners: [Option<(Channel, &'static str)>; tzmk_interface::port::MAX_PORTS],
}

impl SecureServices {
    /// A request of `tzctl rt set` or `rt setpoint` to rt-task by protected procedure call: the
    /// request's bytes (copied once from the mailbox, their length checked here, their values by
    /// rt-task) in the message registers, the reply likewise. A reply whose status no one
    /// defined is rt-task's fault and is not passed on.
    fn rt_call(&self, operation: u64, request: &[u8], output: &mut [u8]) -> Result<usize, ControlError> {
        let words = request.len().div_ceil(8);
        microkit::with_msg_regs_mut(|regs| pack(request, &mut regs[..words]));
        let reply_info = self.rt.pp_call(MessageInfo::new(operation, words));
        if reply_info.label() != 0 || reply_info.count() != RT_SET_REPLY_WORDS {
            return Err(ControlError::ServiceUnavailable);
        }
        let mut reply = RtSetReply::default();
        microkit::with_msg_regs(|regs| unpack(&regs[..RT_SET_REPLY_WORDS], reply.as_mut_bytes()));
        reply.status().ok_or(ControlError::ServiceUnavailable)?;
        put(output, reply.as_bytes())
    }

    fn attestation_call(&self, operation: u64) -> AttestationReply {
        let reply = self.attestation.pp_call(MessageInfo::new(operation, 0));
        let mut words = [0u64; 4];
        for (i, word) in words.iter_mut().enumerate().take(reply.count()) {
            *word = microkit::get_mr(i);
        }
        AttestationReply { label: reply.label(), words }
    }
}

impl SecureServices {
    /// OP_EVIDENCE through attestation-pd: the nonce (checked by the parser) in its message
    /// registers, the evidence read back from the region it wrote, its length bounded by the
    /// region and by [`MAX_EVIDENCE`].
    fn evidence(&self, nonce: &[u8], out: &mut [u8; MAX_EVIDENCE]) -> Result<usize, AttestationReply> {
        let refuse = |label| AttestationReply { label, words: [0; 4] };
        let length = nonce.len().min(MAX_NONCE);
        let mut padded = [0u8; MAX_NONCE];
        padded[..length].copy_from_slice(&nonce[..length]);
        let words = length.div_ceil(8);
        microkit::set_mr(0, length as u64);
        for (index, chunk) in padded.chunks_exact(8).enumerate().take(words) {
            microkit::set_mr(1 + index, u64::from_le_bytes(chunk.try_into().expect("chunks of 8")));
        }
        let reply = self.attestation.pp_call(MessageInfo::new(OP_EVIDENCE, 1 + words));
        if reply.label() != OK {
            return Err(refuse(reply.label()));
        }
        let evidence_length = microkit::get_mr(0) as usize;
        if evidence_length > MAX_EVIDENCE || self.evidence.read_bytes(0, &mut out[..evidence_length]).is_err() {
            log::warn!("attestation-pd answered {evidence_length} bytes of evidence: refused");
            return Err(refuse(ERR_MALFORMED));
        }
        Ok(evidence_length)
    }

    /// OP_MEASURE through attestation-pd: the name and digest in six message registers.
    fn measure(&self, name: &str, sha256: &[u8; 32]) -> AttestationReply {
        let mut padded = [0u8; MEASURE_NAME_SIZE];
        padded[..name.len()].copy_from_slice(name.as_bytes());
        for (index, chunk) in padded.chunks_exact(8).chain(sha256.chunks_exact(8)).enumerate() {
            microkit::set_mr(index, u64::from_le_bytes(chunk.try_into().expect("chunks of 8")));
        }
        let reply = self.attestation.pp_call(MessageInfo::new(OP_MEASURE, (MEASURE_NAME_SIZE + 32) / 8));
        let mut words = [0u64; 4];
        for (i, word) in words.iter_mut().enumerate().take(reply.count().min(4)) {
            *word = microkit::get_mr(i);
        }
        AttestationReply { label: reply.label(), words }
    }

    /// One attestation port message: parsed (a malformed one is answered with its reason and goes
    /// no further), then the operation.
    fn attestation_message(&self, port: &PortConfig, message: &[u8], replies: &mut Replies<'_>) {
        let reply = match parse_attestation_request(message) {
            Ok(AttestationCall::Evidence { nonce }) => {
                let mut evidence = [0u8; MAX_EVIDENCE];
                match self.evidence(nonce, &mut evidence) {
                    Ok(length) => {
                        if let Err(e) = replies.send(&evidence[..length]) {
                            log::warn!("port '{}': evidence not sent: {}", port.name, ports::describe(e));
                        }
                        return;
                    }
                    Err(reply) => reply,
                }
            }
            Ok(AttestationCall::Measure { name, sha256 }) => self.measure(name, &sha256),
            Ok(AttestationCall::Update { manifest }) => self.update(manifest),
            Ok(AttestationCall::Query { operation }) => self.attestation_call(operation),
            Err(e) => {
                let (code, detail) = e.code();
                AttestationReply { label: ERR_MALFORMED, words: [code, detail, 0, 0] }
            }
        };
        if let Err(e) = replies.send(reply.as_bytes()) {
            log::warn!("port '{}': reply not sent: {}", port.name, ports::describe(e));
        }
    }
}

impl SecureServices {
    /// OP_UPDATE through attestation-pd: the manifest (its length checked by the parser) into the
    /// update region, its length in MR0; attestation-pd's reply (the monitor's outcome in its first
    /// two words) back as it is.
    fn update(&self, manifest: &[u8]) -> AttestationReply {
        let length = manifest.len().min(MANIFEST_BYTES);
        if self.update.write_bytes(0, &manifest[..length]).is_err() {
            return AttestationReply { label: ERR_MALFORMED, words: [0; 4] };
        }
        microkit::set_mr(0, length as u64);
        let reply = self.attestation.pp_call(MessageInfo::new(OP_UPDATE, 1));
        let mut words = [0u64; 4];
        for (i, word) in words.iter_mut().enumerate().take(reply.count().min(2)) {
            *word = microkit::get_mr(i);
        }
        AttestationReply { label: reply.label(), words }
    }
}

fn put(output: &mut [u8], bytes: &[u8]) -> Result<usize, ControlError> {
    output.get_mut(..bytes.len()).ok_or(ControlError::ServiceUnavailable)?.copy_from_slice(bytes);
    Ok(bytes.len())
}

impl Services for SecureServices {
    fn message(&mut self, port: &PortConfig, message: &[u8], replies: &mut Replies<'_>) {
        let sent = match port.service {
            Service::Echo => replies.send(message),
            Service::Sink => Ok(()),
            Service::Attestation => {
                self.attestation_message(port, message, replies);
                Ok(())
            }
            Service::RealTime => replies.send(read_rt_stats(&self.rt_shared).unwrap_or_default().as_bytes()),
            // The engine copies a forwarded port's messages to its owner itself.
            Service::Forward => Ok(()),
        };
        if let Err(e) = sent {
            log::warn!("port '{}': reply not sent: {}", port.name, ports::describe(e));
        }
    }

    fn notify_owner(&mut self, port: &PortConfig) {
        if let Some((channel, _)) = PORTS.iter().position(|p| p.id == port.id).and_then(|i| self.owners[i]) {
            channel.notify();
        }
    }

    /// Rings the normal world's doorbell. A refused SMC (no monitor, or no SMC right) is reported
    /// and survived: the normal world can still poll the status page.
    fn ring_doorbell(&mut self, core: u32, port: u16) -> bool {
        let core = if core == ANY_CORE { smc::ANY_NORMAL_CORE } else { u64::from(core) };
        let args = [u64::from(smc::NOTIFY_NORMAL), core, u64::from(port), 0, 0, 0, 0, 0];
        match smc_call(&args) {
            Ok(ret) if ret[0] as i64 == smc::SUCCESS => true,
            // A core the driver named that is no running Linux core: the engine rings the
            // monitor's choice instead.
            Ok(ret) if ret[0] as i64 == smc::INVALID_PARAMETER && core != smc::ANY_NORMAL_CORE => false,
            Ok(ret) => {
                log::warn!("notify_normal answered {}", ret[0] as i64);
                true
            }
            Err(e) => {
                log::warn!("notify_normal: {e}");
                true
            }
        }
    }

    fn call(
        &mut self,
        port: &PortConfig,
        status: &PortStatus,
        command: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, ControlError> {
        let totals = SinkTotals { messages: status.messages_in, bytes: status.bytes_in };
        match (port.service, command) {
            // The engine posts a forwarded port's calls to its owner itself (Ports' call slots).
            (Service::Forward, _) => Err(ControlError::ServiceUnavailable),
            (Service::Sink, command::SINK_TOTALS) | (Service::Echo, command::ECHO_TOTALS) => {
                put(output, totals.as_bytes())
            }
            (Service::Attestation, command::ATTESTATION_VERSION) => {
                let reply = self.attestation_call(OP_VERSION);
                if reply.label != OK {
                    return Err(ControlError::ServiceUnavailable);
                }
                put(output, reply.words[0].as_bytes())
            }
            (Service::RealTime, command::RT_STATS) => {
                if let Some(stats) = read_rt_stats(&self.rt_shared) {
                    self.rt_last = Some(stats);
                }
                let stats = self.rt_last.ok_or(ControlError::ServiceUnavailable)?;
                put(output, stats.as_bytes())
            }
            (Service::RealTime, command::RT_LATENCY) => {
                if !input.is_empty() {
                    return Err(ControlError::BadArgument);
                }
                // Published once a second (and when asked: RT_REFRESH); nothing yet before the first.
                let latency = read_rt_latency(&self.rt_shared).ok_or(ControlError::ServiceUnavailable)?;
                put(output, latency.as_bytes())
            }
            (Service::RealTime, command::RT_CONTROL) => {
                if !input.is_empty() {
                    return Err(ControlError::BadArgument);
                }
                let control = read_rt_control(&self.rt_shared).ok_or(ControlError::ServiceUnavailable)?;
                put(output, control.as_bytes())
            }
            (Service::RealTime, command::RT_SET) => {
                let request = RtSetRequest::read_from_bytes(input).map_err(|_| ControlError::BadArgument)?;
                self.rt_call(RT_OP_SET, request.as_bytes(), output)
            }
            (Service::RealTime, command::RT_SETPOINT) => {
                let request = RtSetpointRequest::read_from_bytes(input).map_err(|_| ControlError::BadArgument)?;
                self.rt_call(RT_OP_SETPOINT, request.as_bytes(), output)
            }
            (Service::RealTime, command::RT_REFRESH) => {
                if !input.is_empty() {
                    return Err(ControlError::BadArgument);
                }
                self.rt.notify();
                Ok(0)
            }
            _ => Err(ControlError::UnknownCommand),
        }
    }
}

#[derive(Debug)]
pub struct CommPd {
    port_ctrl: MemoryRegion,
    kick: Channel,
    status: StatusPage,
    ports: Ports,
    services: SecureServices,
    /// Whether rt-task's first report (after `RT_REPORT_EVERY` periods) was logged.
    rt_reported: bool,
}

pub fn init() -> CommPd {
    microkit::logger::init(log::LevelFilter::Info);
    let port_ctrl = memory_region!(port_ctrl_vaddr, port_ctrl_size);
    let port_rx = memory_region!(port_rx_vaddr, port_rx_size);
    let port_tx = memory_region!(port_tx_vaddr, port_tx_size);
    let scratch = memory_region!(scratch_vaddr, scratch_size);
    let rt_shared = memory_region!(rt_shared_vaddr, rt_shared_size);
    let rt_events = memory_region!(rt_events_vaddr, rt_events_size);
    let kick = channel!(kick_irq);
    let attestation = channel!(attestation_channel);
    let rt = channel!(rt_channel);

    // SAFETY: system.xml maps comm_scratch into comm-pd only (`tzmk audit` reports a region
    // mapped twice), and every region stays mapped for the PD's life.
    let mut ports = match unsafe { Ports::new(&PORTS, port_ctrl, port_rx, port_tx, scratch) } {
        Ok(ports) => ports,
        Err(e) => panic!("port table: {e}"),
    };
    ports.set_spin(microkit::timer::ticks_from_micros(SPIN_MICROS));
    // SAFETY: system.xml maps rt_events read-write into comm-pd for its life, and otherwise only
    // into rt-task, the ring's producer. Zeroed memory (before rt-task's start) is an empty ring.
    if let Err(e) = unsafe { ports.attach_feed(rt_events, Service::RealTime) } {
        log::warn!("rt_events: {e}; rt-task's events will not reach the rt port");
    }
    let mut owners = [None; tzmk_interface::port::MAX_PORTS];
    for owner in config::owners() {
        // SAFETY: system.xml maps both regions read-write into comm-pd and the owner only (`tzmk
        // audit`'s forwarded-port rule checks it) for the PDs' life.
        if let Err(e) = unsafe { ports.attach_owner(owner.id, owner.requests, owner.replies) } {
            panic!("{e}");
        }
        if let Some(index) = PORTS.iter().position(|p| p.id == owner.id) {
            owners[index] = Some((owner.channel, owner.owner));
        }
    }
    let evidence = memory_region!(evidence_vaddr, evidence_size);
    let update = memory_region!(update_vaddr, update_size);
    let services = SecureServices { attestation, rt, rt_shared, evidence, update, rt_last: None, owners };
    let version = services.attestation_call(OP_VERSION);
    let attestation_version = if version.label == OK { version.words[0] } else { 0 };
    let status = StatusPage { magic: STATUS_MAGIC, version: STATUS_VERSION, attestation_version, ..Default::default() };
    let mut pd = CommPd { port_ctrl, kick, status, ports, services, rt_reported: false };
    if let Err(e) = pd.publish() {
        panic!("{e}");
    }
    log::info!(
        "ready: {} ports, attestation-pd interface v{attestation_version}, kick on channel {}",
        PORTS.len(),
        kick.index()
    );
    pd
}

impl CommPd {
    fn publish(&mut self) -> Result<(), Error> {
        let rt_port = PORTS.iter().find(|p| p.service == Service::RealTime).map(|p| p.id);
        if let Some(feed) = rt_port.and_then(|id| self.ports.feed_status(id)) {
            self.status.rt_events_forwarded = feed.forwarded;
            self.status.rt_events_unheard = feed.unheard;
        }
        self.port_ctrl.publish(STATUS_SEQUENCE_OFFSET, STATUS_OFFSET, self.status.as_bytes()).map_err(Error::StatusPage)
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }
}

impl Handler for CommPd {
    type Error = Error;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Error> {
        // First thing: the system bench's "kick seen" (docs/system-bench.md).
        let now = microkit::timer::now();
        if channels.contains(self.services.rt) {
            if let Some(stats) = read_rt_stats(&self.services.rt_shared) {
                if !self.rt_reported && stats.periods >= RT_REPORT_EVERY {
                    self.rt_reported = true;
                    log::info!(
                        "rt-task reports {} periods of {} us, {} overruns, max release lateness {} us",
                        stats.periods,
                        stats.period_us,
                        stats.overruns,
                        stats.max_lateness_ns / 1000
                    );
                }
                self.status.rt = stats;
            }
            // Events on rt_events (the same engine forwards them to the rt port).
            if !channels.contains(self.kick) {
                let poll = self.ports.poll(&mut self.services);
                self.ports.announce(poll.pending, &mut self.services);
            }
        }
        // A forwarded port's owner answered, or made room for more requests.
        let owners = self.services.owners.iter().flatten().any(|(channel, _)| channels.contains(*channel));
        if owners && !channels.contains(self.kick) && !channels.contains(self.services.rt) {
            let poll = self.ports.poll(&mut self.services);
            self.ports.announce(poll.pending, &mut self.services);
        }
        if channels.contains(self.kick) {
            self.ports.stamp(KICK_SEEN_OFFSET, now);
            self.status.kicks += 1;
            if let Some(stats) = read_rt_stats(&self.services.rt_shared) {
                self.status.rt = stats;
            }
            self.publish()?;
            // Acknowledged when comm-pd next waits, saving a system call.
            if self.kick.defer_irq_ack().is_err() {
                let _ = self.kick.irq_ack();
            }
            let poll = self.ports.poll(&mut self.services);
            // A kick that carried no port traffic asks for the status page: answer it too.
            let bare = poll.requests == 0 && poll.messages == 0 && poll.faults == 0;
            // (A bare kick's answer concerns whoever kicked: the monitor's choice of core.)
            self.ports.announce(if bare { poll.pending | PENDING_CONTROL } else { poll.pending }, &mut self.services);
        }
        Ok(())
    }
}
