//! Which SHA-256 block function stage 1 hashes with on this CPU: the Armv8 SHA-256 instructions
//! (`tzmk_sha256::armv8`, hand-written assembly) where the CPU has them and FP/SIMD is not trapped
//! at EL3, else the `sha2` crate's portable code. QEMU's `-cpu cortex-a53`, which every tzmk boot
//! uses, has them (the Cryptographic Extension: ID_AA64ISAR0_EL1 0x11120).
//!
//! Only stage 1 uses them, on core 0, before any world has run (so no world has FP/SIMD state to
//! disturb), and the block function zeroes v0..v31 before it returns. The monitor writes no
//! CPTR_EL3: on QEMU it resets to 0 (nothing trapped); the Arm ARM leaves TFP UNKNOWN after a
//! reset, hence the check here.

use arm_sysregs::el1::accessors::{read_id_aa64isar0_el1, read_id_aa64pfr0_el1};
use arm_sysregs::el3::accessors::read_cptr_el3;
use arm_sysregs::el3::registers::CptrEl3;
use tzmk_sha256::{BlockFunction, Sha256};

/// The block function for this CPU, with one log line saying which and why.
pub fn block_function() -> BlockFunction {
    let isar0 = read_id_aa64isar0_el1().bits();
    let pfr0 = read_id_aa64pfr0_el1().bits();
    if !tzmk_sha256::armv8_implemented(isar0, pfr0) {
        log::info!(
            "trusted boot: SHA-256 in software: no SHA-256 instructions (ID_AA64ISAR0_EL1 {isar0:#x}, ID_AA64PFR0_EL1 {pfr0:#x})"
        );
        return tzmk_sha256::software;
    }
    let cptr = read_cptr_el3();
    if cptr.contains(CptrEl3::TFP) {
        log::warn!("trusted boot: SHA-256 in software: CPTR_EL3 {:#x} traps FP/SIMD at EL3 (TFP)", cptr.bits());
        return tzmk_sha256::software;
    }
    // A known answer first (FIPS 180-4's "abc"), as a power-on self-test: a core whose
    // instructions compute something else hashes in software rather than stopping the machine
    // on every image.
    if Sha256::digest(armv8, b"abc") != ABC {
        log::warn!("trusted boot: SHA-256 in software: the Armv8 instructions fail the known answer for \"abc\"");
        return tzmk_sha256::software;
    }
    log::info!(
        "trusted boot: SHA-256 with the Armv8 instructions (ID_AA64ISAR0_EL1.SHA2 {}, CPTR_EL3 {:#x}; \"abc\" known answer checked)",
        (isar0 >> 12) & 0xf,
        cptr.bits()
    );
    armv8
}

/// SHA-256("abc"), FIPS 180-4's first example (NIST's SHA256.pdf).
const ABC: [u8; 32] = [
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61,
    0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
];

/// The Armv8 block function, handed out by [`block_function`] only.
fn armv8(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: `block_function` returns this function only after checking that the CPU has the
    // SHA-256 instructions and that CPTR_EL3.TFP is clear; the monitor never sets it. The
    // soft-float monitor keeps nothing in the SIMD registers the block function overwrites.
    unsafe { tzmk_sha256::armv8::compress(state, blocks) }
}
