//! The bad-system corpus: every file in tests/audit/bad must produce exactly the diagnostics and
//! exit code written in its trailing `<!-- expect: ... -->` and `<!-- exit: N -->` comments, and the
//! project's own system.xml must audit clean.

use std::fs;
use tzmk_sdf::{LoadError, Platform};

/// What `tzmk audit` prints on stderr for a file, and its exit code.
fn audit(name: &str, text: &str, platform: &Platform) -> (Vec<String>, u8) {
    match tzmk_sdf::parse_system(name, text) {
        Err(LoadError::Unreadable(d)) => (vec![d.to_string()], 2),
        Err(LoadError::Invalid(d)) => (vec![d.to_string()], 1),
        Ok(system) => {
            let violations = tzmk_sdf::audit(&system, platform);
            let code = if violations.is_empty() { 0 } else { 1 };
            (violations.iter().map(|v| tzmk_sdf::format_violation(name, v)).collect(), code)
        }
    }
}

fn expectations(name: &str, text: &str) -> (Vec<String>, u8) {
    let mut lines = Vec::new();
    let mut exit = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("<!-- expect: ") {
            lines.push(format!("{name}:{}", rest.strip_suffix(" -->").expect("expect comments end with -->")));
        }
        if let Some(rest) = line.strip_prefix("<!-- exit: ") {
            exit = Some(rest.trim_end_matches(" -->").parse().expect("exit code"));
        }
    }
    (lines, exit.unwrap_or_else(|| panic!("{name} has no <!-- exit: N --> line")))
}

#[test]
fn every_bad_system_gets_its_exact_error() {
    let platform = Platform::qemu_virt();
    let dir = tzmk_tests::workspace_root().join("tests/audit/bad");
    let mut files: Vec<_> = fs::read_dir(&dir).expect("corpus directory").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= 40, "the corpus must hold at least 40 bad systems, found {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(path).expect("readable corpus file");
        let (want, want_exit) = expectations(&name, &text);
        assert!(!want.is_empty(), "{name} expects no error: a bad system must produce one");
        assert_ne!(want_exit, 0, "{name}: a bad system cannot exit 0");
        let (got, got_exit) = audit(&name, &text, &platform);
        if got != want || got_exit != want_exit {
            failures.push(format!("{name}:\n  want (exit {want_exit}): {want:#?}\n  got  (exit {got_exit}): {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{} corpus files differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn project_system_audits_clean() {
    let root = tzmk_tests::workspace_root();
    let text = fs::read_to_string(root.join("system.xml")).expect("system.xml");
    let (got, code) = audit("system.xml", &text, &Platform::qemu_virt());
    assert_eq!((got, code), (vec![], 0));
}

#[test]
fn every_isolation_rule_is_exercised_by_the_corpus() {
    let dir = tzmk_tests::workspace_root().join("tests/audit/bad");
    let corpus: String = fs::read_dir(&dir).unwrap().map(|e| fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    for rule in [
        "region-placement",
        "normal-memory-executable",
        "normal-memory-not-facing",
        "secret-not-holder",
        "secret-in-normal-memory",
        "smc-not-allowed",
        "irq-ownership",
        "realtime-priority",
        "realtime-budget",
        "realtime-deadline",
    ] {
        assert!(corpus.contains(&format!("[{rule}]")), "no corpus file breaks rule {rule}");
    }
}

/// The bad-port-table corpus: every `tests/audit/ports/NAME.toml` is a comm-pd/ports.toml that
/// `tzmk audit` and comm-pd's build refuse. Alone, its `# expect: MESSAGE` line is the table's
/// refusal (tools/sdf `ports::parse`, the message comm-pd's build prints); with a `NAME.xml`
/// beside it, the table parses and the `# expect:` lines are the audit's lines for that system
/// (the forwarded-port rule), in order.
#[test]
fn every_bad_port_table_gets_its_exact_error() {
    let dir = tzmk_tests::workspace_root().join("tests/audit/ports");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("port corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the port corpus holds {} tables", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(path).expect("readable corpus file");
        let want: Vec<String> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).map(str::to_owned).collect();
        assert!(!want.is_empty(), "{name} expects no error: a bad table must produce one");
        let system_path = path.with_extension("xml");
        let got = match (tzmk_sdf::ports::parse(&text), system_path.exists()) {
            (Err(message), false) => vec![message],
            (Ok(_), false) => vec!["(accepted)".to_owned()],
            (Err(message), true) => vec![format!("(the table is refused: {message})")],
            (Ok(ports), true) => {
                let xml_name = system_path.file_name().unwrap().to_string_lossy().into_owned();
                let xml = fs::read_to_string(&system_path).expect("readable corpus system");
                let system = tzmk_sdf::parse_system(&xml_name, &xml).expect("the corpus system is valid");
                tzmk_sdf::ports::audit(&system, &ports)
                    .iter()
                    .map(|v| tzmk_sdf::format_violation(&xml_name, v))
                    .collect()
            }
        };
        if got != want {
            failures.push(format!("{name}:\n  want: {want:#?}\n  got:  {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{} port tables differ:\n{}", failures.len(), failures.join("\n"));
}
