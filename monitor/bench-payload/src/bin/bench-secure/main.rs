//! The monitor bench's secure image: the least a secure world does for the monitor's `go`, then it idles in `wfi` for good.
//!
//! Loaded at the platform's secure entry (`bench_payload::SECURE_ENTRY`, 0x7000_0000), where the
//! monitor finds a non-zero first word, takes it for a secure image and enters it at S-EL1 on the
//! first secure core, as it would the Microkit loader. With it, the normal world's `notify_secure`
//! takes the monitor's real path (the secure world running: pend the kick SPI) instead of
//! answering `NO_SECURE_WORLD` (docs/monitor-bench.md, "With a secure image").
//!
//! What it does, of all that seL4's GICv2 initialisation does, is only what `go` checks: the
//! distributor's Group 0 on (GICD_CTLR.EnableGrp0). It enables no interrupt (GICD_ISENABLER
//! untouched) and leaves its CPU interface off, so the kick the bench pends ten thousand times
//! wakes nobody: under `-icount` every core's instructions move the shared clock, and the secure
//! core adds none while the payload times its loops because it sits in `wfi` (never `wfe`, which
//! QEMU's TCG runs as a spin). It prints nothing unless something fails, then one
//! `bench-secure: failed: ...` line on the secure UART (the monitor's log), and stops.
//!
//! Assembly, not a crate: the happy path is ten instructions and a `wfi`, with no stack, and
//! what it must *not* do matters as much as what it does. A runtime crate (aarch64-rt and the
//! like) would add its own start-up, exception and MMU set-up on a path the bench counts (reset ->
//! first normal-world instruction); arm-gic's GICv2 `setup` moves every interrupt to Group 1,
//! enables Group 1 rather than the Group 0 that `go` checks, and turns the CPU interface on; and
//! no crate makes tzmk's `go`. Rust (arm-pl011-uart, aarch64-cpu) only reports a failure.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod secure {
    use core::arch::global_asm;
    use core::fmt::Write as _;
    use core::ptr::NonNull;

    use aarch64_cpu::registers::{Readable, ELR_EL1, ESR_EL1, FAR_EL1};
    use arm_pl011_uart::{PL011Registers, Uart, UniqueMmioPointer};
    use bench_payload::{GIC_DISTRIBUTOR_BASE, SECURE_FAILED, SECURE_UART_BASE};
    use tzmk_interface::smc;

    /// GICD_CTLR.EnableGrp0 (GIC architecture specification v2, IHI 0048B, 4.3.1, secure view).
    const GICD_CTLR_ENABLE_GRP0: u32 = 1;

    // Entered at S-EL1, MMU and caches off, D, A, I and F masked, x0 = 0 (monitor/src/arch/mod.rs
    // `enter_el1`). GICD_CTLR is the distributor's first word. `go` from the secure world answers
    // SUCCESS once it sees Group 0 enabled (monitor/src/arch/gic.rs `hand_back_distributor`), and
    // only then does the monitor release the normal world's first core into the payload.
    global_asm!(
        r#"
    .section .text.entry, "ax"
    .global _start
_start:
    /* Any exception (there should be none) is reported, not run into whatever VBAR_EL1 holds. */
    adrp    x1, tzmk_bench_secure_vectors
    add     x1, x1, :lo12:tzmk_bench_secure_vectors
    msr     vbar_el1, x1
    isb
    ldr     x1, ={gicd}
    mov     w2, #{enable_grp0}
    str     w2, [x1]
    ldr     x0, ={go}
    smc     #0
    cbnz    x0, 2f
    /* The secure world's job in the bench: to be there, and cost nothing. */
1:  wfi
    b       1b
    /* `go` refused: say so (x0, its status, is the argument) on a stack of our own. */
2:  adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    bl      tzmk_bench_secure_go_refused
    b       1b

    /* Sixteen entries of 128 bytes, the table 2 KiB aligned (Arm ARM D1.3.2): each passes its
       index to the reporter on a stack of its own. */
    .section .text.vectors, "ax"
    .balign 2048
tzmk_bench_secure_vectors:
    .irp index, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 128
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    mov     x0, #\index
    b       tzmk_bench_secure_unexpected_exception
    .endr
"#,
        gicd = const GIC_DISTRIBUTOR_BASE,
        enable_grp0 = const GICD_CTLR_ENABLE_GRP0,
        go = const smc::GO,
    );

    /// The secure UART as the monitor left it (it logs there, 115200 8N1): written, not set up.
    fn console() -> Uart<'static> {
        let registers = NonNull::new(SECURE_UART_BASE as *mut PL011Registers).expect("the UART is not at address 0");
        // SAFETY: SECURE_UART_BASE is the secure PL011's register block (platform range
        // `secure-uart`), reached at its physical address because the MMU is off. Only a failure
        // report makes this pointer, once per report, and each report ends in `park`; the
        // monitor, which logs there too, does not run on this core while this one writes.
        Uart::new(unsafe { UniqueMmioPointer::new(registers) })
    }

    #[unsafe(no_mangle)]
    extern "C" fn tzmk_bench_secure_go_refused(x0: u64) -> ! {
        let status = match x0 as i64 {
            smc::DENIED => " DENIED",
            smc::GIC_NOT_INITIALISED => " GIC_NOT_INITIALISED",
            smc::NOT_SUPPORTED => " NOT_SUPPORTED",
            _ => "",
        };
        let _ = writeln!(console(), "{SECURE_FAILED} go answered {x0:#x} ({}{status})", x0 as i64);
        park()
    }

    const ORIGINS: [&str; 4] =
        ["current EL with SP_EL0", "current EL with SP_ELx", "lower EL, AArch64", "lower EL, AArch32"];
    const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];

    #[unsafe(no_mangle)]
    extern "C" fn tzmk_bench_secure_unexpected_exception(index: u64) -> ! {
        let (esr, elr, far) = (ESR_EL1.get(), ELR_EL1.get(), FAR_EL1.get());
        let index = index as usize & 15;
        let _ = writeln!(
            console(),
            "{SECURE_FAILED} unexpected exception: {}, {}, ESR {esr:#x} ELR {elr:#x} FAR {far:#x}",
            KINDS[index % 4],
            ORIGINS[index / 4]
        );
        park()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let _ = writeln!(console(), "{SECURE_FAILED} panic: {info}");
        park()
    }

    /// Stops here for good: interrupts stay masked and none is enabled, so nothing wakes the core.
    fn park() -> ! {
        loop {
            aarch64_cpu::asm::wfi();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "bench-secure runs bare metal in QEMU's secure world at S-EL1: `make -f build.mk bench-secure` builds it, \
         `make -f build.mk bench-monitor` times the monitor's notify_secure with it"
    );
    std::process::exit(2);
}
