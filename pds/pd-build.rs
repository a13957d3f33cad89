//! Shared build script of every PD crate: on seL4 (target_os "none") the PD binary is linked with
//! the runtime's linker script (Microkit's image layout); host builds need nothing.
//!
//! What the output depends on is declared exactly, so that an unchanged crate stays fresh: the
//! script itself (cargo reruns a build script whose source changed without being told) and the
//! linker script. It never names `build.rs`: the crates that use this file through
//! `build = "../pd-build.rs"` have no such file, and a `rerun-if-changed` of a missing path makes
//! cargo rerun the script, and rebuild the crate and everything above it, on every build.
pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MICROKIT_LINKER_SCRIPT");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = std::env::var("DEP_MICROKIT_LINKER_SCRIPT").expect("the microkit crate exports its linker script");
        println!("cargo:rustc-link-arg-bins=-T{script}");
        println!("cargo:rerun-if-changed={script}");
    }
}
