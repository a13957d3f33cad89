//! `tzmk audit`: Microkit's checks, tzmk's isolation rules, and each PD's authority.

use std::path::PathBuf;
use std::process::ExitCode;
use tzmk_sdf::{report, LoadError};

/// Exit code for a clean system.
const CLEAN: u8 = 0;
/// Exit code when the system breaks a Microkit or isolation rule.
const VIOLATIONS: u8 = 1;
/// Exit code when an input cannot be read.
const UNREADABLE: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The system description.
    #[arg(default_value = "system.xml")]
    pub system: PathBuf,
    /// The platform description (default: the built-in monitor/platform/qemu-virt.toml).
    #[arg(long)]
    pub platform: Option<PathBuf>,
    /// The real-time sidecar with the real-time PDs' deadlines (default: pds/realtime.toml beside
    /// the system description, if there is one; without it, deadlines are the periods).
    #[arg(long, value_name = "FILE")]
    pub realtime: Option<PathBuf>,
    /// comm-pd's port table, for the forwarded-port rule (default: comm-pd/ports.toml beside the
    /// system description, if there is one).
    #[arg(long, value_name = "FILE")]
    pub ports: Option<PathBuf>,
    /// Print the authority report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write a Graphviz picture of the system to this file.
    #[arg(long, value_name = "FILE")]
    pub dot: Option<PathBuf>,
    /// Print only errors and violations.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &Args) -> ExitCode {
    let platform = match tzmk_sdf::load_platform(args.platform.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let system = match tzmk_sdf::load_system(&args.system) {
        Ok(s) => s,
        Err(e @ LoadError::Unreadable(_)) => {
            eprintln!("{e}");
            return ExitCode::from(UNREADABLE);
        }
        Err(e @ LoadError::Invalid(_)) => {
            eprintln!("{e}");
            return ExitCode::from(VIOLATIONS);
        }
    };
    let beside = args.system.parent().unwrap_or(std::path::Path::new(".")).join(tzmk_sdf::realtime::SIDECAR_PATH);
    let sidecar_path = args.realtime.clone().or_else(|| beside.exists().then_some(beside));
    let (sidecar, sidecar_name) = match &sidecar_path {
        None => (tzmk_sdf::realtime::Sidecar::default(), tzmk_sdf::realtime::SIDECAR_PATH.to_owned()),
        Some(path) => match tzmk_sdf::realtime::Sidecar::load(path) {
            Ok(sidecar) => (sidecar, path.display().to_string()),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(UNREADABLE);
            }
        },
    };
    let mut violations = match tzmk_sdf::audit_with(&system, &platform, &sidecar, &sidecar_name) {
        Ok(violations) => violations,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(VIOLATIONS);
        }
    };
    let beside = args.system.parent().unwrap_or(std::path::Path::new(".")).join(tzmk_sdf::ports::PORTS_PATH);
    if let Some(path) = args.ports.clone().or_else(|| beside.exists().then_some(beside)) {
        match tzmk_sdf::ports::load(&path) {
            Ok(ports) => violations.extend(tzmk_sdf::ports::audit(&system, &ports)),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(VIOLATIONS);
            }
        }
        violations.sort_by(|a, b| a.pos.cmp(&b.pos).then(a.rule.cmp(b.rule)));
    }
    let file = args.system.display().to_string();
    for v in &violations {
        eprintln!("{}", tzmk_sdf::format_violation(&file, v));
    }
    if let Some(path) = &args.dot {
        if let Err(e) = std::fs::write(path, report::to_dot(&system, &platform)) {
            eprintln!("{}: cannot write: {e}", path.display());
            return ExitCode::from(UNREADABLE);
        }
    }
    if !args.quiet {
        let authority = report::authority(&system, &platform);
        if args.json {
            println!("{}", authority.to_json());
        } else {
            print!("{}", authority.to_text());
            // The same analysis rt-task runs before it accepts `tzctl rt set`.
            if let Ok(sets) = tzmk_sdf::realtime::task_sets(&system, &platform, &sidecar, &sidecar_name) {
                print!("{}", tzmk_sdf::realtime::report_text(&tzmk_sdf::realtime::analyse(sets)));
            }
            match violations.len() {
                0 => println!(
                    "{file}: clean: {} PDs, {} regions, {} channels",
                    system.protection_domains.len(),
                    system.memory_regions.len(),
                    system.channels.len()
                ),
                n => println!("{file}: {n} isolation violation(s)"),
            }
        }
    }
    ExitCode::from(if violations.is_empty() { CLEAN } else { VIOLATIONS })
}
