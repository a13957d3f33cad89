//! Entry and exception vectors: the only code that runs before Rust has a stack.
//!
//! Entered at NS-EL1 by the monitor (or at EL2 by QEMU's `-kernel`), MMU off, at `_start`, the
//! first byte of the image. x0 (the DTB) is ignored.

use core::arch::global_asm;
use core::fmt::Write as _;

use aarch64_cpu::registers::{CurrentEL, Readable, ELR_EL1, ELR_EL2, ESR_EL1, ESR_EL2, FAR_EL1, FAR_EL2};
use bench_payload::FAILED;

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    /* First: the generic counter, which counts from 0 at reset (virtual time under -icount). */
    mrs     x19, cntvct_el0
    msr     daifset, #0xf
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    /* VBAR of the EL we run at: EL1 under the monitor, EL2 under QEMU's -kernel (Arm ARM D1.3.2). */
    adrp    x1, tzmk_bench_vectors
    add     x1, x1, :lo12:tzmk_bench_vectors
    mrs     x2, CurrentEL
    cmp     x2, #(2 << 2)
    b.eq    1f
    msr     vbar_el1, x1
    b       2f
1:  msr     vbar_el2, x1
2:  isb
    /* .bss is zeroed here whether or not a loader zero-filled it. */
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    str     xzr, [x1], #8
    b       3b
4:  mov     x0, x19
    bl      tzmk_bench_main
5:  wfi
    b       5b

    /* Sixteen entries of 128 bytes, the table 2 KiB aligned (Arm ARM D1.3.2): each passes its
       index (current EL SP0, current EL SPx, lower EL AArch64, lower EL AArch32; sync, IRQ, FIQ,
       SError) to the handler, which reports and stops. */
    .section .text.vectors, "ax"
    .balign 2048
tzmk_bench_vectors:
    .irp index, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 128
    mov     x0, #\index
    b       tzmk_bench_unexpected_exception
    .endr
"#
);

const ORIGINS: [&str; 4] =
    ["current EL with SP_EL0", "current EL with SP_ELx", "lower EL, AArch64", "lower EL, AArch32"];
const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];

/// Reports an exception the payload never expects (all are: its interrupts are masked and it
/// touches only its own RAM, the UART and the counter) and stops.
#[unsafe(no_mangle)]
extern "C" fn tzmk_bench_unexpected_exception(index: u64) -> ! {
    let (esr, elr, far) = match CurrentEL.read(CurrentEL::EL) {
        2 => (ESR_EL2.get(), ELR_EL2.get(), FAR_EL2.get()),
        _ => (ESR_EL1.get(), ELR_EL1.get(), FAR_EL1.get()),
    };
    let index = index as usize & 15;
    let mut console = crate::console::after_failure();
    let _ = writeln!(
        console,
        "{FAILED} unexpected exception: {}, {}, ESR {esr:#x} ELR {elr:#x} FAR {far:#x}",
        KINDS[index % 4],
        ORIGINS[index / 4]
    );
    crate::park()
}
