//! The host backend: the same PD API, served by the simulator's kernel model ([`sim`]).
//!
//! Every PD runs its event loop on its own thread; a protected procedure call runs the callee's
//! handler on the caller's thread with the callee's context swapped in (seL4 lends the caller's
//! scheduling context to a passive callee the same way), so this thread-local stack says which PD
//! is executing.

pub mod sim;

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;

use crate::MAX_MESSAGE_REGISTERS;
use crate::{DeferredAction, DeferredActionSlotFull, IrqAckError, MessageInfo, SmcContext, SmcError};
use sim::Pd;

thread_local! {
    /// The PDs executing on this thread, innermost (the current one) last.
    static CURRENT: RefCell<Vec<Arc<Pd>>> = const { RefCell::new(Vec::new()) };
}

/// The PD executing on this thread. Panics on a thread the simulator did not start: PD code only
/// runs inside a PD.
fn current() -> Arc<Pd> {
    CURRENT.with(|stack| stack.borrow().last().cloned()).expect("microkit API used outside a simulated PD")
}

/// Runs `f` as PD `pd` on this thread (entering a protected procedure, or a PD's own thread).
pub(crate) fn enter<T>(pd: &Arc<Pd>, f: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            CURRENT.with(|stack| stack.borrow_mut().pop());
        }
    }
    CURRENT.with(|stack| stack.borrow_mut().push(pd.clone()));
    let _leave = Leave;
    f()
}

pub fn notify(channel: usize) {
    current().notify(channel)
}

pub fn irq_ack(channel: usize) -> Result<(), IrqAckError> {
    current().irq_ack(channel)
}

pub fn pp_call(channel: usize, msg_info: MessageInfo) -> MessageInfo {
    let caller = current();
    caller.pp_call(channel, msg_info)
}

pub fn defer(action: DeferredAction) -> Result<(), DeferredActionSlotFull> {
    current().defer(action)
}

pub fn with_msg_regs<T>(f: impl FnOnce(&[u64; MAX_MESSAGE_REGISTERS]) -> T) -> T {
    let pd = current();
    let regs = pd.message_registers();
    f(&regs)
}

pub fn with_msg_regs_mut<T>(f: impl FnOnce(&mut [u64; MAX_MESSAGE_REGISTERS]) -> T) -> T {
    let pd = current();
    let mut regs = pd.message_registers();
    f(&mut regs)
}

pub fn pd_name() -> &'static str {
    CURRENT.with(|stack| stack.borrow().last().map(|pd| pd.name())).unwrap_or("tzmk-sim")
}

pub fn smc_call(args: &SmcContext) -> Result<SmcContext, SmcError> {
    current().smc_call(args)
}

pub fn debug_write(bytes: &[u8]) {
    // One write per line under stderr's lock, so lines from PD threads never interleave.
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// The value the simulator bound to a `setvar_*` symbol of the current PD.
pub fn host_setvar(symbol: &str) -> u64 {
    current().setvar(symbol)
}

/// On the host a PD is started by the simulator ([`sim::Kernel::start`]), never by a `main`.
pub fn run_main<H: crate::Handler>(_init: impl FnOnce() -> H) -> ! {
    panic!("a PD's entry runs only on seL4; on the host the simulator starts PDs")
}

pub fn timer_now() -> u64 {
    sim::counter::now()
}

pub fn timer_frequency() -> u64 {
    sim::counter::FREQUENCY_HZ
}

pub fn timer_set(deadline: Option<u64>) {
    current().kernel_set_timer(deadline.map(sim::counter::instant_of));
}
