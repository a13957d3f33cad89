//! The in-seL4 cyclictest's lines and table (docs/realtime.md, "The cyclictest"): what
//! `tzmk-rtbench` prints inside the guest for each scenario, how the host runner reads the lines
//! back, and the table with the claim of issue 13 (the loaded tail within 10% of the idle tail,
//! no miss) evaluated per scenario. The runner reports the claim; it never asserts it.

use std::fmt::{self, Write as _};

/// The line prefix of everything `tzmk-rtbench` prints.
pub const PREFIX: &str = "tzmk-rtbench: ";
/// The last line of a run in which every scenario finished.
pub const DONE: &str = "tzmk-rtbench: done";
/// How far the loaded tail may grow over the idle tail for the claim to hold.
pub const TAIL_MARGIN: f64 = 0.10;

/// What Linux does during a scenario; the order is the order of the run.
pub const SCENARIOS: [(&str, &str); 8] = [
    ("idle", "Linux idle"),
    ("cpu", "CPU: a busy loop on every Linux core"),
    ("memory", "memory: 32 MiB copies and 64 B strides on every Linux core"),
    ("interrupts", "interrupts: 20 us timerfds and cross-core eventfd wakeups (IPIs) on every Linux core"),
    ("port-flood", "port flood: 4 KiB into sink, echo and echo-bulk round trips, one Linux core each"),
    ("hostile-gic", "hostile: GIC distributor storm on the kick's and PPI 30's registers, every Linux core"),
    ("hostile-smc", "hostile: notify_secure storm (SMC) on every Linux core"),
    ("hostile-psci", "hostile: PSCI CPU_OFF/CPU_ON storm of Linux's cpu 2, the others busy"),
];

/// One scenario's figures, as rt-task counted them since the reset that started it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scenario {
    pub name: String,
    /// Releases that ran.
    pub releases: u64,
    /// Releases of the grid that never ran (each also a miss).
    pub skipped: u64,
    /// Late completions plus skipped releases.
    pub misses: u64,
    pub overruns: u64,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: u64,
    pub period_us: u64,
    /// Linux's CLOCK_MONOTONIC seconds the measurement took.
    pub millis: u64,
    /// What the load did (operations of the load generators), free text without spaces.
    pub load: String,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}scenario={} releases={} skipped={} misses={} overruns={} min_ns={} p50_ns={} p99_ns={} \
             p999_ns={} max_ns={} mean_ns={} period_us={} millis={} load={}",
            self.name,
            self.releases,
            self.skipped,
            self.misses,
            self.overruns,
            self.min_ns,
            self.p50_ns,
            self.p99_ns,
            self.p999_ns,
            self.max_ns,
            self.mean_ns,
            self.period_us,
            self.millis,
            self.load
        )
    }
}

impl Scenario {
    /// Reads one line [`Display`](fmt::Display) wrote (the console may prefix it with kernel output).
    pub fn parse(line: &str) -> Result<Scenario, String> {
        let at = line.find(PREFIX).ok_or_else(|| format!("not a {PREFIX:?} line: {line:?}"))?;
        let mut s = Scenario::default();
        let mut seen = 0u32;
        for field in line[at + PREFIX.len()..].split_ascii_whitespace() {
            let (key, value) = field.split_once('=').ok_or_else(|| format!("field {field:?} has no '='"))?;
            let number = || value.parse::<u64>().map_err(|_| format!("{key}={value:?} is not a number"));
            let slot = match key {
                "scenario" => {
                    s.name = value.to_owned();
                    0
                }
                "load" => {
                    s.load = value.to_owned();
                    1
                }
                "releases" => set(&mut s.releases, number()?, 2),
                "skipped" => set(&mut s.skipped, number()?, 3),
                "misses" => set(&mut s.misses, number()?, 4),
                "overruns" => set(&mut s.overruns, number()?, 5),
                "min_ns" => set(&mut s.min_ns, number()?, 6),
                "p50_ns" => set(&mut s.p50_ns, number()?, 7),
                "p99_ns" => set(&mut s.p99_ns, number()?, 8),
                "p999_ns" => set(&mut s.p999_ns, number()?, 9),
                "max_ns" => set(&mut s.max_ns, number()?, 10),
                "mean_ns" => set(&mut s.mean_ns, number()?, 11),
                "period_us" => set(&mut s.period_us, number()?, 12),
                "millis" => set(&mut s.millis, number()?, 13),
                other => return Err(format!("unknown field {other:?}")),
            };
            seen |= 1 << slot;
        }
        if seen != (1 << 14) - 1 {
            return Err(format!("a scenario line without every field: {line:?}"));
        }
        if !(s.min_ns <= s.p50_ns && s.p50_ns <= s.p99_ns && s.p99_ns <= s.p999_ns && s.p999_ns <= s.max_ns)
            && s.releases > 0
        {
            return Err(format!("percentiles out of order: {line:?}"));
        }
        Ok(s)
    }
}

fn set(slot: &mut u64, value: u64, index: u32) -> u32 {
    *slot = value;
    index
}

/// Everything one run printed: its scenarios, problems it reported, whether it finished.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub scenarios: Vec<Scenario>,
    pub problems: Vec<String>,
    pub done: bool,
}

impl Report {
    pub fn parse(console: &str) -> Report {
        let mut report = Report::default();
        for line in console.lines() {
            let Some(at) = line.find(PREFIX) else { continue };
            let rest = &line[at..];
            if rest.trim_end() == DONE {
                report.done = true;
            } else if rest[PREFIX.len()..].starts_with("scenario=") {
                match Scenario::parse(rest) {
                    Ok(s) => report.scenarios.push(s),
                    Err(e) => report.problems.push(e),
                }
            } else if let Some(problem) = rest[PREFIX.len()..].strip_prefix("FAIL: ") {
                report.problems.push(problem.to_owned());
            }
        }
        report
    }

    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }
}

/// The claim for one loaded scenario against idle: p99.9 and max within [`TAIL_MARGIN`] of
/// idle's, and no miss (the idle run's misses are reported, not excused).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub p999_ratio: f64,
    pub max_ratio: f64,
    pub holds: bool,
}

pub fn verdict(idle: &Scenario, loaded: &Scenario) -> Verdict {
    let ratio = |loaded: u64, idle: u64| if idle == 0 { f64::INFINITY } else { loaded as f64 / idle as f64 };
    let p999_ratio = ratio(loaded.p999_ns, idle.p999_ns);
    let max_ratio = ratio(loaded.max_ns, idle.max_ns);
    let within = 1.0 + TAIL_MARGIN;
    let holds = p999_ratio <= within && max_ratio <= within && loaded.misses == 0 && loaded.releases > 0;
    Verdict { p999_ratio, max_ratio, holds }
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// The table of one or more runs (mode name, report): a row per scenario and mode, lateness in
/// microseconds of the guest's counter, the tail relative to the same mode's idle row and the
/// claim. A scenario missing from a run shows as not measured.
pub fn table(runs: &[(&str, &Report)]) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | QEMU | releases | skipped | misses | overruns | min | p50 | p99 | p99.9 | max (us) | p99.9 / idle | max / idle | claim |\n",
    );
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (name, _) in SCENARIOS {
        for (mode, report) in runs {
            let Some(s) = report.scenario(name) else {
                let _ = writeln!(out, "| {name} | {mode} | not measured | | | | | | | | | | | |");
                continue;
            };
            let (p999, max, claim) = match report.scenario("idle") {
                Some(idle) if name != "idle" => {
                    let v = verdict(idle, s);
                    (
                        format!("{:.2}", v.p999_ratio),
                        format!("{:.2}", v.max_ratio),
                        if v.holds { "holds" } else { "fails" },
                    )
                }
                Some(_) => {
                    ("1.00".into(), "1.00".into(), if s.misses == 0 { "(baseline)" } else { "(baseline, misses)" })
                }
                None => ("-".into(), "-".into(), "no idle run"),
            };
            let _ = writeln!(
                out,
                "| {name} | {mode} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {p999} | {max} | {claim} |",
                s.releases,
                s.skipped,
                s.misses,
                s.overruns,
                us(s.min_ns),
                us(s.p50_ns),
                us(s.p99_ns),
                us(s.p999_ns),
                us(s.max_ns)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str, p999_ns: u64, max_ns: u64, misses: u64) -> Scenario {
        Scenario {
            name: name.into(),
            releases: 1000,
            skipped: misses,
            misses,
            overruns: 0,
            min_ns: 1000,
            p50_ns: 2000,
            p99_ns: 3000,
            p999_ns,
            max_ns,
            mean_ns: 2100,
            period_us: 1000,
            millis: 1001,
            load: "spins=5".into(),
        }
    }

    #[test]
    fn a_line_reads_back() {
        let s = scenario("cpu", 4000, 9000, 2);
        let line = format!("[  12.3] {s}");
        assert_eq!(Scenario::parse(&line), Ok(s.clone()));
        assert!(Scenario::parse(&s.to_string().replace(" mean_ns=2100", "")).unwrap_err().contains("every field"));
        assert!(Scenario::parse(&s.to_string().replace("p99_ns=3000", "p99_ns=x")).unwrap_err().contains("number"));
        assert!(Scenario::parse(&s.to_string().replace("p999_ns=4000", "p999_ns=100")).unwrap_err().contains("order"));
        assert!(Scenario::parse(&s.to_string().replace("load=", "extra=1 load=")).unwrap_err().contains("unknown"));
    }

    #[test]
    fn a_report_collects_scenarios_problems_and_the_end() {
        let console = format!(
            "noise\n{}\n{}\ntzmk-rtbench: FAIL: memory: mmap refused\n{DONE}\n",
            scenario("idle", 4000, 9000, 0),
            scenario("cpu", 4400, 9900, 0)
        );
        let report = Report::parse(&console);
        assert_eq!(report.scenarios.len(), 2);
        assert_eq!(report.problems, ["memory: mmap refused"]);
        assert!(report.done);
        assert!(!Report::parse("tzmk-rtbench: scenario=idle").done);
    }

    #[test]
    fn the_claim_is_ten_percent_and_no_miss() {
        let idle = scenario("idle", 4000, 10_000, 0);
        assert!(verdict(&idle, &scenario("cpu", 4400, 11_000, 0)).holds, "exactly 10% holds");
        assert!(!verdict(&idle, &scenario("cpu", 4401, 11_000, 0)).holds);
        assert!(!verdict(&idle, &scenario("cpu", 4000, 11_001, 0)).holds);
        assert!(!verdict(&idle, &scenario("cpu", 100, 100, 1)).holds, "a miss fails it whatever the tail");
        let v = verdict(&idle, &scenario("cpu", 8000, 5000, 0));
        assert_eq!((v.p999_ratio, v.max_ratio, v.holds), (2.0, 0.5, false));
    }

    #[test]
    fn the_table_has_a_row_per_scenario_and_mode() {
        let mut report = Report::default();
        report.scenarios.push(scenario("idle", 4000, 10_000, 0));
        report.scenarios.push(scenario("cpu", 4000, 10_500, 0));
        report.scenarios.push(scenario("memory", 9000, 10_000, 0));
        let table = table(&[("MTTCG", &report), ("icount", &Report::default())]);
        assert_eq!(table.lines().count(), 2 + 2 * SCENARIOS.len());
        assert!(
            table.contains("| cpu | MTTCG | 1000 | 0 | 0 | 0 | 1.0 | 2.0 | 3.0 | 4.0 | 10.5 | 1.00 | 1.05 | holds |"),
            "{table}"
        );
        assert!(table.contains("| memory | MTTCG |") && table.contains("| 2.25 | 1.00 | fails |"), "{table}");
        assert!(table.contains("| idle | icount | not measured |"), "{table}");
    }
}
