//! What rt-task tells comm-pd, through two secure-only regions.
//!
//! - `rt_shared`: the statistics block ([`RtStats`]) under a sequence lock: the writer makes
//!   `sequence` odd, writes the fields, makes it even again; a reader copies the block and retries
//!   when `sequence` was odd or changed under it.
//! - `rt_events`: one `tzmk-ring` ring (the ports' ring, the whole region, rt-task producing,
//!   comm-pd consuming) of [`RtEvent`] records, which comm-pd forwards to the `rt` port: secure PD
//!   to secure PD traffic through the same API as the ports. A real-time task never waits on a
//!   ring: when it is full, rt-task refuses the event and counts it (`RtEvent::refused`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const RT_SEQUENCE_OFFSET: usize = 0;
pub const RT_STATS_OFFSET: usize = 8;
/// The release-lateness distribution ([`RtLatency`]), under a sequence lock of its own: rt-task
/// publishes it once per [`RT_REPORT_EVERY`] periods (computing percentiles is not for every
/// release), the counters above every period.
pub const RT_LATENCY_SEQUENCE_OFFSET: usize = 0x80;
pub const RT_LATENCY_OFFSET: usize = 0x88;
/// `RtLatency::magic`: "RTLA".
pub const RT_LATENCY_MAGIC: u32 = 0x5254_4c41;
/// Buckets of [`RtLatency::histogram`]: bucket `k` counts releases `2^k <= lateness_ns < 2^(k+1)`
/// (bucket 0 also the zeros; the last one everything above).
pub const RT_HISTOGRAM_BUCKETS: usize = 32;

/// `RtStats::magic`: "RTST".
pub const RT_STATS_MAGIC: u32 = 0x5254_5354;
/// `RtEvent::magic`: "RTEV". A reader of the `rt` port tells events from statistics replies
/// by the first word.
pub const RT_EVENT_MAGIC: u32 = 0x5254_4556;

/// rt-task notifies comm-pd of fresh statistics once per this many periods (besides events).
pub const RT_REPORT_EVERY: u64 = 1000;
/// rt-task sends a [`RtEventKind::Summary`] once per this many periods.
pub const RT_SUMMARY_EVERY: u64 = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RtStats {
    pub magic: u32,
    /// The period rt-task runs at, in microseconds.
    pub period_us: u32,
    /// Periods completed.
    pub periods: u64,
    /// Periods whose deadline had already passed by more than a whole period (skipped).
    pub overruns: u64,
    /// Worst observed release lateness (timer deadline to handler), in nanoseconds.
    pub max_lateness_ns: u64,
    /// Sum of release lateness, in nanoseconds, for the mean.
    pub total_lateness_ns: u64,
    /// Events rt-task put in the `rt_events` ring.
    pub events_sent: u64,
    /// Events rt-task refused because the ring was full (or broken): never waited for.
    pub events_refused: u64,
}

/// rt-task's release-lateness distribution since it started (`tzctl rt stats`): lateness is the
/// time from the programmed timer expiry to the handler's start; a miss is a release that
/// completed after its deadline (`deadline_us` after the programmed expiry) or a release of the
/// grid that never ran because an earlier one completed after its expiry (skipped); an overrun a
/// release that ran longer than its budget (tzmk-realtime's `periodic`, docs/realtime.md).
/// Percentiles are read from a log-linear histogram (tzmk-realtime's `stats`): never below the
/// true value and at most 1/16 above it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RtLatency {
    /// [`RT_LATENCY_MAGIC`].
    pub magic: u32,
    pub period_us: u32,
    /// The relative deadline of each release.
    pub deadline_us: u32,
    pub reserved: u32,
    pub releases: u64,
    pub misses: u64,
    pub overruns: u64,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: u64,
    /// Releases per power of two of lateness in nanoseconds (see [`RT_HISTOGRAM_BUCKETS`]).
    pub histogram: [u32; RT_HISTOGRAM_BUCKETS],
    /// Releases of the grid that never ran (counted in `misses` too, so `misses` may exceed
    /// `releases`): an earlier release completed after their expiry.
    pub skipped: u64,
}

/// What an [`RtEvent`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum RtEventKind {
    /// The last [`RT_SUMMARY_EVERY`] periods: `lateness_ns` is their worst release lateness,
    /// `skipped` the periods they skipped.
    Summary = 1,
    /// A release that came more than a period late: its lateness and the periods it skipped.
    Overrun = 2,
}

impl RtEventKind {
    pub fn from_u32(value: u32) -> Option<Self> {
        [Self::Summary, Self::Overrun].into_iter().find(|k| *k as u32 == value)
    }
}

/// One message of the `rt_events` ring, as comm-pd forwards it to the `rt` port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RtEvent {
    /// [`RT_EVENT_MAGIC`].
    pub magic: u32,
    /// An [`RtEventKind`].
    pub kind: u32,
    /// The period the event was sent in (`RtStats::periods` then).
    pub period: u64,
    pub lateness_ns: u64,
    pub skipped: u64,
    /// Events refused before this one (ring full), since rt-task started: a reader that sees it
    /// grow knows how many it missed.
    pub refused: u64,
}

impl RtEvent {
    pub fn kind(&self) -> Option<RtEventKind> {
        RtEventKind::from_u32(self.kind)
    }
}

/// The control loop's last release ([`RtControl`]) under a sequence lock of its own, written
/// every release.
pub const RT_CONTROL_SEQUENCE_OFFSET: usize = 0x200;
pub const RT_CONTROL_OFFSET: usize = 0x208;
/// `RtControl::magic`: "RTCL".
pub const RT_CONTROL_MAGIC: u32 = 0x5254_434c;

/// rt-task's control loop (a PID speed loop over a simulated DC motor): its last release, and
/// the parameters it runs with now. Values are thousandths (mrad/s, mV).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RtControl {
    /// [`RT_CONTROL_MAGIC`].
    pub magic: u32,
    pub period_us: u32,
    pub budget_us: u32,
    pub deadline_us: u32,
    /// The release's number on the grid.
    pub release: u64,
    pub setpoint_milli: i32,
    /// The sensor sample the law used.
    pub measurement_milli: i32,
    /// The actuator output it published.
    pub output_milli: i32,
    /// 1 when the law asked for more than the actuator's range.
    pub saturated: u32,
    /// Expiry to the output's publication, nanoseconds (at most the deadline, or a miss).
    pub response_ns: u64,
}

/// `tzctl rt set`'s request: the task by name (NUL-padded; all zeros: rt-task) and its new
/// parameters in microseconds. `deadline_us` 0 keeps the task's deadline, capped at the period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RtSetRequest {
    pub task: [u8; RT_TASK_NAME_LEN],
    pub period_us: u32,
    pub budget_us: u32,
    pub deadline_us: u32,
    pub reserved: u32,
}

/// Bytes of a task name in [`RtSetRequest`] and [`RtSetReply`].
pub const RT_TASK_NAME_LEN: usize = 24;

/// `tzctl rt setpoint`'s request: the control loop's new setpoint in thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RtSetpointRequest {
    pub setpoint_milli: i32,
    pub reserved: u32,
}

/// What became of an [`RtSetRequest`] (or a setpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum RtSetStatus {
    /// Accepted: in effect from the next release.
    Accepted = 0,
    ZeroPeriod = 1,
    ZeroBudget = 2,
    /// `budget >= period`: seL4 would enforce no budget.
    BudgetNotBelowPeriod = 3,
    /// Below the 20 us minimum budget (2 x the kernel WCET on qemu-arm-virt).
    BudgetBelowMinimum = 4,
    /// The deadline is below the budget or after the period.
    DeadlineOutOfRange = 5,
    /// The period is longer than a second.
    PeriodAboveMaximum = 6,
    /// The response-time analysis says task `task` would miss its deadline.
    Unschedulable = 7,
    /// No task of that name in rt-task's task set.
    NoSuchTask = 8,
    /// The task is in the set but rt-task cannot change it (only its own parameters).
    NotChangeable = 9,
    /// A setpoint outside the loop's range.
    SetpointOutOfRange = 10,
    /// The request's reserved words are not zero, or its name is not NUL-padded text.
    Malformed = 11,
    /// A budget above, or a period below, the kernel's scheduling context (system.xml's, which
    /// a PD cannot change in Microkit 2.3.0): seL4 would throttle the task's releases.
    BeyondKernelBudget = 12,
    /// rt-task took its share of control calls this release ([`RT_CALLS_PER_RELEASE`]): the
    /// normal world cannot spend its budget through comm-pd. Try again after a period.
    Busy = 13,
}

/// The control calls rt-task answers per release; more are refused with [`RtSetStatus::Busy`]
/// before any analysis runs.
pub const RT_CALLS_PER_RELEASE: u32 = 2;

impl RtSetStatus {
    pub fn from_u32(value: u32) -> Option<Self> {
        use RtSetStatus::*;
        [
            Accepted,
            ZeroPeriod,
            ZeroBudget,
            BudgetNotBelowPeriod,
            BudgetBelowMinimum,
            DeadlineOutOfRange,
            PeriodAboveMaximum,
            Unschedulable,
            NoSuchTask,
            NotChangeable,
            SetpointOutOfRange,
            Malformed,
            BeyondKernelBudget,
            Busy,
        ]
        .into_iter()
        .find(|s| *s as u32 == value)
    }

    pub fn describe(self) -> &'static str {
        match self {
            RtSetStatus::Accepted => "accepted: in effect from the next release",
            RtSetStatus::ZeroPeriod => "the period is 0",
            RtSetStatus::ZeroBudget => "the budget is 0",
            RtSetStatus::BudgetNotBelowPeriod => {
                "the budget is not below the period (seL4 enforces a budget only when budget < period)"
            }
            RtSetStatus::BudgetBelowMinimum => "the budget is below the 20 us minimum (2 x the kernel WCET)",
            RtSetStatus::DeadlineOutOfRange => "the deadline is below the budget or after the period",
            RtSetStatus::PeriodAboveMaximum => "the period is above 1 s",
            RtSetStatus::Unschedulable => "the task set would not be schedulable",
            RtSetStatus::NoSuchTask => "no task of that name in the real-time task set",
            RtSetStatus::NotChangeable => "that task's parameters are not rt-task's to change",
            RtSetStatus::SetpointOutOfRange => "the setpoint is outside 0..=10000 (thousandths)",
            RtSetStatus::Malformed => "the request is malformed",
            RtSetStatus::Busy => "rt-task answered its share of control calls this period; try again",
            RtSetStatus::BeyondKernelBudget => {
                "the budget is above, or the period below, the kernel's scheduling context (system.xml's; a PD cannot change it)"
            }
        }
    }
}

/// The answer to [`RtSetRequest`]: the status and, when unschedulable, which task misses, its
/// response time (or how far the analysis got before it passed the deadline) and its deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RtSetReply {
    /// An [`RtSetStatus`].
    pub status: u32,
    /// 1 when the analysis settled on `response_ns` and it is above the deadline; 0 when it
    /// passed the deadline at `response_ns` without settling (or for other statuses).
    pub settled: u32,
    /// The task that would miss (for `Unschedulable`).
    pub task: [u8; RT_TASK_NAME_LEN],
    pub response_ns: u64,
    pub deadline_ns: u64,
}

impl RtSetReply {
    pub fn status(&self) -> Option<RtSetStatus> {
        RtSetStatus::from_u32(self.status)
    }

    pub fn task_name(&self) -> Option<&str> {
        name_of(&self.task)
    }
}

/// A NUL-padded name: its text, or `None` when it is not UTF-8 or has text after a NUL.
pub fn name_of(bytes: &[u8; RT_TASK_NAME_LEN]) -> Option<&str> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    if bytes[end..].iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(&bytes[..end]).ok()
}

/// Packs a name into a NUL-padded field; `None` when it is too long.
pub fn name_field(name: &str) -> Option<[u8; RT_TASK_NAME_LEN]> {
    let mut field = [0u8; RT_TASK_NAME_LEN];
    field.get_mut(..name.len())?.copy_from_slice(name.as_bytes());
    Some(field)
}

/// The protected procedure calls comm-pd makes to rt-task (channel `rt_channel`, `pp` on
/// comm-pd's end): the label, and the request's bytes in the message registers ([`pack`]).
/// rt-task answers with an [`RtSetReply`] in the message registers, label 0.
pub const RT_OP_SET: u64 = 1;
pub const RT_OP_SETPOINT: u64 = 2;
/// Message registers of an [`RtSetRequest`] and of an [`RtSetReply`].
pub const RT_SET_REQUEST_WORDS: usize = core::mem::size_of::<RtSetRequest>() / 8;
pub const RT_SET_REPLY_WORDS: usize = core::mem::size_of::<RtSetReply>() / 8;

/// Bytes into little-endian words (message registers); the last word zero-padded.
pub fn pack(bytes: &[u8], words: &mut [u64]) {
    for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_le_bytes(b);
    }
}

/// Words (message registers) back into bytes.
pub fn unpack(words: &[u64], bytes: &mut [u8]) {
    for (chunk, word) in bytes.chunks_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn the_blocks_do_not_overlap_and_fit_a_port_call() {
        const { assert!(RT_STATS_OFFSET + core::mem::size_of::<RtStats>() <= RT_LATENCY_SEQUENCE_OFFSET) };
        const { assert!(RT_LATENCY_OFFSET + core::mem::size_of::<RtLatency>() <= 0x1000) };
        const { assert!(core::mem::size_of::<RtLatency>() <= crate::port::MAX_CONTROL_PAYLOAD) };
        assert_eq!(core::mem::size_of::<RtLatency>(), 224);
        const { assert!(RT_LATENCY_OFFSET + core::mem::size_of::<RtLatency>() <= RT_CONTROL_SEQUENCE_OFFSET) };
        const { assert!(RT_CONTROL_OFFSET + core::mem::size_of::<RtControl>() <= 0x1000) };
        assert_eq!(core::mem::size_of::<RtControl>(), 48);
        assert_eq!(core::mem::size_of::<RtSetRequest>(), 40);
        assert_eq!(core::mem::size_of::<RtSetReply>(), 48);
    }

    #[test]
    fn names_and_statuses_round_trip() {
        let field = name_field("rt-task").unwrap();
        assert_eq!(name_of(&field), Some("rt-task"));
        assert!(name_field(&"x".repeat(RT_TASK_NAME_LEN + 1)).is_none());
        let mut hidden = field;
        hidden[20] = b'x';
        assert_eq!(name_of(&hidden), None, "text after the NUL");
        for code in 0..=13 {
            assert_eq!(RtSetStatus::from_u32(code).map(|s| s as u32), Some(code));
        }
        assert_eq!(RtSetStatus::from_u32(14), None);
        let request = RtSetRequest { task: field, period_us: 1000, budget_us: 300, deadline_us: 0, reserved: 0 };
        let mut words = [0u64; RT_SET_REQUEST_WORDS];
        pack(request.as_bytes(), &mut words);
        let mut back = RtSetRequest::default();
        unpack(&words, back.as_mut_bytes());
        assert_eq!(back, request);
    }
}
