//! comm-pd: the secure world's face to the normal world.
//!
//! It takes the kick interrupt (the monitor pends it when Linux calls `notify_secure`), answers
//! with the secure world's status page at the start of `port_ctrl`, and rings Linux's doorbell
//! by SMC (`notify_normal`). It asks attestation-pd for its version by protected procedure call
//! at boot and keeps rt-task's latest statistics. Communication ports over `port_rx`/`port_tx`
//! build on this.
#![cfg_attr(not(test), no_std)]

use core::fmt;

use microkit::{channel, memory_region, smc_call, Channel, ChannelSet, Handler, MemoryRegion, MessageInfo};
use tzmk_interface::attestation::{OK, OP_VERSION};
use tzmk_interface::rt::{RtStats, RT_SEQUENCE_OFFSET, RT_STATS_MAGIC, RT_STATS_OFFSET};
use tzmk_interface::smc;
use tzmk_interface::status::{StatusPage, STATUS_MAGIC, STATUS_OFFSET, STATUS_SEQUENCE_OFFSET, STATUS_VERSION};
use zerocopy::{FromBytes, IntoBytes};

/// `notify_normal`'s core argument meaning "the monitor's choice" (the first Linux core).
pub const ANY_NORMAL_CORE: u64 = u64::MAX;
/// How often a reader retries a sequence-locked block the writer keeps changing.
const SNAPSHOT_TRIES: usize = 8;

/// Reads rt-task's statistics block; `None` when it is not (yet) valid.
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

#[derive(Debug)]
pub struct CommPd {
    port_ctrl: MemoryRegion,
    rt_shared: MemoryRegion,
    kick: Channel,
    rt: Channel,
    status: StatusPage,
}

pub fn init() -> CommPd {
    microkit::logger::init(log::LevelFilter::Info);
    let port_ctrl = memory_region!(port_ctrl_vaddr, port_ctrl_size);
    // The data rings; bound here so their symbols exist for the tool.
    let _port_rx = memory_region!(port_rx_vaddr, port_rx_size);
    let _port_tx = memory_region!(port_tx_vaddr, port_tx_size);
    let rt_shared = memory_region!(rt_shared_vaddr, rt_shared_size);
    let kick = channel!(kick_irq);
    let attestation = channel!(attestation_channel);
    let rt = channel!(rt_channel);

    let reply = attestation.pp_call(MessageInfo::new(OP_VERSION, 0));
    let attestation_version = if reply.label() == OK { microkit::get_mr(0) } else { 0 };
    let status = StatusPage { magic: STATUS_MAGIC, version: STATUS_VERSION, attestation_version, ..Default::default() };
    let pd = CommPd { port_ctrl, rt_shared, kick, rt, status };
    if let Err(e) = pd.publish() {
        panic!("{e}");
    }
    log::info!("ready: attestation-pd interface v{attestation_version}, kick on channel {}", kick.index());
    pd
}

impl CommPd {
    fn publish(&self) -> Result<(), Error> {
        self.port_ctrl.publish(STATUS_SEQUENCE_OFFSET, STATUS_OFFSET, self.status.as_bytes()).map_err(Error::StatusPage)
    }

    /// Rings the normal world's doorbell. A refused SMC (no monitor, or no SMC right) is reported
    /// and survived: the normal world can still poll the status page.
    fn ring_doorbell(&self) {
        let args = [u64::from(smc::NOTIFY_NORMAL), ANY_NORMAL_CORE, 0, 0, 0, 0, 0, 0];
        match smc_call(&args) {
            Ok(ret) if ret[0] as i64 == smc::SUCCESS => {}
            Ok(ret) => log::warn!("notify_normal answered {}", ret[0] as i64),
            Err(e) => log::warn!("notify_normal: {e}"),
        }
    }
}

impl Handler for CommPd {
    type Error = Error;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Error> {
        if channels.contains(self.rt) {
            if let Some(stats) = read_rt_stats(&self.rt_shared) {
                if self.status.rt.periods == 0 {
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
        }
        if channels.contains(self.kick) {
            self.status.kicks += 1;
            if let Some(stats) = read_rt_stats(&self.rt_shared) {
                self.status.rt = stats;
            }
            self.publish()?;
            // Acknowledged when comm-pd next waits, saving a system call.
            if self.kick.defer_irq_ack().is_err() {
                let _ = self.kick.irq_ack();
            }
            self.ring_doorbell();
        }
        Ok(())
    }
}
