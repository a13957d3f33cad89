//! The seL4 backend: binary compatible with libmicrokit 2.3.0 on seL4 16.0.0 (MCS, AArch64).
//!
//! Single-threaded by construction: a PD is one seL4 thread, so the runtime's state lives in
//! [`PdLocal`] statics that are never touched concurrently.

mod cspace;
mod event_loop;
mod ipc_buffer;
mod symbols;
mod syscalls;

use core::cell::Cell;

use crate::{
    DeferredAction, DeferredActionSlotFull, IrqAckError, MessageInfo, SmcContext, SmcError, MAX_CHANNEL_ID,
    MAX_MESSAGE_REGISTERS,
};
use cspace::Cptr;

pub use event_loop::run_main;

/// A static that only this PD's single thread uses.
pub(crate) struct PdLocal<T>(T);

// SAFETY: a Microkit PD has exactly one thread (the microkit tool creates one TCB per PD and this
// runtime never creates another), so a PdLocal is never accessed from two threads.
unsafe impl<T> Sync for PdLocal<T> {}

impl<T> PdLocal<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(value)
    }

    pub(crate) fn get(&self) -> &T {
        &self.0
    }
}

/// Invocation labels of this build's SDK configuration (see `crate::sel4_abi`).
mod label {
    pub const IRQ_ACK_IRQ: u64 = crate::sel4_abi::LABELS.irq_ack_irq;
    pub const ARM_SMC_CALL: u64 = crate::sel4_abi::LABELS.arm_smc_call;
}

/// A send the event loop fuses with its next wait (`microkit_signal_cap`/`microkit_signal_msg`).
#[derive(Debug, Clone, Copy)]
pub(super) struct PreparedSend {
    pub(super) cap: Cptr,
    pub(super) info: MessageInfo,
}

impl PreparedSend {
    pub(super) fn send(self) {
        syscalls::send_empty(self.cap, self.info.into_word());
    }
}

static DEFERRED: PdLocal<Cell<Option<PreparedSend>>> = PdLocal::new(Cell::new(None));

pub(super) fn take_deferred() -> Option<PreparedSend> {
    DEFERRED.get().take()
}

fn has_channel(mask: u64, channel: usize) -> bool {
    channel <= MAX_CHANNEL_ID && mask & (1 << channel) != 0
}

pub fn notify(channel: usize) {
    // As libmicrokit: a channel system.xml does not let this PD notify is reported, not signalled.
    if !has_channel(symbols::notification_channels(), channel) {
        log::error!("notify: channel {channel} is not a notification channel of this PD");
        return;
    }
    syscalls::send_empty(cspace::notification(channel), MessageInfo::new(0, 0).into_word());
}

pub fn irq_ack(channel: usize) -> Result<(), IrqAckError> {
    if !has_channel(symbols::irq_channels(), channel) {
        return Err(IrqAckError { channel, code: SEL4_INVALID_CAPABILITY });
    }
    let info = MessageInfo::new(label::IRQ_ACK_IRQ, 0);
    let answer = ipc_buffer::transfer(|mrs| {
        // SAFETY: `transfer` holds the IPC buffer exclusively for the call.
        unsafe { syscalls::call(cspace::irq_handler(channel), info.into_word(), mrs) }
    });
    // An invocation answers with the seL4_Error in the label (0: no error).
    match MessageInfo::from_word(answer.info).label() {
        0 => Ok(()),
        code => Err(IrqAckError { channel, code }),
    }
}

/// `seL4_InvalidCapability`.
const SEL4_INVALID_CAPABILITY: u64 = 2;

pub fn pp_call(channel: usize, msg_info: MessageInfo) -> MessageInfo {
    assert!(
        has_channel(symbols::pp_channels(), channel),
        "pp_call: channel {channel} is not a protected-procedure channel of this PD"
    );
    let answer = ipc_buffer::transfer(|mrs| {
        // SAFETY: `transfer` holds the IPC buffer exclusively for the call.
        unsafe { syscalls::call(cspace::endpoint(channel), msg_info.into_word(), mrs) }
    });
    MessageInfo::from_word(answer.info)
}

pub fn defer(action: DeferredAction) -> Result<(), DeferredActionSlotFull> {
    let slot = DEFERRED.get();
    if slot.get().is_some() {
        return Err(DeferredActionSlotFull);
    }
    slot.set(Some(match action {
        DeferredAction::Notify(channel) => {
            PreparedSend { cap: cspace::notification(channel), info: MessageInfo::new(0, 0) }
        }
        DeferredAction::IrqAck(channel) => {
            PreparedSend { cap: cspace::irq_handler(channel), info: MessageInfo::new(label::IRQ_ACK_IRQ, 0) }
        }
    }));
    Ok(())
}

pub fn with_msg_regs<T>(f: impl FnOnce(&[u64; MAX_MESSAGE_REGISTERS]) -> T) -> T {
    ipc_buffer::with_msg_regs(f)
}

pub fn with_msg_regs_mut<T>(f: impl FnOnce(&mut [u64; MAX_MESSAGE_REGISTERS]) -> T) -> T {
    ipc_buffer::with_msg_regs_mut(f)
}

pub fn pd_name() -> &'static str {
    symbols::name()
}

/// `seL4_ARM_SMC_Call`: x0..x7 travel as MR0..MR7 of an `ARMSMCCall` invocation on the SMC cap,
/// and the monitor's x0..x7 come back in the reply's MR0..MR7.
pub fn smc_call(args: &SmcContext) -> Result<SmcContext, SmcError> {
    with_msg_regs_mut(|mrs| mrs[..8].copy_from_slice(args));
    let info = MessageInfo::new(label::ARM_SMC_CALL, 8);
    let answer = ipc_buffer::transfer(|mrs| {
        // SAFETY: `transfer` holds the IPC buffer exclusively for the call.
        unsafe { syscalls::call(cspace::ARM_SMC, info.into_word(), mrs) }
    });
    match MessageInfo::from_word(answer.info).label() {
        0 => Ok(with_msg_regs(|mrs| {
            let mut out = [0; 8];
            out.copy_from_slice(&mrs[..8]);
            out
        })),
        code => Err(SmcError { code }),
    }
}

pub fn debug_write(bytes: &[u8]) {
    #[cfg(feature = "debug")]
    for &byte in bytes {
        syscalls::debug_put_char(byte);
    }
    #[cfg(not(feature = "debug"))]
    let _ = bytes;
}

pub fn timer_now() -> u64 {
    syscalls::counter()
}

pub fn timer_frequency() -> u64 {
    syscalls::counter_frequency()
}

pub fn timer_set(deadline: Option<u64>) {
    syscalls::set_physical_timer(deadline)
}

/// A panic is a fault of this PD: the message goes to the debug console, then the PD stops.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    struct Console;
    impl Write for Console {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            debug_write(s.as_bytes());
            Ok(())
        }
    }
    let _ = writeln!(Console, "{}: panic: {}", pd_name(), info);
    syscalls::fault_forever()
}
