//! `tzmk sim` as a newcomer and linux-side use it: the ready line, the run directory, attaching as
//! the normal world, a clean stop, and precise refusals of bad input.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tzcomm::{PortService, Tz};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tzmk-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The simulator process; killed if a failed assertion leaves it running.
struct Sim(Child);

impl std::ops::Deref for Sim {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_sim(system: &str, run_dir: &Path) -> Sim {
    Sim(Command::new(env!("CARGO_BIN_EXE_tzmk"))
        .args(["sim", system, "--run-dir"])
        .arg(run_dir)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tzmk runs"))
}

#[test]
fn simulator_runs_system_xml_and_the_normal_world_attaches() {
    let run_dir = scratch("attach");
    let mut sim = spawn_sim("system.xml", &run_dir);
    let mut stdout = BufReader::new(sim.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), format!("tzmk-sim: ready {}", run_dir.display()));

    // Only the regions in the normal world's shared window appear as files, at their sizes.
    let mut files: Vec<_> = std::fs::read_dir(run_dir.join("regions"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), e.metadata().unwrap().len())
        })
        .collect();
    files.sort();
    assert_eq!(files, vec![("port_ctrl".into(), 0x1000), ("port_rx".into(), 0x20_0000), ("port_tx".into(), 0x20_0000)]);

    // A bare kick is answered with the doorbell and a fresh status page.
    let tz = Tz::sim(&run_dir).expect("attach");
    let before = tz.status_page().expect("comm-pd wrote the status page at boot");
    assert_eq!((before.kicks, before.attestation_version), (0, 1));
    for kick in 1..=3 {
        assert_eq!(tz.refresh().unwrap().kicks, kick);
    }
    // The ports of comm-pd/ports.toml, and one round trip through another process's secure world.
    let ports = tz.ports().unwrap();
    let names: Vec<_> = ports.iter().map(|p| (p.id, p.name.as_str(), p.service)).collect();
    assert_eq!(names[0], (1, "echo", Some(PortService::Echo)));
    assert_eq!(names.len(), 6, "{names:?}");
    let mut echo = tz.open("echo").unwrap();
    echo.set_timeout(Some(Duration::from_secs(5)));
    echo.write(b"through the simulator").unwrap();
    let mut reply = [0u8; 64];
    let n = echo.read(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"through the simulator");

    kill(Pid::from_raw(sim.id() as i32), Signal::SIGTERM).unwrap();
    let status = sim.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sim.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    for pd in ["comm-pd", "attestation-pd", "rt-task"] {
        assert!(stderr.contains(&format!("{pd}: INFO: ready")), "{pd} printed no ready line:\n{stderr}");
    }
    assert!(!run_dir.exists(), "the simulator left {} behind", run_dir.display());
}

fn refused(system: &Path, run_dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tzmk"))
        .args(["sim"])
        .arg(system)
        .arg("--run-dir")
        .arg(run_dir)
        .current_dir(root())
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_systems_get_the_audit_message() {
    let run_dir = scratch("bad");
    let (code, stderr) = refused(Path::new("tests/audit/bad/smc-on-rt-task.xml"), &run_dir);
    assert_eq!(code, 1);
    assert!(stderr.contains("[smc-not-allowed]") && stderr.starts_with("tzmk-sim: 1 isolation violation"), "{stderr}");
    let (code, stderr) = refused(Path::new("tests/audit/bad/duplicate-pd-name.xml"), &run_dir);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("tzmk-sim: tests/audit/bad/duplicate-pd-name.xml:"), "{stderr}");
    assert!(!run_dir.exists(), "a refused system must not create the run directory");
}

#[test]
fn unknown_program_image_is_named() {
    let dir = scratch("image");
    std::fs::create_dir_all(&dir).unwrap();
    let system = std::fs::read_to_string(root().join("system.xml")).unwrap().replace("rt-task.elf", "rt-taks.elf");
    let path = dir.join("system.xml");
    std::fs::write(&path, system).unwrap();
    let (code, stderr) = refused(&path, &dir.join("run"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("PD 'rt-task' runs program image 'rt-taks.elf', which the simulator does not know"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn busy_run_directory_is_refused() {
    let dir = scratch("busy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("something"), b"x").unwrap();
    let (code, stderr) = refused(Path::new("system.xml"), &dir);
    assert_eq!(code, 2);
    assert!(stderr.contains("exists and is not empty"), "{stderr}");
    assert!(dir.join("something").exists(), "the simulator must not touch a directory it refused");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_directory_parents_it_created_are_removed_and_no_more() {
    let base = scratch("parents");
    std::fs::create_dir_all(&base).unwrap();
    let run_dir = base.join("a/b/c");
    let mut sim = spawn_sim("system.xml", &run_dir);
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), format!("tzmk-sim: ready {}", run_dir.display()));
    kill(Pid::from_raw(sim.id() as i32), Signal::SIGTERM).unwrap();
    assert!(sim.wait().unwrap().success());
    assert!(!base.join("a").exists(), "the simulator left a/b behind, which it created");
    assert!(base.exists(), "the simulator removed a directory that existed before it");
    std::fs::remove_dir_all(base).unwrap();
}

/// `tzmk ARGS` in the workspace root, run to completion.
fn tzmk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tzmk")).args(args).current_dir(root()).output().expect("tzmk runs")
}

#[test]
fn unreadable_input_exits_two_for_sim_and_demo_as_for_audit() {
    for command in ["audit", "sim", "demo"] {
        let out = tzmk(&[command, "no/such/system.xml"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "tzmk {command}: {stderr}");
        assert!(stderr.contains("no/such/system.xml: cannot read"), "tzmk {command}: {stderr}");
    }
    // Invalid (but readable) input is a violation, 1, for all three alike.
    for command in ["audit", "sim", "demo"] {
        let out = tzmk(&[command, "tests/audit/bad/duplicate-pd-name.xml"]);
        assert_eq!(out.status.code(), Some(1), "tzmk {command}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn every_demo_count_works_or_is_refused_by_the_parser() {
    for count in ["0", "10000001", "18446744073709551615", "ten"] {
        let out = tzmk(&["demo", "--count", count]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--count {count}: {stderr}");
        assert!(stderr.contains("invalid value") && stderr.contains("--count"), "--count {count}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("fault in PD"), "--count {count}: {stderr}");
    }
    let out = tzmk(&["demo", "--count", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1..=10000000"), "the refusal names the limit");
    // Every small count, which once indexed an empty result of the 64 KiB echo.
    for count in ["1", "9"] {
        let out = tzmk(&["demo", "--count", count]);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "--count {count}: {stderr}");
        assert!(stdout.contains("| echo-bulk | 1 | 65536 B | all match |"), "--count {count}: {stdout}");
        // Trusted boot in the simulator: evidence verified against the run directory's refs.json.
        assert!(
            stdout.contains("verified against refs.json (BL, PRoT, kernel, dtb, initramfs) |"),
            "--count {count}: {stdout}"
        );
        assert!(stdout.trim_end().ends_with("tzmk demo: ok"), "{stdout}");
        assert_tables_fit(&stdout);
    }
}

/// Every Markdown table in `text` has rows of as many cells as its heading, and no empty cell:
/// each figure sits under a heading that names it.
fn assert_tables_fit(text: &str) {
    let mut heading: Option<usize> = None;
    let mut tables = 0;
    for line in text.lines() {
        let Some(row) = line.strip_prefix('|').and_then(|l| l.strip_suffix('|')) else {
            heading = None;
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        match heading {
            None => {
                heading = Some(cells.len());
                tables += 1;
            }
            Some(columns) => {
                assert_eq!(cells.len(), columns, "a row that does not fit its heading: {line}");
                assert!(cells.iter().all(|c| !c.is_empty()), "a row with an empty cell: {line}");
            }
        }
    }
    assert!(tables >= 4, "the demo printed {tables} tables:\n{text}");
}

#[test]
fn a_killed_simulators_directory_is_named_stale() {
    let run_dir = scratch("stale");
    let mut sim = spawn_sim("system.xml", &run_dir);
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("tzmk-sim: ready"), "{line}");
    // SIGKILL: no chance to clean up; sim.sock and the regions stay behind.
    sim.kill().unwrap();
    sim.wait().unwrap();
    assert!(run_dir.join("sim.sock").exists());
    let error = Tz::sim(&run_dir).expect_err("nobody listens any more").to_string();
    assert!(error.contains("no simulator runs here any more") && error.contains("Remove the directory"), "{error}");
    assert!(!error.contains("Connection refused"), "{error}");
    std::fs::remove_dir_all(run_dir).unwrap();
}
