//! comm-pd's build: the shared PD link setup, and its port table from ports.toml.
//!
//! The table is generated rather than parsed at run time because comm-pd on seL4 has no file
//! system and no allocator; every mistake in ports.toml stops the build with the port and field
//! (the checks are tools/sdf's `ports`, which `tzmk audit` runs too).

#[path = "../pds/pd-build.rs"]
mod pd_build;

use std::fmt::Write as _;

/// ports.toml's service names and the `Service` variants they are.
const VARIANTS: [(&str, &str); 5] =
    [("echo", "Echo"), ("sink", "Sink"), ("attestation", "Attestation"), ("rt", "RealTime"), ("forward", "Forward")];

fn main() {
    pd_build::main();
    println!("cargo:rerun-if-changed=ports.toml");
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("ports.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("{}: cannot read: {e}", path.display());
        std::process::exit(1);
    });
    match tzmk_sdf::ports::parse(&text) {
        Ok(ports) => {
            let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("ports.rs");
            std::fs::write(out, generate(&ports)).expect("OUT_DIR is writable");
        }
        Err(message) => {
            eprintln!("{}: {message}", path.display());
            std::process::exit(1);
        }
    }
}

fn generate(ports: &[tzmk_sdf::ports::Port]) -> String {
    let mut code = format!(
        "/// Generated from comm-pd/ports.toml by build.rs.\npub static PORTS: [PortConfig; {}] = [\n",
        ports.len()
    );
    // The forwarded ports' bindings: their regions and channel in comm-pd, by symbol.
    let mut owners = String::new();
    for port in ports {
        let variant = VARIANTS.iter().find(|(name, _)| *name == port.service).expect("tools/sdf checked the service").1;
        writeln!(
            code,
            "    PortConfig {{ id: {}, name: {:?}, service: Service::{variant}, rx_capacity: {:#x}, tx_capacity: {:#x} }},",
            port.id, port.name, port.rx_capacity, port.tx_capacity
        )
        .unwrap();
        if port.forwarded() {
            let s = port.comm_symbols();
            writeln!(
                owners,
                "        Owner {{ id: {}, owner: {:?}, requests: microkit::memory_region!({r}_vaddr, {r}_size), \
                 replies: microkit::memory_region!({p}_vaddr, {p}_size), channel: microkit::channel!({c}) }},",
                port.id,
                port.owner,
                r = s.requests,
                p = s.replies,
                c = s.channel
            )
            .unwrap();
        }
    }
    code.push_str("];\n");
    let forwarded = ports.iter().filter(|p| p.forwarded()).count();
    writeln!(
        code,
        "/// The forwarded ports' owners, bound through the setvar symbols system.xml gives comm-pd\n\
         /// (`<port>_requests_vaddr`/`_size`, `<port>_replies_vaddr`/`_size`, `<port>_channel`, with the\n\
         /// port's name's '-' as '_'; `tzmk audit`'s forwarded-port rule checks them). Called once, at start.\n\
         pub fn owners() -> [Owner; {forwarded}] {{\n    [\n{owners}    ]\n}}"
    )
    .unwrap();
    code
}
