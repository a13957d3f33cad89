//! Shared build script of every PD crate: on seL4 (target_os "none") the PD binary is linked with
//! the runtime's linker script (Microkit's image layout); host builds need nothing.
pub fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = std::env::var("DEP_MICROKIT_LINKER_SCRIPT").expect("the microkit crate exports its linker script");
        println!("cargo:rustc-link-arg-bins=-T{script}");
        println!("cargo:rerun-if-changed={script}");
    }
}
