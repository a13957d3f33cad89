//! comm-pd's build: the shared PD link setup, and its port table from ports.toml.
//!
//! The table is generated rather than parsed at run time because comm-pd on seL4 has no file
//! system and no allocator; every mistake in ports.toml stops the build with the port and field.

#[path = "../pds/pd-build.rs"]
mod pd_build;

use std::collections::HashSet;
use std::fmt::Write as _;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    port: Vec<Port>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Port {
    id: u64,
    name: String,
    service: String,
    owner: String,
    capacity: Option<u64>,
    rx_capacity: Option<u64>,
    tx_capacity: Option<u64>,
}

/// (service, `Service` variant, the PD that answers it; `None`: any PD but comm-pd, which
/// ports.toml names as the owner).
const SERVICES: [(&str, &str, Option<&str>); 5] = [
    ("echo", "Echo", Some("comm-pd")),
    ("sink", "Sink", Some("comm-pd")),
    ("attestation", "Attestation", Some("attestation-pd")),
    ("rt", "RealTime", Some("rt-task")),
    ("forward", "Forward", None),
];
/// tzmk_interface::port::MAX_PORTS and NAME_LEN.
const MAX_PORTS: usize = 16;
const NAME_LEN: usize = 24;

fn main() {
    pd_build::main();
    println!("cargo:rerun-if-changed=ports.toml");
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("ports.toml");
    match generate(&path) {
        Ok(code) => {
            let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("ports.rs");
            std::fs::write(out, code).expect("OUT_DIR is writable");
        }
        Err(message) => {
            eprintln!("{}: {message}", path.display());
            std::process::exit(1);
        }
    }
}

fn capacity(port: &Port, field: &str, value: Option<u64>) -> Result<u64, String> {
    let value =
        value.or(port.capacity).ok_or_else(|| format!("port '{}': needs `capacity` or `{field}`", port.name))?;
    if !(64..=1 << 30).contains(&value) || !value.is_power_of_two() {
        return Err(format!("port '{}': {field} {value:#x} is not a power of two in 64..=2^30", port.name));
    }
    Ok(value)
}

fn generate(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file: File = toml::from_str(&text).map_err(|e| e.to_string())?;
    if file.port.len() > MAX_PORTS {
        return Err(format!("{} ports, at most {MAX_PORTS}", file.port.len()));
    }
    let (mut ids, mut names) = (HashSet::new(), HashSet::new());
    let mut code = format!(
        "/// Generated from comm-pd/ports.toml by build.rs.\npub static PORTS: [PortConfig; {}] = [\n",
        file.port.len()
    );
    // The forwarded ports' bindings: their regions and channel in comm-pd, by symbol.
    let mut owners = String::new();
    let mut forwarded = 0;
    for port in &file.port {
        let name = &port.name;
        if !(1..=u64::from(u16::MAX)).contains(&port.id) || !ids.insert(port.id) {
            return Err(format!("port '{name}': id {} is not unique in 1..=65535", port.id));
        }
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if name.is_empty() || name.len() > NAME_LEN || !name.chars().all(valid) {
            return Err(format!("port '{name}': a name is 1..={NAME_LEN} characters of a-z, 0-9 and '-'"));
        }
        if !names.insert(name.clone()) {
            return Err(format!("port '{name}': the name is used twice"));
        }
        let Some((_, variant, owner)) = SERVICES.iter().find(|(s, _, _)| *s == port.service) else {
            let known: Vec<_> = SERVICES.iter().map(|s| s.0).collect();
            return Err(format!("port '{name}': unknown service '{}' (known: {})", port.service, known.join(", ")));
        };
        match owner {
            Some(owner) if port.owner != *owner => {
                return Err(format!(
                    "port '{name}': service '{}' is answered by {owner}, not by '{}'",
                    port.service, port.owner
                ));
            }
            Some(_) => {}
            None => {
                let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
                if port.owner == "comm-pd" || port.owner.is_empty() || !port.owner.chars().all(valid) {
                    return Err(format!(
                        "port '{name}': a forwarded port's owner is a PD of system.xml other than comm-pd, not '{}'",
                        port.owner
                    ));
                }
                let symbol = name.replace('-', "_");
                writeln!(
                    owners,
                    "        Owner {{ id: {}, owner: {:?}, requests: microkit::memory_region!({symbol}_requests_vaddr, {symbol}_requests_size), \
                     replies: microkit::memory_region!({symbol}_replies_vaddr, {symbol}_replies_size), channel: microkit::channel!({symbol}_channel) }},",
                    port.id, port.owner
                )
                .unwrap();
                forwarded += 1;
            }
        }
        let rx = capacity(port, "rx_capacity", port.rx_capacity)?;
        let tx = capacity(port, "tx_capacity", port.tx_capacity)?;
        writeln!(
            code,
            "    PortConfig {{ id: {}, name: {name:?}, service: Service::{variant}, rx_capacity: {rx:#x}, tx_capacity: {tx:#x} }},",
            port.id
        )
        .unwrap();
    }
    code.push_str("];\n");
    writeln!(
        code,
        "/// The forwarded ports' owners, bound through the setvar symbols system.xml gives comm-pd\n\
         /// (`<port>_requests_vaddr`/`_size`, `<port>_replies_vaddr`/`_size`, `<port>_channel`, with the\n\
         /// port's name's '-' as '_'). Called once, at start.\n\
         pub fn owners() -> [Owner; {forwarded}] {{\n    [\n{owners}    ]\n}}"
    )
    .unwrap();
    Ok(code)
}
