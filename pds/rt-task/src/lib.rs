//! rt-task: a periodic real-time task released by the secure physical timer.
//!
//! Every period it takes the timer interrupt, measures how late the release was, re-arms the
//! timer for the next period and publishes its statistics in `rt_shared` (read by comm-pd, which
//! it notifies once per [`REPORT_EVERY`] periods). It is the highest-priority PD in system.xml;
//! `tzmk audit` checks nothing the normal world can drive outranks it.
#![cfg_attr(not(test), no_std)]

use core::fmt;

use microkit::{channel, memory_region, timer, Channel, ChannelSet, Handler, MemoryRegion, OutOfBounds};
use tzmk_interface::rt::{RtStats, RT_SEQUENCE_OFFSET, RT_STATS_MAGIC, RT_STATS_OFFSET};
use zerocopy::IntoBytes;

/// The task's period. system.xml gives the PD a budget of 200 us every 1000 us to match.
pub const PERIOD_US: u32 = 1000;
/// comm-pd hears about new statistics once a second, not once a period.
pub const REPORT_EVERY: u64 = 1000;

/// When the next release is due, and how late the current one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    period: u64,
    next_deadline: u64,
}

/// One release of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// Ticks between the deadline and now.
    pub lateness: u64,
    /// Whole periods that passed without a release (the task overran).
    pub skipped: u64,
}

impl Schedule {
    /// A schedule of `period` ticks whose first release is at `now + period`.
    pub fn new(now: u64, period: u64) -> Self {
        assert!(period > 0, "a period of zero ticks never advances");
        Self { period, next_deadline: now + period }
    }

    pub fn next_deadline(&self) -> u64 {
        self.next_deadline
    }

    /// Accounts a timer interrupt taken at `now` and moves the deadline to the next period in the
    /// future, skipping periods that already passed (strictly periodic: no catch-up bursts).
    pub fn release(&mut self, now: u64) -> Release {
        let deadline = self.next_deadline;
        let lateness = now.saturating_sub(deadline);
        let skipped = lateness / self.period;
        self.next_deadline = deadline + (skipped + 1) * self.period;
        Release { lateness, skipped }
    }
}

/// Folds a release into the published statistics.
pub fn account(stats: &mut RtStats, release: Release, lateness_ns: u64) {
    stats.periods += 1;
    stats.overruns += release.skipped;
    stats.max_lateness_ns = stats.max_lateness_ns.max(lateness_ns);
    stats.total_lateness_ns = stats.total_lateness_ns.saturating_add(lateness_ns);
}

/// Why rt-task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `rt_shared` is smaller than the statistics block (system.xml maps too little).
    Shared(OutOfBounds),
    /// The kernel refused to acknowledge the timer interrupt.
    IrqAck(microkit::IrqAckError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shared(e) => write!(f, "rt_shared: {e}"),
            Error::IrqAck(e) => e.fmt(f),
        }
    }
}

#[derive(Debug)]
pub struct RtTask {
    shared: MemoryRegion,
    comm: Channel,
    timer: Channel,
    schedule: Schedule,
    stats: RtStats,
}

pub fn init() -> RtTask {
    microkit::logger::init(log::LevelFilter::Info);
    let shared = memory_region!(shared_vaddr, shared_size);
    let comm = channel!(comm_channel);
    let timer_irq = channel!(timer_irq);
    let schedule = Schedule::new(timer::now(), timer::ticks_from_micros(u64::from(PERIOD_US)));
    let stats = RtStats { magic: RT_STATS_MAGIC, period_us: PERIOD_US, ..RtStats::default() };
    let task = RtTask { shared, comm, timer: timer_irq, schedule, stats };
    if let Err(e) = task.publish() {
        panic!("{e}");
    }
    timer::set_deadline(task.schedule.next_deadline());
    log::info!("ready: period {PERIOD_US} us on the physical timer (channel {})", timer_irq.index());
    task
}

impl RtTask {
    fn publish(&self) -> Result<(), Error> {
        self.shared.publish(RT_SEQUENCE_OFFSET, RT_STATS_OFFSET, self.stats.as_bytes()).map_err(Error::Shared)
    }
}

impl Handler for RtTask {
    type Error = Error;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Error> {
        if channels.contains(self.timer) {
            let now = timer::now();
            let release = self.schedule.release(now);
            timer::set_deadline(self.schedule.next_deadline());
            self.timer.irq_ack().map_err(Error::IrqAck)?;
            account(&mut self.stats, release, timer::nanos_from_ticks(release.lateness));
            self.publish()?;
            if self.stats.periods.is_multiple_of(REPORT_EVERY) {
                self.comm.notify();
            }
        }
        // A notification from comm-pd asks for fresh statistics now.
        if channels.contains(self.comm) {
            self.comm.notify();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_release_keeps_the_period() {
        let mut s = Schedule::new(1000, 100);
        assert_eq!(s.next_deadline(), 1100);
        assert_eq!(s.release(1103), Release { lateness: 3, skipped: 0 });
        assert_eq!(s.next_deadline(), 1200);
    }

    #[test]
    fn overrun_skips_whole_periods_without_bursts() {
        let mut s = Schedule::new(0, 100);
        assert_eq!(s.release(350), Release { lateness: 250, skipped: 2 });
        assert_eq!(s.next_deadline(), 400);
        assert_eq!(s.release(400), Release { lateness: 0, skipped: 0 });
        assert_eq!(s.next_deadline(), 500);
    }

    #[test]
    fn early_interrupt_counts_no_lateness() {
        let mut s = Schedule::new(0, 100);
        assert_eq!(s.release(90), Release { lateness: 0, skipped: 0 });
        assert_eq!(s.next_deadline(), 200);
    }

    #[test]
    fn statistics_accumulate() {
        let mut stats = RtStats::default();
        account(&mut stats, Release { lateness: 0, skipped: 0 }, 500);
        account(&mut stats, Release { lateness: 0, skipped: 2 }, 200);
        assert_eq!((stats.periods, stats.overruns, stats.max_lateness_ns, stats.total_lateness_ns), (2, 2, 500, 700));
    }
}
