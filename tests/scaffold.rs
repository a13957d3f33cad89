//! `tzmk new-pd` end to end (issue 14, docs/adding-a-pd.md): on a copy of the repository, what
//! the audit refuses is refused with its own message and nothing is written; then a PD is
//! scaffolded, and the copy's new crate passes its host tests, builds for seL4 with every other PD
//! and passes the PD image checks (the copy's `make -f build.mk pds`), audits clean, and answers
//! `tzctl echo` and a control call in the copy's simulator. `make -f build.mk scaffold` then boots
//! the copy's secure image beside Linux on QEMU (with the SDK).
//!
//! Ignored by plain `cargo test` (it copies and builds a repository): `make -f build.mk scaffold`
//! runs it, with `TZMK_SCAFFOLD_DIR` naming where the copy and its cargo products go.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The PD and port the test adds.
const NAME: &str = "hello";

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `program args` in `dir` with the copy's own cargo target directory.
fn run(dir: &Path, target: &Path, program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    println!("$ {program} {}: {}", args.join(" "), output.status);
    output
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn succeeds(dir: &Path, target: &Path, program: &str, args: &[&str]) -> String {
    let output = run(dir, target, program, args);
    assert!(output.status.success(), "{program} {} failed:\n{}", args.join(" "), text(&output));
    text(&output)
}

/// The repository's files copied to `copy`: git's (tracked, and new ones not ignored), or,
/// outside a git checkout, every file but the build products' directories.
fn copy_repository(root: &Path, copy: &Path) {
    if copy.exists() {
        std::fs::remove_dir_all(copy).expect("the old copy can be removed");
    }
    let listed = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success());
    let files: Vec<PathBuf> = match listed {
        Some(listed) => listed
            .stdout
            .split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| PathBuf::from(std::str::from_utf8(f).expect("UTF-8 paths")))
            .collect(),
        None => walk(root, Path::new("")),
    };
    for file in files {
        let (from, to) = (root.join(&file), copy.join(&file));
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// Every file under `root/dir`, but build products and version control.
fn walk(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
        let name = entry.file_name();
        let path = dir.join(&name);
        if entry.file_type().unwrap().is_dir() {
            if !matches!(name.to_str(), Some("target" | "build" | ".git" | "artifacts" | "corpus")) {
                files.extend(walk(root, &path));
            }
        } else {
            files.push(path);
        }
    }
    files
}

/// The files `new-pd` may touch, to check a refusal wrote none of them.
fn snapshot(copy: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    ["system.xml", "comm-pd/ports.toml", "Cargo.toml", "Cargo.lock", "tools/sim/Cargo.toml"]
        .iter()
        .map(|f| (copy.join(f), std::fs::read(copy.join(f)).unwrap()))
        .collect()
}

#[test]
#[ignore = "copies and builds the repository: run `make -f build.mk scaffold`"]
fn a_new_pd_builds_for_sel4_audits_clean_and_answers_in_the_simulator() {
    let root = tzmk_tests::workspace_root();
    let out =
        PathBuf::from(std::env::var("TZMK_SCAFFOLD_DIR").expect("TZMK_SCAFFOLD_DIR names the scaffold's directory"));
    let (copy, target) = (out.join("repo"), out.join("target"));
    copy_repository(&root, &copy);
    // The tool as the user runs it: the copy's own.
    succeeds(&copy, &target, &cargo(), &["build", "--locked", "-q", "-p", "tzmk", "-p", "tzctl"]);
    let tzmk = target.join("debug/tzmk");
    let tzmk = tzmk.to_str().unwrap();

    // Refusals: each with the audit's (or the clash check's) own words, and nothing written.
    let before = snapshot(&copy);
    for (args, expected) in [
        (vec!["new-pd", "rt-task"], "system.xml: a PD named 'rt-task' exists"),
        (vec!["new-pd", NAME, "--port", "echo"], "comm-pd/ports.toml: a port named 'echo' exists"),
        // Microkit's priorities end at 254.
        (vec!["new-pd", NAME, "--priority", "255"], "priority"),
        // Above rt-task with most of every period: rt-task's deadline can be missed.
        (vec!["new-pd", NAME, "--priority", "254", "--budget", "900", "--period", "1000"], "[realtime-deadline]"),
        (vec!["new-pd", "Bad_Name"], "a PD name here is 1..=24 characters"),
    ] {
        let output = run(&copy, &target, tzmk, &args);
        let said = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?} was not refused:\n{said}");
        assert!(said.contains(expected), "{args:?}: no {expected:?} in:\n{said}");
        assert!(said.contains("nothing was written"), "{args:?}:\n{said}");
        assert!(snapshot(&copy) == before, "{args:?} was refused but changed a file");
        assert!(!copy.join("pds").join(NAME).exists(), "{args:?} was refused but made pds/{NAME}");
    }

    // The real thing.
    let added = succeeds(&copy, &target, tzmk, &["new-pd", NAME]);
    println!("{added}");
    for line in [
        "new      pds/hello/src/lib.rs",
        "changed  system.xml: PD 'hello'",
        "changed  comm-pd/ports.toml: port 'hello'",
        "changed  Cargo.lock",
    ] {
        assert!(added.contains(line), "no {line:?} in:\n{added}");
    }
    // system.xml kept every byte it had: the old text is the new one with the additions cut out.
    let old = String::from_utf8(before[0].1.clone()).unwrap();
    let new = std::fs::read_to_string(copy.join("system.xml")).unwrap();
    let kept = old.lines().filter(|line| new.lines().any(|l| l == *line)).count();
    assert_eq!(kept, old.lines().count(), "system.xml lost lines of its own");
    // Again: the names are taken now.
    let again = run(&copy, &target, tzmk, &["new-pd", NAME]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    succeeds(&copy, &target, &cargo(), &["test", "--locked", "-q", "-p", NAME]);
    // Every PD of the copy's system.xml for seL4, then the image checks (tests/pd_images.rs).
    let pds = succeeds(&copy, &target, "make", &["-f", "build.mk", "--no-print-directory", "pds"]);
    assert!(pds.contains("hello.elf"), "make pds did not build hello.elf:\n{pds}");
    let audit = succeeds(&copy, &target, tzmk, &["audit", "system.xml"]);
    assert!(audit.contains("system.xml: clean: 4 PDs"), "{audit}");

    // The simulator of the copy, and tzctl against it.
    succeeds(&copy, &target, &cargo(), &["build", "--locked", "-q", "-p", "tzmk", "-p", "tzctl"]);
    let run_dir = out.join("sim");
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut sim = Command::new(tzmk)
        .args(["sim", "--run-dir", run_dir.to_str().unwrap()])
        .current_dir(&copy)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tzmk sim starts");
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let ready = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("tzmk-sim: ready") => break true,
            Some(Ok(_)) if started.elapsed() < Duration::from_secs(120) => {}
            _ => break false,
        }
    };
    let tzctl = target.join("debug/tzctl");
    let tzctl = |args: &[&str]| {
        let mut all = vec!["--sim", run_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&copy, &target, tzctl.to_str().unwrap(), &all)
    };
    let outcome = ready.then(|| {
        (tzctl(&["list"]), tzctl(&["echo", NAME, "--count", "300", "--size", "1000"]), tzctl(&["call", NAME, "1"]))
    });
    let _ = sim.kill();
    let _ = sim.wait();
    let (list, echo, call) = outcome.expect("the copy's simulator printed no ready line");
    let list = text(&list);
    assert!(list.lines().any(|l| l.split_whitespace().nth(1) == Some(NAME) && l.contains("forward")), "{list}");
    let echo = text(&echo);
    println!("{echo}");
    assert!(
        echo.contains("300 messages of 1000 B, 0 checksum mismatches; the secure side counted 300 messages, 300000 B"),
        "{echo}"
    );
    // The template's totals call, answered by the PD through the call slots: 300 requests.
    let call = text(&call);
    assert!(call.starts_with("16 bytes: [2c, 01, 00, 00, 00, 00, 00, 00, e0, 93, 04, 00"), "{call}");
}
