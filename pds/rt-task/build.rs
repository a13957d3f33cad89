//! rt-task's build: the shared PD link setup, and its real-time parameters: its period and
//! budget from system.xml, its deadline from pds/realtime.toml, and the task set its admission
//! test runs over (every scheduled PD of its core), as constants (tzmk-sdf's `realtime`).
//! Generated rather than read at run time: a PD has no file system, and Microkit 2.3.0's setvars
//! carry only addresses, sizes and ids.

#[path = "../pd-build.rs"]
mod pd_build;

use std::path::Path;

fn main() {
    pd_build::main();
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("../..");
    let system_path = root.join("system.xml");
    let sidecar_path = root.join(tzmk_sdf::realtime::SIDECAR_PATH);
    let platform_path = root.join("monitor/platform/qemu-virt.toml");
    for path in [&system_path, &sidecar_path, &platform_path] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let fail = |message: String| -> ! {
        eprintln!("{message}");
        std::process::exit(1)
    };
    let system = tzmk_sdf::load_system(&system_path).unwrap_or_else(|e| fail(e.to_string()));
    let platform = tzmk_sdf::load_platform(Some(&platform_path)).unwrap_or_else(|e| fail(e.to_string()));
    let sidecar = tzmk_sdf::realtime::Sidecar::load(&sidecar_path).unwrap_or_else(|e| fail(e.to_string()));
    let name = sidecar_path.display().to_string();
    let code = tzmk_sdf::realtime::generate_constants(&system, &platform, &sidecar, &name, "rt-task")
        .unwrap_or_else(|e| fail(format!("{}: {e}", system_path.display())));
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("realtime.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
