//! tzmk's real-time library (issue 13): the analysis a real-time PD runs before it accepts a new
//! period or budget, and the statistics it keeps of its releases. Plain `no_std` code without an
//! allocator, so that the same functions run in rt-task on seL4, in `tzmk audit` and in host tests.
//!
//! - [`rta`]: response-time analysis of fixed-priority tasks whose budgets seL4 enforces (MCS
//!   scheduling contexts with `budget < period` are sporadic servers: a task can take at most its
//!   budget in any window of its period, whatever it tries), with release jitter and blocking.
//! - [`control`]: the control task's law and plant: a PID speed loop over a simulated DC motor,
//!   in fixed point.
//! - [`periodic`]: the periodic-task framework: an absolute release grid (no drift), each release's
//!   lateness, completion against its deadline and execution against its budget, misses and
//!   overruns counted, skipped releases counted as misses.
//! - [`stats`]: a release-lateness histogram (log-linear buckets, bounded relative error) with
//!   its percentiles, and the miss and overrun counters.
//!
//! Times are nanoseconds in `u64`; every sum saturates.

#![cfg_attr(not(test), no_std)]

pub mod control;
pub mod periodic;
pub mod rta;
pub mod stats;
