//! tzctl against the secure world in the host simulator (run in this test process, as `tzmk sim`
//! runs it), and a hostile normal-world process beside it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tzcomm::{PortService, PortState, Region, Tz};
use tzmk_sim::{Options, Simulator};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn simulator(name: &str) -> Simulator {
    let run_dir = std::env::temp_dir().join(format!("tzctl-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let options = Options { system: root().join("system.xml"), platform: None, run_dir };
    Simulator::start(&options).expect("the simulator starts system.xml")
}

fn tzctl(run_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tzctl"))
        .arg("--sim")
        .arg(run_dir)
        .args(args)
        .env_remove("TZMK_SIM")
        .output()
        .expect("tzctl runs")
}

/// tzctl's standard output, after checking it succeeded.
fn ok(run_dir: &Path, args: &[&str]) -> String {
    let output = tzctl(run_dir, args);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "tzctl {args:?} failed: {stderr}{stdout}");
    stdout.into_owned()
}

/// tzctl's error message, after checking it failed.
fn refused(run_dir: &Path, args: &[&str]) -> String {
    let output = tzctl(run_dir, args);
    assert!(!output.status.success(), "tzctl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn tzctl_lists_echoes_calls_and_refuses_precisely() {
    let sim = simulator("cli");
    let dir = sim.run_dir().to_path_buf();

    let list = ok(&dir, &["list"]);
    for port in ["echo", "echo-small", "echo-bulk", "sink", "attestation", "rt"] {
        assert!(list.lines().any(|l| l.split_whitespace().nth(1) == Some(port)), "{port} missing from:\n{list}");
    }
    let echo = ok(&dir, &["echo", "--count", "300", "--size", "1000"]);
    assert!(echo.contains("300 messages of 1000 B, 0 checksum mismatches"), "{echo}");
    assert!(echo.contains("the secure side counted 300 messages, 300000 B"), "{echo}");
    let bulk = ok(&dir, &["echo", "echo-bulk", "--count", "20", "--size", "65536"]);
    assert!(bulk.contains("0 checksum mismatches"), "{bulk}");

    assert_eq!(ok(&dir, &["send", "echo", "hello secure world", "--reply"]).trim(), "hello secure world");
    assert_eq!(ok(&dir, &["call", "attestation", "version"]).trim(), "attestation-pd interface v1");
    let rt = ok(&dir, &["call", "rt", "stats"]);
    assert!(rt.contains("periods of 1000 us"), "{rt}");
    // rt-task's events, through its secure ring and comm-pd, to this normal-world process: the
    // summaries come every 100 periods, in order.
    let events = ok(&dir, &["events", "--count", "5"]);
    let summaries: Vec<u64> =
        events.lines().filter_map(|l| l.strip_prefix("summary at period ")?.split(':').next()?.parse().ok()).collect();
    assert_eq!(events.lines().count(), 5, "{events}");
    assert!(!summaries.is_empty(), "no summary among:\n{events}");
    assert!(summaries.iter().all(|p| p % 100 == 0) && summaries.windows(2).all(|w| w[0] < w[1]), "{events}");
    assert!(refused(&dir, &["events", "echo"]).contains("port 'echo' is not an rt port"));
    let bench = ok(&dir, &["bench", "sink", "--size", "4096", "--bytes", "4194304"]);
    assert!(bench.starts_with("1024 messages of 4096 B to 'sink'"), "{bench}");

    // Refusals name the problem.
    assert!(refused(&dir, &["echo", "nope"]).contains("no port 'nope'"));
    assert!(refused(&dir, &["echo", "sink"]).contains("port 'sink' is not an echo port"));
    assert!(refused(&dir, &["echo", "echo-small", "--size", "5000"])
        .contains("--size 5000 is larger than port 'echo-small' carries"));
    assert!(refused(&dir, &["call", "echo", "launch"]).contains("port 'echo' has no command 'launch'"));
    assert!(refused(&dir, &["call", "echo", "42"]).contains("the secure world refused"));
    assert!(refused(&dir, &["recv", "echo", "--timeout-ms", "200"]).contains("did not answer in time"));
    let nowhere = std::env::temp_dir().join("tzctl-test-no-such-simulator");
    assert!(refused(&nowhere, &["list"]).contains(&nowhere.display().to_string()));
    let unset = Command::new(env!("CARGO_BIN_EXE_tzctl")).arg("list").env_remove("TZMK_SIM").output().unwrap();
    assert!(String::from_utf8_lossy(&unset.stderr).contains("TZMK_SIM"), "{unset:?}");
    sim.shutdown();
}

/// Set to a run directory, the `hostile_client` test below becomes the hostile process.
const HOSTILE_ENV: &str = "TZCTL_TEST_HOSTILE";

/// A normal-world process that scribbles on its own port's rings (echo-small) and kicks, until
/// its standard input closes; reopens the port whenever the secure side reset it; prints how many
/// resets it saw. Run by `a_hostile_process_cannot_disturb_another_port`.
#[test]
#[ignore = "the hostile process of another test"]
fn hostile_client() {
    let Some(dir) = std::env::var_os(HOSTILE_ENV) else { return };
    let tz = Tz::sim(dir).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn({
        let stop = stop.clone();
        move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, std::sync::atomic::Ordering::Release);
        }
    });
    let info = tz.ports().unwrap().into_iter().find(|p| p.name == "echo-small").unwrap();
    let rx = tz.backend().region(Region::Rx);
    let tx = tz.backend().region(Region::Tx);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut resets, mut scribbles) = (0u64, 0u64);
    let kick = tz.backend().attach().unwrap();
    let mut port = tz.open("echo-small").unwrap();
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        // Some honest traffic, then lies: random words over the ring headers and records.
        let _ = port.try_write(&[0xa5; 200]);
        let (mapping, offset, capacity) = if random() % 2 == 0 {
            (rx, info.rx_offset as usize, info.rx_capacity as usize)
        } else {
            (tx, info.tx_offset as usize, info.tx_capacity as usize)
        };
        let at = offset + (random() as usize % (192 + capacity)) / 4 * 4;
        // SAFETY: inside this port's ring in a mapping the backend keeps for the process's life;
        // the secure side treats the bytes as hostile (which is the point).
        unsafe { mapping.base.as_ptr().add(at).cast::<u32>().write_volatile(random() as u32) };
        scribbles += 1;
        // A hostile process kicks whenever it likes.
        kick.kick(info.id).unwrap();
        match port.try_write(&[0x5a; 100]) {
            Err(tzcomm::Error::Reset { .. }) => {
                resets += 1;
                port = tz.open("echo-small").unwrap();
            }
            _ => {
                let _ = port.try_read(&mut [0u8; 4096]);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("hostile: {scribbles} scribbles, {resets} resets");
}

#[test]
fn a_hostile_process_cannot_disturb_another_port() {
    let sim = simulator("hostile");
    let dir = sim.run_dir().to_path_buf();
    let mut hostile = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hostile_client", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(HOSTILE_ENV, &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it start lying before the good traffic starts.
    let tz = Tz::sim(&dir).unwrap();
    let started = Instant::now();
    while tz.ports().unwrap().iter().find(|p| p.name == "echo-small").unwrap().faults == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the hostile process never got a port reset");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Two good clients, on two ports, with checksums, while the hostile one keeps going.
    let good = [
        std::thread::spawn({
            let dir = dir.clone();
            move || ok(&dir, &["echo", "echo", "--count", "2000", "--size", "700"])
        }),
        std::thread::spawn({
            let dir = dir.clone();
            move || ok(&dir, &["echo", "echo-bulk", "--count", "300", "--size", "20000"])
        }),
    ];
    for client in good {
        let report = client.join().unwrap();
        assert!(report.contains("0 checksum mismatches"), "{report}");
    }
    drop(hostile.stdin.take());
    let mut report = String::new();
    hostile.stdout.take().unwrap().read_to_string(&mut report).unwrap();
    assert!(hostile.wait().unwrap().success(), "{report}");
    let line = report.lines().find(|l| l.contains("hostile: ")).unwrap_or_else(|| panic!("{report}"));
    println!("{line}");
    let ports = tz.ports().unwrap();
    let by_name = |name: &str| ports.iter().find(|p| p.name == name).unwrap().clone();
    assert!(by_name("echo-small").faults >= 1);
    for name in ["echo", "echo-bulk"] {
        let port = by_name(name);
        assert_eq!((port.faults, port.service), (0, Some(PortService::Echo)), "{name}");
        assert_ne!(port.state, Some(PortState::Faulted));
    }
    sim.shutdown();
}
