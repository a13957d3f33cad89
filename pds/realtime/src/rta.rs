//! Response-time analysis of budgeted fixed-priority tasks on one core.
//!
//! The model is seL4 MCS as Microkit 2.3.0 configures it: each task is a PD with one scheduling
//! context (`budget`, `period`) and a priority; `budget < period` makes the kernel enforce the
//! budget as a sporadic server, so a higher-priority task `j` can delay a lower one by at most
//! `b_j` in every window of `T_j` (its budget is an interference cap, whatever its code does).
//! The classic recurrence (Audsley et al., with Tindell's release jitter) then bounds the response
//! time of task `i`, from its release to its completion:
//!
//! ```text
//! R_i = C_i + B_i + sum over j in hep(i), j != i, of ceil((R_i + J_j) / T_j) * b_j
//! ```
//!
//! `C_i` is the task's own worst-case execution ([`Task::wcet_ns`], at most its budget: more is
//! throttled, an overrun), `B_i` its blocking (a lower-priority section it may wait for),
//! `J_j` the release jitter of `j`, and `hep(i)` the tasks of higher **or equal** priority: seL4
//! runs equal priorities round-robin, so an equal-priority task may run first and is counted.
//! The least fixed point is found by iteration from `C_i + B_i`; the task meets its deadline when
//! `R_i <= D_i` (deadlines are constrained: `D_i <= T_i`, so the first job after a critical
//! instant is the worst).
//!
//! Why our own code and not the `response-time-analysis` crate: that crate needs `std` (boxed
//! arrival curves, vectors), and rt-task runs the analysis on seL4 without an allocator. The
//! crate is this module's oracle in the tests instead: for every task set, both must agree.

use heapless::Vec;

/// The most tasks one analysis takes (a secure core's real-time PDs).
pub const MAX_TASKS: usize = 16;

/// The iterations after which a recurrence that has not settled is reported, not continued.
pub const MAX_ITERATIONS: u32 = 100_000;

/// One periodic (or sporadic, `period` the minimum inter-arrival) task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// seL4 priority: higher runs first (0..=254).
    pub priority: u8,
    /// `T`: the period, or the minimum time between releases.
    pub period_ns: u64,
    /// `D`: the relative deadline, at most the period.
    pub deadline_ns: u64,
    /// `b`: the scheduling context's budget per period; what the task may take, and what it can
    /// cost the tasks below it.
    pub budget_ns: u64,
    /// `C`: the task's own worst case per release, at most its budget (0: take the budget).
    pub wcet_ns: u64,
    /// `J`: how late a release may come after its nominal time.
    pub jitter_ns: u64,
    /// `B`: the longest a lower-priority task can hold this one up.
    pub blocking_ns: u64,
}

impl Task {
    /// A periodic task with the deadline at the end of its period and no jitter or blocking.
    pub const fn periodic(priority: u8, period_ns: u64, budget_ns: u64) -> Task {
        Task { priority, period_ns, deadline_ns: period_ns, budget_ns, wcet_ns: 0, jitter_ns: 0, blocking_ns: 0 }
    }

    /// `C`: the WCET when given, else the budget.
    pub const fn cost_ns(&self) -> u64 {
        if self.wcet_ns == 0 {
            self.budget_ns
        } else {
            self.wcet_ns
        }
    }

    /// What is wrong with the task's own parameters, before any analysis.
    pub fn problem(&self) -> Option<ParameterProblem> {
        if self.period_ns == 0 {
            Some(ParameterProblem::ZeroPeriod)
        } else if self.budget_ns == 0 {
            Some(ParameterProblem::ZeroBudget)
        } else if self.budget_ns >= self.period_ns {
            Some(ParameterProblem::BudgetNotBelowPeriod)
        } else if self.deadline_ns == 0 || self.deadline_ns > self.period_ns {
            Some(ParameterProblem::DeadlineNotInPeriod)
        } else if self.wcet_ns > self.budget_ns {
            Some(ParameterProblem::WcetAboveBudget)
        } else {
            None
        }
    }

    /// The task's utilisation `b / T` in parts per million (its budget: what the kernel grants).
    pub fn utilisation_ppm(&self) -> u64 {
        if self.period_ns == 0 {
            return u64::MAX;
        }
        ((self.budget_ns as u128 * 1_000_000) / self.period_ns as u128) as u64
    }
}

/// A task's own parameters that no analysis can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterProblem {
    ZeroPeriod,
    ZeroBudget,
    /// `budget >= period`: seL4 then runs the task round-robin without enforcing a cap, so it
    /// can take the whole core from every lower priority.
    BudgetNotBelowPeriod,
    /// The deadline is 0 or after the period (this analysis takes constrained deadlines).
    DeadlineNotInPeriod,
    /// The task's own worst case exceeds its budget: it would be throttled every release.
    WcetAboveBudget,
}

impl core::fmt::Display for ParameterProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ParameterProblem::ZeroPeriod => "its period is 0",
            ParameterProblem::ZeroBudget => "its budget is 0",
            ParameterProblem::BudgetNotBelowPeriod => {
                "its budget is not below its period (seL4 then enforces no cap: round-robin, not a sporadic server)"
            }
            ParameterProblem::DeadlineNotInPeriod => "its deadline is 0 or after its period",
            ParameterProblem::WcetAboveBudget => "its worst-case execution exceeds its budget",
        })
    }
}

/// The analysis of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// The worst-case response time, at most the deadline.
    Meets { response_ns: u64 },
    /// The recurrence passed the deadline: the value it had reached when it did.
    Misses { beyond_ns: u64 },
    /// The task's parameters are wrong before any analysis.
    Invalid(ParameterProblem),
}

impl Response {
    pub fn meets(&self) -> bool {
        matches!(self, Response::Meets { .. })
    }
}

/// Why a task set could not be analysed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalysisError {
    /// More than [`MAX_TASKS`].
    TooManyTasks { count: usize },
    /// A recurrence did not settle within [`MAX_ITERATIONS`] (cannot happen with valid
    /// constrained-deadline tasks; reported rather than looped on).
    NoFixedPoint { task: usize },
}

impl core::fmt::Display for AnalysisError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AnalysisError::TooManyTasks { count } => {
                write!(f, "{count} tasks: the analysis takes at most {MAX_TASKS}")
            }
            AnalysisError::NoFixedPoint { task } => {
                write!(f, "task {task}'s response time did not settle in {MAX_ITERATIONS} iterations")
            }
        }
    }
}

/// The analysis of a task set: one [`Response`] per task, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub responses: Vec<Response, MAX_TASKS>,
    /// Sum of `b / T` over the tasks, in parts per million.
    pub utilisation_ppm: u64,
}

impl Analysis {
    /// Every task meets its deadline.
    pub fn schedulable(&self) -> bool {
        self.responses.iter().all(Response::meets)
    }

    /// The first task that does not meet its deadline, with its response.
    pub fn first_failure(&self) -> Option<(usize, Response)> {
        self.responses.iter().copied().enumerate().find(|(_, r)| !r.meets())
    }
}

/// The response time of `tasks[index]` (its parameters already checked).
fn response(tasks: &[Task], index: usize) -> Result<Response, AnalysisError> {
    let task = &tasks[index];
    let own = task.cost_ns().saturating_add(task.blocking_ns);
    let interfering =
        || tasks.iter().enumerate().filter(move |&(j, other)| j != index && other.priority >= task.priority);
    let mut r = own;
    for _ in 0..MAX_ITERATIONS {
        if r > task.deadline_ns {
            return Ok(Response::Misses { beyond_ns: r });
        }
        let next = interfering().fold(own, |sum, (_, other)| {
            let releases = r.saturating_add(other.jitter_ns).div_ceil(other.period_ns);
            sum.saturating_add(releases.saturating_mul(other.budget_ns))
        });
        if next == r {
            return Ok(Response::Meets { response_ns: r });
        }
        r = next;
    }
    Err(AnalysisError::NoFixedPoint { task: index })
}

/// Analyses every task of the set. A task whose own parameters are wrong is
/// [`Response::Invalid`] and still interferes with those below it as its parameters say (a
/// zero period interferes with everything below it).
pub fn analyse(tasks: &[Task]) -> Result<Analysis, AnalysisError> {
    if tasks.len() > MAX_TASKS {
        return Err(AnalysisError::TooManyTasks { count: tasks.len() });
    }
    let mut responses = Vec::new();
    let mut utilisation_ppm = 0u64;
    let any_zero_period = tasks.iter().any(|t| t.period_ns == 0);
    for (index, task) in tasks.iter().enumerate() {
        utilisation_ppm = utilisation_ppm.saturating_add(task.utilisation_ppm());
        let answer = match task.problem() {
            Some(problem) => Response::Invalid(problem),
            None if any_zero_period
                && tasks
                    .iter()
                    .enumerate()
                    .any(|(j, t)| j != index && t.period_ns == 0 && t.priority >= task.priority) =>
            {
                Response::Misses { beyond_ns: u64::MAX }
            }
            None => response(tasks, index)?,
        };
        // MAX_TASKS responses fit: the length was checked above.
        let _ = responses.push(answer);
    }
    Ok(Analysis { responses, utilisation_ppm })
}

/// Whether the set stays schedulable with `tasks[index]` replaced by `candidate`: what a
/// real-time PD runs before it takes a new period or budget. `Ok` with the analysis when every
/// task meets its deadline; `Err` naming the first task that would not.
pub fn admit(tasks: &[Task], index: usize, candidate: Task) -> Result<Analysis, Refusal> {
    let mut changed: Vec<Task, MAX_TASKS> = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        if changed.push(if i == index { candidate } else { *task }).is_err() {
            return Err(Refusal::Analysis(AnalysisError::TooManyTasks { count: tasks.len() }));
        }
    }
    if index >= tasks.len() {
        return Err(Refusal::NoSuchTask { index });
    }
    let analysis = analyse(&changed).map_err(Refusal::Analysis)?;
    match analysis.first_failure() {
        None => Ok(analysis),
        Some((task, response)) => Err(Refusal::Unschedulable { task, response }),
    }
}

/// Why [`admit`] refused a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuchTask {
        index: usize,
    },
    Analysis(AnalysisError),
    /// With the change, task `task` would not meet its deadline (or its parameters are wrong).
    Unschedulable {
        task: usize,
        response: Response,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;

    fn response_of(tasks: &[Task], index: usize) -> Response {
        analyse(tasks).unwrap().responses[index]
    }

    /// Burns and Wellings' textbook set (Real-Time Systems and Programming Languages, the
    /// response-time analysis example): T = 7, 12, 20; C = 3, 3, 5; R = 3, 6, 20.
    #[test]
    fn the_textbook_example() {
        let tasks =
            [Task::periodic(3, 7 * MS, 3 * MS), Task::periodic(2, 12 * MS, 3 * MS), Task::periodic(1, 20 * MS, 5 * MS)];
        let analysis = analyse(&tasks).unwrap();
        let responses: [Response; 3] = [analysis.responses[0], analysis.responses[1], analysis.responses[2]];
        assert_eq!(
            responses,
            [
                Response::Meets { response_ns: 3 * MS },
                Response::Meets { response_ns: 6 * MS },
                Response::Meets { response_ns: 20 * MS },
            ]
        );
        assert!(analysis.schedulable());
        assert_eq!(analysis.utilisation_ppm, 428_571 + 250_000 + 250_000);
        // One more millisecond for the lowest task and it misses.
        let mut heavier = tasks;
        heavier[2].budget_ns = 6 * MS;
        assert!(matches!(response_of(&heavier, 2), Response::Misses { .. }));
    }

    #[test]
    fn jitter_and_blocking_count() {
        let high = Task { jitter_ns: 2 * MS, ..Task::periodic(2, 10 * MS, 2 * MS) };
        let low = Task { blocking_ns: MS, ..Task::periodic(1, 20 * MS, 7 * MS) };
        // R = 7 + 1 + ceil((R + 2) / 10) * 2: from 8 -> 10 -> 10 (ceil(12/10) = 2 releases).
        assert_eq!(response_of(&[high, low], 1), Response::Meets { response_ns: 12 * MS });
        // The blocking delays the high task too.
        let high_blocked = Task { blocking_ns: 500 * US, ..high };
        assert_eq!(response_of(&[high_blocked, low], 0), Response::Meets { response_ns: 2 * MS + 500 * US });
    }

    #[test]
    fn equal_priorities_interfere_both_ways() {
        let a = Task::periodic(5, 10 * MS, 3 * MS);
        let b = Task::periodic(5, 10 * MS, 4 * MS);
        assert_eq!(response_of(&[a, b], 0), Response::Meets { response_ns: 7 * MS });
        assert_eq!(response_of(&[a, b], 1), Response::Meets { response_ns: 7 * MS });
        // A lower priority is not counted against a higher one.
        let c = Task::periodic(4, 10 * MS, 2 * MS);
        assert_eq!(response_of(&[a, c], 0), Response::Meets { response_ns: 3 * MS });
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases = [
            (Task::periodic(1, 0, 1), ParameterProblem::ZeroPeriod),
            (Task::periodic(1, 10, 0), ParameterProblem::ZeroBudget),
            (Task::periodic(1, 10, 10), ParameterProblem::BudgetNotBelowPeriod),
            (Task { deadline_ns: 11, ..Task::periodic(1, 10, 5) }, ParameterProblem::DeadlineNotInPeriod),
            (Task { wcet_ns: 6, ..Task::periodic(1, 10, 5) }, ParameterProblem::WcetAboveBudget),
        ];
        for (task, problem) in cases {
            assert_eq!(response_of(&[task], 0), Response::Invalid(problem), "{task:?}");
        }
        // A zero period above a valid task: that task cannot be shown to meet anything.
        let tasks = [Task::periodic(9, 0, 1), Task::periodic(1, 10 * MS, MS)];
        assert_eq!(response_of(&tasks, 1), Response::Misses { beyond_ns: u64::MAX });
        assert!(analyse(&[Task::periodic(1, 10, 1); MAX_TASKS + 1]).is_err());
    }

    #[test]
    fn admit_refuses_what_breaks_a_lower_task() {
        let tasks = [Task::periodic(3, MS, 200 * US), Task::periodic(1, 10 * MS, 5 * MS)];
        assert!(admit(&tasks, 0, Task::periodic(3, MS, 400 * US)).is_ok());
        match admit(&tasks, 0, Task::periodic(3, MS, 600 * US)) {
            Err(Refusal::Unschedulable { task: 1, response: Response::Misses { .. } }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            admit(&tasks, 0, Task::periodic(3, MS, MS)),
            Err(Refusal::Unschedulable {
                task: 0,
                response: Response::Invalid(ParameterProblem::BudgetNotBelowPeriod)
            })
        ));
        assert_eq!(admit(&tasks, 2, tasks[0]).unwrap_err(), Refusal::NoSuchTask { index: 2 });
    }

    mod oracle {
        use super::*;
        use proptest::prelude::*;
        use response_time_analysis::arrival::Sporadic;
        use response_time_analysis::demand::RBF;
        use response_time_analysis::fixed_priority::fully_preemptive::dedicated_uniproc_rta;
        use response_time_analysis::time::{Duration, Service};
        use response_time_analysis::wcet::Scalar;

        /// The crate's bound for `tasks[index]`: interfering tasks as sporadic arrivals with
        /// jitter and their budgets as costs, the task itself with its own cost, no jitter.
        fn crate_bound(tasks: &[Task], index: usize) -> Option<u64> {
            let task = &tasks[index];
            let interfering: std::vec::Vec<_> = tasks
                .iter()
                .enumerate()
                .filter(|&(j, other)| j != index && other.priority >= task.priority)
                .map(|(_, other)| {
                    RBF::new(
                        Sporadic::new(Duration::from(other.period_ns), Duration::from(other.jitter_ns)),
                        Scalar::new(Service::from(other.budget_ns)),
                    )
                })
                .collect();
            let own = RBF::new(
                Sporadic::new_zero_jitter(Duration::from(task.period_ns)),
                Scalar::new(Service::from(task.cost_ns())),
            );
            dedicated_uniproc_rta(&own, &interfering, Duration::from(10 * task.period_ns)).ok().map(u64::from)
        }

        fn task() -> impl Strategy<Value = Task> {
            (0u8..4, 10u64..200, 1u64..40, 0u64..20).prop_map(|(priority, period, budget, jitter)| {
                let period = period * 10;
                Task { jitter_ns: jitter, ..Task::periodic(priority, period, budget.min(period - 1)) }
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            /// Where the task meets its deadline, our response time is the crate's bound; where
            /// it misses, the crate's bound (if any) is beyond the deadline too.
            #[test]
            fn agrees_with_the_verified_analysis(tasks in proptest::collection::vec(task(), 1..6)) {
                let analysis = analyse(&tasks).unwrap();
                for (index, response) in analysis.responses.iter().enumerate() {
                    let theirs = crate_bound(&tasks, index);
                    match *response {
                        Response::Meets { response_ns } => prop_assert_eq!(Some(response_ns), theirs, "task {}", index),
                        Response::Misses { .. } => prop_assert!(theirs.is_none_or(|b| b > tasks[index].deadline_ns), "task {}: theirs {:?}", index, theirs),
                        Response::Invalid(p) => prop_assert!(false, "generated an invalid task: {}", p),
                    }
                }
            }
        }
    }
}
