//! tzmk's EL3 monitor on bare metal: reset, the exception vectors and the hardware behind
//! [`tzmk_monitor::Hardware`]. Built for `aarch64-unknown-none-softfloat` (no FP/SIMD register is
//! ever touched, so Linux's and seL4's need no saving); on the host it is an empty program.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod arch;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("tzmk-monitor runs on bare metal: build it with `make -f build.mk monitor`");
    std::process::exit(2);
}
