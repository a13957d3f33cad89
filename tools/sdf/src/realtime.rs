//! The real-time task sets of a system: system.xml's scheduling contexts, the platform's list of
//! real-time PDs and the deadlines of pds/realtime.toml, analysed with tzmk-realtime's
//! response-time analysis (the same code a real-time PD runs before it accepts `tzctl rt set`).
//!
//! Where the parameters live (docs/realtime.md):
//! - period and budget: system.xml's `period` and `budget` attributes (microseconds), which the
//!   microkit tool turns into the PD's seL4 scheduling context;
//! - which PDs are real-time: the platform description's `[policy] realtime`;
//! - relative deadlines: pds/realtime.toml (`[task.<pd>] deadline = <us>`), because Microkit 2.3.0
//!   rejects attributes it does not know; a real-time PD it does not list has the implicit
//!   deadline, its period.
//!
//! A task set is every PD with a scheduling context of its own (not passive: a passive PD runs on
//! its caller's) on the core of a real-time PD: all of them share that core's time, so all are
//! analysed, each non-real-time one with its period as its deadline.

use crate::model::{Pos, System};
use crate::platform::Platform;
use crate::Diagnostic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tzmk_realtime::rta::{self, Response, Task};

/// Where the sidecar lives, relative to the directory of system.xml.
pub const SIDECAR_PATH: &str = "pds/realtime.toml";

/// pds/realtime.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    #[serde(default)]
    pub task: BTreeMap<String, SidecarTask>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarTask {
    /// The relative deadline, microseconds (at most the period).
    pub deadline: u64,
}

impl Sidecar {
    pub fn parse(name: &str, text: &str) -> Result<Sidecar, Diagnostic> {
        toml::from_str(text).map_err(|e| Diagnostic::file(name, e.message().to_owned()))
    }

    pub fn load(path: &std::path::Path) -> Result<Sidecar, Diagnostic> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Diagnostic::file(&name, format!("cannot read: {e}")))?;
        Sidecar::parse(&name, &text)
    }
}

/// One PD of a task set.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// Index in `System::protection_domains`.
    pub pd: usize,
    pub name: String,
    /// Listed in the platform's `[policy] realtime`.
    pub realtime: bool,
    pub priority: u8,
    pub period_us: u64,
    pub budget_us: u64,
    pub deadline_us: u64,
    pub pos: Pos,
}

impl Member {
    /// The analysis's view of the PD (nanoseconds).
    pub fn task(&self) -> Task {
        Task {
            deadline_ns: self.deadline_us * 1_000,
            ..Task::periodic(self.priority, self.period_us * 1_000, self.budget_us * 1_000)
        }
    }
}

/// The PDs sharing one core with at least one real-time PD, in system.xml's order.
#[derive(Debug, Clone, Serialize)]
pub struct TaskSet {
    pub cpu: u8,
    pub members: Vec<Member>,
}

/// A task set and what the analysis says of it.
#[derive(Debug, Clone)]
pub struct Analysed {
    pub set: TaskSet,
    pub analysis: Result<rta::Analysis, rta::AnalysisError>,
}

/// The task sets of `system`: one per core that hosts a real-time PD. `sidecar_name` names the
/// sidecar in errors (a deadline for a PD that is not real-time, or outside its period).
pub fn task_sets(
    system: &System,
    platform: &Platform,
    sidecar: &Sidecar,
    sidecar_name: &str,
) -> Result<Vec<TaskSet>, Diagnostic> {
    let realtime = |name: &str| platform.policy.realtime.iter().any(|n| n == name);
    for (name, entry) in &sidecar.task {
        let Some(index) = system.pd_index(name) else {
            return Err(Diagnostic::file(sidecar_name, format!("task '{name}': no such PD in the system description")));
        };
        let pd = &system.protection_domains[index];
        if !realtime(name) {
            return Err(Diagnostic::file(
                sidecar_name,
                format!("task '{name}': not a real-time PD (the platform's [policy] realtime does not list it)"),
            ));
        }
        if entry.deadline == 0 || entry.deadline > pd.period {
            return Err(Diagnostic::file(
                sidecar_name,
                format!("task '{name}': deadline {} us is not in 1..={} us (its period)", entry.deadline, pd.period),
            ));
        }
    }
    let mut cpus: Vec<u8> = system.protection_domains.iter().filter(|pd| realtime(&pd.name)).map(|pd| pd.cpu).collect();
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus
        .into_iter()
        .map(|cpu| TaskSet {
            cpu,
            members: system
                .protection_domains
                .iter()
                .enumerate()
                .filter(|(_, pd)| pd.cpu == cpu && !pd.passive)
                .map(|(index, pd)| Member {
                    pd: index,
                    name: pd.name.clone(),
                    realtime: realtime(&pd.name),
                    priority: pd.priority,
                    period_us: pd.period,
                    budget_us: pd.budget,
                    deadline_us: sidecar.task.get(&pd.name).map_or(pd.period, |t| t.deadline),
                    pos: pd.pos,
                })
                .collect(),
        })
        .collect())
}

/// Runs the response-time analysis over each set.
pub fn analyse(sets: Vec<TaskSet>) -> Vec<Analysed> {
    sets.into_iter()
        .map(|set| {
            let tasks: Vec<Task> = set.members.iter().map(Member::task).collect();
            Analysed { analysis: rta::analyse(&tasks), set }
        })
        .collect()
}

/// One line per response, as `tzmk audit` prints it and `tzctl rt set` refuses with.
pub fn describe(response: &Response, deadline_us: u64) -> String {
    match response {
        Response::Meets { response_ns } => {
            format!("worst-case response {} us <= deadline {deadline_us} us", micros(*response_ns))
        }
        Response::Misses { beyond_ns: u64::MAX } => "misses its deadline: unbounded interference".to_owned(),
        Response::Misses { beyond_ns } => {
            format!("worst-case response > {} us, after its deadline {deadline_us} us", micros(*beyond_ns))
        }
        Response::Invalid(problem) => format!("not analysable: {problem}"),
    }
}

/// Nanoseconds as microseconds, with up to three decimals.
fn micros(ns: u64) -> String {
    if ns.is_multiple_of(1_000) {
        format!("{}", ns / 1_000)
    } else {
        format!("{}.{:03}", ns / 1_000, ns % 1_000).trim_end_matches('0').to_owned()
    }
}

/// The report `tzmk audit` prints: per core, utilisation and every member's response time.
pub fn report_text(analysed: &[Analysed]) -> String {
    let mut out = String::new();
    for a in analysed {
        let _ = writeln!(out, "real-time task set of core {} (seL4 MCS budgets as interference caps):", a.set.cpu);
        match &a.analysis {
            Err(e) => {
                let _ = writeln!(out, "  not analysable: {e}");
            }
            Ok(analysis) => {
                let _ = writeln!(
                    out,
                    "  utilisation {}.{:02}% (sum of budget / period)",
                    analysis.utilisation_ppm / 10_000,
                    analysis.utilisation_ppm % 10_000 / 100
                );
                for (member, response) in a.set.members.iter().zip(&analysis.responses) {
                    let _ = writeln!(
                        out,
                        "  {:<16} {:<9} priority {:>3}  budget {:>6} us / period {:>6} us, deadline {:>6} us: {}",
                        member.name,
                        if member.realtime { "real-time" } else { "" },
                        member.priority,
                        member.budget_us,
                        member.period_us,
                        member.deadline_us,
                        describe(response, member.deadline_us)
                    );
                }
            }
        }
    }
    out
}

/// The Rust constants a real-time PD's build script writes for `pd`: its own parameters and the
/// task set its admission test runs over (`include!`d by the PD).
pub fn generate_constants(
    system: &System,
    platform: &Platform,
    sidecar: &Sidecar,
    sidecar_name: &str,
    pd: &str,
) -> Result<String, String> {
    let sets = task_sets(system, platform, sidecar, sidecar_name).map_err(|d| d.to_string())?;
    let (set, own) = sets
        .iter()
        .find_map(|s| s.members.iter().position(|m| m.name == pd && m.realtime).map(|i| (s, i)))
        .ok_or_else(|| format!("'{pd}' is not a real-time PD of the system description"))?;
    let me = &set.members[own];
    let params = tzmk_realtime::periodic::Params {
        period_us: me.period_us,
        deadline_us: me.deadline_us,
        budget_us: me.budget_us,
    };
    params.check().map_err(|e| format!("'{pd}' cannot run as a periodic task: {e}"))?;
    let mut out = String::new();
    let _ = writeln!(out, "// Generated from system.xml, the platform description and {SIDECAR_PATH}: do not edit.");
    let _ = writeln!(out, "/// This PD's period, budget (system.xml) and relative deadline ({SIDECAR_PATH}).");
    let _ = writeln!(
        out,
        "pub const PARAMS: tzmk_realtime::periodic::Params = tzmk_realtime::periodic::Params {{ period_us: {}, \
         deadline_us: {}, budget_us: {} }};",
        me.period_us, me.deadline_us, me.budget_us
    );
    let _ = writeln!(out, "/// This PD's index in [`TASK_SET`].");
    let _ = writeln!(out, "pub const SELF: usize = {own};");
    let _ = writeln!(out, "/// The PDs of the task set (every scheduled PD of core {}), by name.", set.cpu);
    let names: Vec<String> = set.members.iter().map(|m| format!("{:?}", m.name)).collect();
    let _ = writeln!(out, "pub const TASK_NAMES: [&str; {}] = [{}];", names.len(), names.join(", "));
    let _ = writeln!(out, "/// The task set as the analysis takes it, nanoseconds.");
    let tasks: Vec<String> = set
        .members
        .iter()
        .map(|m| {
            let t = m.task();
            format!(
                "tzmk_realtime::rta::Task {{ priority: {}, period_ns: {}, deadline_ns: {}, budget_ns: {}, wcet_ns: 0, \
                 jitter_ns: 0, blocking_ns: 0 }}",
                t.priority, t.period_ns, t.deadline_ns, t.budget_ns
            )
        })
        .collect();
    let _ = writeln!(out, "pub const TASK_SET: [tzmk_realtime::rta::Task; {}] = [{}];", tasks.len(), tasks.join(", "));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = r#"<system>
        <protection_domain name="comm-pd" priority="100" budget="500" period="1000"><program_image path="a" /></protection_domain>
        <protection_domain name="attestation-pd" priority="150" passive="true"><program_image path="b" /></protection_domain>
        <protection_domain name="rt-task" priority="250" budget="200" period="1000"><program_image path="c" /></protection_domain>
    </system>"#;

    fn system() -> System {
        crate::parse_system("s.xml", SYSTEM).unwrap()
    }

    #[test]
    fn the_set_is_every_scheduled_pd_of_the_core() {
        let sets = task_sets(&system(), &Platform::qemu_virt(), &Sidecar::default(), "r.toml").unwrap();
        assert_eq!(sets.len(), 1);
        let names: Vec<_> = sets[0].members.iter().map(|m| (m.name.as_str(), m.realtime, m.deadline_us)).collect();
        assert_eq!(names, [("comm-pd", false, 1000), ("rt-task", true, 1000)], "the passive PD has no context");
        let analysed = analyse(sets);
        let analysis = analysed[0].analysis.as_ref().unwrap();
        assert_eq!(
            analysis.responses.as_slice(),
            [Response::Meets { response_ns: 700_000 }, Response::Meets { response_ns: 200_000 }]
        );
        let text = report_text(&analysed);
        assert!(text.contains("utilisation 70.00%"), "{text}");
        assert!(text.contains("worst-case response 700 us <= deadline 1000 us"), "{text}");
    }

    #[test]
    fn the_sidecar_sets_deadlines_and_is_checked() {
        let sidecar = Sidecar::parse("r.toml", "[task.rt-task]\ndeadline = 300\n").unwrap();
        let sets = task_sets(&system(), &Platform::qemu_virt(), &sidecar, "r.toml").unwrap();
        assert_eq!(sets[0].members[1].deadline_us, 300);
        let code = generate_constants(&system(), &Platform::qemu_virt(), &sidecar, "r.toml", "rt-task").unwrap();
        assert!(code.contains("period_us: 1000, deadline_us: 300, budget_us: 200"), "{code}");
        assert!(code.contains("pub const SELF: usize = 1;"), "{code}");
        assert!(code.contains(r#"pub const TASK_NAMES: [&str; 2] = ["comm-pd", "rt-task"];"#), "{code}");
        let bad = [
            ("[task.nobody]\ndeadline = 1\n", "r.toml: task 'nobody': no such PD in the system description"),
            (
                "[task.comm-pd]\ndeadline = 1\n",
                "r.toml: task 'comm-pd': not a real-time PD (the platform's [policy] realtime does not list it)",
            ),
            (
                "[task.rt-task]\ndeadline = 1001\n",
                "r.toml: task 'rt-task': deadline 1001 us is not in 1..=1000 us (its period)",
            ),
            (
                "[task.rt-task]\ndeadline = 0\n",
                "r.toml: task 'rt-task': deadline 0 us is not in 1..=1000 us (its period)",
            ),
        ];
        for (text, want) in bad {
            let sidecar = Sidecar::parse("r.toml", text).unwrap();
            let got = task_sets(&system(), &Platform::qemu_virt(), &sidecar, "r.toml").unwrap_err();
            assert_eq!(got.to_string(), want);
        }
        assert!(Sidecar::parse("r.toml", "[task.rt-task]\ndeadline = 1\nperiod = 2\n").is_err());
        assert!(generate_constants(&system(), &Platform::qemu_virt(), &Sidecar::default(), "r", "comm-pd").is_err());
        let tight = Sidecar::parse("r.toml", "[task.rt-task]\ndeadline = 150\n").unwrap();
        assert_eq!(
            generate_constants(&system(), &Platform::qemu_virt(), &tight, "r.toml", "rt-task").unwrap_err(),
            "'rt-task' cannot run as a periodic task: the deadline is below the budget or after the period"
        );
    }

    #[test]
    fn the_audit_takes_the_sidecar_s_deadlines() {
        let tight = Sidecar::parse("r.toml", "[task.rt-task]\ndeadline = 150\n").unwrap();
        let violations = crate::audit_with(&system(), &Platform::qemu_virt(), &tight, "r.toml").unwrap();
        let deadline: Vec<_> = violations.iter().filter(|v| v.rule == "realtime-deadline").collect();
        assert_eq!(deadline.len(), 1, "{violations:?}");
        assert!(
            deadline[0].message.contains("worst-case response > 200 us, after its deadline 150 us"),
            "{}",
            deadline[0].message
        );
        let wrong = Sidecar::parse("r.toml", "[task.nobody]\ndeadline = 1\n").unwrap();
        assert!(crate::audit_with(&system(), &Platform::qemu_virt(), &wrong, "r.toml").is_err());
    }

    #[test]
    fn micros_print_exactly() {
        assert_eq!((micros(700_000), micros(1_500), micros(1_250)), ("700".into(), "1.5".into(), "1.25".into()));
    }
}
