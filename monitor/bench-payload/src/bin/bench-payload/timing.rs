//! The timed loops: `smc #0` and its empty twin, the same instructions but for a `nop` in its place.

use core::arch::global_asm;

use bench_payload::{Call, Timing};

// Both loops: x0 function id, x1 its x1, x2 iterations (at least 1), x3 a [u64; 2] that receives
// the ticks the loop took and x0 after the last iteration. Across `smc` only x19-x23 are relied
// on: SMCCC preserves x18-x30 and SP (SMCCC 1.4, Arm DEN 0028, 2.7) and may change x0-x17. The
// `isb` before each counter read keeps it from being taken early (Arm ARM D11.2.2).
global_asm!(
    r#"
    .macro tzmk_bench_loop name, instruction
    .section .text.\name, "ax"
    .global \name
    .balign 64
\name:
    stp     x19, x20, [sp, #-48]!
    stp     x21, x22, [sp, #16]
    str     x23, [sp, #32]
    mov     x19, x0
    mov     x20, x1
    mov     x21, x2
    mov     x22, x3
    isb
    mrs     x23, cntvct_el0
1:  mov     x0, x19
    mov     x1, x20
    \instruction
    subs    x21, x21, #1
    b.ne    1b
    isb
    mrs     x1, cntvct_el0
    sub     x1, x1, x23
    stp     x1, x0, [x22]
    ldr     x23, [sp, #32]
    ldp     x21, x22, [sp, #16]
    ldp     x19, x20, [sp], #48
    ret
    .endm

    tzmk_bench_loop tzmk_bench_smc_loop, "smc #0"
    tzmk_bench_loop tzmk_bench_empty_loop, "nop"
"#
);

unsafe extern "C" {
    fn tzmk_bench_smc_loop(function_id: u64, x1: u64, iterations: u64, out: *mut [u64; 2]);
    fn tzmk_bench_empty_loop(function_id: u64, x1: u64, iterations: u64, out: *mut [u64; 2]);
}

/// Times `iterations` calls of `call` and the empty loop of as many iterations.
pub fn time(call: &Call, iterations: u64) -> Timing {
    assert!(iterations > 0, "a loop of no iterations");
    let mut with_smc = [0u64; 2];
    let mut empty = [0u64; 2];
    // SAFETY: the loop keeps AAPCS64 (it saves the x19-x23 it uses, restores sp) and writes only
    // the two words of `with_smc`; `smc` preserves x19-x23 and sp (SMCCC 2.7). What the monitor
    // does on the call is its business; to this program it is a call that returns.
    unsafe { tzmk_bench_smc_loop(call.function_id.into(), call.x1, iterations, &mut with_smc) };
    // SAFETY: as above, with a `nop` for the `smc`.
    unsafe { tzmk_bench_empty_loop(call.function_id.into(), call.x1, iterations, &mut empty) };
    Timing { ticks: with_smc[0], empty_ticks: empty[0], last_x0: with_smc[1] }
}
