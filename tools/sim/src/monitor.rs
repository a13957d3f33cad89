//! The simulator's model of the EL3 monitor's SiP service, as seen by smc-capable PDs.
//!
//! `notify_normal` rings the doorbell eventfds that attached normal-world processes poll; every
//! other id answers as the monitor will (tzmk_interface::smc), unknown ones `NOT_SUPPORTED`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::attach::Doorbells;

use microkit::sim::Monitor;
use microkit::SmcContext;
use tzmk_interface::smc;

pub(crate) struct SimMonitor {
    doorbells: Arc<Doorbells>,
    go: AtomicBool,
}

impl SimMonitor {
    pub(crate) fn new() -> (SimMonitor, Arc<Doorbells>) {
        let doorbells = Arc::new(Doorbells::default());
        (SimMonitor { doorbells: doorbells.clone(), go: AtomicBool::new(false) }, doorbells)
    }
}

fn status(value: i64) -> SmcContext {
    [value as u64, 0, 0, 0, 0, 0, 0, 0]
}

impl Monitor for SimMonitor {
    fn smc(&self, caller: &str, args: &SmcContext) -> SmcContext {
        // SMCCC: the function id is the low 32 bits of x0.
        let function = args[0] as u32;
        match function {
            smc::SIP_CALL_UID => {
                let [a, b, c, d] = smc::TZMK_UID;
                [a.into(), b.into(), c.into(), d.into(), 0, 0, 0, 0]
            }
            smc::SIP_REVISION => [smc::REVISION.0.into(), smc::REVISION.1.into(), 0, 0, 0, 0, 0, 0],
            smc::SIP_CALL_COUNT => status(4),
            smc::NOTIFY_NORMAL => {
                self.doorbells.ring();
                status(smc::SUCCESS)
            }
            smc::GO => {
                if self.go.swap(true, Ordering::AcqRel) {
                    log::warn!("{caller} sent go twice");
                }
                status(smc::SUCCESS)
            }
            // The model has no secure flash: nothing to update (the QEMU monitor's UPDATE_MANIFEST
            // is tested on QEMU, its decisions on the host: monitor/src/update.rs).
            smc::UPDATE_MANIFEST => status(tzmk_interface::update::UNAVAILABLE),
            // The normal world's call; a PD has no business making it.
            smc::NOTIFY_SECURE => status(smc::DENIED),
            _ => status(smc::NOT_SUPPORTED),
        }
    }
}
