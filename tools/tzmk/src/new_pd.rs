//! `tzmk new-pd NAME`: a new PD that serves a communication port, in one command
//! (docs/adding-a-pd.md).
//!
//! It copies pds/template to pds/NAME (renaming the crate), and adds: the crate to the workspace
//! and to the simulator's dependencies (tools/sim/build.rs turns system.xml's images into its
//! registry), the port to comm-pd/ports.toml (`service = "forward"`, owner NAME), and to
//! system.xml the PD, its two secure regions, comm-pd's maps of them and the channel, keeping
//! every other byte of the file. Every edit is computed first and audited as it would be written
//! (Microkit's checks, tzmk's isolation and real-time rules, the forwarded-port rule); anything
//! the audit or a clash check refuses is reported with its own message and nothing is written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tzmk_sdf::ports::{ring_region_size, PORTS_PATH};

/// Exit codes: 0 written, 1 refused (a clash or the audit), 2 unreadable files or bad arguments.
const WRITTEN: u8 = 0;
const REFUSED: u8 = 1;
const UNREADABLE: u8 = 2;

/// The port's rings: 4 KiB each way, as the template's request buffer expects.
const PORT_CAPACITY: u64 = 0x1000;
/// Where the new PD maps its two regions (its own address space: nothing else is there).
const PD_REQUESTS_VADDR: u64 = 0x200_0000;
const PD_REPLIES_VADDR: u64 = 0x220_0000;
/// comm-pd maps each region on a 2 MiB boundary of its own, as system.xml's other maps.
const COMM_MAP_ALIGN: u64 = 0x20_0000;
/// The template's stack: the port server's request buffer (1 KiB) and a control call's two
/// payload buffers (480 B each) on top of logging; 16 KiB is four times what it uses.
const STACK_SIZE: u64 = 0x4000;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The PD's name: its crate (pds/NAME), its image (NAME.elf) and its name in system.xml.
    pub name: String,
    /// The port it serves (default: NAME).
    #[arg(long, value_name = "PORTNAME")]
    pub port: Option<String>,
    /// Its priority (default: the lowest free one above comm-pd's, so that it answers comm-pd's
    /// notifications before comm-pd runs on).
    #[arg(long, value_name = "P")]
    pub priority: Option<u8>,
    /// Its budget in microseconds per period (with --period; default: Microkit's, the whole
    /// period). budget < period makes seL4 enforce it.
    #[arg(long, value_name = "B", requires = "period")]
    pub budget: Option<u64>,
    /// Its period in microseconds (with --budget).
    #[arg(long, value_name = "T", requires = "budget")]
    pub period: Option<u64>,
    /// The repository to add it to.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Only print what would change.
    #[arg(long)]
    pub dry_run: bool,
}

/// One file's new contents.
#[derive(Debug)]
struct Edit {
    path: PathBuf,
    contents: String,
    /// What changed, for the summary.
    what: String,
}

/// Every edit, audited, not yet written.
#[derive(Debug)]
pub struct Plan {
    edits: Vec<Edit>,
    /// The template's files and where they go (with the crate's names replaced).
    copies: Vec<(PathBuf, String)>,
    name: String,
    port: String,
}

pub fn run(args: Args) -> ExitCode {
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(Refusal::Unreadable(message)) => {
            eprintln!("tzmk new-pd: {message}");
            return ExitCode::from(UNREADABLE);
        }
        Err(Refusal::Refused(messages)) => {
            for message in &messages {
                eprintln!("{message}");
            }
            if messages.iter().any(|m| m.starts_with("system.xml:")) {
                eprintln!("(the audit's positions are in system.xml as new-pd would have written it: `--dry-run` lists the edits)");
            }
            eprintln!("tzmk new-pd: '{}' not added; nothing was written", args.name);
            return ExitCode::from(REFUSED);
        }
    };
    for (path, _) in &plan.copies {
        println!("new      {}", relative(&args.root, path));
    }
    for edit in &plan.edits {
        println!("changed  {}: {}", relative(&args.root, &edit.path), edit.what);
    }
    if args.dry_run {
        println!("tzmk new-pd: dry run, nothing written");
        return ExitCode::from(WRITTEN);
    }
    if let Err(e) = apply(&plan) {
        eprintln!("tzmk new-pd: {e}");
        return ExitCode::from(UNREADABLE);
    }
    // Cargo.lock gains the new crate (the builds run with --locked); nothing else is resolved.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let locked = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(&args.root)
        .stdout(std::process::Stdio::null())
        .status();
    match locked {
        Ok(status) if status.success() => println!("changed  Cargo.lock: the crate {}", plan.name),
        _ => eprintln!("tzmk new-pd: `cargo metadata` did not update Cargo.lock; run it in {}", args.root.display()),
    }
    println!(
        "tzmk new-pd: PD '{}' serves port '{}'; audit clean. Next: cargo test -p {0}, make -f build.mk pds, \
         then `tzctl echo {1}` in `tzmk sim` (docs/adding-a-pd.md)",
        plan.name, plan.port
    );
    ExitCode::from(WRITTEN)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

#[derive(Debug)]
pub enum Refusal {
    Unreadable(String),
    Refused(Vec<String>),
}

fn read(path: &Path) -> Result<String, Refusal> {
    std::fs::read_to_string(path).map_err(|e| Refusal::Unreadable(format!("{}: cannot read: {e}", path.display())))
}

fn refused(message: impl Into<String>) -> Refusal {
    Refusal::Refused(vec![message.into()])
}

/// Computes and audits every edit.
pub fn plan(args: &Args) -> Result<Plan, Refusal> {
    let root = &args.root;
    let name = args.name.as_str();
    let port = args.port.clone().unwrap_or_else(|| name.to_owned());
    let valid = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !valid(name) || name.len() > 24 || name.ends_with('-') {
        return Err(refused(format!(
            "'{name}': a PD name here is 1..=24 characters of a-z, 0-9 and '-', starting with a letter (it is also its crate's name)"
        )));
    }
    if name == "template" || name.starts_with("pd-template") {
        return Err(refused(format!("'{name}' is the template's own name")));
    }
    let system_path = root.join("system.xml");
    let ports_path = root.join(PORTS_PATH);
    let system_text = read(&system_path)?;
    let ports_text = read(&ports_path)?;
    let workspace_path = root.join("Cargo.toml");
    let workspace_text = read(&workspace_path)?;
    let sim_path = root.join("tools/sim/Cargo.toml");
    let sim_text = read(&sim_path)?;
    let system = tzmk_sdf::parse_system("system.xml", &system_text)
        .map_err(|e| Refusal::Refused(vec![format!("system.xml does not load as it is: {e}")]))?;
    let ports = tzmk_sdf::ports::parse(&ports_text).map_err(|e| refused(format!("{}: {e}", ports_path.display())))?;

    // Clashes, each named.
    let mut clashes = Vec::new();
    let crate_dir = root.join("pds").join(name);
    if crate_dir.exists() {
        clashes.push(format!("{}: already exists", crate_dir.display()));
    }
    if system.pd(name).is_some() {
        clashes.push(format!("system.xml: a PD named '{name}' exists"));
    }
    let image = format!("{name}.elf");
    if system.protection_domains.iter().any(|pd| pd.program_image == image) {
        clashes.push(format!("system.xml: a PD already runs the image '{image}'"));
    }
    if workspace_text.contains(&format!("\"pds/{name}\"")) {
        clashes.push(format!("Cargo.toml: the workspace already has pds/{name}"));
    }
    if ports.iter().any(|p| p.name == port) {
        clashes.push(format!("{PORTS_PATH}: a port named '{port}' exists"));
    }
    let symbol = port.replace('-', "_");
    let (requests, replies) = (format!("{symbol}_requests"), format!("{symbol}_replies"));
    for region in [&requests, &replies] {
        if system.region(region).is_some() {
            clashes.push(format!("system.xml: a memory region named '{region}' exists"));
        }
    }
    let Some(comm) = system.pd("comm-pd") else {
        return Err(refused("system.xml has no comm-pd to forward the port"));
    };
    let comm_index = system.pd_index("comm-pd").expect("found above");
    if !clashes.is_empty() {
        return Err(Refusal::Refused(clashes));
    }
    if ports.len() >= tzmk_sdf::ports::MAX_PORTS {
        return Err(refused(format!(
            "{PORTS_PATH}: {} ports, the directory holds at most {}",
            ports.len(),
            tzmk_sdf::ports::MAX_PORTS
        )));
    }

    // Numbers: the port's id, comm-pd's channel id, comm-pd's map addresses, the priority.
    let id = ports.iter().map(|p| p.id).max().unwrap_or(0).checked_add(1).ok_or_else(|| refused("no free port id"))?;
    let used: Vec<u8> =
        system.channel_ends_of(comm_index).map(|(mine, _)| mine.id).chain(comm.irqs.iter().map(|irq| irq.id)).collect();
    let channel_id = (0..=microkit::MAX_CHANNEL_ID as u8)
        .find(|id| !used.contains(id))
        .ok_or_else(|| refused("comm-pd has no free channel id (0..=61)"))?;
    let region_size = ring_region_size(PORT_CAPACITY);
    let comm_end =
        comm.maps.iter().map(|m| m.vaddr + system.region(&m.mr).map_or(0, |r| r.size)).max().unwrap_or(0x200_0000);
    let comm_requests = comm_end.next_multiple_of(COMM_MAP_ALIGN);
    let comm_replies = (comm_requests + region_size).next_multiple_of(COMM_MAP_ALIGN);
    let priority = match args.priority {
        Some(p) => p,
        None => {
            let taken: Vec<u8> = system.protection_domains.iter().map(|pd| pd.priority).collect();
            (comm.priority.saturating_add(10)..=254)
                .find(|p| !taken.contains(p))
                .ok_or_else(|| refused("no free priority above comm-pd's"))?
        }
    };
    let timing = match (args.budget, args.period) {
        (Some(b), Some(t)) => format!(" budget=\"{b}\" period=\"{t}\""),
        _ => String::new(),
    };

    // system.xml: comm-pd's two maps inside its element, the rest before </system>.
    let comm_maps = format!(
        "        <!-- Port '{port}' (ports.toml, forwarded to {name}): comm-pd copies each message to\n\
         \x20            {requests} and forwards {name}'s answers from {replies}. -->\n\
         \x20       <map mr=\"{requests}\" vaddr=\"{comm_requests:#x}\" perms=\"rw\" cached=\"true\"\n\
         \x20            setvar_vaddr=\"{requests}_vaddr\" setvar_size=\"{requests}_size\" />\n\
         \x20       <map mr=\"{replies}\" vaddr=\"{comm_replies:#x}\" perms=\"rw\" cached=\"true\"\n\
         \x20            setvar_vaddr=\"{replies}_vaddr\" setvar_size=\"{replies}_size\" />\n"
    );
    let block = format!(
        "\n    <!-- {name} (pds/{name}, added by `tzmk new-pd`): serves port '{port}' of comm-pd/ports.toml.\n\
         \x20        Its two regions are secure RAM the tool allocates, mapped into comm-pd and {name} only:\n\
         \x20        comm-pd writes validated requests into {requests}, {name} answers on {replies}.\n\
         \x20        The port's control calls go through the call slots at the regions' ends, by notification:\n\
         \x20        comm-pd never waits for {name} (it cuts off an owner that does not answer in time). -->\n\
         \x20   <memory_region name=\"{requests}\" size=\"{region_size:#x}\" />\n\
         \x20   <memory_region name=\"{replies}\" size=\"{region_size:#x}\" />\n\
         \x20   <protection_domain name=\"{name}\" priority=\"{priority}\"{timing} stack_size=\"{STACK_SIZE:#x}\">\n\
         \x20       <program_image path=\"{image}\" />\n\
         \x20       <map mr=\"{requests}\" vaddr=\"{PD_REQUESTS_VADDR:#x}\" perms=\"rw\" cached=\"true\"\n\
         \x20            setvar_vaddr=\"requests_vaddr\" setvar_size=\"requests_size\" />\n\
         \x20       <map mr=\"{replies}\" vaddr=\"{PD_REPLIES_VADDR:#x}\" perms=\"rw\" cached=\"true\"\n\
         \x20            setvar_vaddr=\"replies_vaddr\" setvar_size=\"replies_size\" />\n\
         \x20   </protection_domain>\n\
         \x20   <channel>\n\
         \x20       <end pd=\"comm-pd\" id=\"{channel_id}\" setvar_id=\"{symbol}_channel\" />\n\
         \x20       <end pd=\"{name}\" id=\"0\" setvar_id=\"comm_channel\" />\n\
         \x20   </channel>\n"
    );
    let new_system = insert_system(&system_text, &comm_maps, &block).map_err(refused)?;
    let new_ports = format!(
        "{}\n[[port]]\nid = {id}\nname = \"{port}\"\nservice = \"forward\"\nowner = \"{name}\"\ncapacity = {PORT_CAPACITY:#x}\n",
        ports_text.trim_end()
    );
    let new_workspace = insert_after_line(&workspace_text, "\"pds/template\",", &format!("    \"pds/{name}\","))
        .ok_or_else(|| refused("Cargo.toml: no `\"pds/template\",` member line to add the crate after"))?;
    let new_sim = insert_after_line(
        &sim_text,
        "rt-task = { workspace = true }",
        &format!("{name} = {{ path = \"../../pds/{name}\" }}"),
    )
    .ok_or_else(|| refused("tools/sim/Cargo.toml: no `rt-task = { workspace = true }` line to add the crate after"))?;

    // The audit of what would be written.
    let audited = audit(root, &new_system, &new_ports)?;
    if !audited.is_empty() {
        return Err(Refusal::Refused(audited));
    }

    let template = root.join("pds/template");
    let mut copies = Vec::new();
    for file in ["Cargo.toml", "README.md", "src/lib.rs", "src/main.rs"] {
        let text = read(&template.join(file))?;
        let renamed = text.replace("pd-template", name).replace("pd_template", &name.replace('-', "_"));
        let renamed =
            if file == "README.md" { renamed.replace("pds/template", &format!("pds/{name}")) } else { renamed };
        copies.push((crate_dir.join(file), renamed));
    }
    Ok(Plan {
        edits: vec![
            Edit {
                path: system_path,
                contents: new_system,
                what: format!(
                    "PD '{name}' (priority {priority}{}), regions {requests} and {replies} ({region_size:#x} each), \
                     comm-pd's maps at {comm_requests:#x} and {comm_replies:#x}, channel comm-pd {channel_id} <-> {name} 0",
                    if timing.is_empty() { String::new() } else { format!(", budget {:?} us per {:?} us", args.budget.unwrap_or(0), args.period.unwrap_or(0)) }
                ),
            },
            Edit { path: ports_path, contents: new_ports, what: format!("port '{port}' (id {id}), forwarded to {name}") },
            Edit { path: workspace_path, contents: new_workspace, what: format!("workspace member pds/{name}") },
            Edit { path: sim_path, contents: new_sim, what: format!("the simulator runs {image}") },
        ],
        copies,
        name: name.to_owned(),
        port,
    })
}

/// Inserts comm-pd's maps before the end of its element (before its first `<irq`, so maps stay
/// together) and the new PD's block before `</system>`.
fn insert_system(text: &str, comm_maps: &str, block: &str) -> Result<String, String> {
    let start = text.find("<protection_domain name=\"comm-pd\"").ok_or("system.xml: no comm-pd element")?;
    let end = start + text[start..].find("</protection_domain>").ok_or("system.xml: comm-pd's element does not end")?;
    let at = text[start..end].find("<irq").map_or(end, |irq| start + irq);
    // At the start of that line.
    let at = text[..at].rfind('\n').map_or(at, |newline| newline + 1);
    let close = text.rfind("</system>").ok_or("system.xml: no </system>")?;
    let close = text[..close].rfind('\n').map_or(close, |newline| newline + 1);
    let mut out = String::with_capacity(text.len() + comm_maps.len() + block.len());
    out.push_str(&text[..at]);
    out.push_str(comm_maps);
    out.push_str(&text[at..close]);
    out.push_str(block);
    out.push_str(&text[close..]);
    Ok(out)
}

fn insert_after_line(text: &str, marker: &str, line: &str) -> Option<String> {
    let found = text.find(marker)?;
    let end = found + text[found..].find('\n').map_or(text.len() - found, |n| n + 1);
    Some(format!("{}{line}\n{}", &text[..end], &text[end..]))
}

/// `tzmk audit` over the texts as they would be written: the messages, file and position first.
fn audit(root: &Path, system_text: &str, ports_text: &str) -> Result<Vec<String>, Refusal> {
    let system = match tzmk_sdf::parse_system("system.xml", system_text) {
        Ok(system) => system,
        Err(e) => return Ok(vec![e.to_string()]),
    };
    let platform = tzmk_sdf::load_platform(None).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    let sidecar_path = root.join(tzmk_sdf::realtime::SIDECAR_PATH);
    let sidecar = if sidecar_path.exists() {
        tzmk_sdf::realtime::Sidecar::load(&sidecar_path).map_err(|e| Refusal::Unreadable(e.to_string()))?
    } else {
        tzmk_sdf::realtime::Sidecar::default()
    };
    let mut violations = match tzmk_sdf::audit_with(&system, &platform, &sidecar, tzmk_sdf::realtime::SIDECAR_PATH) {
        Ok(violations) => violations,
        Err(e) => return Ok(vec![e.to_string()]),
    };
    let ports = tzmk_sdf::ports::parse(ports_text).map_err(|e| refused(format!("{PORTS_PATH}: {e}")))?;
    violations.extend(tzmk_sdf::ports::audit(&system, &ports));
    Ok(violations.iter().map(|v| tzmk_sdf::format_violation("system.xml", v)).collect())
}

fn apply(plan: &Plan) -> std::io::Result<()> {
    for (path, contents) in &plan.copies {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, contents)?;
    }
    for edit in &plan.edits {
        std::fs::write(&edit.path, &edit.contents)?;
    }
    Ok(())
}
