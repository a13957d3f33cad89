//! `tzmk audit` as a reviewer runs it: exit codes, JSON and the Graphviz picture.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tzmk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tzmk")).args(args).current_dir(root()).output().expect("tzmk runs")
}

#[test]
fn clean_system_exits_zero_and_prints_authority() {
    let out = tzmk(&["audit", "system.xml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("system.xml: clean: 3 PDs"), "{stdout}");
    assert!(stdout.contains("irq      0  interrupt 144 'kick'"), "{stdout}");
}

#[test]
fn violations_exit_one() {
    let out = tzmk(&["audit", "tests/audit/bad/smc-on-rt-task.xml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[smc-not-allowed]"));
}

#[test]
fn unreadable_input_exits_two() {
    let out = tzmk(&["audit", "no/such/system.xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("no/such/system.xml: cannot read"));
    let out = tzmk(&["audit", "--platform", "no/such/platform.toml", "system.xml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tzmk(&["audit", "tests/audit/bad/not-xml.xml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_report_names_every_right() {
    let out = tzmk(&["audit", "--json", "system.xml"]);
    assert_eq!(out.status.code(), Some(0));
    let json = String::from_utf8_lossy(&out.stdout);
    for needle in ["\"name\": \"comm-pd\"", "\"normal_world_reachable\": true", "\"calls_peer\": true", "\"smc\": true"]
    {
        assert!(json.contains(needle), "{needle} missing from {json}");
    }
}

#[test]
fn dot_picture_draws_the_world_boundary() {
    let dir = std::env::temp_dir().join(format!("tzmk-dot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dot = dir.join("system.dot");
    let out = tzmk(&["audit", "-q", "--dot", dot.to_str().unwrap(), "system.xml"]);
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(text.contains("cluster_secure") && text.contains("cluster_normal"), "{text}");
    assert!(text.contains("pd_comm_pd -> pd_attestation_pd [style=bold, label=\"pp\"]"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dtb_writes_linux_device_tree() {
    let dir = std::env::temp_dir().join(format!("tzmk-dtb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let initrd = dir.join("initrd");
    std::fs::write(&initrd, vec![0u8; 4096]).unwrap();
    let dtb = dir.join("linux.dtb");
    let (initrd_arg, dtb_arg) = (initrd.display().to_string(), dtb.display().to_string());
    let out = tzmk(&["dtb", "system.xml", "--initrd", &initrd_arg, "--bootargs", "console=ttyAMA0", "-o", &dtb_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let blob = std::fs::read(&dtb).unwrap();
    assert_eq!(blob[..4], [0xd0, 0x0d, 0xfe, 0xed], "FDT magic");

    // Bad input: a precise message and exit 2, nothing written.
    let missing = dir.join("no-such-initrd").display().to_string();
    let out = tzmk(&["dtb", "system.xml", "--initrd", &missing, "-o", &dtb_arg]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("error: {missing}: cannot read")), "{stderr}");
    let out = tzmk(&["dtb", "tests/audit/bad/duplicate-irq.xml", "-o", &dtb_arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: tests/audit/bad/duplicate-irq.xml:"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_real_time_report_and_its_sidecar() {
    let out = tzmk(&["audit", "system.xml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("utilisation 70.00%"), "{stdout}");
    assert!(stdout.contains("deadline    500 us: worst-case response 200 us <= deadline 500 us"), "{stdout}");
    let dir = std::env::temp_dir().join(format!("tzmk-audit-realtime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tight = dir.join("tight.toml");
    std::fs::write(&tight, "[task.rt-task]\ndeadline = 150\n").unwrap();
    let out = tzmk(&["audit", "-q", "--realtime", tight.to_str().unwrap(), "system.xml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("after its deadline 150 us") && stderr.contains("[realtime-deadline]"), "{stderr}");
    let wrong = dir.join("wrong.toml");
    std::fs::write(&wrong, "[task.comm-pd]\ndeadline = 100\n").unwrap();
    let out = tzmk(&["audit", "-q", "--realtime", wrong.to_str().unwrap(), "system.xml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("task 'comm-pd': not a real-time PD"));
    let out = tzmk(&["audit", "-q", "--realtime", dir.join("none.toml").to_str().unwrap(), "system.xml"]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tzmk audit system.xml | head -1`: a closed standard output ends tzmk by SIGPIPE, as it would
/// end `cat`, with nothing on standard error (no "failed printing to stdout" panic).
#[test]
fn a_closed_pipe_ends_it_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let out = Command::new(env!("CARGO_BIN_EXE_tzmk"))
        .args(["audit", "system.xml"])
        .current_dir(root())
        .stdout(write_end)
        .output()
        .expect("tzmk runs");
    assert_eq!(out.status.signal(), Some(nix::libc::SIGPIPE), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
