//! The periodic-task framework: releases on an absolute grid, each one measured.
//!
//! A real-time PD owns a [`Framework`] and a task implementing [`Periodic`]. The framework
//! computes the grid of programmed expiries (`expiry_k = expiry_0 + k * period`: the next expiry
//! is always the previous *programmed* one plus the period, never "now plus the period", so a late
//! release never shifts the grid and the schedule cannot drift), runs the task once per release
//! and records, for each:
//!
//! - its lateness: start minus programmed expiry;
//! - its completion against its deadline (`expiry + deadline`): after it, a **miss**;
//! - its execution (completion minus start) against its budget: above it, an **overrun** (seL4
//!   throttles a PD that exhausts its budget silently; the stall shows up here as a long run);
//! - the releases that never ran: when a release starts so late that later expiries of the grid
//!   have already passed, those releases are **skipped** and each counts as a miss. Nothing is
//!   absorbed: no catch-up burst, no renumbering of the grid.
//!
//! Parameters change only between releases ([`Framework::change`]): the change takes effect at
//! the next release, whose expiry is the last programmed expiry plus the *new* period. The
//! statistics restart there: they always describe one parameter set (so `tzctl rt set` with the
//! current parameters starts a fresh measurement, which the cyclictest bench relies on).
//!
//! Time is the timer's counter in ticks (`frequency` ticks per second); parameters are
//! microseconds, as in system.xml. The framework never reads a clock itself: the PD passes the
//! counter through a [`Clock`], and host tests pass a fake one.

use crate::stats::Releases;

/// The smallest budget seL4 accepts on qemu-arm-virt: twice the kernel's WCET constant.
pub const MIN_BUDGET_US: u64 = 20;
/// The longest period the framework takes: a second.
pub const MAX_PERIOD_US: u64 = 1_000_000;

/// A task's timing, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub period_us: u64,
    /// The relative deadline, `budget <= deadline <= period`.
    pub deadline_us: u64,
    pub budget_us: u64,
}

/// What is wrong with a [`Params`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ParamsError {
    ZeroPeriod = 1,
    ZeroBudget = 2,
    /// `budget >= period`: seL4 would not enforce the budget (round-robin, not a sporadic server).
    BudgetNotBelowPeriod = 3,
    /// Below [`MIN_BUDGET_US`].
    BudgetBelowMinimum = 4,
    /// The deadline is below the budget or after the period.
    DeadlineOutOfRange = 5,
    /// Above [`MAX_PERIOD_US`].
    PeriodAboveMaximum = 6,
}

impl ParamsError {
    pub fn from_u32(code: u32) -> Option<Self> {
        [
            Self::ZeroPeriod,
            Self::ZeroBudget,
            Self::BudgetNotBelowPeriod,
            Self::BudgetBelowMinimum,
            Self::DeadlineOutOfRange,
            Self::PeriodAboveMaximum,
        ]
        .into_iter()
        .find(|e| *e as u32 == code)
    }
}

impl core::fmt::Display for ParamsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ParamsError::ZeroPeriod => "the period is 0",
            ParamsError::ZeroBudget => "the budget is 0",
            ParamsError::BudgetNotBelowPeriod => {
                "the budget is not below the period (seL4 enforces a budget only when budget < period)"
            }
            ParamsError::BudgetBelowMinimum => "the budget is below the 20 us minimum (2 x the kernel WCET)",
            ParamsError::DeadlineOutOfRange => "the deadline is below the budget or after the period",
            ParamsError::PeriodAboveMaximum => "the period is above 1 s",
        })
    }
}

impl Params {
    /// An implicit-deadline task (deadline = period).
    pub const fn implicit(period_us: u64, budget_us: u64) -> Params {
        Params { period_us, deadline_us: period_us, budget_us }
    }

    pub fn check(&self) -> Result<(), ParamsError> {
        if self.period_us == 0 {
            Err(ParamsError::ZeroPeriod)
        } else if self.period_us > MAX_PERIOD_US {
            Err(ParamsError::PeriodAboveMaximum)
        } else if self.budget_us == 0 {
            Err(ParamsError::ZeroBudget)
        } else if self.budget_us >= self.period_us {
            Err(ParamsError::BudgetNotBelowPeriod)
        } else if self.budget_us < MIN_BUDGET_US {
            Err(ParamsError::BudgetBelowMinimum)
        } else if self.deadline_us < self.budget_us || self.deadline_us > self.period_us {
            Err(ParamsError::DeadlineOutOfRange)
        } else {
            Ok(())
        }
    }
}

/// The timer's counter.
pub trait Clock {
    /// The counter now, in ticks.
    fn now(&mut self) -> u64;
}

/// One release as the task sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The release's number on the grid (0 for the first expiry).
    pub index: u64,
    /// The programmed expiry it answers, in ticks.
    pub expiry: u64,
    /// When it started, in ticks.
    pub start: u64,
    /// Start minus expiry, in nanoseconds.
    pub lateness_ns: u64,
    /// The period it runs in, microseconds (so a task can scale time-dependent gains).
    pub period_us: u64,
}

/// What became of a timer interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<O> {
    /// The counter had not reached the programmed expiry: no release (re-arm the same expiry).
    Early,
    Ran(Completion<O>),
}

/// One release that ran, measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion<O> {
    pub release: Release,
    /// What the task returned.
    pub output: O,
    /// Completion minus start, nanoseconds.
    pub execution_ns: u64,
    /// Completion minus expiry, nanoseconds (the release's response time).
    pub response_ns: u64,
    /// Completed after its deadline.
    pub missed: bool,
    /// Ran longer than its budget.
    pub overran: bool,
    /// Later releases of the grid whose expiry had passed when this one completed: they never
    /// run, each counted as a miss.
    pub skipped: u64,
    /// Whether parameters given to [`Framework::change`] took effect after this release.
    pub changed: bool,
}

/// A periodic task's work.
pub trait Periodic {
    type Output;
    /// The work of one release.
    fn release(&mut self, release: &Release) -> Self::Output;
}

/// Parameters in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticks {
    period: u64,
    deadline: u64,
    budget: u64,
}

/// The release grid of one task and its statistics.
#[derive(Debug, Clone)]
pub struct Framework {
    frequency: u64,
    params: Params,
    ticks: Ticks,
    pending: Option<Params>,
    next_expiry: u64,
    next_index: u64,
    releases: Releases,
    skipped: u64,
}

impl Framework {
    /// A grid whose first expiry is `start + period`, on a counter of `frequency` ticks per second.
    pub fn new(params: Params, frequency: u64, start: u64) -> Result<Framework, ParamsError> {
        params.check()?;
        assert!(frequency > 0, "a counter of 0 Hz never advances");
        let ticks = Self::to_ticks(params, frequency);
        Ok(Framework {
            frequency,
            params,
            ticks,
            pending: None,
            next_expiry: start.saturating_add(ticks.period),
            next_index: 0,
            releases: Releases::default(),
            skipped: 0,
        })
    }

    fn to_ticks(params: Params, frequency: u64) -> Ticks {
        let t = |us: u64| ((u128::from(us) * u128::from(frequency)) / 1_000_000).max(1) as u64;
        Ticks { period: t(params.period_us), deadline: t(params.deadline_us), budget: t(params.budget_us) }
    }

    fn nanos(&self, ticks: u64) -> u64 {
        ((u128::from(ticks) * 1_000_000_000) / u128::from(self.frequency)) as u64
    }

    /// The expiry to program the timer with.
    pub fn next_expiry(&self) -> u64 {
        self.next_expiry
    }

    pub fn params(&self) -> Params {
        self.params
    }

    /// Parameters waiting for the next release.
    pub fn pending(&self) -> Option<Params> {
        self.pending
    }

    /// Every release's lateness, misses (skipped releases included) and overruns.
    pub fn releases(&self) -> &Releases {
        &self.releases
    }

    /// Releases that never ran (counted in `releases().misses` too).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// New parameters from the next release on (the caller ran the admission test first). The
    /// release statistics restart with them: the release running is the last one they count.
    pub fn change(&mut self, params: Params) -> Result<(), ParamsError> {
        params.check()?;
        self.pending = Some(params);
        Ok(())
    }

    /// A timer interrupt: runs the due release of `task` and measures it.
    pub fn on_timer<C: Clock, T: Periodic>(&mut self, clock: &mut C, task: &mut T) -> Outcome<T::Output> {
        let start = clock.now();
        let expiry = self.next_expiry;
        if start < expiry {
            return Outcome::Early;
        }
        let release = Release {
            index: self.next_index,
            expiry,
            start,
            lateness_ns: self.nanos(start - expiry),
            period_us: self.params.period_us,
        };
        let output = task.release(&release);
        let end = clock.now().max(start);
        let execution = end - start;
        let missed = end > expiry.saturating_add(self.ticks.deadline);
        let overran = execution > self.ticks.budget;
        // The grid goes on from the programmed expiry, with the new period if one is pending.
        let changed = if let Some(params) = self.pending.take() {
            self.params = params;
            self.ticks = Self::to_ticks(params, self.frequency);
            true
        } else {
            false
        };
        let mut next = expiry.saturating_add(self.ticks.period);
        let mut index = self.next_index + 1;
        // Releases whose expiry passed while this one was late or running: they will never run
        // on time, and running them now would be a burst. Each is a miss; the grid stays.
        let mut skipped = 0;
        if end >= next {
            skipped = (end - next) / self.ticks.period + 1;
            next = next.saturating_add(skipped.saturating_mul(self.ticks.period));
            index += skipped;
        }
        self.next_expiry = next;
        self.next_index = index;
        self.releases.record(release.lateness_ns, missed, overran);
        if changed {
            // New parameters start a new measurement: the statistics cover the releases of one
            // parameter set (this release ran under the old ones). The skipped releases below
            // are of the new grid.
            self.releases.reset();
            self.skipped = 0;
        }
        self.skipped += skipped;
        self.releases.misses += skipped;
        Outcome::Ran(Completion {
            release,
            output,
            execution_ns: self.nanos(execution),
            response_ns: self.nanos(end - expiry),
            missed,
            overran,
            skipped,
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake counter at 1 MHz (a tick is a microsecond): `now` returns the script's values in turn.
    struct Script(std::vec::Vec<u64>);

    impl Clock for Script {
        fn now(&mut self) -> u64 {
            self.0.remove(0)
        }
    }

    /// Records the releases it saw.
    #[derive(Default)]
    struct Recorder(std::vec::Vec<Release>);

    impl Periodic for Recorder {
        type Output = u64;
        fn release(&mut self, release: &Release) -> u64 {
            self.0.push(*release);
            release.index
        }
    }

    const MHZ: u64 = 1_000_000;

    fn ran<O: Copy>(outcome: Outcome<O>) -> Completion<O> {
        match outcome {
            Outcome::Ran(c) => c,
            Outcome::Early => panic!("early"),
        }
    }

    #[test]
    fn the_grid_does_not_drift_with_lateness() {
        let mut f = Framework::new(Params::implicit(1000, 200), MHZ, 0).unwrap();
        let mut task = Recorder::default();
        // Each release starts 30 us late and runs 50 us: the next expiry is still k * 1000.
        for k in 1..=5u64 {
            assert_eq!(f.next_expiry(), k * 1000);
            let c = ran(f.on_timer(&mut Script(vec![k * 1000 + 30, k * 1000 + 80]), &mut task));
            assert_eq!((c.release.lateness_ns, c.execution_ns, c.response_ns), (30_000, 50_000, 80_000));
            assert!(!c.missed && !c.overran && c.skipped == 0);
        }
        assert_eq!(f.next_expiry(), 6000);
        assert_eq!(task.0.iter().map(|r| r.index).collect::<std::vec::Vec<_>>(), [0, 1, 2, 3, 4]);
        let s = f.releases().summary();
        assert_eq!((s.releases, s.misses, s.overruns, s.min_ns, s.max_ns), (5, 0, 0, 30_000, 30_000));
    }

    #[test]
    fn an_early_interrupt_is_no_release() {
        let mut f = Framework::new(Params::implicit(1000, 200), MHZ, 0).unwrap();
        assert_eq!(f.on_timer(&mut Script(vec![999]), &mut Recorder::default()), Outcome::Early);
        assert_eq!((f.next_expiry(), f.releases().releases), (1000, 0));
    }

    #[test]
    fn a_late_release_misses_and_skips_without_shifting_the_grid() {
        let mut f = Framework::new(Params { period_us: 1000, deadline_us: 500, budget_us: 200 }, MHZ, 0).unwrap();
        let mut task = Recorder::default();
        // Expiry 1000; starts at 3400 (the expiries 2000 and 3000 have passed), ends at 3450.
        let c = ran(f.on_timer(&mut Script(vec![3400, 3450]), &mut task));
        assert_eq!((c.release.index, c.release.lateness_ns), (0, 2_400_000));
        assert!(c.missed && !c.overran);
        assert_eq!(c.skipped, 2);
        assert_eq!(f.next_expiry(), 4000, "the grid, not 3450 + 1000");
        // The next release is number 3: 1 and 2 never ran.
        let c = ran(f.on_timer(&mut Script(vec![4000, 4010]), &mut task));
        assert_eq!((c.release.index, c.missed, c.skipped), (3, false, 0));
        let s = f.releases().summary();
        assert_eq!((s.releases, s.misses, f.skipped()), (2, 3, 2), "one late miss and two skipped");
    }

    #[test]
    fn a_long_run_is_an_overrun_and_a_miss_past_the_deadline() {
        let mut f = Framework::new(Params { period_us: 1000, deadline_us: 400, budget_us: 200 }, MHZ, 0).unwrap();
        let mut task = Recorder::default();
        let c = ran(f.on_timer(&mut Script(vec![1000, 1300]), &mut task));
        assert!(c.overran && !c.missed, "300 us of a 200 us budget, done by the 400 us deadline");
        let c = ran(f.on_timer(&mut Script(vec![2000, 2401]), &mut task));
        assert!(c.overran && c.missed);
        // Running into the next period: the next expiry has passed at completion, it is skipped.
        let c = ran(f.on_timer(&mut Script(vec![3000, 4000]), &mut task));
        assert_eq!(c.skipped, 1);
        assert_eq!(f.next_expiry(), 5000);
        let s = f.releases().summary();
        assert_eq!((s.overruns, s.misses), (3, 3));
    }

    #[test]
    fn a_change_takes_effect_at_the_next_release() {
        let mut f = Framework::new(Params::implicit(1000, 200), MHZ, 0).unwrap();
        let mut task = Recorder::default();
        f.change(Params::implicit(500, 100)).unwrap();
        assert_eq!(f.next_expiry(), 1000, "the programmed expiry stays");
        let c = ran(f.on_timer(&mut Script(vec![1000, 1150]), &mut task));
        assert!(c.changed);
        assert!(!c.overran, "the release that was running still had the old 200 us budget");
        assert_eq!(f.next_expiry(), 1500, "last programmed expiry + the new period");
        let c = ran(f.on_timer(&mut Script(vec![1500, 1650]), &mut task));
        assert!(c.overran && !c.changed, "150 us is above the new 100 us budget");
        assert_eq!(task.0[1].period_us, 500);
    }

    #[test]
    fn a_change_restarts_the_statistics() {
        let mut f = Framework::new(Params::implicit(1000, 200), MHZ, 0).unwrap();
        let mut task = Recorder::default();
        ran(f.on_timer(&mut Script(vec![1000, 1100]), &mut task));
        // 2.5 periods late: two releases skipped, counted as misses.
        ran(f.on_timer(&mut Script(vec![4500, 4600]), &mut task));
        assert_eq!((f.releases().summary().releases, f.releases().summary().misses, f.skipped()), (2, 3, 2));
        // The same parameters again: a fresh measurement from the next release on.
        f.change(Params::implicit(1000, 200)).unwrap();
        let c = ran(f.on_timer(&mut Script(vec![5010, 5020]), &mut task));
        assert!(c.changed);
        let s = f.releases().summary();
        assert_eq!((s.releases, s.misses, s.overruns, s.max_ns, f.skipped()), (0, 0, 0, 0, 0));
        ran(f.on_timer(&mut Script(vec![6003, 6010]), &mut task));
        let s = f.releases().summary();
        assert_eq!((s.releases, s.min_ns, s.max_ns), (1, 3_000, 3_000), "only the release after the change");
    }

    #[test]
    fn bad_parameters_get_their_error() {
        let cases = [
            (Params::implicit(0, 10), ParamsError::ZeroPeriod),
            (Params::implicit(MAX_PERIOD_US + 1, 100), ParamsError::PeriodAboveMaximum),
            (Params::implicit(1000, 0), ParamsError::ZeroBudget),
            (Params::implicit(1000, 1000), ParamsError::BudgetNotBelowPeriod),
            (Params::implicit(1000, 1500), ParamsError::BudgetNotBelowPeriod),
            (Params::implicit(1000, 19), ParamsError::BudgetBelowMinimum),
            (Params { period_us: 1000, deadline_us: 100, budget_us: 200 }, ParamsError::DeadlineOutOfRange),
            (Params { period_us: 1000, deadline_us: 1001, budget_us: 200 }, ParamsError::DeadlineOutOfRange),
        ];
        for (params, error) in cases {
            assert_eq!(params.check(), Err(error), "{params:?}");
            assert_eq!(Framework::new(params, MHZ, 0).unwrap_err(), error);
            assert_eq!(ParamsError::from_u32(error as u32), Some(error));
        }
        let mut f = Framework::new(Params::implicit(1000, 20), MHZ, 0).unwrap();
        assert_eq!(f.change(Params::implicit(1000, 1000)), Err(ParamsError::BudgetNotBelowPeriod));
        assert_eq!(f.pending(), None);
    }

    #[test]
    fn ticks_of_a_real_counter() {
        // QEMU virt's 62.5 MHz counter: 1000 us is 62 500 ticks, and lateness is in ns.
        let mut f = Framework::new(Params::implicit(1000, 200), 62_500_000, 100).unwrap();
        assert_eq!(f.next_expiry(), 62_600);
        let c = ran(f.on_timer(&mut Script(vec![62_600 + 125, 62_600 + 200]), &mut Recorder::default()));
        assert_eq!((c.release.lateness_ns, c.execution_ns), (2_000, 1_200));
    }
}
