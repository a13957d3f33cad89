//! Hands the PD linker script to every PD crate's build script (as `DEP_MICROKIT_LINKER_SCRIPT`).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:linker_script={dir}/microkit.ld");
    println!("cargo:rerun-if-changed=microkit.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
