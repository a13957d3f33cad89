//! The SHA-256 block function with the Armv8 SHA-256 instructions (FEAT_SHA256: SHA256H,
//! SHA256H2, SHA256SU0, SHA256SU1), hand-written in `armv8.S`.
//!
//! Why hand-written: the monitor is built for `aarch64-unknown-none-softfloat`, where the compiler
//! emits no FP/SIMD instruction, and must stay so (its SMC path never saves a world's FP state).
//! The `sha2` crate's Armv8 backend enables `neon` per function, which on a soft-float target
//! changes the function's ABI and which rustc flags as unsound; its runtime detection finds nothing
//! on a bare-metal target anyway. Assembly in one symbol, `tzmk_sha256_armv8_blocks`, is the only
//! way to use the instructions there, and lets the build check that nothing else of the monitor
//! has any FP/SIMD instruction (build.mk, `monitor`). About 1.6 instructions a byte: 99 for each
//! 64-byte block (16 groups of four rounds, the loads and byte swaps, the state's additions), plus
//! 40 a call (the round constants, the state, the wipe of v0..v31).

core::arch::global_asm!(include_str!("armv8.S"), options(raw));

/// The block function: folds `blocks` into `state` with the SHA-256 instructions, then zeroes
/// every SIMD register (v0..v31).
///
/// # Safety
///
/// The CPU implements the SHA-256 instructions ([`crate::armv8_implemented`]), and FP/SIMD instructions are not
/// trapped at the current exception level (at EL3: CPTR_EL3.TFP clear). The function then only
/// reads `blocks` and writes `state`. On a target with FP/SIMD registers the call declares them
/// all clobbered; on the soft-float target the compiler keeps nothing in them.
pub unsafe fn compress(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    if blocks.is_empty() {
        return;
    }
    // SAFETY: the caller vouches for the instructions; the assembly reads `blocks.len()` whole
    // blocks from `blocks` and 32 bytes of `state`, writes those 32 bytes, uses x0..x3 and the
    // link register (declared) and v0..v31 (declared where the target has them), and no stack.
    #[cfg(target_feature = "neon")]
    unsafe {
        core::arch::asm!(
            "bl tzmk_sha256_armv8_blocks",
            inout("x0") state.as_mut_ptr() => _,
            inout("x1") blocks.as_ptr() => _,
            inout("x2") blocks.len() => _,
            out("x3") _,
            out("x30") _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _, out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack),
        );
    }
    // SAFETY: as above; the soft-float target has no FP/SIMD register the compiler could use.
    #[cfg(not(target_feature = "neon"))]
    unsafe {
        core::arch::asm!(
            "bl tzmk_sha256_armv8_blocks",
            inout("x0") state.as_mut_ptr() => _,
            inout("x1") blocks.as_ptr() => _,
            inout("x2") blocks.len() => _,
            out("x3") _,
            out("x30") _,
            options(nostack),
        );
    }
}
