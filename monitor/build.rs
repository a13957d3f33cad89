//! Generates the world partition (OUT_DIR/partition.rs) from the platform description and
//! system.xml, and links the bare-metal binary with monitor.ld.
//!
//! `TZMK_PLATFORM` names the platform file (default monitor/platform/qemu-virt.toml) and
//! `TZMK_SYSTEM` the system description (default system.xml at the workspace root). A bad file
//! stops the build with its diagnostic.
use std::path::{Path, PathBuf};
use std::process::exit;

// 60 KiB of stack: trusted boot stage 1 on core 0 takes ~12 KiB (Ed25519 verification without
// precomputed tables builds its lookup tables on the stack; the monitor logs the figure).
const STACK_SLOT: u64 = 0x1_0000;
const STACK_GUARD: u64 = 0x1000;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let path_of = |var: &str, default: PathBuf| {
        println!("cargo:rerun-if-env-changed={var}");
        std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
    };
    let platform_path = path_of("TZMK_PLATFORM", manifest.join("platform/qemu-virt.toml"));
    let system_path = path_of("TZMK_SYSTEM", root.join("system.xml"));
    println!("cargo:rerun-if-changed={}", platform_path.display());
    println!("cargo:rerun-if-changed={}", system_path.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=monitor.ld");

    let fail = |message: String| -> ! {
        eprintln!("error: {message}");
        exit(1)
    };
    let platform = tzmk_sdf::load_platform(Some(&platform_path)).unwrap_or_else(|d| fail(d.to_string()));
    let system = tzmk_sdf::load_system(&system_path).unwrap_or_else(|e| fail(e.to_string()));
    let partition = tzmk_sdf::partition::Partition::compute(&system, &platform)
        .unwrap_or_else(|e| fail(format!("{}: {e}", platform_path.display())));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    // Each core's stack slot: an unmapped guard page, then the stack. The one definition, for the
    // linker script, entry.S and the page tables.
    let cores = partition.cores();
    let stacks =
        format!("pub const STACK_SLOT: u64 = {STACK_SLOT:#x};\npub const STACK_GUARD: u64 = {STACK_GUARD:#x};\n");
    std::fs::write(out.join("partition.rs"), partition.to_rust() + &stacks)
        .unwrap_or_else(|e| fail(format!("cannot write partition.rs: {e}")));
    let memory = format!(
        "{}STACK_SLOT = {STACK_SLOT:#x};\nSTACK_GUARD = {STACK_GUARD:#x};\nSTACK_CORES = {cores};\n",
        partition.linker_memory()
    );
    std::fs::write(out.join("memory.ld"), memory).unwrap_or_else(|e| fail(format!("cannot write memory.ld: {e}")));
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = Path::new(&manifest).join("monitor.ld");
        println!("cargo:rustc-link-arg-bins=-L{}", out.display());
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
}
