//! Where the microkit tool puts each capability in a PD's CSpace, and what badges mean.
//!
//! Slots from Microkit 2.3.0 `libmicrokit/include/microkit.h` and `tool/microkit/src/capdl/
//! builder.rs` (`PD_*_CAP_IDX`, `PD_BASE_*_CAP`); badges from `builder.rs` (`PPC_BADGE`,
//! `FAULT_BADGE`) and `libmicrokit/src/main.c` (`CHANNEL_MASK`, `PD_MASK`).

/// A capability address in this PD's CSpace (`seL4_CPtr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cptr(u64);

impl Cptr {
    pub const fn bits(self) -> u64 {
        self.0
    }

    const fn offset(self, index: usize) -> Self {
        Self(self.0 + index as u64)
    }
}

/// The endpoint every notification, protected procedure call and child fault arrives on; the
/// PD's notification is bound to its TCB, so signals arrive here too.
pub(super) const INPUT: Cptr = Cptr(1);
/// The MCS reply object that `Recv` fills and `ReplyRecv` answers through.
pub(super) const REPLY: Cptr = Cptr(4);
/// Only in passive PDs: the monitor's endpoint, signalled once `init` is done so the monitor
/// takes the PD's scheduling context away (`MONITOR_EP`).
pub(super) const MONITOR_ENDPOINT: Cptr = Cptr(5);
/// Only in PDs with `smc="true"`: the `seL4_ARM_SMC` capability (`ARM_SMC_CAP`).
pub(super) const ARM_SMC: Cptr = Cptr(7);
const BASE_OUTPUT_NOTIFICATION: Cptr = Cptr(10);
const BASE_OUTPUT_ENDPOINT: Cptr = Cptr(74);
const BASE_IRQ_HANDLER: Cptr = Cptr(138);

/// The notification that channel `channel` signals (`BASE_OUTPUT_NOTIFICATION_CAP + ch`).
pub(super) const fn notification(channel: usize) -> Cptr {
    BASE_OUTPUT_NOTIFICATION.offset(channel)
}

/// The endpoint that channel `channel` calls protected procedures through (`BASE_ENDPOINT_CAP`).
pub(super) const fn endpoint(channel: usize) -> Cptr {
    BASE_OUTPUT_ENDPOINT.offset(channel)
}

/// The IRQ handler of the IRQ delivered on channel `channel` (`BASE_IRQ_CAP + ch`).
pub(super) const fn irq_handler(channel: usize) -> Cptr {
    BASE_IRQ_HANDLER.offset(channel)
}

/// What a badge received on [`INPUT`] announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wakeup {
    /// Bit 62: a fault of the child PD `badge & 0xff`.
    ChildFault { child: usize },
    /// Bit 63 (and not 62): a protected procedure call on channel `badge & 0x3f`.
    ProtectedCall { channel: usize },
    /// Otherwise: bit n set means channel n was notified (or its IRQ fired).
    Notified { channels: u64 },
}

impl Wakeup {
    const PROTECTED_CALL_BIT: u32 = 63;
    const CHILD_FAULT_BIT: u32 = 62;
    const CHANNEL_MASK: u64 = 0x3f;
    const CHILD_MASK: u64 = 0xff;

    /// Decodes in libmicrokit's `handler_loop` order: the fault bit is tested first.
    pub const fn from_badge(badge: u64) -> Self {
        if badge >> Self::CHILD_FAULT_BIT & 1 != 0 {
            Self::ChildFault { child: (badge & Self::CHILD_MASK) as usize }
        } else if badge >> Self::PROTECTED_CALL_BIT & 1 != 0 {
            Self::ProtectedCall { channel: (badge & Self::CHANNEL_MASK) as usize }
        } else {
            Self::Notified { channels: badge }
        }
    }
}
