//! tzctl: talk to tzmk's secure world from the normal world.
//!
//! `--sim DIR` (or `TZMK_SIM=DIR`) selects a running host simulator (`tzmk sim` prints its
//! directory). Exit codes: 0 done, 1 the secure world refused or a check failed, 2 bad usage or
//! no secure world.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sha2::Digest as _;
use tzcomm::pattern::{checksum, pattern};
use tzcomm::{command, PortService, Tz};
use tzmk_interface::attestation::{
    measurement_name, EvidenceHeader, ERR_BAD_ARGUMENT, ERR_LOG_FULL, ERR_MALFORMED, ERR_NO_HANDOFF,
    ERR_UNKNOWN_OPERATION, EVIDENCE_MAGIC, EVIDENCE_VERSION, MAX_RUNTIME_MEASUREMENTS, MEASURE_NAME_SIZE, OK,
    OP_EVIDENCE, OP_MEASURE, OP_SECURE_MEASUREMENT, OP_UPDATE, OP_VERSION,
};
use tzmk_interface::port::{
    AttestationReply, AttestationRequest, ControlError, EvidenceRequest, MeasureRequest, PortState, RequestError,
    SinkTotals,
};
use tzmk_interface::rt::{
    name_field, RtControl, RtEvent, RtEventKind, RtLatency, RtSetReply, RtSetRequest, RtSetStatus, RtSetpointRequest,
    RtStats, RT_EVENT_MAGIC, RT_TASK_NAME_LEN,
};
use tzmk_interface::update::{UpdateOutcome, UpdateReply, UpdateRequest, MANIFEST_BYTES};
use zerocopy::{FromBytes, IntoBytes};

#[derive(Parser, Debug)]
#[command(name = "tzctl", version, about = "Talk to tzmk's secure world through its communication ports")]
struct Cli {
    /// A host simulator's run directory (default: $TZMK_SIM).
    #[arg(long, global = true, value_name = "DIR")]
    sim: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The ports the secure world offers, and their state.
    List,
    /// The secure world's status page.
    Status,
    /// Sends one message (the argument, or standard input) to a port.
    Send {
        port: String,
        message: Option<String>,
        /// Then wait for and print one reply.
        #[arg(long)]
        reply: bool,
    },
    /// Receives messages from a port and writes them to standard output.
    Recv {
        port: String,
        /// Messages to receive.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Give up after this many milliseconds without a message.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Echo round trips with checksums: every reply must be the message sent.
    Echo {
        #[arg(default_value = "echo")]
        port: String,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Bytes per message, at most the port's largest message.
        #[arg(long, default_value_t = 64, value_parser = message_size)]
        size: usize,
    },
    /// A typed control call: attestation version, rt statistics, sink or echo totals.
    Call {
        port: String,
        /// version | stats | refresh | totals, or a number.
        command: String,
    },
    /// The real-time task: `tzctl rt stats` prints its release-lateness distribution (min, p50,
    /// p99, p99.9, max, a histogram), deadline misses and overruns.
    Rt {
        #[command(subcommand)]
        action: RtAction,
    },
    /// Prints the real-time task's events as they arrive on an rt port (rt-task sends them to
    /// comm-pd through a secure ring; comm-pd forwards them while the port is open).
    Events {
        #[arg(default_value = "rt")]
        port: String,
        /// Events to print.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Give up after this many milliseconds without an event.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// An attestation request on an attestation port, its answer decoded.
    Attest {
        #[arg(default_value = "attestation")]
        port: String,
        /// version (attestation-pd's interface version) | measurement (the secure image's SHA-256
        /// as the monitor measured it), or an operation number.
        #[arg(long, default_value = "version", conflicts_with = "nonce")]
        operation: String,
        /// Ask for evidence instead: a PSA attestation token for this nonce (hex, 32, 48 or 64
        /// bytes) and the certificate chain of its key.
        #[arg(long, value_parser = nonce_arg)]
        nonce: Option<Nonce>,
        /// With --nonce: write the token (COSE_Sign1) here, and the chain (a CBOR array: the
        /// device-identity key, then the certificates) to the same name with `.chain` added.
        #[arg(short = 'o', long, requires = "nonce")]
        output: Option<PathBuf>,
    },
    /// A runtime measurement: attestation-pd extends PCR 1 with the SHA-256 of FILE (or the
    /// digest given) under NAME, logs it, and reports it in every later token.
    Measure {
        /// 1 to 16 bytes of [a-z0-9._-]; not bl, prot, kernel, dtb or initramfs.
        name: String,
        /// The file to measure.
        #[arg(long, required_unless_present = "sha256", conflicts_with = "sha256")]
        file: Option<PathBuf>,
        /// Its SHA-256 instead (64 hex digits).
        #[arg(long, value_parser = sha256_arg)]
        sha256: Option<[u8; 32]>,
        #[arg(long, default_value = "attestation")]
        port: String,
    },
    /// A signed update of the secure world's reference values (docs/trusted-boot.md, "Signed
    /// updates"): the manifest in FILE (`tzmk sign`) to the monitor through attestation-pd. Prints
    /// `accepted: ...` (exit 0) or `refused: <reason>` (exit 1).
    Update {
        /// The signed manifest (672 bytes).
        file: PathBuf,
        #[arg(long, default_value = "attestation")]
        port: String,
    },
    /// Throughput of one port (one way, to a sink) or round trips (through an echo port).
    Bench {
        #[arg(default_value = "sink")]
        port: String,
        /// Bytes per message (at least 1: a stream of empty messages moves nothing), at most the
        /// port's largest message.
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=MAX_MESSAGE_SIZE))]
        size: u64,
        /// Bytes to send in total, at least one message's.
        #[arg(long, default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
        bytes: u64,
    },
}

#[derive(Subcommand, Debug)]
enum RtAction {
    /// Release lateness (min, p50, p99, p99.9, max, mean, a histogram), misses and overruns.
    Stats {
        #[arg(default_value = "rt")]
        port: String,
    },
    /// New period and budget (microseconds) for a real-time task, from its next release. rt-task
    /// refuses values its response-time analysis cannot accept, naming the task that would miss;
    /// the kernel's budget stays system.xml's (docs/realtime.md).
    Set {
        #[arg(long, value_name = "US")]
        period: u32,
        #[arg(long, value_name = "US")]
        budget: u32,
        /// The relative deadline (default: the task's, capped at the new period).
        #[arg(long, value_name = "US")]
        deadline: Option<u32>,
        /// The task (default: rt-task).
        #[arg(long, value_name = "NAME")]
        task: Option<String>,
        #[arg(long, default_value = "rt")]
        port: String,
    },
    /// The control loop's speed setpoint in rad/s (0 to 10, three decimals).
    Setpoint {
        value: String,
        #[arg(long, default_value = "rt")]
        port: String,
    },
    /// The control loop's last release: setpoint, sensor sample, actuator output, response.
    Control {
        #[arg(default_value = "rt")]
        port: String,
    },
}

/// No port carries a message larger than a quarter of a ring's largest capacity (2^30).
const MAX_MESSAGE_SIZE: u64 = 1 << 28;

/// `--size` of echo: 0 (an empty message is a message) up to [`MAX_MESSAGE_SIZE`].
fn message_size(text: &str) -> std::result::Result<usize, String> {
    let size: u64 = text.parse().map_err(|e| format!("{e}"))?;
    if size > MAX_MESSAGE_SIZE {
        return Err(format!("{size} is not in 0..={MAX_MESSAGE_SIZE}"));
    }
    Ok(size as usize)
}

fn main() -> ExitCode {
    tzcomm::process::default_sigpipe();
    let cli = Cli::parse();
    let tz = match &cli.sim {
        Some(dir) => Tz::sim(dir),
        None => Tz::from_env(),
    };
    let tz = match tz {
        Ok(tz) => tz,
        Err(e) => {
            eprintln!("tzctl: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&tz, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // Already said on standard output.
        Err(e) if e.is::<Refused>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tzctl: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The secure world refused, and the command printed why (exit 1, nothing more to say).
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

fn run(tz: &Tz, command: Command) -> Result<()> {
    match command {
        Command::List => list(tz),
        Command::Status => {
            let page = tz.refresh()?;
            println!("kicks taken by comm-pd      {}", page.kicks);
            println!("attestation-pd interface    v{}", page.attestation_version);
            let rt = page.rt;
            println!(
                "rt-task                     {} periods of {} us, {} overruns, max release lateness {} us",
                rt.periods,
                rt.period_us,
                rt.overruns,
                rt.max_lateness_ns / 1000
            );
            println!(
                "rt-task events              {} sent, {} refused (ring full); comm-pd forwarded {}, {} unheard",
                rt.events_sent, rt.events_refused, page.rt_events_forwarded, page.rt_events_unheard
            );
            Ok(())
        }
        Command::Send { port, message, reply } => {
            let mut port = tz.open(&port)?;
            let bytes = match message {
                Some(text) => text.into_bytes(),
                None => {
                    let mut bytes = Vec::new();
                    std::io::stdin().read_to_end(&mut bytes)?;
                    bytes
                }
            };
            port.write(&bytes)?;
            if reply {
                port.set_timeout(Some(Duration::from_secs(5)));
                let mut buf = vec![0u8; port.max_message().max(4096)];
                let n = port.read(&mut buf)?;
                std::io::stdout().write_all(&buf[..n])?;
                println!();
            }
            Ok(())
        }
        Command::Recv { port, count, timeout_ms } => {
            let mut port = tz.open(&port)?;
            port.set_timeout(timeout_ms.map(Duration::from_millis));
            let mut buf = vec![0u8; 1 << 20];
            let mut out = std::io::stdout().lock();
            for _ in 0..count {
                let n = port.read(&mut buf)?;
                out.write_all(&buf[..n])?;
                out.flush()?;
            }
            Ok(())
        }
        Command::Echo { port, count, size } => echo(tz, &port, count, size),
        Command::Events { port, count, timeout_ms } => events(tz, &port, count, timeout_ms),
        Command::Call { port, command } => call(tz, &port, &command),
        Command::Rt { action: RtAction::Stats { port } } => rt_stats(tz, &port),
        Command::Rt { action: RtAction::Set { period, budget, deadline, task, port } } => {
            rt_set(tz, &port, task.as_deref().unwrap_or(""), period, budget, deadline.unwrap_or(0))
        }
        Command::Rt { action: RtAction::Setpoint { value, port } } => rt_setpoint(tz, &port, &value),
        Command::Rt { action: RtAction::Control { port } } => rt_control(tz, &port),
        Command::Attest { port, nonce: Some(nonce), output, .. } => evidence(tz, &port, &nonce.0, output.as_deref()),
        Command::Attest { port, operation, .. } => attest(tz, &port, &operation),
        Command::Measure { name, file, sha256, port } => measure(tz, &port, &name, file.as_deref(), sha256),
        Command::Update { file, port } => update(tz, &port, &file),
        Command::Bench { port, size, bytes } => bench(tz, &port, size as usize, bytes),
    }
}

fn list(tz: &Tz) -> Result<()> {
    println!(
        "{:>5}  {:<24} {:<12} {:<15} {:>8} {:>10} {:>10} {:>7}",
        "id", "name", "service", "owner", "state", "rx ring", "tx ring", "faults"
    );
    for port in tz.ports()? {
        let state = match port.state {
            Some(PortState::Open) => "open",
            Some(PortState::Closed) => "closed",
            Some(PortState::Faulted) => "faulted",
            None => "?",
        };
        let (service, owner) = port.service.map_or(("?", "?"), |s| (s.name(), s.owner().unwrap_or("a secure PD")));
        let fault = port.last_fault.map(|f| format!(" (last: {f})")).unwrap_or_default();
        println!(
            "{:>5}  {:<24} {:<12} {:<15} {:>8} {:>10} {:>10} {:>7}{fault}",
            port.id, port.name, service, owner, state, port.rx_capacity, port.tx_capacity, port.faults
        );
    }
    Ok(())
}

fn echo(tz: &Tz, port: &str, count: u64, size: usize) -> Result<()> {
    let mut port = tz.open(port)?;
    // A forwarded port answers whatever its PD answers; an echoing one (pds/template's) passes.
    if !matches!(port.service(), Some(PortService::Echo | PortService::Forward)) {
        return Err(format!("port '{}' is neither an echo port nor a forwarded one", port.name()).into());
    }
    if size > port.max_message() {
        return Err(
            format!("--size {size} is larger than port '{}' carries ({})", port.name(), port.max_message()).into()
        );
    }
    port.set_timeout(Some(Duration::from_secs(10)));
    let (mut message, mut reply) = (Vec::new(), vec![0u8; size]);
    let started = Instant::now();
    let mut mismatches = 0u64;
    for index in 0..count {
        pattern(index, size, &mut message);
        port.write(&message)?;
        let n = port.read(&mut reply)?;
        if n != size || checksum(&reply[..n]) != checksum(&message) {
            mismatches += 1;
        }
    }
    let elapsed = started.elapsed();
    let totals = SinkTotals::read_from_bytes(&port.call(command::ECHO_TOTALS, &[])?)
        .map_err(|_| "a totals reply of the wrong size")?;
    println!(
        "echo '{}': {count} messages of {size} B, {mismatches} checksum mismatches; the secure side counted {} messages, {} B; {:.1} us per round trip",
        port.name(),
        totals.messages,
        totals.bytes,
        elapsed.as_secs_f64() * 1e6 / count.max(1) as f64
    );
    if mismatches > 0 || totals.messages != count || totals.bytes != count * size as u64 {
        return Err("echo check failed".into());
    }
    Ok(())
}

fn events(tz: &Tz, port: &str, count: u64, timeout_ms: u64) -> Result<()> {
    let mut port = tz.open(port)?;
    if port.service() != Some(PortService::RealTime) {
        return Err(format!("port '{}' is not an rt port", port.name()).into());
    }
    port.set_timeout(Some(Duration::from_millis(timeout_ms)));
    let mut buf = [0u8; 256];
    let mut out = std::io::stdout().lock();
    for _ in 0..count {
        let n = port.read(&mut buf)?;
        let event = match RtEvent::read_from_bytes(&buf[..n]) {
            Ok(event) if event.magic == RT_EVENT_MAGIC => event,
            _ => return Err(format!("port '{}' sent a {n}-byte message that is no rt event", port.name()).into()),
        };
        let what = match event.kind() {
            Some(RtEventKind::Summary) => "summary",
            Some(RtEventKind::Overrun) => "overrun",
            None => return Err(format!("an rt event of unknown kind {}", event.kind).into()),
        };
        writeln!(
            out,
            "{what} at period {}: lateness {} us, {} periods skipped, {} events refused so far",
            event.period,
            event.lateness_ns / 1000,
            event.skipped,
            event.refused
        )?;
        out.flush()?;
    }
    Ok(())
}

/// Prints rt-task's release-lateness distribution (`command::RT_LATENCY`).
fn rt_port(tz: &Tz, port: &str) -> Result<tzcomm::Port> {
    let port = tz.open(port)?;
    if port.service() != Some(PortService::RealTime) {
        return Err(format!("port '{}' is not an rt port", port.name()).into());
    }
    Ok(port)
}

/// rt-task's verdict, one line: what it accepted, or why not.
fn format_set_reply(reply: &RtSetReply) -> std::result::Result<String, String> {
    let status = reply.status().ok_or_else(|| format!("rt-task answered an unknown status {}", reply.status))?;
    match status {
        RtSetStatus::Accepted => Ok(status.describe().to_owned()),
        RtSetStatus::Unschedulable => {
            let task = reply.task_name().unwrap_or("?");
            let us = |ns: u64| format!("{:.1} us", ns as f64 / 1000.0);
            Err(format!(
                "refused: {}: task '{task}' would miss its deadline (response time {} {}, deadline {})",
                status.describe(),
                if reply.settled == 1 { "" } else { "beyond" },
                us(reply.response_ns),
                us(reply.deadline_ns)
            )
            .replace("  ", " "))
        }
        _ => Err(format!("refused: {}", status.describe())),
    }
}

/// An rt call answered by rt-task, retried for a while when it is busy (it answers a few calls
/// per release, whoever makes them).
fn rt_call(port: &tzcomm::Port, command: u32, input: &[u8]) -> Result<RtSetReply> {
    for _ in 0..50 {
        let output = port.call(command, input)?;
        let reply = RtSetReply::read_from_bytes(&output).map_err(|_| "an rt reply of the wrong size")?;
        if reply.status() != Some(RtSetStatus::Busy) {
            return Ok(reply);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(RtSetStatus::Busy.describe().into())
}

fn rt_set(tz: &Tz, port: &str, task: &str, period_us: u32, budget_us: u32, deadline_us: u32) -> Result<()> {
    let port = rt_port(tz, port)?;
    let task_field = name_field(task).ok_or_else(|| format!("--task: names are at most {RT_TASK_NAME_LEN} bytes"))?;
    let request = RtSetRequest { task: task_field, period_us, budget_us, deadline_us, reserved: 0 };
    let reply = rt_call(&port, command::RT_SET, request.as_bytes())?;
    println!("{}", format_set_reply(&reply)?);
    Ok(())
}

/// `"2.5"` rad/s as 2500 thousandths; at most three decimals.
fn parse_milli(text: &str) -> std::result::Result<i32, String> {
    let bad = || format!("'{text}' is not a number with at most three decimals");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: i32 = whole.parse().map_err(|_| bad())?;
    let fraction: i32 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
    whole.checked_mul(1000).and_then(|w| w.checked_add(if whole < 0 { -fraction } else { fraction })).ok_or_else(bad)
}

fn rt_setpoint(tz: &Tz, port: &str, value: &str) -> Result<()> {
    let setpoint_milli = parse_milli(value)?;
    let port = rt_port(tz, port)?;
    let request = RtSetpointRequest { setpoint_milli, reserved: 0 };
    let reply = rt_call(&port, command::RT_SETPOINT, request.as_bytes())?;
    println!("{}", format_set_reply(&reply)?);
    Ok(())
}

fn rt_control(tz: &Tz, port: &str) -> Result<()> {
    let port = rt_port(tz, port)?;
    let output = port.call(command::RT_CONTROL, &[])?;
    let c = RtControl::read_from_bytes(&output).map_err(|_| "an rt control reply of the wrong size")?;
    let milli = |v: i32| format!("{:.3}", f64::from(v) / 1000.0);
    println!(
        "rt-task control loop: release {}, period {} us, budget {} us, deadline {} us\n\
         setpoint {} rad/s, speed {} rad/s, output {} V{}, response {:.1} us",
        c.release,
        c.period_us,
        c.budget_us,
        c.deadline_us,
        milli(c.setpoint_milli),
        milli(c.measurement_milli),
        milli(c.output_milli),
        if c.saturated != 0 { " (saturated)" } else { "" },
        c.response_ns as f64 / 1000.0
    );
    Ok(())
}

fn rt_stats(tz: &Tz, port: &str) -> Result<()> {
    let port = tz.open(port)?;
    if port.service() != Some(PortService::RealTime) {
        return Err(format!("port '{}' is not an rt port", port.name()).into());
    }
    // Fresh figures: rt-task publishes its distribution when asked, as well as once a second.
    port.call(command::RT_REFRESH, &[])?;
    let mut latency = None;
    for _ in 0..50 {
        match port.call(command::RT_LATENCY, &[]) {
            Ok(output) => {
                latency =
                    Some(RtLatency::read_from_bytes(&output).map_err(|_| "an rt latency reply of the wrong size")?);
                break;
            }
            // Before rt-task's first publication.
            Err(tzcomm::Error::Control(ControlError::ServiceUnavailable)) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let l = latency.ok_or("rt-task has published no release statistics yet (1 s after its start it does)")?;
    print!("{}", format_latency(&l));
    Ok(())
}

/// `tzctl rt stats`'s text for one [`RtLatency`].
fn format_latency(l: &RtLatency) -> String {
    use std::fmt::Write as _;
    let us = |ns: u64| format!("{:.1} us", ns as f64 / 1000.0);
    let mut out = format!(
        "rt-task: {} releases, period {} us, deadline {} us: {} deadline misses, {} skipped, {} overruns\n\
         release lateness: min {}, p50 {}, p99 {}, p99.9 {}, max {}, mean {}\n",
        l.releases,
        l.period_us,
        l.deadline_us,
        l.misses,
        l.skipped,
        l.overruns,
        us(l.min_ns),
        us(l.p50_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns),
        us(l.mean_ns)
    );
    let most = l.histogram.iter().copied().max().unwrap_or(0).max(1);
    let last = l.histogram.len() - 1;
    for (k, &count) in l.histogram.iter().enumerate().filter(|(_, &c)| c > 0) {
        let range =
            if k == last { format!(">= {} ns", 1u64 << k) } else { format!("[{}, {}) ns", 1u64 << k, 1u64 << (k + 1)) };
        let bar = "#".repeat((count as u64 * 40).div_ceil(u64::from(most)) as usize);
        let _ = writeln!(out, "  {range:>26} {count:>10} {bar}");
    }
    out
}

fn call(tz: &Tz, port: &str, command: &str) -> Result<()> {
    let port = tz.open(port)?;
    let number = match (port.service(), command) {
        (Some(PortService::Attestation), "version") => command::ATTESTATION_VERSION,
        (Some(PortService::RealTime), "stats") => command::RT_STATS,
        (Some(PortService::RealTime), "refresh") => command::RT_REFRESH,
        (Some(PortService::Sink), "totals") => command::SINK_TOTALS,
        (Some(PortService::Echo), "totals") => command::ECHO_TOTALS,
        (_, number) => number.parse().map_err(|_| format!("port '{}' has no command '{number}'", port.name()))?,
    };
    let output = port.call(number, &[])?;
    match (port.service(), number) {
        (Some(PortService::RealTime), command::RT_STATS) => {
            let rt = RtStats::read_from_bytes(&output).map_err(|_| "an rt statistics reply of the wrong size")?;
            println!(
                "{} periods of {} us, {} overruns, max release lateness {} us",
                rt.periods,
                rt.period_us,
                rt.overruns,
                rt.max_lateness_ns / 1000
            );
        }
        (Some(PortService::Sink | PortService::Echo), _) => {
            let totals = SinkTotals::read_from_bytes(&output).map_err(|_| "a totals reply of the wrong size")?;
            // Counters are a session's, and this call opened the port for itself.
            println!(
                "{} messages, {} bytes in this session (totals count one session, and this call opened a new one: \
                 `tzctl echo` and `tzctl bench` print their own session's)",
                totals.messages, totals.bytes
            );
        }
        (Some(PortService::Attestation), command::ATTESTATION_VERSION) => {
            let version = u64::read_from_bytes(&output).map_err(|_| "a version reply of the wrong size")?;
            println!("attestation-pd interface v{version}");
        }
        _ => println!("{} bytes: {:02x?}", output.len(), output),
    }
    Ok(())
}

/// A verifier's nonce (`--nonce`).
#[derive(Debug, Clone)]
struct Nonce(Vec<u8>);

/// `--nonce`: hex digits, 32, 48 or 64 bytes (RFC 9783's nonce lengths).
/// Hex digits, two per byte.
fn hex(text: &str) -> std::result::Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("hex digits, two per byte, expected".into());
    }
    Ok((0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or(0)).collect())
}

fn nonce_arg(text: &str) -> std::result::Result<Nonce, String> {
    let bytes = hex(text).map_err(|_| "a nonce is hex digits, two per byte".to_owned())?;
    if ![32, 48, 64].contains(&bytes.len()) {
        return Err(format!("a nonce of {} bytes: the token takes 32, 48 or 64", bytes.len()));
    }
    Ok(Nonce(bytes))
}

/// Evidence for `nonce`: the token and its chain, written to `output` (and `output.chain`).
fn evidence(tz: &Tz, port: &str, nonce: &[u8], output: Option<&std::path::Path>) -> Result<()> {
    let mut port = tz.open(port)?;
    if port.service() != Some(PortService::Attestation) {
        return Err(format!("port '{}' is not an attestation port", port.name()).into());
    }
    port.set_timeout(Some(Duration::from_secs(10)));
    let mut request = EvidenceRequest { operation: OP_EVIDENCE, nonce_length: nonce.len() as u64, nonce: [0; 64] };
    request.nonce[..nonce.len()].copy_from_slice(nonce);
    port.write(request.as_bytes())?;
    let mut buf = vec![0u8; port.max_message()];
    let n = port.read(&mut buf)?;
    let reply = &buf[..n];
    if let Ok(error) = AttestationReply::read_from_bytes(reply) {
        return Err(match error.label {
            ERR_NO_HANDOFF => "attestation-pd has no attestation key: the monitor left no valid boot handoff".into(),
            _ => refusal(&error, OP_EVIDENCE).into(),
        });
    }
    let (header, rest) = EvidenceHeader::read_from_prefix(reply)
        .map_err(|_| format!("port '{}' answered {n} bytes, no evidence", port.name()))?;
    if header.magic != EVIDENCE_MAGIC || header.version != EVIDENCE_VERSION {
        return Err(format!("evidence of magic {:#x} version {}: not tzmk's", header.magic, header.version).into());
    }
    let (token_length, chain_length) = (header.token_length as usize, header.chain_length as usize);
    if token_length.checked_add(chain_length) != Some(rest.len()) {
        return Err(format!(
            "evidence of {} bytes claims a {token_length}-byte token and a {chain_length}-byte chain",
            rest.len()
        )
        .into());
    }
    let (token, chain) = rest.split_at(token_length);
    match output {
        Some(path) => {
            let mut chain_path = path.as_os_str().to_owned();
            chain_path.push(".chain");
            std::fs::write(path, token).map_err(|e| format!("{}: {e}", path.display()))?;
            std::fs::write(&chain_path, chain).map_err(|e| format!("{}: {e}", PathBuf::from(&chain_path).display()))?;
            println!(
                "token: {} ({token_length} bytes, COSE_Sign1 ES256), chain: {} ({chain_length} bytes)",
                path.display(),
                PathBuf::from(&chain_path).display()
            );
        }
        None => {
            println!("token {token_length} bytes (COSE_Sign1 ES256), chain {chain_length} bytes: -o FILE writes them")
        }
    }
    Ok(())
}

/// What an attestation port's error reply means.
fn refusal(reply: &AttestationReply, operation: u64) -> String {
    match reply.label {
        ERR_NO_HANDOFF => "attestation-pd has no measurements: the monitor left no valid boot handoff".into(),
        ERR_BAD_ARGUMENT => "attestation-pd refused the request's arguments".into(),
        ERR_LOG_FULL => {
            format!("attestation-pd refused: {MAX_RUNTIME_MEASUREMENTS} runtime measurements were taken this boot")
        }
        ERR_UNKNOWN_OPERATION => format!("attestation-pd has no operation {operation}"),
        ERR_MALFORMED if reply.words[0] == RequestError::UnknownOperation { operation }.code().0 => {
            format!("attestation-pd has no operation {operation}")
        }
        ERR_MALFORMED => {
            format!("comm-pd refused the request: {}", RequestError::describe(reply.words[0], reply.words[1]))
        }
        label => format!("attestation-pd answered with unknown error label {label}"),
    }
}

fn sha256_arg(text: &str) -> std::result::Result<[u8; 32], String> {
    let bytes = hex(text)?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("a SHA-256 is 32 bytes (64 hex digits), not {}", b.len()))
}

fn measure(tz: &Tz, port: &str, name: &str, file: Option<&std::path::Path>, sha256: Option<[u8; 32]>) -> Result<()> {
    let mut request = MeasureRequest { operation: OP_MEASURE, name: [0; MEASURE_NAME_SIZE], sha256: [0; 32] };
    request
        .name
        .get_mut(..name.len())
        .ok_or_else(|| format!("measurement name '{name}' is longer than {MEASURE_NAME_SIZE} bytes"))?
        .copy_from_slice(name.as_bytes());
    if measurement_name(&request.name).is_none() {
        return Err(format!("measurement name '{name}': {}", RequestError::describe(5, 0)).into());
    }
    request.sha256 = match (file, sha256) {
        (_, Some(digest)) => digest,
        (Some(path), None) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            sha2::Sha256::digest(&bytes).into()
        }
        (None, None) => return Err("give --file or --sha256".into()),
    };
    let mut port = tz.open(port)?;
    if port.service() != Some(PortService::Attestation) {
        return Err(format!("port '{}' is not an attestation port", port.name()).into());
    }
    port.set_timeout(Some(Duration::from_secs(5)));
    port.write(request.as_bytes())?;
    let mut buf = [0u8; 64];
    let n = port.read(&mut buf)?;
    let reply = AttestationReply::read_from_bytes(&buf[..n])
        .map_err(|_| format!("port '{}' answered {n} bytes, no attestation reply", port.name()))?;
    if reply.label != OK {
        return Err(refusal(&reply, OP_MEASURE).into());
    }
    let digest: String = request.sha256.iter().map(|b| format!("{b:02x}")).collect();
    println!("measured '{name}' sha-256 {digest}: runtime measurement #{} (PCR 1)", reply.words[0]);
    Ok(())
}

/// `tzctl update FILE`: OP_UPDATE with FILE's bytes; the monitor's outcome in one line.
fn update(tz: &Tz, port: &str, file: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if bytes.len() > MANIFEST_BYTES {
        return Err(format!("{}: {} bytes: a manifest is {MANIFEST_BYTES}", file.display(), bytes.len()).into());
    }
    let mut port = tz.open(port)?;
    if port.service() != Some(PortService::Attestation) {
        return Err(format!("port '{}' is not an attestation port", port.name()).into());
    }
    // Erasing and programming a flash sector takes a while on hardware.
    port.set_timeout(Some(Duration::from_secs(30)));
    let mut request = UpdateRequest { operation: OP_UPDATE, length: bytes.len() as u64, manifest: [0; MANIFEST_BYTES] };
    request.manifest[..bytes.len()].copy_from_slice(&bytes);
    port.write(request.as_bytes())?;
    let mut buf = vec![0u8; port.max_message()];
    let n = port.read(&mut buf)?;
    let reply = AttestationReply::read_from_bytes(&buf[..n])
        .map_err(|_| format!("port '{}' answered {n} bytes, no attestation reply", port.name()))?;
    if reply.label != OK {
        return Err(refusal(&reply, OP_UPDATE).into());
    }
    let outcome = UpdateOutcome::from_reply(&UpdateReply::from_words([reply.words[0], reply.words[1]]));
    println!("{outcome}");
    if outcome.is_accepted() {
        Ok(())
    } else {
        Err(Refused.into())
    }
}

fn attest(tz: &Tz, port: &str, operation: &str) -> Result<()> {
    let number = match operation {
        "version" => OP_VERSION,
        "measurement" => OP_SECURE_MEASUREMENT,
        other => other
            .parse()
            .map_err(|_| format!("no attestation operation '{other}' (version, measurement, or a number)"))?,
    };
    let mut port = tz.open(port)?;
    if port.service() != Some(PortService::Attestation) {
        return Err(format!("port '{}' is not an attestation port", port.name()).into());
    }
    port.set_timeout(Some(Duration::from_secs(5)));
    port.write(AttestationRequest { operation: number }.as_bytes())?;
    let mut buf = [0u8; 64];
    let n = port.read(&mut buf)?;
    let reply = AttestationReply::read_from_bytes(&buf[..n])
        .map_err(|_| format!("port '{}' answered {n} bytes, no attestation reply", port.name()))?;
    match (reply.label, number) {
        (OK, OP_VERSION) => println!("attestation-pd interface v{}", reply.words[0]),
        (OK, OP_SECURE_MEASUREMENT) => {
            let digest: String = reply.words.iter().map(|w| format!("{w:016x}")).collect();
            println!("secure image SHA-256 {digest} (measured by the monitor)");
        }
        (OK, _) => println!("operation {number}: {:#018x?}", reply.words),
        _ => return Err(refusal(&reply, number).into()),
    }
    Ok(())
}

fn bench(tz: &Tz, port: &str, size: usize, bytes: u64) -> Result<()> {
    if bytes < size as u64 {
        return Err(format!("--bytes {bytes} is less than one message of --size {size}").into());
    }
    let mut port = tz.open(port)?;
    if size > port.max_message() {
        return Err(
            format!("--size {size} is larger than port '{}' carries ({})", port.name(), port.max_message()).into()
        );
    }
    port.set_timeout(Some(Duration::from_secs(30)));
    let message = vec![0x5au8; size];
    let count = bytes / size as u64;
    match port.service() {
        Some(PortService::Sink) => {
            let started = Instant::now();
            for _ in 0..count {
                port.write(&message)?;
            }
            port.flush()?;
            let elapsed = started.elapsed();
            let totals = SinkTotals::read_from_bytes(&port.call(command::SINK_TOTALS, &[])?)
                .map_err(|_| "a totals reply of the wrong size")?;
            if totals.messages != count {
                return Err(format!("the sink took {} of {count} messages", totals.messages).into());
            }
            let rate = (count * size as u64) as f64 / elapsed.as_secs_f64();
            println!(
                "{count} messages of {size} B to '{}' in {elapsed:.2?}: {:.1} MiB/s",
                port.name(),
                rate / (1 << 20) as f64
            );
        }
        Some(PortService::Echo) => {
            let mut reply = vec![0u8; size];
            let started = Instant::now();
            for _ in 0..count {
                port.write(&message)?;
                port.read(&mut reply)?;
            }
            let elapsed = started.elapsed();
            println!(
                "{count} round trips of {size} B through '{}': {:.2} us each",
                port.name(),
                elapsed.as_secs_f64() * 1e6 / count as f64
            );
        }
        _ => return Err(format!("port '{}' is neither a sink nor an echo port", port.name()).into()),
    }
    Ok(())
}

#[cfg(test)]
mod rt_tests {
    use super::*;

    #[test]
    fn setpoints_parse_to_thousandths() {
        assert_eq!(parse_milli("2.5"), Ok(2500));
        assert_eq!(parse_milli("10"), Ok(10_000));
        assert_eq!(parse_milli("0.125"), Ok(125));
        assert_eq!(parse_milli("-1.5"), Ok(-1500), "range is rt-task's to check");
        for bad in ["", ".5", "1.2345", "1.x", "abc", "99999999"] {
            assert!(parse_milli(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_task_and_its_response() {
        let reply = RtSetReply {
            status: RtSetStatus::Unschedulable as u32,
            settled: 0,
            task: name_field("comm-pd").unwrap(),
            response_ns: 1_100_000,
            deadline_ns: 1_000_000,
        };
        assert_eq!(
            format_set_reply(&reply).unwrap_err(),
            "refused: the task set would not be schedulable: task 'comm-pd' would miss its deadline \
             (response time beyond 1100.0 us, deadline 1000.0 us)"
        );
        let zero = RtSetReply { status: RtSetStatus::ZeroBudget as u32, ..RtSetReply::default() };
        assert_eq!(format_set_reply(&zero).unwrap_err(), "refused: the budget is 0");
        assert!(format_set_reply(&RtSetReply::default()).unwrap().starts_with("accepted"));
        assert!(format_set_reply(&RtSetReply { status: 99, ..RtSetReply::default() }).is_err());
    }
}
