//! The simulator's image registry, generated from the repository's system.xml: each PD's
//! `program_image` `NAME.elf` is the library crate `NAME` (its `init`), which must be a
//! dependency of this crate (`tzmk new-pd` adds both). A PD added to system.xml by hand without
//! the dependency stops this build with the crate's name.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let system_path = root.join("system.xml");
    println!("cargo:rerun-if-changed={}", system_path.display());
    println!("cargo:rerun-if-changed=Cargo.toml");
    let system = tzmk_sdf::load_system(&system_path).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let manifest = std::fs::read_to_string("Cargo.toml").expect("tools/sim/Cargo.toml is readable");
    let mut images: Vec<&str> = system.protection_domains.iter().map(|pd| pd.program_image.as_str()).collect();
    images.sort_unstable();
    images.dedup();
    let (mut known, mut arms) = (String::new(), String::new());
    for image in images {
        let Some(krate) = image.strip_suffix(".elf") else {
            eprintln!("{}: program_image '{image}' is not NAME.elf (NAME: the PD's crate)", system_path.display());
            std::process::exit(1);
        };
        if !manifest.lines().any(|line| line.trim_start().starts_with(&format!("{krate} ="))) {
            eprintln!(
                "{}: PD image '{image}' needs its crate '{krate}' as a dependency of tools/sim/Cargo.toml \
                 (`{krate} = {{ path = \"../../pds/{krate}\" }}`; `tzmk new-pd` adds it)",
                system_path.display()
            );
            std::process::exit(1);
        }
        let ident = krate.replace('-', "_");
        write!(known, "{image:?}, ").unwrap();
        writeln!(arms, "        {image:?} => |kernel, index| drop(kernel.start(index, {ident}::init)),").unwrap();
    }
    let code = format!(
        "/// Every image the simulator knows, by the name system.xml uses.\n\
         pub const KNOWN_IMAGES: &[&str] = &[{known}];\n\n\
         pub(crate) fn lookup(image: &str) -> Option<Start> {{\n    let start: Start = match image {{\n{arms}        _ => return None,\n    }};\n    Some(start)\n}}\n"
    );
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("images.rs"), code).expect("OUT_DIR is writable");
}
