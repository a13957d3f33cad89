//! The simulator's model of the EL3 monitor's SiP service, as seen by smc-capable PDs.
//!
//! `notify_normal` rings the doorbell eventfd that attached normal-world processes poll; every
//! other id answers as the monitor will (tzmk_interface::smc), unknown ones `NOT_SUPPORTED`.

use nix::sys::eventfd::{EfdFlags, EventFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use microkit::sim::Monitor;
use microkit::SmcContext;
use tzmk_interface::smc;

pub(crate) struct SimMonitor {
    doorbell: Arc<EventFd>,
    go: AtomicBool,
}

impl SimMonitor {
    pub(crate) fn new() -> Result<(SimMonitor, Arc<EventFd>), crate::SimError> {
        let doorbell = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map(Arc::new)
            .map_err(|e| crate::SimError::Host(format!("eventfd for the doorbell: {e}")))?;
        Ok((SimMonitor { doorbell: doorbell.clone(), go: AtomicBool::new(false) }, doorbell))
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
            smc::SIP_CALL_COUNT => status(3),
            smc::NOTIFY_NORMAL => {
                // The doorbell counter saturates rather than fails: a ring is a ring.
                let _ = self.doorbell.write(1);
                status(smc::SUCCESS)
            }
            smc::GO => {
                if self.go.swap(true, Ordering::AcqRel) {
                    log::warn!("{caller} sent go twice");
                }
                status(smc::SUCCESS)
            }
            // The normal world's call; a PD has no business making it.
            smc::NOTIFY_SECURE => status(smc::DENIED),
            _ => status(smc::NOT_SUPPORTED),
        }
    }
}
