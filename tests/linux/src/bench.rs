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

/// The probe's notification bench (tzmk_probe's `bench` parameter: counter ticks) as the two
/// latencies `notify-ns-kernel` and `notify-sn-kernel` (nanoseconds; the mean from the sums).
pub fn kernel_legs(text: &str) -> Result<[Latency; 2], String> {
    if text.starts_with("failed") || text == "not run" {
        return Err(format!("tzmk_probe's notification bench: {text}"));
    }
    let f = fields(text.split_whitespace()).map_err(|e| format!("tzmk_probe's bench {text:?}: {e}"))?;
    let get = |name: &str| field::<u64>(&f, name).map_err(|e| format!("tzmk_probe's bench {text:?}: {e}"));
    let (samples, hz) = (get("samples")?, get("cntfrq")?);
    if samples == 0 || hz == 0 {
        return Err(format!("tzmk_probe's bench {text:?}: no samples or no counter frequency"));
    }
    let leg = |key: &str, prefix: &str| -> Result<Latency, String> {
        let ns = |name: &str| get(&format!("{prefix}_{name}")).map(|ticks| ns_from_ticks(ticks, hz));
        Ok(Latency {
            key: key.to_owned(),
            samples: samples as usize,
            mean: ns("sum")? / samples as f64,
            p50: ns("p50")?,
            min: ns("min")?,
            max: ns("max")?,
        })
    };
    Ok([leg("notify-ns-kernel", "ns")?, leg("notify-sn-kernel", "sn")?])
}

/// The latencies `tzmk-bench` measures: key, what the row says.
pub const LATENCIES: [(&str, &str); 10] = [
    ("notify-ns-kernel", "normal -> secure: the driver's `smc` until comm-pd's handler runs (kernel, core idle)"),
    ("notify-sn-kernel", "secure -> normal: comm-pd's `notify_normal` until the kicking core runs (kernel)"),
    ("notify-ns", "normal -> secure, from an application's write(2) (the writer goes on running)"),
    ("notify-sn-irq", "secure -> normal: `notify_normal` until the doorbell handler, reader asleep in read(2)"),
    ("notify-sn", "secure -> normal: `notify_normal` until the sleeping reader's read(2) returns"),
    ("rt-rw-64", "64 B round trip, read/write on /dev/tzmk/echo, both sides spinning (the default)"),
    ("rt-mmap-64", "64 B round trip, mmap'd rings (tzcomm), both sides spinning (the default)"),
    ("rt-rw-64-nospin", "64 B round trip, read/write, no spinning (secure_spin_us=0)"),
    ("rt-mmap-64-nospin", "64 B round trip, mmap'd rings, no spinning on either side"),
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
    if let (Some(total), Some(el3)) = (report.latency("notify-ns-kernel"), el3) {
        let _ = writeln!(
            out,
            "\nnormal -> secure, split (p50): EL3 {el3:.0} (the monitor bench's notify_secure, secure world running), \
             GIC and seL4 to comm-pd {:.0}",
            total.p50 - el3
        );
    }
    for key in ["rt-mmap-64", "rt-mmap-64-nospin"] {
        if let (Some(mmap), Some(pipe)) = (report.latency(key), report.latency("rt-pipe-64")) {
            let _ = writeln!(out, "\n{key} / rt-pipe-64 (mean): {:.2}", mmap.mean / pipe.mean);
        }
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
    fn the_probes_legs() {
        let text = "samples=4 dropped=1 cntfrq=62500000 ns_sum=400 ns_p50=100 ns_min=90 ns_max=120 \
                    sn_sum=40 sn_p50=10 sn_min=9 sn_max=12";
        let [ns, sn] = kernel_legs(text).unwrap();
        assert_eq!(
            (ns.key.as_str(), ns.samples, ns.mean, ns.p50, ns.min, ns.max),
            ("notify-ns-kernel", 4, 1600.0, 1600.0, 1440.0, 1920.0)
        );
        assert_eq!((sn.key.as_str(), sn.mean, sn.max), ("notify-sn-kernel", 160.0, 192.0));
        assert!(kernel_legs("failed: error -19, 0 samples, 0 dropped").unwrap_err().contains("error -19"));
        assert!(kernel_legs("not run").is_err());
        assert!(kernel_legs("samples=0 cntfrq=1").is_err());
        assert!(kernel_legs("samples=3 cntfrq=62500000 ns_sum=1").unwrap_err().contains("no ns_p50"));
    }

    #[test]
    fn the_table_names_every_row_and_the_split() {
        let mut report = Report::default();
        report.latencies.push(Latency::of("notify-ns-kernel", &[1000.0]).unwrap());
        report.latencies.push(Latency::of("rt-mmap-64", &[3000.0]).unwrap());
        report.latencies.push(Latency::of("rt-pipe-64", &[2000.0]).unwrap());
        report.transfers.push(Transfer { key: "pipe-64k".into(), bytes: 1 << 20, ns: 1_000_000_000 });
        let table = table(&report, Some(70.0));
        assert!(table.contains("EL3 70 "), "{table}");
        assert!(table.contains("GIC and seL4 to comm-pd 930"), "{table}");
        assert!(table.contains("rt-mmap-64 / rt-pipe-64 (mean): 1.50"), "{table}");
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
