//! Every PD image is what the Microkit 2.3.0 tool expects (docs/sel4-abi.md): an AArch64 ELF
//! executable linked at 0x200000 whose entry is `_start`, with the six symbols the tool patches
//! at their sizes and every `setvar_*` symbol system.xml names as 8 bytes of file-backed, writable
//! data in a loaded segment.
//!
//! The images are those `make -f build.mk pds` put in `$TZMK_PD_DIR` (named as system.xml names
//! them); without that variable the test builds them itself for aarch64-unknown-none.

use std::path::{Path, PathBuf};
use std::process::Command;

use object::elf::{PF_W, PT_LOAD};
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Object, ObjectSymbol};

const LINK_ADDRESS: u64 = 0x20_0000;
const PATCHED: [(&str, u64); 6] = [
    ("microkit_name", 64),
    ("microkit_passive", 1),
    ("microkit_irqs", 8),
    ("microkit_notifications", 8),
    ("microkit_pps", 8),
    ("microkit_ioports", 8),
];

fn images() -> (PathBuf, bool) {
    if let Some(dir) = std::env::var_os("TZMK_PD_DIR") {
        return (PathBuf::from(dir), true);
    }
    let root = tzmk_tests::workspace_root();
    // A target directory of the test's own inside cargo's (CARGO_TARGET_DIR honoured): the PD
    // build's features must not disturb the workspace's host build.
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pd-images");
    // Every PD crate system.xml names (`program_image` NAME.elf is crate NAME).
    let text = std::fs::read_to_string(root.join("system.xml")).unwrap();
    let system = tzmk_sdf::parse_system("system.xml", &text).expect("system.xml parses");
    let crates = system.protection_domains.iter().flat_map(|pd| ["-p", pd.program_image.trim_end_matches(".elf")]);
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--locked", "--target", "aarch64-unknown-none"])
        .args(crates)
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the PDs for aarch64-unknown-none failed");
    (target_dir.join("aarch64-unknown-none/release"), false)
}

/// Every problem with one image, as sentences.
fn check(path: &Path, setvars: &[String]) -> Vec<String> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) => return vec![format!("cannot read {}: {e}", path.display())],
    };
    let elf = match ElfFile64::<object::Endianness>::parse(&*data) {
        Ok(elf) => elf,
        Err(e) => return vec![format!("not a 64-bit ELF: {e}")],
    };
    let mut problems = Vec::new();
    if elf.architecture() != object::Architecture::Aarch64 {
        problems.push(format!("architecture is {:?}, not AArch64", elf.architecture()));
    }
    if elf.kind() != object::ObjectKind::Executable {
        problems.push(format!("kind is {:?}, not an executable", elf.kind()));
    }
    let endian = elf.endian();
    let loads: Vec<_> = elf
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == PT_LOAD)
        .map(|ph| (ph.p_vaddr(endian), ph.p_filesz(endian), ph.p_memsz(endian), ph.p_flags(endian)))
        .collect();
    match loads.iter().map(|l| l.0).min() {
        Some(LINK_ADDRESS) => {}
        other => problems.push(format!("lowest loaded address is {other:x?}, not {LINK_ADDRESS:#x}")),
    }
    let symbol = |name: &str| elf.symbols().find(|s| s.name() == Ok(name));
    match symbol("_start") {
        Some(start) if start.address() == elf.entry() && elf.entry() == LINK_ADDRESS => {}
        Some(start) => problems.push(format!(
            "entry {:#x} is not _start ({:#x}) at {LINK_ADDRESS:#x}",
            elf.entry(),
            start.address()
        )),
        None => problems.push("no _start symbol".into()),
    }
    let patched = PATCHED.iter().map(|&(name, size)| (name.to_owned(), size));
    let setvars = setvars.iter().map(|name| (name.clone(), 8));
    for (name, size) in patched.chain(setvars) {
        let Some(sym) = symbol(&name) else {
            problems.push(format!("symbol {name} is missing (the microkit tool needs it)"));
            continue;
        };
        if sym.size() != size {
            problems.push(format!("symbol {name} is {} bytes, not {size}", sym.size()));
        }
        let (start, end) = (sym.address(), sym.address() + size);
        let in_file =
            loads.iter().any(|&(vaddr, filesz, _, flags)| start >= vaddr && end <= vaddr + filesz && flags & PF_W != 0);
        if !in_file {
            problems.push(format!(
                "symbol {name} at {start:#x} is not in the file bytes of a writable loaded segment (the tool patches it in place)"
            ));
        }
    }
    problems
}

#[test]
fn every_pd_image_is_what_the_microkit_tool_expects() {
    let root = tzmk_tests::workspace_root();
    let text = std::fs::read_to_string(root.join("system.xml")).unwrap();
    let system = tzmk_sdf::parse_system("system.xml", &text).expect("system.xml parses");
    let (dir, named_as_in_system) = images();
    let mut failures = Vec::new();
    for pd in &system.protection_domains {
        let file = if named_as_in_system {
            pd.program_image.clone()
        } else {
            pd.program_image.trim_end_matches(".elf").to_owned()
        };
        let setvars: Vec<String> = pd.setvars.iter().map(|s| s.symbol.clone()).collect();
        for problem in check(&dir.join(&file), &setvars) {
            failures.push(format!("{} ({}): {problem}", pd.name, dir.join(&file).display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_checker_catches_a_host_binary() {
    // A host executable is not a PD image: wrong architecture, address and symbols.
    let problems = check(Path::new(env!("CARGO_BIN_EXE_tzmk-tests-probe")), &["port_ctrl_vaddr".into()]);
    assert!(problems.iter().any(|p| p.contains("not AArch64")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("symbol microkit_name is missing")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("symbol port_ctrl_vaddr is missing")), "{problems:?}");
}
