//! The simulator's model of seL4 and Microkit: PDs as threads, with seL4's semantics for
//! notifications, IRQs, protected procedure calls and faults.
//!
//! - A notification sets a bit in the receiver's pending word and wakes it; signals that arrive
//!   while it is busy are merged into one wake-up, as seL4's notification word merges badges.
//! - An IRQ is delivered once and then masked until the PD acknowledges it (`irq_ack`); one that
//!   fires while masked is latched and delivered on the acknowledgement.
//! - A protected procedure call runs the callee's `protected` synchronously, on the caller's
//!   thread, with the callee's context (name, message registers, setvars) swapped in; the callee
//!   handles one event at a time, so a call waits while the callee is busy. Message registers are
//!   copied in and out as the kernel copies them. A callee must have a strictly higher priority.
//! - A panic or a handler error is a fault: the PD is stopped and reported, the simulator goes on.
//!   A protected call to a faulted PD faults the caller too (on seL4 it would block for ever).
//! - What this model does not do: priorities, budgets and periods do not schedule the threads
//!   (the host's scheduler does), and memory permissions are enforced by the orchestrator's
//!   mappings, not here.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use std::{fmt, thread};

use crate::{
    Channel, ChannelSet, DeferredAction, DeferredActionSlotFull, Handler, IrqAckError, MessageInfo, SmcContext,
    SmcError, MAX_CHANNEL_ID, MAX_MESSAGE_REGISTERS,
};

/// `seL4_InvalidCapability`: what seL4 answers when a PD invokes a slot system.xml left empty.
const SEL4_INVALID_CAPABILITY: u64 = 2;

/// One channel end of a PD, as system.xml declares it.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub id: u8,
    /// Index of the PD at the other end.
    pub peer: usize,
    pub peer_id: u8,
    /// This end may notify the peer.
    pub notify: bool,
    /// This end may call the peer's protected procedure.
    pub pp: bool,
}

/// An IRQ delivered to a PD on channel `id`.
#[derive(Debug, Clone)]
pub struct IrqConfig {
    pub id: u8,
    pub irq: u64,
}

/// Everything the kernel model needs to know about one PD.
#[derive(Debug, Clone)]
pub struct PdConfig {
    pub name: String,
    pub priority: u8,
    pub passive: bool,
    pub smc: bool,
    /// The value of every `setvar_*` symbol, as the microkit tool would patch it.
    pub setvars: HashMap<String, u64>,
    pub channels: Vec<ChannelConfig>,
    pub irqs: Vec<IrqConfig>,
}

impl PdConfig {
    /// An active PD with no channels, IRQs, setvars or SMC right.
    pub fn new(name: &str, priority: u8) -> Self {
        Self {
            name: name.to_owned(),
            priority,
            passive: false,
            smc: false,
            setvars: HashMap::new(),
            channels: Vec::new(),
            irqs: Vec::new(),
        }
    }
}

/// What a PD's `smc_call` reaches: the simulator's model of the EL3 monitor.
pub trait Monitor: Send + Sync + 'static {
    /// Handles an SMC from PD `caller` (which system.xml allows to make SMCs).
    fn smc(&self, caller: &str, args: &SmcContext) -> SmcContext;
}

/// What happens to PDs, for the orchestrator to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The PD's `init` returned: it is waiting for events.
    Ready { pd: String },
    /// The PD faulted (panicked, or a handler returned an error) and was stopped.
    Fault { pd: String, reason: String },
}

/// A kernel configuration that seL4 (or the microkit tool) would not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    IdOutOfRange { pd: String, id: u8 },
    DuplicateId { pd: String, id: u8 },
    UnknownPeer { pd: String, id: u8 },
    CalleeNotHigher { caller: String, callee: String },
    IrqTwice { irq: u64 },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdOutOfRange { pd, id } => write!(f, "PD '{pd}': channel id {id} is outside 0..={MAX_CHANNEL_ID}"),
            Self::DuplicateId { pd, id } => write!(f, "PD '{pd}': channel id {id} is used twice"),
            Self::UnknownPeer { pd, id } => write!(f, "PD '{pd}': channel {id} names a PD that does not exist"),
            Self::CalleeNotHigher { caller, callee } => write!(
                f,
                "'{caller}' may call '{callee}', but a protected procedure callee must have a strictly higher priority"
            ),
            Self::IrqTwice { irq } => write!(f, "IRQ {irq} is delivered to two PDs"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The IRQ named in [`Kernel::raise_irq`] is not delivered to any PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownIrq(pub u64);

impl fmt::Display for UnknownIrq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IRQ {} is not delivered to any PD", self.0)
    }
}

impl std::error::Error for UnknownIrq {}

#[derive(Debug, Clone, Copy)]
struct Route {
    peer: usize,
    peer_id: u8,
    notify: bool,
    pp: bool,
}

#[derive(Debug)]
struct IrqLine {
    pd: usize,
    channel: u8,
    masked: bool,
    pending: bool,
}

/// A handler with its error type erased, so PDs of different types live in one table.
trait DynHandler: Send {
    fn notified(&mut self, channels: ChannelSet) -> Result<(), String>;
    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, String>;
}

impl<H: Handler + Send> DynHandler for H {
    fn notified(&mut self, channels: ChannelSet) -> Result<(), String> {
        Handler::notified(self, channels).map_err(|e| e.to_string())
    }

    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, String> {
        Handler::protected(self, channel, msg_info).map_err(|e| e.to_string())
    }
}

/// One simulated PD: its configuration and its kernel state.
pub struct Pd {
    name: &'static str,
    priority: u8,
    passive: bool,
    smc: bool,
    setvars: HashMap<String, u64>,
    routes: [Option<Route>; MAX_CHANNEL_ID + 1],
    irq_of_channel: [Option<u64>; MAX_CHANNEL_ID + 1],
    kernel: Weak<Kernel>,
    /// The notification word: bit n is channel n.
    signals: Mutex<u64>,
    wake: Condvar,
    /// The handler, once `init` has returned; held while the PD handles an event.
    handler: Mutex<Option<Box<dyn DynHandler>>>,
    handler_installed: Condvar,
    message_registers: Mutex<[u64; MAX_MESSAGE_REGISTERS]>,
    deferred: Mutex<Option<DeferredAction>>,
    faulted: AtomicBool,
}

impl fmt::Debug for Pd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pd").field("name", &self.name).field("priority", &self.priority).finish_non_exhaustive()
    }
}

const BORROWED_ACROSS_CALL: &str =
    "the message registers are borrowed across a system call (pp_call, smc_call or a nested access)";

/// Locks a mutex whose data stays consistent even if a PD panicked while holding it.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_owned()
    }
}

impl Pd {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn is_passive(&self) -> bool {
        self.passive
    }

    pub fn has_faulted(&self) -> bool {
        self.faulted.load(Ordering::Acquire)
    }

    fn kernel(&self) -> Arc<Kernel> {
        self.kernel.upgrade().expect("the kernel outlives every PD thread")
    }

    pub(super) fn message_registers(&self) -> MutexGuard<'_, [u64; MAX_MESSAGE_REGISTERS]> {
        match self.message_registers.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => panic!("{BORROWED_ACROSS_CALL}"),
        }
    }

    pub(super) fn kernel_set_timer(&self, deadline: Option<Instant>) {
        self.kernel().set_timer(deadline)
    }

    pub(super) fn setvar(&self, symbol: &str) -> u64 {
        // As on seL4, a symbol system.xml does not set keeps its default; the binding macros check.
        self.setvars.get(symbol).copied().unwrap_or(u64::MAX)
    }

    pub(super) fn notify(&self, channel: usize) {
        match self.routes.get(channel).copied().flatten() {
            Some(route) if route.notify => self.kernel().signal(route.peer, route.peer_id),
            // seL4 answers an invocation of an empty slot with an error that libmicrokit ignores;
            // the debug kernel prints it, and so does the simulator.
            _ => eprintln!(
                "tzmk-sim: '{}' notified channel {channel}, which system.xml does not let it notify",
                self.name
            ),
        }
    }

    pub(super) fn irq_ack(&self, channel: usize) -> Result<(), IrqAckError> {
        let irq = self
            .irq_of_channel
            .get(channel)
            .copied()
            .flatten()
            .ok_or(IrqAckError { channel, code: SEL4_INVALID_CAPABILITY })?;
        self.kernel().ack_irq(irq);
        Ok(())
    }

    pub(super) fn defer(&self, action: DeferredAction) -> Result<(), DeferredActionSlotFull> {
        let mut slot = lock(&self.deferred);
        if slot.is_some() {
            return Err(DeferredActionSlotFull);
        }
        *slot = Some(action);
        Ok(())
    }

    fn run_deferred(&self) {
        let action = lock(&self.deferred).take();
        match action {
            Some(DeferredAction::Notify(channel)) => self.notify(channel),
            Some(DeferredAction::IrqAck(channel)) => {
                // libmicrokit's deferred ack is a send whose error nobody sees.
                let _ = self.irq_ack(channel);
            }
            None => {}
        }
    }

    pub(super) fn smc_call(&self, args: &SmcContext) -> Result<SmcContext, SmcError> {
        if !self.smc {
            return Err(SmcError { code: SEL4_INVALID_CAPABILITY });
        }
        Ok(self.kernel().monitor.smc(self.name, args))
    }

    pub(super) fn pp_call(self: &Arc<Self>, channel: usize, msg_info: MessageInfo) -> MessageInfo {
        let route = match self.routes.get(channel).copied().flatten() {
            Some(route) if route.pp => route,
            _ => panic!(
                "'{}' made a protected procedure call on channel {channel}, which system.xml does not allow",
                self.name
            ),
        };
        let kernel = self.kernel();
        let callee = kernel.pds[route.peer].clone();
        let count = msg_info.count();
        let mut arguments = [0; MAX_MESSAGE_REGISTERS];
        arguments[..count].copy_from_slice(&self.message_registers()[..count]);

        let mut handler = callee.wait_for_handler().unwrap_or_else(|| {
            panic!("protected procedure call from '{}' to '{}', which has faulted", self.name, callee.name)
        });
        callee.message_registers()[..count].copy_from_slice(&arguments[..count]);
        let result = super::enter(&callee, || {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                handler
                    .as_mut()
                    .expect("wait_for_handler returns an installed handler")
                    .protected(Channel::new(usize::from(route.peer_id)), msg_info)
            }));
            callee.run_deferred();
            outcome
        });
        drop(handler);
        let reply = match result {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                kernel.fault(&callee, format!("handler failed: {error}"));
                panic!("protected procedure call from '{}' to '{}' faulted the callee", self.name, callee.name)
            }
            Err(payload) => {
                kernel.fault(&callee, panic_message(payload.as_ref()));
                panic!("protected procedure call from '{}' to '{}' faulted the callee", self.name, callee.name)
            }
        };
        let count = reply.count();
        let mut results = [0; MAX_MESSAGE_REGISTERS];
        results[..count].copy_from_slice(&callee.message_registers()[..count]);
        self.message_registers()[..count].copy_from_slice(&results[..count]);
        reply
    }

    /// Waits until `init` has installed the handler and takes it; `None` once the PD has faulted.
    fn wait_for_handler(&self) -> Option<MutexGuard<'_, Option<Box<dyn DynHandler>>>> {
        let mut handler = lock(&self.handler);
        loop {
            if self.has_faulted() {
                return None;
            }
            if handler.is_some() {
                return Some(handler);
            }
            handler = self.handler_installed.wait(handler).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks until some channel is signalled; `None` when the simulator shuts down.
    fn wait_for_signals(&self, kernel: &Kernel) -> Option<u64> {
        let mut signals = lock(&self.signals);
        loop {
            if kernel.shutting_down.load(Ordering::Acquire) {
                return None;
            }
            if *signals != 0 {
                return Some(std::mem::take(&mut *signals));
            }
            signals = self.wake.wait(signals).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The deadline of the EL1 physical timer (the one timer of the simulated secure core).
#[derive(Debug, Default)]
struct TimerState {
    deadline: Option<Instant>,
}

/// The simulated kernel: every PD, the IRQ lines, the monitor and the timer.
pub struct Kernel {
    pds: Vec<Arc<Pd>>,
    irq_lines: Mutex<HashMap<u64, IrqLine>>,
    monitor: Box<dyn Monitor>,
    events: Mutex<mpsc::Sender<Event>>,
    shutting_down: AtomicBool,
    timer: Mutex<TimerState>,
    timer_changed: Condvar,
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel").field("pds", &self.pds).finish_non_exhaustive()
    }
}

/// The interrupt of the EL1 physical timer (a PPI; Arm's Base System Architecture numbers it 30),
/// which seL4 lets a PD claim with `<irq irq="30">`.
pub const PHYSICAL_TIMER_IRQ: u64 = 30;

impl Kernel {
    /// Builds the kernel model; `events` receives what happens to PDs.
    pub fn new(
        configs: Vec<PdConfig>,
        monitor: impl Monitor,
        events: mpsc::Sender<Event>,
    ) -> Result<Arc<Kernel>, ConfigError> {
        let mut irq_lines = HashMap::new();
        for (index, config) in configs.iter().enumerate() {
            let mut used = [false; MAX_CHANNEL_ID + 1];
            let ids = config.channels.iter().map(|c| c.id).chain(config.irqs.iter().map(|i| i.id));
            for id in ids {
                let slot = used
                    .get_mut(usize::from(id))
                    .ok_or_else(|| ConfigError::IdOutOfRange { pd: config.name.clone(), id })?;
                if std::mem::replace(slot, true) {
                    return Err(ConfigError::DuplicateId { pd: config.name.clone(), id });
                }
            }
            for channel in &config.channels {
                let peer = configs
                    .get(channel.peer)
                    .ok_or_else(|| ConfigError::UnknownPeer { pd: config.name.clone(), id: channel.id })?;
                if channel.pp && peer.priority <= config.priority {
                    return Err(ConfigError::CalleeNotHigher {
                        caller: config.name.clone(),
                        callee: peer.name.clone(),
                    });
                }
            }
            for irq in &config.irqs {
                let line = IrqLine { pd: index, channel: irq.id, masked: true, pending: false };
                if irq_lines.insert(irq.irq, line).is_some() {
                    return Err(ConfigError::IrqTwice { irq: irq.irq });
                }
            }
        }
        let kernel = Arc::new_cyclic(|weak: &Weak<Kernel>| {
            let pds = configs
                .into_iter()
                .map(|config| {
                    let mut routes = [None; MAX_CHANNEL_ID + 1];
                    for c in &config.channels {
                        routes[usize::from(c.id)] =
                            Some(Route { peer: c.peer, peer_id: c.peer_id, notify: c.notify, pp: c.pp });
                    }
                    let mut irq_of_channel = [None; MAX_CHANNEL_ID + 1];
                    for irq in &config.irqs {
                        irq_of_channel[usize::from(irq.id)] = Some(irq.irq);
                    }
                    Arc::new(Pd {
                        // PD names live as long as the process, as `microkit_name` does.
                        name: Box::leak(config.name.into_boxed_str()),
                        priority: config.priority,
                        passive: config.passive,
                        smc: config.smc,
                        setvars: config.setvars,
                        routes,
                        irq_of_channel,
                        kernel: weak.clone(),
                        signals: Mutex::new(0),
                        wake: Condvar::new(),
                        handler: Mutex::new(None),
                        handler_installed: Condvar::new(),
                        message_registers: Mutex::new([0; MAX_MESSAGE_REGISTERS]),
                        deferred: Mutex::new(None),
                        faulted: AtomicBool::new(false),
                    })
                })
                .collect();
            Kernel {
                pds,
                irq_lines: Mutex::new(irq_lines),
                monitor: Box::new(monitor),
                events: Mutex::new(events),
                shutting_down: AtomicBool::new(false),
                timer: Mutex::new(TimerState::default()),
                timer_changed: Condvar::new(),
            }
        });
        let timer_kernel = Arc::downgrade(&kernel);
        thread::Builder::new()
            .name("tzmk-sim timer".into())
            .spawn(move || run_timer(timer_kernel))
            .expect("spawning the timer thread");
        Ok(kernel)
    }

    pub fn pds(&self) -> &[Arc<Pd>] {
        &self.pds
    }

    pub fn pd_index(&self, name: &str) -> Option<usize> {
        self.pds.iter().position(|pd| pd.name == name)
    }

    /// Starts PD `pd` on its own thread: `init`, then the event loop until shutdown or a fault.
    pub fn start<H, F>(self: &Arc<Self>, pd: usize, init: F) -> thread::JoinHandle<()>
    where
        H: Handler + Send + 'static,
        F: FnOnce() -> H + Send + 'static,
    {
        let kernel = self.clone();
        let pd = self.pds[pd].clone();
        thread::Builder::new()
            .name(pd.name.to_owned())
            .spawn(move || super::enter(&pd, || kernel.run_pd(&pd, init)))
            .expect("spawning a PD thread")
    }

    fn run_pd<H: Handler + Send + 'static>(&self, pd: &Arc<Pd>, init: impl FnOnce() -> H) {
        match catch_unwind(AssertUnwindSafe(init)) {
            Ok(handler) => {
                *lock(&pd.handler) = Some(Box::new(handler));
                pd.handler_installed.notify_all();
            }
            Err(payload) => return self.fault(pd, panic_message(payload.as_ref())),
        }
        self.report(Event::Ready { pd: pd.name.to_owned() });
        // As libmicrokit: every IRQ of the PD is acknowledged once before the first wait.
        for channel in 0..=MAX_CHANNEL_ID {
            if pd.irq_of_channel[channel].is_some() {
                let _ = pd.irq_ack(channel);
            }
        }
        loop {
            pd.run_deferred();
            let Some(bits) = pd.wait_for_signals(self) else { return };
            let Some(mut handler) = pd.wait_for_handler() else { return };
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                handler.as_mut().expect("installed").notified(ChannelSet::from_bits(bits))
            }));
            drop(handler);
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return self.fault(pd, format!("handler failed: {error}")),
                Err(payload) => return self.fault(pd, panic_message(payload.as_ref())),
            }
        }
    }

    fn report(&self, event: Event) {
        // Nobody listening is fine: the orchestrator may be shutting down.
        let _ = lock(&self.events).send(event);
    }

    fn fault(&self, pd: &Pd, reason: String) {
        if !pd.faulted.swap(true, Ordering::AcqRel) {
            // Wake callers waiting for a handler that will never come.
            pd.handler_installed.notify_all();
            self.report(Event::Fault { pd: pd.name.to_owned(), reason });
        }
    }

    fn signal(&self, pd: usize, channel: u8) {
        let pd = &self.pds[pd];
        *lock(&pd.signals) |= 1 << channel;
        pd.wake.notify_one();
    }

    /// Raises interrupt `irq` as the interrupt controller would.
    pub fn raise_irq(&self, irq: u64) -> Result<(), UnknownIrq> {
        let mut lines = lock(&self.irq_lines);
        let line = lines.get_mut(&irq).ok_or(UnknownIrq(irq))?;
        if line.masked {
            line.pending = true;
        } else {
            line.masked = true;
            self.signal(line.pd, line.channel);
        }
        Ok(())
    }

    fn ack_irq(&self, irq: u64) {
        let mut lines = lock(&self.irq_lines);
        if let Some(line) = lines.get_mut(&irq) {
            if std::mem::take(&mut line.pending) {
                self.signal(line.pd, line.channel);
            } else {
                line.masked = false;
            }
        }
    }

    /// Sets (or with `None` cancels) the physical timer's deadline; it raises
    /// [`PHYSICAL_TIMER_IRQ`] once when the deadline passes.
    pub fn set_timer(&self, deadline: Option<Instant>) {
        lock(&self.timer).deadline = deadline;
        self.timer_changed.notify_all();
    }

    /// Stops every PD's event loop at its next wait.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for pd in &self.pds {
            let _signals = lock(&pd.signals);
            pd.wake.notify_all();
        }
        self.timer_changed.notify_all();
    }

    /// The PD executing on this thread, if any (for a panic hook that names the faulting PD).
    pub fn current_pd_name() -> Option<&'static str> {
        let name = super::pd_name();
        (name != "tzmk-sim").then_some(name)
    }
}

fn run_timer(kernel: Weak<Kernel>) {
    loop {
        let Some(kernel) = kernel.upgrade() else { return };
        let mut timer = lock(&kernel.timer);
        if kernel.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        match timer.deadline {
            Some(deadline) if deadline <= now => {
                timer.deadline = None;
                drop(timer);
                // No PD claims the timer: the interrupt goes nowhere, as on hardware.
                let _ = kernel.raise_irq(PHYSICAL_TIMER_IRQ);
            }
            Some(deadline) => {
                let _ = kernel.timer_changed.wait_timeout(timer, deadline - now);
            }
            // Wake up now and then so the thread notices the kernel going away.
            None => {
                let _ = kernel.timer_changed.wait_timeout(timer, Duration::from_millis(200));
            }
        }
    }
}

/// The simulated counter and timer, for [`crate::timer`].
pub(crate) mod counter {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// QEMU virt's generic counter frequency (CNTFRQ_EL0), which the simulator imitates.
    pub const FREQUENCY_HZ: u64 = 62_500_000;

    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    pub fn now() -> u64 {
        let nanos = epoch().elapsed().as_nanos();
        (nanos * u128::from(FREQUENCY_HZ) / 1_000_000_000) as u64
    }

    pub fn instant_of(ticks: u64) -> Instant {
        epoch() + Duration::from_nanos((u128::from(ticks) * 1_000_000_000 / u128::from(FREQUENCY_HZ)) as u64)
    }
}
