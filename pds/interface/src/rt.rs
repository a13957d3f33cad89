//! The statistics block rt-task publishes in `rt_shared` (secure-only: rt-task writes, comm-pd reads).
//!
//! A sequence lock: the writer makes `sequence` odd, writes the fields, makes it even again; a
//! reader copies the block and retries when `sequence` was odd or changed under it.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const RT_SEQUENCE_OFFSET: usize = 0;
pub const RT_STATS_OFFSET: usize = 8;

/// `RtStats::magic`: "RTST".
pub const RT_STATS_MAGIC: u32 = 0x5254_5354;

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
}
