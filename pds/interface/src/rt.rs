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
/// completed after its deadline (`deadline_us` after the programmed expiry); an overrun a
/// release that came more than a whole period late (the periods in between were skipped).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocks_do_not_overlap_and_fit_a_port_call() {
        const { assert!(RT_STATS_OFFSET + core::mem::size_of::<RtStats>() <= RT_LATENCY_SEQUENCE_OFFSET) };
        const { assert!(RT_LATENCY_OFFSET + core::mem::size_of::<RtLatency>() <= 0x1000) };
        const { assert!(core::mem::size_of::<RtLatency>() <= crate::port::MAX_CONTROL_PAYLOAD) };
        assert_eq!(core::mem::size_of::<RtLatency>(), 216);
    }
}
