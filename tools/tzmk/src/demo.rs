//! `tzmk demo`: the README's main job. Starts the secure world of system.xml in the host simulator,
//! attaches as a normal-world application would (linux-side's `tzcomm`), and uses the ports:
//! echo with checksums on several ports, an attestation request, a stream into the sink, the
//! real-time task's events (secure PD to secure PD through a ring, forwarded to the rt port) and a
//! control call to it; then prints a summary with the figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tzcomm::pattern::{checksum, pattern};
use tzcomm::{command, Tz};
use tzmk_interface::attestation::{OK, OP_VERSION};
use tzmk_interface::port::{AttestationReply, AttestationRequest, SinkTotals};
use tzmk_interface::rt::{RtEvent, RtEventKind, RtStats, RT_EVENT_MAGIC};
use tzmk_sim::{Options, Simulator};
use zerocopy::{FromBytes, IntoBytes};

/// The most round trips `--count` asks for: a few minutes of echoes on a slow host, and every
/// round trip's time is kept for the percentiles.
const MAX_COUNT: u64 = 10_000_000;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The system description.
    #[arg(default_value = "system.xml")]
    pub system: PathBuf,
    /// Echo round trips per echo port (the 64 KiB echo makes a tenth as many, at least one).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    pub count: u64,
}

pub fn run(args: Args) -> ExitCode {
    tzmk_sim::install_fault_reporter("tzmk demo");
    let options = Options { system: args.system, platform: None, run_dir: crate::sim::default_run_dir() };
    let booted = Instant::now();
    let simulator = match Simulator::start(&options) {
        Ok(simulator) => simulator,
        Err(e) => {
            eprintln!("tzmk demo: {e}");
            return crate::sim::exit_code(&e);
        }
    };
    let boot = booted.elapsed();
    let names: Vec<&str> = simulator.kernel().pds().iter().map(|pd| pd.name()).collect();
    println!("tzmk demo: {} PDs ready in the host simulator in {boot:.1?}: {}", names.len(), names.join(", "));
    let result = exchange(&simulator, args.count);
    simulator.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tzmk demo: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Echo round trips of `size` bytes on `port`, each reply checked: (median, 99th percentile).
fn echo(tz: &Tz, port: &str, count: u64, size: usize) -> Result<(Duration, Duration)> {
    let mut port = tz.open(port)?;
    port.set_timeout(Some(Duration::from_secs(10)));
    let (mut message, mut reply) = (Vec::new(), vec![0u8; size]);
    let mut times = Vec::with_capacity(count as usize);
    for index in 0..count {
        pattern(index, size, &mut message);
        let sent = Instant::now();
        port.write(&message)?;
        let n = port.read(&mut reply)?;
        times.push(sent.elapsed());
        if n != size || checksum(&reply[..n]) != checksum(&message) {
            return Err(format!("port '{}': reply {index} does not match what was sent", port.name()).into());
        }
    }
    let totals = SinkTotals::read_from_bytes(&port.call(command::ECHO_TOTALS, &[])?).map_err(|_| "totals")?;
    if totals.messages != count || totals.bytes != count * size as u64 {
        return Err(format!("port '{}': the secure side counted {totals:?}", port.name()).into());
    }
    port.close()?;
    times.sort();
    Ok((times[times.len() / 2], times[(times.len() - 1) * 99 / 100]))
}

fn exchange(simulator: &Simulator, count: u64) -> Result<()> {
    let run_dir = simulator.run_dir();
    let tz = Tz::sim(run_dir)?;
    println!("tzmk demo: attached as the normal world through {}", run_dir.display());
    println!();
    println!("| echo port | messages | size | checksums | median round trip | p99 |");
    println!("| --- | ---: | ---: | --- | ---: | ---: |");
    for (port, size) in [("echo", 64), ("echo-small", 512), ("echo", 4096), ("echo-bulk", 65536)] {
        let count = if size >= 65536 { (count / 10).max(1) } else { count };
        let (median, p99) = echo(&tz, port, count, size)?;
        println!("| {port} | {count} | {size} B | all match | {median:.1?} | {p99:.1?} |");
    }
    println!();

    let mut attestation = tz.open("attestation")?;
    attestation.set_timeout(Some(Duration::from_secs(5)));
    attestation.write(AttestationRequest { operation: OP_VERSION }.as_bytes())?;
    let mut buf = [0u8; 64];
    let n = attestation.read(&mut buf)?;
    let reply = AttestationReply::read_from_bytes(&buf[..n]).map_err(|_| "an attestation reply of the wrong size")?;
    if reply.label != OK {
        return Err(format!("attestation-pd answered label {}", reply.label).into());
    }
    println!("| request port | path | answer |");
    println!("| --- | --- | --- |");
    println!("| attestation | comm-pd -> pp call to attestation-pd | interface v{} |", reply.words[0]);
    println!("| attestation | evidence(nonce): PSA token and DICE chain | {} |", evidence(&mut attestation, run_dir)?);
    println!();

    // Stream into the sink: one way, back-pressure on a full ring, nothing dropped.
    let mut sink = tz.open("sink")?;
    sink.set_timeout(Some(Duration::from_secs(30)));
    let (size, messages) = (4096usize, 16_384u64);
    let block = vec![0xa5u8; size];
    let started = Instant::now();
    for _ in 0..messages {
        sink.write(&block)?;
    }
    sink.flush()?;
    let elapsed = started.elapsed();
    let totals = SinkTotals::read_from_bytes(&sink.call(command::SINK_TOTALS, &[])?).map_err(|_| "totals")?;
    if totals.messages != messages {
        return Err(format!("the sink took {} of {messages} messages", totals.messages).into());
    }
    let rate = (messages * size as u64) as f64 / elapsed.as_secs_f64() / f64::from(1 << 20);
    println!("| stream port | messages | size | taken by the secure side | throughput |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!("| sink | {messages} | {size} B | {} (back-pressure, none dropped) | {rate:.0} MiB/s |", totals.messages);
    println!();

    // The real-time task: its events (rt-task -> rt_events ring -> comm-pd -> the rt port) while
    // the port is open, then a control call, after a second of periods.
    let mut rt = tz.open("rt")?;
    std::thread::sleep(Duration::from_millis(1100));
    let (mut summaries, mut overruns, mut last) = (0u64, 0u64, None);
    let mut buf = [0u8; 256];
    while let Some(n) = rt.try_read(&mut buf)? {
        let event = RtEvent::read_from_bytes(&buf[..n]).map_err(|_| format!("a {n}-byte message on the rt port"))?;
        if event.magic != RT_EVENT_MAGIC {
            return Err(format!("the rt port sent {event:?}").into());
        }
        match event.kind() {
            Some(RtEventKind::Summary) => summaries += 1,
            Some(RtEventKind::Overrun) => overruns += 1,
            None => return Err(format!("an rt event of kind {}", event.kind).into()),
        }
        last = Some(event);
    }
    let last = last.ok_or("no rt-task event reached the rt port in 1.1 s")?;
    println!("| rt port: events (rt-task -> ring -> comm-pd -> port) | size | summaries | overruns | last at period | refused by rt-task |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {} B | {summaries} | {overruns} | {} | {} |",
        summaries + overruns,
        std::mem::size_of::<RtEvent>(),
        last.period,
        last.refused
    );
    println!();
    let stats = RtStats::read_from_bytes(&rt.call(command::RT_STATS, &[])?).map_err(|_| "rt statistics")?;
    let mean = stats.total_lateness_ns.checked_div(stats.periods).unwrap_or(0);
    println!("| rt port: call RT_STATS | periods | period | overruns | mean release lateness | max release lateness |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| rt-task | {} | {} us | {} | {} us | {} us |",
        stats.periods,
        stats.period_us,
        stats.overruns,
        mean / 1000,
        stats.max_lateness_ns / 1000
    );
    if stats.periods == 0 {
        return Err("rt-task has not completed a period".into());
    }
    let page = tz.refresh()?;
    println!();
    println!(
        "status page: {} kicks taken by comm-pd, attestation-pd interface v{}, {} rt events forwarded, {} unheard (port closed)",
        page.kicks, page.attestation_version, page.rt_events_forwarded, page.rt_events_unheard
    );
    println!("\ntzmk demo: ok");
    Ok(())
}

/// Evidence for a fresh nonce from attestation-pd (the simulator's monitor model booted it),
/// checked here as `tzmk verify --chain` checks it, against the run directory's refs.json.
fn evidence(port: &mut tzcomm::Port, run_dir: &std::path::Path) -> Result<String> {
    use tzmk_interface::attestation::{EvidenceHeader, OP_EVIDENCE};
    use tzmk_interface::port::EvidenceRequest;
    let mut nonce = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut nonce)?;
    let mut request = EvidenceRequest { operation: OP_EVIDENCE, nonce_length: 32, nonce: [0; 64] };
    request.nonce[..32].copy_from_slice(&nonce);
    port.write(request.as_bytes())?;
    let mut reply = vec![0u8; port.max_message()];
    let n = port.read(&mut reply)?;
    let (header, rest) =
        EvidenceHeader::read_from_prefix(&reply[..n]).map_err(|_| format!("{n} bytes of evidence: no header"))?;
    let (token, chain) = rest.split_at((header.token_length as usize).min(rest.len()));
    let refs_path = run_dir.join("refs.json");
    let refs = std::fs::read_to_string(&refs_path).map_err(|e| format!("{}: {e}", refs_path.display()))?;
    let references = crate::verify::References::from_json(&refs).map_err(|e| e.0)?;
    let device = references.device_public_key().ok_or("refs.json names no device_public_key")?;
    let key = crate::verify::chain_key(chain, &device).map_err(|r| r.to_string())?;
    let accepted = crate::verify::verify(token, &nonce, &references, &key)
        .map_err(|rejections| rejections.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    Ok(format!(
        "{} B token, {} B chain: verified against refs.json ({})",
        token.len(),
        chain.len(),
        accepted.components.join(", ")
    ))
}
