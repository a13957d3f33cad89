//! rt-task: a periodic real-time task released by the secure physical timer: a PID speed loop
//! over a simulated DC motor (docs/realtime.md).
//!
//! It runs on tzmk-realtime's periodic framework with the period and budget system.xml gives it
//! and the deadline of pds/realtime.toml (written by its build script: [`realtime`]). Every
//! release it takes the timer interrupt, runs one step of the loop ([`Work`]), re-arms the timer
//! at the next expiry of its grid and publishes the loop's release (`RtControl`) and its
//! statistics in `rt_shared` (read by comm-pd, which it notifies once per [`REPORT_EVERY`]
//! periods). comm-pd calls it (pp) for `tzctl rt set` and `rt setpoint`, which it checks and
//! admits with the response-time analysis ([`Admission`]). It also sends events ([`Events`]: one per
//! overrun, a summary per `RT_SUMMARY_EVERY` periods) on the `rt_events` ring, which comm-pd
//! forwards to the `rt` port; it never waits for that ring: a full ring refuses the event, and
//! rt-task counts it. It is the highest-priority PD in system.xml; `tzmk audit` checks nothing the
//! normal world can drive outranks it.
#![cfg_attr(not(test), no_std)]

use core::fmt;
use core::ptr::NonNull;

use microkit::{channel, memory_region, timer, Channel, ChannelSet, Handler, MemoryRegion, MessageInfo, OutOfBounds};
use tzmk_interface::port::ring::{LayoutError, PeerMisbehaviour, Producer, RingLayout, SendError};
use tzmk_interface::rt::{
    name_field, name_of, pack, unpack, RtControl, RtEvent, RtEventKind, RtLatency, RtSetReply, RtSetRequest,
    RtSetStatus, RtSetpointRequest, RtStats, RT_CALLS_PER_RELEASE, RT_CONTROL_MAGIC, RT_CONTROL_OFFSET,
    RT_CONTROL_SEQUENCE_OFFSET, RT_EVENT_MAGIC, RT_HISTOGRAM_BUCKETS, RT_LATENCY_MAGIC, RT_LATENCY_OFFSET,
    RT_LATENCY_SEQUENCE_OFFSET, RT_OP_SET, RT_OP_SETPOINT, RT_REPORT_EVERY, RT_SEQUENCE_OFFSET, RT_SET_REPLY_WORDS,
    RT_SET_REQUEST_WORDS, RT_STATS_MAGIC, RT_STATS_OFFSET, RT_SUMMARY_EVERY,
};
use tzmk_realtime::control::{self, Loop, Step};
use tzmk_realtime::periodic::{Clock, Completion, Framework, Outcome, Params, ParamsError, Periodic};
use tzmk_realtime::rta::{self, Refusal, Response, Task, MAX_TASKS};
use tzmk_realtime::stats::Releases;
use zerocopy::IntoBytes;

/// The parameters the build wrote: [`realtime::PARAMS`] (period and budget from system.xml, the
/// deadline from pds/realtime.toml) and the task set of this core for the admission test.
pub mod realtime {
    include!(concat!(env!("OUT_DIR"), "/realtime.rs"));
}

/// comm-pd hears about new statistics once a second, not once a period (events aside).
pub const REPORT_EVERY: u64 = RT_REPORT_EVERY;

/// The EL1 physical timer's counter as the framework's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

impl Clock for Counter {
    fn now(&mut self) -> u64 {
        timer::now()
    }
}

/// Folds a release into the published statistics: `skipped` releases of the grid that never ran.
pub fn account(stats: &mut RtStats, skipped: u64, lateness_ns: u64) {
    stats.periods += 1;
    stats.overruns += skipped;
    stats.max_lateness_ns = stats.max_lateness_ns.max(lateness_ns);
    stats.total_lateness_ns = stats.total_lateness_ns.saturating_add(lateness_ns);
}

/// The published form of the release statistics.
pub fn latency(releases: &Releases, params: Params, skipped: u64) -> RtLatency {
    let summary = releases.summary();
    let mut histogram = [0u32; RT_HISTOGRAM_BUCKETS];
    releases.log2_histogram(&mut histogram);
    RtLatency {
        magic: RT_LATENCY_MAGIC,
        period_us: params.period_us as u32,
        deadline_us: params.deadline_us as u32,
        reserved: 0,
        releases: summary.releases,
        misses: summary.misses,
        overruns: summary.overruns,
        min_ns: summary.min_ns,
        p50_ns: summary.p50_ns,
        p99_ns: summary.p99_ns,
        p999_ns: summary.p999_ns,
        max_ns: summary.max_ns,
        mean_ns: summary.mean_ns,
        histogram,
        skipped,
    }
}

/// rt-task's end of the `rt_events` ring: it produces, comm-pd consumes (docs/ring-protocol.md).
#[derive(Debug)]
pub struct Events {
    ring: Producer,
    /// Worst lateness and skipped periods since the last summary.
    window_lateness_ns: u64,
    window_skipped: u64,
    /// What comm-pd did to the ring the first time it broke the protocol (reported once).
    broken: Option<PeerMisbehaviour>,
}

impl Events {
    /// Takes the producing end of the ring that fills `len` bytes at `base`, and resets it.
    ///
    /// # Safety
    /// `base..base + len` must stay mapped read-write while `Events` lives, and be touched by
    /// no one but the ring's consumer, through the ring protocol.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Result<Self, LayoutError> {
        let layout = RingLayout::largest_within(len)?;
        // SAFETY: forwarded contract; the layout fits in `len`.
        let ring = unsafe { Producer::new(base, len, layout) }?;
        Ok(Self { ring, window_lateness_ns: 0, window_skipped: 0, broken: None })
    }

    /// Accounts one release, after [`account`] folded it into `stats`: an overrun event when it
    /// skipped periods, a summary at the end of each window. Returns whether comm-pd must be
    /// notified (it asked for a signal, sDDF's protocol).
    pub fn release(&mut self, stats: &mut RtStats, skipped: u64, lateness_ns: u64) -> bool {
        self.window_lateness_ns = self.window_lateness_ns.max(lateness_ns);
        self.window_skipped += skipped;
        if skipped > 0 {
            self.send(stats, RtEventKind::Overrun, lateness_ns, skipped);
        }
        if stats.periods.is_multiple_of(RT_SUMMARY_EVERY) {
            let (lateness, skipped) = (self.window_lateness_ns, self.window_skipped);
            self.send(stats, RtEventKind::Summary, lateness, skipped);
            (self.window_lateness_ns, self.window_skipped) = (0, 0);
        }
        self.ring.publish()
    }

    /// Puts one event in the ring, or refuses it and counts it: never waits.
    fn send(&mut self, stats: &mut RtStats, kind: RtEventKind, lateness_ns: u64, skipped: u64) {
        let event = RtEvent {
            magic: RT_EVENT_MAGIC,
            kind: kind as u32,
            period: stats.periods,
            lateness_ns,
            skipped,
            refused: stats.events_refused,
        };
        match self.ring.try_send(event.as_bytes()) {
            Ok(()) => stats.events_sent += 1,
            Err(e) => {
                stats.events_refused += 1;
                if let (SendError::Peer(m), None) = (e, self.broken) {
                    self.broken = Some(m);
                    log::warn!("rt_events: comm-pd broke the ring ({m}); events are refused");
                }
            }
        }
    }

    /// The first protocol violation comm-pd made on the ring, if any.
    pub fn broken(&self) -> Option<PeerMisbehaviour> {
        self.broken
    }
}

/// Why rt-task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `rt_shared` is smaller than the statistics block (system.xml maps too little).
    Shared(OutOfBounds),
    /// `rt_events` cannot hold a ring (system.xml maps too little, or misaligned).
    Events(LayoutError),
    /// The kernel refused to acknowledge the timer interrupt.
    IrqAck(microkit::IrqAckError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shared(e) => write!(f, "rt_shared: {e}"),
            Error::Events(e) => write!(f, "rt_events: {e}"),
            Error::IrqAck(e) => e.fmt(f),
        }
    }
}

#[derive(Debug)]
pub struct RtTask {
    shared: MemoryRegion,
    events: Events,
    comm: Channel,
    timer: Channel,
    /// The release grid and every release's lateness, completion and overrun (2 KiB, held in the
    /// event loop's frame: system.xml gives rt-task a 16 KiB stack, docs/stack.md).
    framework: Framework,
    stats: RtStats,
    work: Work,
    admission: Admission<'static>,
    calls: CallShare,
}

/// The control calls rt-task answers between two releases: they run on its budget, so a flood
/// from the normal world through comm-pd must not take that budget from the releases.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallShare {
    used: u32,
}

impl CallShare {
    /// Whether one more call may be answered now (and counts it).
    pub fn take(&mut self) -> bool {
        let granted = self.used < RT_CALLS_PER_RELEASE;
        self.used += u32::from(granted);
        granted
    }

    /// A release: a fresh share.
    pub fn renew(&mut self) {
        self.used = 0;
    }
}

pub fn init() -> RtTask {
    microkit::logger::init(log::LevelFilter::Info);
    let shared = memory_region!(shared_vaddr, shared_size);
    let events_region = memory_region!(events_vaddr, events_size);
    let comm = channel!(comm_channel);
    let timer_irq = channel!(timer_irq);
    let params = realtime::PARAMS;
    let framework = match Framework::new(params, timer::frequency(), timer::now()) {
        Ok(framework) => framework,
        Err(e) => panic!("the parameters the build wrote: {e}"),
    };
    let stats = RtStats { magic: RT_STATS_MAGIC, period_us: params.period_us as u32, ..RtStats::default() };
    let base = NonNull::new(events_region.as_ptr());
    // SAFETY: system.xml maps rt_events read-write into rt-task for its whole life, and into
    // comm-pd, the ring's consumer, only (`tzmk audit` reports every PD that maps a region).
    let events = match base.map(|base| unsafe { Events::new(base, events_region.size()) }) {
        Some(Ok(events)) => events,
        Some(Err(e)) => panic!("{}", Error::Events(e)),
        None => panic!("{}", Error::Events(LayoutError::Misaligned)),
    };
    let admission = Admission::new(&realtime::TASK_NAMES, &realtime::TASK_SET, realtime::SELF, params);
    let work = Work::default();
    let task = RtTask {
        shared,
        events,
        comm,
        timer: timer_irq,
        framework,
        stats,
        work,
        admission,
        calls: CallShare::default(),
    };
    if let Err(e) = task.publish() {
        panic!("{e}");
    }
    timer::set_deadline(task.framework.next_expiry());
    log::info!(
        "ready: period {} us, budget {} us, deadline {} us on the physical timer (channel {})",
        params.period_us,
        params.budget_us,
        params.deadline_us,
        timer_irq.index()
    );
    task
}

impl RtTask {
    fn publish(&self) -> Result<(), Error> {
        self.shared.publish(RT_SEQUENCE_OFFSET, RT_STATS_OFFSET, self.stats.as_bytes()).map_err(Error::Shared)
    }

    fn publish_latency(&self) -> Result<(), Error> {
        let latency = latency(self.framework.releases(), self.framework.params(), self.framework.skipped());
        self.shared.publish(RT_LATENCY_SEQUENCE_OFFSET, RT_LATENCY_OFFSET, latency.as_bytes()).map_err(Error::Shared)
    }
}

/// What each release does: one step of the PID loop (sample the motor's speed, compute the
/// law, drive the motor), with the release's period as its time step.
#[derive(Debug, Clone, Copy)]
pub struct Work {
    pub control: Loop,
}

impl Default for Work {
    fn default() -> Self {
        Work { control: control::motor_loop() }
    }
}

impl Periodic for Work {
    type Output = Step;
    fn release(&mut self, release: &tzmk_realtime::periodic::Release) -> Step {
        self.control.step(release.period_us)
    }
}

/// The published form of a release of the control loop.
pub fn control_block(completion: &Completion<Step>, params: Params) -> RtControl {
    let step = completion.output;
    RtControl {
        magic: RT_CONTROL_MAGIC,
        period_us: params.period_us as u32,
        budget_us: params.budget_us as u32,
        deadline_us: params.deadline_us as u32,
        release: completion.release.index,
        setpoint_milli: control::milli(step.setpoint) as i32,
        measurement_milli: control::milli(step.measurement) as i32,
        output_milli: control::milli(step.actuation.output) as i32,
        saturated: u32::from(step.actuation.saturated),
        response_ns: completion.response_ns,
    }
}

/// rt-task's admission test: the task set of its core as the build wrote it, with every change
/// it accepted since. Only its own entry changes (a PD controls its own releases only), and never
/// beyond the kernel's scheduling context (system.xml's: `kernel`), which a PD cannot change.
#[derive(Debug, Clone)]
pub struct Admission<'n> {
    names: &'n [&'n str],
    tasks: heapless::Vec<Task, MAX_TASKS>,
    own: usize,
    kernel: Params,
}

impl<'n> Admission<'n> {
    /// `tasks[own]` is this PD, with `kernel` its system.xml parameters.
    pub fn new(names: &'n [&'n str], tasks: &[Task], own: usize, kernel: Params) -> Self {
        assert!(names.len() == tasks.len() && own < tasks.len() && tasks.len() <= MAX_TASKS, "the build's task set");
        Admission { names, tasks: tasks.iter().copied().collect(), own, kernel }
    }

    /// The verdict on `request`, with the parameters to hand to the framework when accepted.
    pub fn decide(&mut self, request: &RtSetRequest, current: Params) -> (RtSetReply, Option<Params>) {
        let refuse = |status: RtSetStatus| (RtSetReply { status: status as u32, ..RtSetReply::default() }, None);
        if request.reserved != 0 {
            return refuse(RtSetStatus::Malformed);
        }
        let Some(name) = name_of(&request.task) else { return refuse(RtSetStatus::Malformed) };
        let index = if name.is_empty() { Some(self.own) } else { self.names.iter().position(|n| *n == name) };
        match index {
            None => return refuse(RtSetStatus::NoSuchTask),
            Some(i) if i != self.own => return refuse(RtSetStatus::NotChangeable),
            Some(_) => {}
        }
        let (period_us, budget_us) = (u64::from(request.period_us), u64::from(request.budget_us));
        let deadline_us = match request.deadline_us {
            0 => current.deadline_us.min(period_us),
            d => u64::from(d),
        };
        let params = Params { period_us, deadline_us, budget_us };
        if let Err(e) = params.check() {
            return refuse(status_of(e));
        }
        if budget_us > self.kernel.budget_us || period_us < self.kernel.period_us {
            return refuse(RtSetStatus::BeyondKernelBudget);
        }
        let candidate = Task {
            deadline_ns: deadline_us * 1_000,
            ..Task::periodic(self.tasks[self.own].priority, period_us * 1_000, budget_us * 1_000)
        };
        match rta::admit(&self.tasks, self.own, candidate) {
            Ok(_) => {
                self.tasks[self.own] = candidate;
                (RtSetReply { status: RtSetStatus::Accepted as u32, ..RtSetReply::default() }, Some(params))
            }
            Err(Refusal::Unschedulable { task, response }) => {
                let deadline_ns = if task == self.own { candidate.deadline_ns } else { self.tasks[task].deadline_ns };
                let (settled, response_ns) = match response {
                    Response::Misses { beyond_ns } => (0, beyond_ns),
                    Response::Meets { response_ns } => (1, response_ns),
                    Response::Invalid(_) => (0, 0),
                };
                let reply = RtSetReply {
                    status: RtSetStatus::Unschedulable as u32,
                    settled,
                    task: name_field(self.names[task]).unwrap_or_default(),
                    response_ns,
                    deadline_ns,
                };
                (reply, None)
            }
            Err(_) => refuse(RtSetStatus::Unschedulable),
        }
    }
}

fn status_of(e: ParamsError) -> RtSetStatus {
    match e {
        ParamsError::ZeroPeriod => RtSetStatus::ZeroPeriod,
        ParamsError::ZeroBudget => RtSetStatus::ZeroBudget,
        ParamsError::BudgetNotBelowPeriod => RtSetStatus::BudgetNotBelowPeriod,
        ParamsError::BudgetBelowMinimum => RtSetStatus::BudgetBelowMinimum,
        ParamsError::DeadlineOutOfRange => RtSetStatus::DeadlineOutOfRange,
        ParamsError::PeriodAboveMaximum => RtSetStatus::PeriodAboveMaximum,
    }
}

/// A setpoint from the normal world: thousandths in `0..=SETPOINT_MAX`, or refused.
pub fn setpoint(request: &RtSetpointRequest) -> Result<i32, RtSetStatus> {
    if request.reserved != 0 {
        return Err(RtSetStatus::Malformed);
    }
    let max = control::milli(control::SETPOINT_MAX);
    if !(0..=max).contains(&i64::from(request.setpoint_milli)) {
        return Err(RtSetStatus::SetpointOutOfRange);
    }
    Ok(control::from_milli(i64::from(request.setpoint_milli)))
}

impl Handler for RtTask {
    type Error = Error;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Error> {
        if channels.contains(self.timer) {
            let outcome = self.framework.on_timer(&mut Counter, &mut self.work);
            timer::set_deadline(self.framework.next_expiry());
            self.timer.irq_ack().map_err(Error::IrqAck)?;
            if let Outcome::Ran(completion) = outcome {
                self.calls.renew();
                if completion.changed {
                    self.stats.period_us = self.framework.params().period_us as u32;
                }
                let block = control_block(&completion, self.framework.params());
                self.shared
                    .publish(RT_CONTROL_SEQUENCE_OFFSET, RT_CONTROL_OFFSET, block.as_bytes())
                    .map_err(Error::Shared)?;
                let lateness_ns = completion.release.lateness_ns;
                account(&mut self.stats, completion.skipped, lateness_ns);
                let events = self.events.release(&mut self.stats, completion.skipped, lateness_ns);
                self.publish()?;
                let report = self.stats.periods.is_multiple_of(REPORT_EVERY);
                if report {
                    self.publish_latency()?;
                }
                if events || report {
                    self.comm.notify();
                }
            }
        }
        // A notification from comm-pd asks for fresh statistics now.
        if channels.contains(self.comm) {
            self.publish_latency()?;
            self.comm.notify();
        }
        Ok(())
    }

    /// comm-pd's calls for `tzctl rt set` and `tzctl rt setpoint`: the request in the message
    /// registers (an allegation of the normal world, which comm-pd copied), the reply likewise.
    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Error> {
        let reply = if channel != self.comm {
            RtSetReply { status: RtSetStatus::Malformed as u32, ..RtSetReply::default() }
        } else if !self.calls.take() {
            RtSetReply { status: RtSetStatus::Busy as u32, ..RtSetReply::default() }
        } else {
            match (msg_info.label(), msg_info.count()) {
                (RT_OP_SET, RT_SET_REQUEST_WORDS) => {
                    let mut request = RtSetRequest::default();
                    microkit::with_msg_regs(|regs| unpack(&regs[..RT_SET_REQUEST_WORDS], request.as_mut_bytes()));
                    let (reply, params) = self.admission.decide(&request, self.framework.params());
                    if let Some(params) = params {
                        // Checked by `decide`: `change` cannot refuse it.
                        let _ = self.framework.change(params);
                        log::info!(
                            "rt set: period {} us, budget {} us, deadline {} us from the next release",
                            params.period_us,
                            params.budget_us,
                            params.deadline_us
                        );
                    }
                    reply
                }
                (RT_OP_SETPOINT, 1) => {
                    let mut request = RtSetpointRequest::default();
                    microkit::with_msg_regs(|regs| unpack(&regs[..1], request.as_mut_bytes()));
                    let status = match setpoint(&request) {
                        Ok(value) => {
                            self.work.control.setpoint = value;
                            RtSetStatus::Accepted
                        }
                        Err(status) => status,
                    };
                    RtSetReply { status: status as u32, ..RtSetReply::default() }
                }
                _ => RtSetReply { status: RtSetStatus::Malformed as u32, ..RtSetReply::default() },
            }
        };
        microkit::with_msg_regs_mut(|regs| pack(reply.as_bytes(), &mut regs[..RT_SET_REPLY_WORDS]));
        Ok(MessageInfo::new(0, RT_SET_REPLY_WORDS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use tzmk_interface::port::ring::Consumer;
    use zerocopy::FromBytes;

    /// A page of host memory holding the events ring, with comm-pd's end attached to it.
    struct Ring {
        base: NonNull<u8>,
        layout: Layout,
    }

    impl Ring {
        fn new() -> Ring {
            let layout = Layout::from_size_align(4096, 4096).unwrap();
            // SAFETY: nonzero size.
            Ring { base: NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap(), layout }
        }
        fn events(&self) -> Events {
            // SAFETY: the page outlives the test's Events; only the test's Consumer shares it.
            unsafe { Events::new(self.base, 4096) }.unwrap()
        }
        fn consumer(&self) -> Consumer {
            // SAFETY: as above.
            unsafe { Consumer::attach(self.base, 4096, RingLayout::largest_within(4096).unwrap()) }.unwrap()
        }
    }

    impl Drop for Ring {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.base.as_ptr(), self.layout) };
        }
    }

    fn drain(consumer: &mut Consumer) -> Vec<RtEvent> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while let Some(n) = consumer.try_recv(&mut buf).unwrap() {
            out.push(RtEvent::read_from_bytes(&buf[..n]).unwrap());
        }
        consumer.release();
        out
    }

    /// Runs `periods` releases, the ones in `late` skipping two periods 3 ms late.
    fn run(events: &mut Events, stats: &mut RtStats, periods: u64, late: &[u64]) -> u64 {
        let mut notifications = 0;
        for _ in 0..periods {
            let skipped = if late.contains(&(stats.periods + 1)) { 2 } else { 0 };
            let lateness_ns = if skipped > 0 { 3_000_000 } else { 1_000 };
            account(stats, skipped, lateness_ns);
            notifications += u64::from(events.release(stats, skipped, lateness_ns));
        }
        notifications
    }

    #[test]
    fn events_are_a_summary_per_window_and_one_per_overrun() {
        let ring = Ring::new();
        let (mut events, mut consumer) = (ring.events(), ring.consumer());
        let mut stats = RtStats::default();
        // No signal requested yet: the first publish notifies, later ones do not until comm-pd
        // asks again.
        assert_eq!(run(&mut events, &mut stats, 250, &[150]), 1);
        let got = drain(&mut consumer);
        let summary = |period, lateness_ns, skipped| RtEvent {
            magic: RT_EVENT_MAGIC,
            kind: RtEventKind::Summary as u32,
            period,
            lateness_ns,
            skipped,
            refused: 0,
        };
        let overrun = RtEvent {
            kind: RtEventKind::Overrun as u32,
            period: 150,
            lateness_ns: 3_000_000,
            skipped: 2,
            ..summary(0, 0, 0)
        };
        assert_eq!(got, [summary(100, 1_000, 0), overrun, summary(200, 3_000_000, 2)]);
        assert_eq!((stats.events_sent, stats.events_refused), (3, 0));
        assert!(!consumer.request_signal().unwrap());
        assert_eq!(run(&mut events, &mut stats, 100, &[]), 1, "asked again: notified again");
        assert_eq!(drain(&mut consumer), [summary(300, 1_000, 0)]);
    }

    #[test]
    fn a_full_ring_refuses_and_counts_and_never_waits() {
        let ring = Ring::new();
        let (mut events, mut consumer) = (ring.events(), ring.consumer());
        let mut stats = RtStats::default();
        // 2048 bytes hold 42 records of 48 bytes; every period overruns here, so the ring fills.
        run(&mut events, &mut stats, 50, &(1..=50).collect::<Vec<_>>());
        assert_eq!((stats.events_sent, stats.events_refused), (42, 8));
        let got = drain(&mut consumer);
        assert_eq!(got.len(), 42);
        assert!(got.iter().all(|e| e.refused == 0 && e.kind() == Some(RtEventKind::Overrun)));
        // Room again: the next event says how many were missed.
        run(&mut events, &mut stats, 1, &[51]);
        assert_eq!(drain(&mut consumer)[0].refused, 8);
    }

    #[test]
    fn a_consumer_that_lies_gets_refusals_not_a_stuck_task() {
        let ring = Ring::new();
        let mut events = ring.events();
        let mut stats = RtStats::default();
        // comm-pd's index jumps past ours.
        // SAFETY: the consumer word is inside the page; nothing else runs.
        unsafe { ring.base.as_ptr().add(64).cast::<u32>().write_volatile(4096) };
        run(&mut events, &mut stats, 100, &[]);
        assert_eq!((stats.events_sent, stats.events_refused), (0, 1));
        assert_eq!(events.broken(), Some(PeerMisbehaviour::IndexOutOfRange));
    }

    #[test]
    fn the_build_wrote_system_xml_s_parameters() {
        // system.xml: rt-task budget="200" period="1000"; pds/realtime.toml: deadline = 500.
        assert_eq!(realtime::PARAMS, Params { period_us: 1000, deadline_us: 500, budget_us: 200 });
        assert_eq!(realtime::TASK_NAMES[realtime::SELF], "rt-task");
        assert_eq!(realtime::TASK_SET[realtime::SELF].deadline_ns, 500_000);
        assert!(realtime::TASK_NAMES.contains(&"comm-pd") && !realtime::TASK_NAMES.contains(&"attestation-pd"));
        assert!(tzmk_realtime::rta::analyse(&realtime::TASK_SET).unwrap().schedulable());
    }

    const NAMES: [&str; 3] = ["rt-task", "other", "comm-pd"];

    /// rt-task above another real-time task with a 600 us deadline, comm-pd below both.
    fn admission() -> Admission<'static> {
        let tasks = [
            Task { deadline_ns: 500_000, ..Task::periodic(250, 1_000_000, 200_000) },
            Task { deadline_ns: 600_000, ..Task::periodic(240, 1_000_000, 300_000) },
            Task::periodic(100, 1_000_000, 400_000),
        ];
        Admission::new(&NAMES, &tasks, 0, Params { period_us: 1000, deadline_us: 500, budget_us: 400 })
    }

    fn request(task: &str, period_us: u32, budget_us: u32, deadline_us: u32) -> RtSetRequest {
        RtSetRequest { task: name_field(task).unwrap(), period_us, budget_us, deadline_us, reserved: 0 }
    }

    const CURRENT: Params = Params { period_us: 1000, deadline_us: 500, budget_us: 200 };

    #[test]
    fn rt_set_is_admitted_by_the_analysis() {
        let mut a = admission();
        let (reply, params) = a.decide(&request("", 1000, 250, 0), CURRENT);
        assert_eq!(reply.status(), Some(RtSetStatus::Accepted));
        assert_eq!(params, Some(Params { period_us: 1000, deadline_us: 500, budget_us: 250 }), "deadline kept");
        // 350 us would push `other` to 300 + 350 = 650 us, past its 600 us deadline.
        let (reply, params) = a.decide(&request("rt-task", 1000, 350, 0), CURRENT);
        assert_eq!((reply.status(), params), (Some(RtSetStatus::Unschedulable), None));
        assert_eq!((reply.task_name(), reply.response_ns, reply.deadline_ns), (Some("other"), 650_000, 600_000));
        // A refusal changes nothing: 250 is still the admitted budget (`other` at 550 us).
        let (reply, _) = a.decide(&request("", 2000, 250, 0), CURRENT);
        assert_eq!(reply.status(), Some(RtSetStatus::Accepted));
        // A longer period with the deadline: min(current, period).
        let (_, params) = a.decide(&request("", 1000, 100, 0), Params { deadline_us: 1000, ..CURRENT });
        assert_eq!(params.unwrap().deadline_us, 1000);
    }

    #[test]
    fn rt_set_refuses_bad_values_with_their_status() {
        let mut a = admission();
        let cases = [
            (request("", 0, 100, 0), RtSetStatus::ZeroPeriod),
            (request("", 1000, 0, 0), RtSetStatus::ZeroBudget),
            (request("", 1000, 1000, 0), RtSetStatus::BudgetNotBelowPeriod),
            (request("", 1000, 19, 0), RtSetStatus::BudgetBelowMinimum),
            (request("", 1000, 300, 200), RtSetStatus::DeadlineOutOfRange),
            (request("", 2_000_000, 300, 0), RtSetStatus::PeriodAboveMaximum),
            (request("", 1000, 450, 0), RtSetStatus::BeyondKernelBudget),
            (request("", 900, 100, 0), RtSetStatus::BeyondKernelBudget),
            (request("nobody", 1000, 100, 0), RtSetStatus::NoSuchTask),
            (request("other", 1000, 100, 0), RtSetStatus::NotChangeable),
            (RtSetRequest { reserved: 1, ..request("", 1000, 100, 0) }, RtSetStatus::Malformed),
        ];
        for (req, status) in cases {
            let (reply, params) = a.decide(&req, CURRENT);
            assert_eq!((reply.status(), params), (Some(status), None), "{req:?}");
        }
        let mut hidden = request("rt-task", 1000, 100, 0);
        hidden.task[20] = b'x';
        assert_eq!(a.decide(&hidden, CURRENT).0.status(), Some(RtSetStatus::Malformed));
    }

    #[test]
    fn a_few_calls_per_release_and_no_more() {
        let mut share = CallShare::default();
        let granted = (0..10).filter(|_| share.take()).count();
        assert_eq!(granted, RT_CALLS_PER_RELEASE as usize);
        share.renew();
        assert!(share.take());
    }

    #[test]
    fn setpoints_are_checked() {
        let ok = RtSetpointRequest { setpoint_milli: 2500, reserved: 0 };
        assert_eq!(setpoint(&ok), Ok(control::from_milli(2500)));
        assert_eq!(
            setpoint(&RtSetpointRequest { setpoint_milli: 10_001, reserved: 0 }),
            Err(RtSetStatus::SetpointOutOfRange)
        );
        assert_eq!(
            setpoint(&RtSetpointRequest { setpoint_milli: -1, reserved: 0 }),
            Err(RtSetStatus::SetpointOutOfRange)
        );
        assert_eq!(setpoint(&RtSetpointRequest { setpoint_milli: 0, reserved: 7 }), Err(RtSetStatus::Malformed));
    }

    /// The task as the PD runs it, on a fake counter: the control loop reaches its setpoint and
    /// every release publishes its output by the deadline.
    #[test]
    fn the_control_task_on_the_framework() {
        struct Fake(u64);
        impl Clock for Fake {
            fn now(&mut self) -> u64 {
                self.0 += 1; // 1 us per reading at 1 MHz.
                self.0
            }
        }
        let mut framework = Framework::new(realtime::PARAMS, 1_000_000, 0).unwrap();
        let mut work = Work::default();
        work.control.setpoint = control::from_milli(4000);
        let mut last = None;
        for _ in 0..300 {
            let mut clock = Fake(framework.next_expiry());
            if let Outcome::Ran(c) = framework.on_timer(&mut clock, &mut work) {
                assert!(!c.missed && !c.overran);
                last = Some(control_block(&c, framework.params()));
            }
        }
        let block = last.unwrap();
        assert_eq!(
            (block.magic, block.release, block.period_us, block.deadline_us),
            (RT_CONTROL_MAGIC, 299, 1000, 500)
        );
        assert!((block.measurement_milli - 4000).abs() <= 40, "{block:?}");
        assert!((block.output_milli - 4000).abs() <= 80 && block.saturated == 0, "{block:?}");
        assert_eq!(block.response_ns, 2_000, "start 1 us late, done 1 us later");
        assert_eq!(framework.releases().summary().misses, 0);
    }

    #[test]
    fn the_published_distribution() {
        let mut releases = Releases::default();
        for lateness in [1_000u64, 2_000, 3_000, 400_000] {
            releases.record(lateness, lateness > 100_000, false);
        }
        releases.record(5_000, false, true);
        let l = latency(&releases, realtime::PARAMS, 3);
        assert_eq!((l.magic, l.period_us, l.deadline_us), (RT_LATENCY_MAGIC, 1000, 500));
        assert_eq!((l.releases, l.misses, l.overruns, l.min_ns, l.max_ns), (5, 1, 1, 1_000, 400_000));
        assert_eq!(l.skipped, 3);
        assert!(l.min_ns <= l.p50_ns && l.p50_ns <= l.p99_ns && l.p99_ns <= l.p999_ns && l.p999_ns <= l.max_ns);
        assert_eq!(l.histogram.iter().sum::<u32>(), 5);
        assert_eq!(l.histogram[18], 1, "400 us in [2^18, 2^19) ns");
    }

    #[test]
    fn statistics_accumulate() {
        let mut stats = RtStats::default();
        account(&mut stats, 0, 500);
        account(&mut stats, 2, 200);
        assert_eq!((stats.periods, stats.overruns, stats.max_lateness_ns, stats.total_lateness_ns), (2, 2, 500, 700));
    }
}
