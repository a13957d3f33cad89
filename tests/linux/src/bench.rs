//! The system bench's lines and table (docs/system-bench.md): what `tzmk-bench` prints inside the
//! guest, how the host runner reads it back, and the statistics both use.
//!
//! Under QEMU `-icount shift=0` one nanosecond of virtual time is one executed instruction (of
//! whichever core ran it: QEMU runs the cores round-robin), so every figure here is in
//! nanoseconds of virtual time, which the table calls instructions.

use std::fmt;

/// The line prefix of everything `tzmk-bench` prints.
pub const PREFIX: &str = "tzmk-bench: ";
/// The last line of a run that measured everything.
pub const DONE: &str = "tzmk-bench: done";

/// A latency: samples in nanoseconds of virtual time.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub key: String,
    pub samples: usize,
    pub mean: f64,
    pub p50: f64,
    pub min: f64,
    pub max: f64,
}

/// A transfer: `bytes` moved in `ns` of virtual time.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub key: String,
    pub bytes: u64,
    pub ns: u64,
}

impl Transfer {
    /// MiB per second of virtual time (under `shift=0`: per 10^9 instructions).
    pub fn mib_per_s(&self) -> f64 {
        if self.ns == 0 {
            return 0.0;
        }
        self.bytes as f64 / (1 << 20) as f64 / (self.ns as f64 / 1e9)
    }
}

/// The counter's ticks as nanoseconds.
pub fn ns_from_ticks(ticks: u64, frequency_hz: u64) -> f64 {
    ticks as f64 * 1e9 / frequency_hz as f64
}

impl Latency {
    /// The statistics of `samples` (nanoseconds); `None` when there are none.
    pub fn of(key: &str, samples: &[f64]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let p50 = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Latency {
            key: key.to_owned(),
            samples: n,
            mean: sorted.iter().sum::<f64>() / n as f64,
            p50,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}latency {} samples={} mean={:.1} p50={:.1} min={:.1} max={:.1}",
            self.key, self.samples, self.mean, self.p50, self.min, self.max
        )
    }
}

impl fmt::Display for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}transfer {} bytes={} ns={}", self.key, self.bytes, self.ns)
    }
}

/// Everything one run printed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub latencies: Vec<Latency>,
    pub transfers: Vec<Transfer>,
    /// `failed: ...` lines, and lines with the prefix that do not parse.
    pub problems: Vec<String>,
    pub done: bool,
}

fn fields<'a>(words: impl Iterator<Item = &'a str>) -> Result<Vec<(&'a str, &'a str)>, String> {
    words.map(|w| w.split_once('=').ok_or_else(|| format!("{w:?} is not key=value"))).collect()
}

fn field<T: std::str::FromStr>(fields: &[(&str, &str)], name: &str) -> Result<T, String> {
    let (_, value) = fields.iter().find(|(k, _)| *k == name).ok_or_else(|| format!("no {name}="))?;
    value.parse().map_err(|_| format!("{name}={value:?} is not a number"))
}

fn parse_latency(rest: &str) -> Result<Latency, String> {
    let mut words = rest.split_whitespace();
    let key = words.next().ok_or("no key")?.to_owned();
    let f = fields(words)?;
    Ok(Latency {
        key,
        samples: field(&f, "samples")?,
        mean: field(&f, "mean")?,
        p50: field(&f, "p50")?,
        min: field(&f, "min")?,
        max: field(&f, "max")?,
    })
}

impl Report {
    /// Reads the bench's lines out of a whole console (anything else is ignored; characters of
    /// other writers may share the console, so a line is taken from the prefix on).
    pub fn parse(console: &str) -> Report {
        let mut report = Report::default();
        for line in console.lines() {
            let Some(at) = line.find(PREFIX) else { continue };
            let line = line[at..].trim_end();
            let rest = &line[PREFIX.len()..];
            if line == DONE {
                report.done = true;
            } else if let Some(rest) = rest.strip_prefix("latency ") {
                match parse_latency(rest) {
                    Ok(latency) => report.latencies.push(latency),
                    Err(e) => report.problems.push(format!("{line:?}: {e}")),
                }
            } else if let Some(rest) = rest.strip_prefix("transfer ") {
                let mut words = rest.split_whitespace();
                let parsed = words.next().ok_or_else(|| "no key".to_owned()).and_then(|key| {
                    let f = fields(words)?;
                    Ok(Transfer { key: key.to_owned(), bytes: field(&f, "bytes")?, ns: field(&f, "ns")? })
                });
                match parsed {
                    Ok(transfer) => report.transfers.push(transfer),
                    Err(e) => report.problems.push(format!("{line:?}: {e}")),
                }
            } else if rest.starts_with("failed") {
                report.problems.push(rest.to_owned());
            }
        }
        report
    }

    pub fn latency(&self, key: &str) -> Option<&Latency> {
        self.latencies.iter().find(|l| l.key == key)
    }

    pub fn transfer(&self, key: &str) -> Option<&Transfer> {
        self.transfers.iter().find(|t| t.key == key)
    }
}

/// The latencies `tzmk-bench` measures: key, what the row says.
pub const LATENCIES: [(&str, &str); 6] = [
    ("notify-ns", "normal -> secure: the driver's `smc` until comm-pd's handler runs"),
    ("notify-sn-irq", "secure -> normal: comm-pd's `notify_normal` until the driver's doorbell handler"),
    ("notify-sn", "secure -> normal: comm-pd's `notify_normal` until the waiting reader runs"),
    ("rt-rw-64", "64 B round trip, application to application, read/write on /dev/tzmk/echo"),
    ("rt-mmap-64", "64 B round trip, mmap'd rings (tzcomm) and the kick ioctl, echo"),
    ("rt-pipe-64", "64 B round trip over two pipes, two processes on two cores"),
];

/// The transfers `tzmk-bench` measures: key, what the row says.
pub const TRANSFERS: [(&str, &str); 4] = [
    ("port-4k", "4 KiB messages to the sink port (mmap'd ring, tzcomm), until the sink took them all"),
    ("pipe-4k", "4 KiB writes through a pipe to another process, until it read them all"),
    ("port-64k", "64 KiB messages to the sink port (mmap'd ring, tzcomm), until the sink took them all"),
    ("pipe-64k", "64 KiB writes through a pipe to another process, until it read them all"),
];

/// The table of a run, in markdown, with the EL3 share of `notify_secure` from the monitor
/// bench when known (`el3`, instructions).
pub fn table(report: &Report, el3: Option<f64>) -> String {
    use fmt::Write as _;
    let mut out = String::new();
    out.push_str("| latency (instructions, -icount shift=0) | samples | mean | p50 | min | max |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (key, what) in LATENCIES {
        match report.latency(key) {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "| {what} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
                    l.samples, l.mean, l.p50, l.min, l.max
                );
            }
            None => {
                let _ = writeln!(out, "| {what} | 0 | - | - | - | - |");
            }
        }
    }
    if let (Some(total), Some(el3)) = (report.latency("notify-ns"), el3) {
        let _ = writeln!(
            out,
            "\nnormal -> secure, split (p50): EL3 {el3:.0} (the monitor bench's notify_secure, secure world running), \
             GIC and seL4 to comm-pd {:.0}",
            total.p50 - el3
        );
    }
    if let (Some(mmap), Some(pipe)) = (report.latency("rt-mmap-64"), report.latency("rt-pipe-64")) {
        let _ = writeln!(out, "\n64 B round trip, mmap path / pipe (mean): {:.2}", mmap.mean / pipe.mean);
    }
    out.push_str("\n| transfer | bytes | MiB/s (virtual time) |\n| --- | ---: | ---: |\n");
    for (key, what) in TRANSFERS {
        match report.transfer(key) {
            Some(t) => {
                let _ = writeln!(out, "| {what} | {} | {:.1} |", t.bytes, t.mib_per_s());
            }
            None => {
                let _ = writeln!(out, "| {what} | 0 | - |");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let l = Latency::of("k", &[5.0, 1.0, 3.0, 100.0]).unwrap();
        assert_eq!((l.samples, l.p50, l.min, l.max), (4, 4.0, 1.0, 100.0));
        assert_eq!(l.mean, 27.25);
        assert_eq!(Latency::of("k", &[7.0]).unwrap().p50, 7.0);
        assert!(Latency::of("k", &[]).is_none());
        assert_eq!(ns_from_ticks(10, 62_500_000), 160.0);
        assert_eq!(Transfer { key: "x".into(), bytes: 1 << 20, ns: 500_000_000 }.mib_per_s(), 2.0);
    }

    #[test]
    fn lines_round_trip_through_a_noisy_console() {
        let latency = Latency::of("notify-ns", &[880.0, 912.0, 896.0]).unwrap();
        let transfer = Transfer { key: "pipe-4k".into(), bytes: 8 << 20, ns: 123_456 };
        let console = format!(
            "[  1.0] something\nxx{latency}\n{transfer}\n{PREFIX}latency broken samples=x\n{PREFIX}failed: no port\n{DONE}\n"
        );
        let report = Report::parse(&console);
        assert_eq!(report.latency("notify-ns"), Some(&latency));
        assert_eq!(report.transfer("pipe-4k"), Some(&transfer));
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(report.done);
        assert!(!Report::parse("nothing").done);
    }

    #[test]
    fn the_table_names_every_row_and_the_split() {
        let mut report = Report::default();
        report.latencies.push(Latency::of("notify-ns", &[1000.0]).unwrap());
        report.latencies.push(Latency::of("rt-mmap-64", &[3000.0]).unwrap());
        report.latencies.push(Latency::of("rt-pipe-64", &[2000.0]).unwrap());
        report.transfers.push(Transfer { key: "pipe-64k".into(), bytes: 1 << 20, ns: 1_000_000_000 });
        let table = table(&report, Some(70.0));
        assert!(table.contains("EL3 70 "), "{table}");
        assert!(table.contains("GIC and seL4 to comm-pd 930"), "{table}");
        assert!(table.contains("mmap path / pipe (mean): 1.50"), "{table}");
        assert!(
            table.contains(
                "| 64 KiB writes through a pipe to another process, until it read them all | 1048576 | 1.0 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| 4 KiB writes through a pipe to another process, until it read them all | 0 | - |"),
            "{table}"
        );
        for (key, what) in LATENCIES {
            assert!(table.contains(what), "{key}");
        }
    }
}
