//! comm-pd's port table (comm-pd/ports.toml): its checks, shared by comm-pd's build (which turns
//! it into the PD's table) and `tzmk audit`, and the `forwarded-port` rule: what system.xml must
//! grant for a port another PD answers (docs/adding-a-pd.md).

use crate::audit::Violation;
use crate::model::{SetVarValue, System};
use std::collections::HashSet;

/// Where the table is, from the repository's root (beside system.xml).
pub const PORTS_PATH: &str = "comm-pd/ports.toml";
/// tzmk_interface::port::MAX_PORTS and NAME_LEN.
pub const MAX_PORTS: usize = 16;
pub const NAME_LEN: usize = 24;

/// The services ports.toml knows: (name, the PD that answers it; `None`: the port's `owner`,
/// any PD but comm-pd, which forwards to it).
pub const SERVICES: [(&str, Option<&str>); 5] = [
    ("echo", Some("comm-pd")),
    ("sink", Some("comm-pd")),
    ("attestation", Some("attestation-pd")),
    ("rt", Some("rt-task")),
    ("forward", None),
];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    port: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: u64,
    name: String,
    service: String,
    owner: String,
    capacity: Option<u64>,
    rx_capacity: Option<u64>,
    tx_capacity: Option<u64>,
}

/// One checked port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub id: u16,
    pub name: String,
    pub service: String,
    pub owner: String,
    pub rx_capacity: u64,
    pub tx_capacity: u64,
}

impl Port {
    pub fn forwarded(&self) -> bool {
        self.service == "forward"
    }

    /// The port's name as part of a symbol: '-' becomes '_'.
    pub fn symbol(&self) -> String {
        self.name.replace('-', "_")
    }

    /// comm-pd's setvar symbols for a forwarded port: the two regions and the channel.
    pub fn comm_symbols(&self) -> ForwardSymbols {
        let s = self.symbol();
        ForwardSymbols {
            requests: format!("{s}_requests"),
            replies: format!("{s}_replies"),
            channel: format!("{s}_channel"),
        }
    }
}

/// The names system.xml uses for a forwarded port in comm-pd: the regions' names (also the
/// prefix of their `setvar_vaddr`/`setvar_size`: `<region>_vaddr`, `<region>_size`) and the
/// channel end's `setvar_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSymbols {
    pub requests: String,
    pub replies: String,
    pub channel: String,
}

/// The bytes a region needs to hold a ring carrying a port ring's messages of `capacity` bytes:
/// the ring header, the data and the call slot at the region's end
/// (tzmk_interface::forward), in whole pages.
pub fn ring_region_size(capacity: u64) -> u64 {
    let slot = tzmk_interface::forward::CALL_SLOT_SIZE as u64;
    (tzmk_ring::HEADER_SIZE as u64 + capacity + slot).div_ceil(4096) * 4096
}

/// The largest message the ring of a forwarded-port region of `size` bytes carries (both ends
/// lay it out this way: the region but its call slot), or 0 when it holds no ring.
pub fn region_ring_largest(size: u64) -> u64 {
    let bytes = tzmk_interface::forward::ring_bytes(usize::try_from(size).unwrap_or(usize::MAX));
    tzmk_ring::RingLayout::largest_within(bytes).map_or(0, |layout| layout.max_message() as u64)
}

/// The largest message a port ring of `capacity` bytes carries (`RingLayout::max_message`).
pub fn largest_message(capacity: u64) -> u64 {
    capacity / 4 - tzmk_ring::RECORD_HEADER as u64
}

/// The smallest ring capacity whose messages carry `bytes`.
fn capacity_for(bytes: u64) -> u64 {
    (4 * (bytes + tzmk_ring::RECORD_HEADER as u64)).next_power_of_two().max(64)
}

/// Refuses a port whose replies can never fit its tx ring: comm-pd takes a message only when the
/// room its reply may need is free (`Service::reply_room`), so such a message would wait in the
/// rx ring for good, stalling the port. An echo's reply is as long as the message (up to the rx
/// ring's largest), an attestation port's evidence up to `MAX_EVIDENCE`, an rt port's
/// statistics a fixed size.
fn replies_fit(port: &Port) -> Result<(), String> {
    use tzmk_interface::port::Service;
    let Some(service) = Service::ALL.into_iter().find(|s| s.name() == port.service) else { return Ok(()) };
    let (rx, tx) = (port.rx_capacity, port.tx_capacity);
    let (largest_in, largest_out) = (largest_message(rx), largest_message(tx));
    let reply = service.reply_room(largest_in as usize) as u64;
    if reply <= largest_out {
        return Ok(());
    }
    let name = &port.name;
    let what = match service {
        Service::Echo => {
            format!("an echo's reply is as long as its message, up to {largest_in} bytes (rx_capacity {rx:#x})")
        }
        Service::Attestation => format!(
            "an evidence reply (token and certificate chain) is up to {} bytes",
            tzmk_interface::attestation::MAX_EVIDENCE
        ),
        _ => format!("a reply of service '{}' is up to {reply} bytes", port.service),
    };
    Err(format!(
        "port '{name}': {what}, but its tx ring ({tx:#x} bytes) carries messages of at most {largest_out}: \
         such a message would stall the port for good; tx_capacity must be at least {:#x}",
        capacity_for(reply)
    ))
}

fn capacity(entry: &Entry, field: &str, value: Option<u64>) -> Result<u64, String> {
    let value =
        value.or(entry.capacity).ok_or_else(|| format!("port '{}': needs `capacity` or `{field}`", entry.name))?;
    if !(64..=1 << 30).contains(&value) || !value.is_power_of_two() {
        return Err(format!("port '{}': {field} {value:#x} is not a power of two in 64..=2^30", entry.name));
    }
    Ok(value)
}

/// Parses and checks the table; the message names the port and the field of the first mistake.
pub fn parse(text: &str) -> Result<Vec<Port>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.port.len() > MAX_PORTS {
        return Err(format!("{} ports, at most {MAX_PORTS}", file.port.len()));
    }
    let (mut ids, mut names) = (HashSet::new(), HashSet::new());
    let mut ports = Vec::new();
    for entry in &file.port {
        let name = &entry.name;
        if !(1..=u64::from(u16::MAX)).contains(&entry.id) || !ids.insert(entry.id) {
            return Err(format!("port '{name}': id {} is not unique in 1..=65535", entry.id));
        }
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if name.is_empty() || name.len() > NAME_LEN || !name.chars().all(valid) {
            return Err(format!("port '{name}': a name is 1..={NAME_LEN} characters of a-z, 0-9 and '-'"));
        }
        if !names.insert(name.clone()) {
            return Err(format!("port '{name}': the name is used twice"));
        }
        let Some((_, owner)) = SERVICES.iter().find(|(s, _)| *s == entry.service) else {
            let known: Vec<_> = SERVICES.iter().map(|s| s.0).collect();
            return Err(format!("port '{name}': unknown service '{}' (known: {})", entry.service, known.join(", ")));
        };
        match owner {
            Some(owner) if entry.owner != *owner => {
                return Err(format!(
                    "port '{name}': service '{}' is answered by {owner}, not by '{}'",
                    entry.service, entry.owner
                ));
            }
            Some(_) => {}
            None if entry.owner == "comm-pd" || entry.owner.is_empty() => {
                return Err(format!(
                    "port '{name}': a forwarded port's owner is a PD of system.xml other than comm-pd, not '{}'",
                    entry.owner
                ));
            }
            None => {}
        }
        let port = Port {
            id: entry.id as u16,
            name: name.clone(),
            service: entry.service.clone(),
            owner: entry.owner.clone(),
            rx_capacity: capacity(entry, "rx_capacity", entry.rx_capacity)?,
            tx_capacity: capacity(entry, "tx_capacity", entry.tx_capacity)?,
        };
        replies_fit(&port)?;
        ports.push(port);
    }
    Ok(ports)
}

/// Reads and checks the table at `path`.
pub fn load(path: &std::path::Path) -> Result<Vec<Port>, crate::Diagnostic> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| crate::Diagnostic::file(&file, format!("cannot read: {e}")))?;
    parse(&text).map_err(|message| crate::Diagnostic::file(&file, message))
}

/// The `forwarded-port` rule: for each forwarded port, system.xml gives comm-pd and the owner
/// (and no one else) the two secure regions, large enough, under comm-pd's symbols, and a
/// channel for their notifications, also under its symbol. Without them, comm-pd would not start
/// (a setvar it needs is missing) or the port would not work. comm-pd's end must not be able to
/// call the owner (`pp`): a protected procedure call waits for the owner, which could then stop
/// comm-pd for good (issue 20); control calls go through the call slots. And the owner's reply
/// ring must not carry replies longer than the port's tx ring does: comm-pd copies each reply
/// unchanged, and one it cannot place would break the port.
pub fn audit(system: &System, ports: &[Port]) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(comm_index) = system.pd_index("comm-pd") else { return out };
    let comm = &system.protection_domains[comm_index];
    for port in ports.iter().filter(|p| p.forwarded()) {
        let mut violation = |pos, message: String| {
            out.push(Violation { rule: "forwarded-port", pos, message: format!("port '{}': {message}", port.name) })
        };
        let Some(owner_index) = system.pd_index(&port.owner) else {
            violation(comm.pos, format!("its owner '{}' (ports.toml) is no PD of system.xml", port.owner));
            continue;
        };
        let owner = &system.protection_domains[owner_index];
        let symbols = port.comm_symbols();
        for (region, carries) in [(&symbols.requests, port.rx_capacity), (&symbols.replies, port.tx_capacity)] {
            // comm-pd's map of it, found by its setvar_vaddr.
            let vaddr_symbol = format!("{region}_vaddr");
            let vaddr = comm.setvars.iter().find_map(|s| match s.value {
                SetVarValue::Vaddr { address } if s.symbol == vaddr_symbol => Some(address),
                _ => None,
            });
            let Some(map) = vaddr.and_then(|v| comm.maps.iter().find(|m| m.vaddr == v)) else {
                violation(comm.pos, format!("comm-pd maps no region with setvar_vaddr=\"{vaddr_symbol}\""));
                continue;
            };
            let size_symbol = format!("{region}_size");
            if !comm.setvars.iter().any(|s| s.symbol == size_symbol) {
                violation(map.pos, format!("comm-pd's map of '{}' has no setvar_size=\"{size_symbol}\"", map.mr));
            }
            if !(map.perms.read && map.perms.write) || map.perms.execute {
                violation(map.pos, format!("comm-pd must map '{}' rw (not {})", map.mr, map.perms));
            }
            let Some(mr) = system.region(&map.mr) else { continue };
            if mr.phys_addr.is_some() {
                violation(
                    mr.pos,
                    format!(
                        "region '{}' has a phys_addr: a forwarded port's rings are secure RAM the tool allocates",
                        mr.name
                    ),
                );
            }
            if mr.size < ring_region_size(carries) {
                violation(
                    mr.pos,
                    format!(
                        "region '{}' is {:#x} bytes; a ring carrying the port's {carries:#x}-byte ring's messages needs {:#x}",
                        mr.name,
                        mr.size,
                        ring_region_size(carries)
                    ),
                );
            }
            let largest = region_ring_largest(mr.size);
            if region == &symbols.replies && largest > largest_message(port.tx_capacity) {
                violation(
                    mr.pos,
                    format!(
                        "region '{}' ({:#x} bytes) holds a reply ring carrying replies of up to {largest} bytes, but the \
                         port's tx ring ({:#x} bytes) carries at most {}: such a reply would break the port; map {:#x} bytes",
                        mr.name,
                        mr.size,
                        port.tx_capacity,
                        largest_message(port.tx_capacity),
                        ring_region_size(port.tx_capacity)
                    ),
                );
            }
            for (index, pd) in system.protection_domains.iter().enumerate() {
                let maps = pd.maps.iter().filter(|m| m.mr == map.mr);
                for m in maps {
                    if index == owner_index {
                        if !(m.perms.read && m.perms.write) || m.perms.execute {
                            violation(m.pos, format!("'{}' must map '{}' rw (not {})", pd.name, m.mr, m.perms));
                        }
                    } else if index != comm_index {
                        violation(
                            m.pos,
                            format!("'{}' maps '{}', which only comm-pd and '{}' may", pd.name, m.mr, owner.name),
                        );
                    }
                }
            }
            if !owner.maps.iter().any(|m| m.mr == map.mr) {
                violation(owner.pos, format!("its owner '{}' does not map '{}'", owner.name, map.mr));
            }
        }
        let channel = system.channel_ends_of(comm_index).find(|(_, theirs)| theirs.pd == owner_index);
        match channel {
            None => violation(owner.pos, format!("no channel joins comm-pd and its owner '{}'", owner.name)),
            Some((mine, _)) => {
                let named = comm
                    .setvars
                    .iter()
                    .any(|s| s.symbol == symbols.channel && matches!(s.value, SetVarValue::Id { id } if id == mine.id));
                if !named {
                    violation(
                        mine.pos,
                        format!(
                            "comm-pd's end of the channel to '{}' needs setvar_id=\"{}\"",
                            owner.name, symbols.channel
                        ),
                    );
                }
                if mine.pp {
                    violation(
                        mine.pos,
                        format!(
                            "comm-pd's end of the channel to '{}' must not have pp=\"true\": a call would wait for \
                             the owner, which could stop comm-pd (control calls go through the call slots)",
                            owner.name
                        ),
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_table_is_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let ports = load(&root.join(PORTS_PATH)).unwrap();
        assert!(ports.iter().any(|p| p.name == "echo"));
        let system = crate::load_system(&root.join("system.xml")).unwrap();
        assert_eq!(audit(&system, &ports), vec![]);
    }

    #[test]
    fn mistakes_name_the_port_and_the_field() {
        let one = |body: &str| parse(&format!("[[port]]\n{body}")).unwrap_err();
        assert_eq!(
            one("id = 1\nname = \"a\"\nservice = \"forward\"\nowner = \"comm-pd\"\ncapacity = 4096"),
            "port 'a': a forwarded port's owner is a PD of system.xml other than comm-pd, not 'comm-pd'"
        );
        assert_eq!(
            one("id = 1\nname = \"a\"\nservice = \"echo\"\nowner = \"x\"\ncapacity = 4096"),
            "port 'a': service 'echo' is answered by comm-pd, not by 'x'"
        );
        assert_eq!(
            one("id = 1\nname = \"a\"\nservice = \"bogus\"\nowner = \"x\"\ncapacity = 4096"),
            "port 'a': unknown service 'bogus' (known: echo, sink, attestation, rt, forward)"
        );
        assert_eq!(
            one("id = 1\nname = \"a\"\nservice = \"echo\"\nowner = \"comm-pd\"\ncapacity = 1000"),
            "port 'a': rx_capacity 0x3e8 is not a power of two in 64..=2^30"
        );
        // Replies that can never fit the tx ring (issue 20): the port would stall for good.
        assert_eq!(
            one("id = 1\nname = \"a\"\nservice = \"echo\"\nowner = \"comm-pd\"\nrx_capacity = 0x2000\ntx_capacity = 0x1000"),
            "port 'a': an echo's reply is as long as its message, up to 2040 bytes (rx_capacity 0x2000), but its tx \
             ring (0x1000 bytes) carries messages of at most 1016: such a message would stall the port for good; \
             tx_capacity must be at least 0x2000"
        );
        assert_eq!(
            one("id = 1\nname = \"a\"\nservice = \"attestation\"\nowner = \"attestation-pd\"\ncapacity = 0x2000"),
            "port 'a': an evidence reply (token and certificate chain) is up to 3072 bytes, but its tx ring (0x2000 \
             bytes) carries messages of at most 2040: such a message would stall the port for good; tx_capacity \
             must be at least 0x4000"
        );
        assert_eq!(
            one("id = 1\nname = \"a\"\nservice = \"rt\"\nowner = \"rt-task\"\ncapacity = 0x40"),
            "port 'a': a reply of service 'rt' is up to 56 bytes, but its tx ring (0x40 bytes) carries messages of at \
             most 8: such a message would stall the port for good; tx_capacity must be at least 0x100"
        );
        // A larger tx ring, a sink (no reply), a forwarded port (the owner's replies ring is
        // the forwarded-port rule's) are fine.
        let fine = |body: &str| parse(&format!("[[port]]\n{body}")).map(|_| ());
        assert_eq!(fine("id = 1\nname = \"a\"\nservice = \"echo\"\nowner = \"comm-pd\"\nrx_capacity = 0x1000\ntx_capacity = 0x2000"), Ok(()));
        assert_eq!(fine("id = 1\nname = \"a\"\nservice = \"sink\"\nowner = \"comm-pd\"\nrx_capacity = 0x10000\ntx_capacity = 0x40"), Ok(()));
        assert_eq!(
            fine("id = 1\nname = \"a\"\nservice = \"attestation\"\nowner = \"attestation-pd\"\ncapacity = 0x4000"),
            Ok(())
        );
    }

    const SYSTEM: &str = r#"<system>
    <memory_region name="hello_requests" size="0x2000" />
    <memory_region name="hello_replies" size="0x2000" />
    <protection_domain name="comm-pd" priority="100">
        <program_image path="comm-pd.elf" />
        <map mr="hello_requests" vaddr="0x3000000" perms="rw" setvar_vaddr="hello_requests_vaddr" setvar_size="hello_requests_size" />
        <map mr="hello_replies" vaddr="0x3200000" perms="rw" setvar_vaddr="hello_replies_vaddr" setvar_size="hello_replies_size" />
    </protection_domain>
    <protection_domain name="hello" priority="110">
        <program_image path="hello.elf" />
        <map mr="hello_requests" vaddr="0x2000000" perms="rw" setvar_vaddr="requests_vaddr" setvar_size="requests_size" />
        <map mr="hello_replies" vaddr="0x2200000" perms="rw" setvar_vaddr="replies_vaddr" setvar_size="replies_size" />
    </protection_domain>
    <channel>
        <end pd="comm-pd" id="3" setvar_id="hello_channel" />
        <end pd="hello" id="0" setvar_id="comm_channel" />
    </channel>
</system>"#;

    fn hello(capacity: u64) -> Vec<Port> {
        parse(&format!(
            "[[port]]\nid = 7\nname = \"hello\"\nservice = \"forward\"\nowner = \"hello\"\ncapacity = {capacity}"
        ))
        .unwrap()
    }

    fn rules(xml: &str, ports: &[Port]) -> Vec<String> {
        let system = crate::parse_system("system.xml", xml).unwrap();
        audit(&system, ports).into_iter().map(|v| v.message).collect()
    }

    #[test]
    fn a_forwarded_port_with_its_grants_is_clean_and_each_missing_grant_is_named() {
        assert_eq!(rules(SYSTEM, &hello(4096)), Vec::<String>::new());
        assert_eq!(
            rules(SYSTEM, &hello(8192)),
            [
                "port 'hello': region 'hello_requests' is 0x2000 bytes; a ring carrying the port's 0x2000-byte ring's messages needs 0x3000",
                "port 'hello': region 'hello_replies' is 0x2000 bytes; a ring carrying the port's 0x2000-byte ring's messages needs 0x3000",
            ]
        );
        assert_eq!(
            rules(&SYSTEM.replace(" setvar_id=\"hello_channel\"", " pp=\"true\""), &hello(4096)),
            [
                "port 'hello': comm-pd's end of the channel to 'hello' needs setvar_id=\"hello_channel\"",
                "port 'hello': comm-pd's end of the channel to 'hello' must not have pp=\"true\": a call would wait \
                 for the owner, which could stop comm-pd (control calls go through the call slots)",
            ]
        );
        // A reply ring larger than the port's tx ring: the owner could send a reply that breaks it.
        assert_eq!(
            rules(
                &SYSTEM.replace("name=\"hello_replies\" size=\"0x2000\"", "name=\"hello_replies\" size=\"0x4000\""),
                &hello(4096)
            ),
            ["port 'hello': region 'hello_replies' (0x4000 bytes) holds a reply ring carrying replies of up to 2040 \
              bytes, but the port's tx ring (0x1000 bytes) carries at most 1016: such a reply would break the port; \
              map 0x2000 bytes"]
        );
        assert_eq!(
            rules(&SYSTEM.replace("setvar_vaddr=\"hello_replies_vaddr\"", ""), &hello(4096)),
            ["port 'hello': comm-pd maps no region with setvar_vaddr=\"hello_replies_vaddr\""]
        );
        let mut other = hello(4096);
        other[0].owner = "nobody".into();
        assert_eq!(rules(SYSTEM, &other), ["port 'hello': its owner 'nobody' (ports.toml) is no PD of system.xml"]);
    }
}
