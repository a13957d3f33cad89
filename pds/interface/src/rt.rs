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
