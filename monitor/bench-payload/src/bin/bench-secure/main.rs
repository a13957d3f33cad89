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
//! The update bench (the runner's third run, docs/monitor-bench.md, "Update requests"): when the
//! word at `UPDATE_BENCH_FLAG` holds `UPDATE_BENCH_MAGIC` (QEMU's loader wrote it), it first
//! times `UPDATE_MANIFEST`, a secure-world call, for each of `UPDATE_CASES`: candidates made from
//! the stored manifest (slot A in secure flash) in the `manifest_update` region, timed on
//! CNTVCT_EL0 against an empty loop as the payload times its calls, one line each on the secure
//! UART. Before `go` only this core runs (the normal one waits in the monitor), and nothing of it
//! happens in the other runs, whose figures it would otherwise disturb.
//!
//! Assembly, not a crate: the happy path is fifteen instructions and a `wfi`, with no stack, and
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

    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, ELR_EL1, ESR_EL1, FAR_EL1};
    use arm_pl011_uart::{PL011Registers, Uart, UniqueMmioPointer};
    use bench_payload::{
        Candidate, Counter, UpdateLine, UpdateStartLine, GIC_DISTRIBUTOR_BASE, MANIFEST_SECURITY_VERSION_OFFSET,
        MANIFEST_SIGNATURE_S_OFFSET, MANIFEST_SLOT_A, MANIFEST_UPDATE_BASE, MANIFEST_UPDATE_SIZE, SECURE_FAILED,
        SECURE_UART_BASE, UPDATE_BENCH_FLAG, UPDATE_BENCH_MAGIC, UPDATE_CASES, UPDATE_DONE,
    };
    use tzmk_interface::smc;
    use tzmk_interface::update::MANIFEST_BYTES;

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
    /* The runner's third run asks for the update bench (its loader wrote the flag word): time
       UPDATE_MANIFEST now, before `go`, while the normal core still waits in the monitor. */
    ldr     x1, ={flag}
    ldr     w2, [x1]
    ldr     w3, ={magic}
    cmp     w2, w3
    b.ne    3f
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    bl      tzmk_bench_secure_updates
3:  ldr     x1, ={gicd}
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

    /* The update bench's two loops (AAPCS64: x0 the length, x1 the byte address written before
       each call, x2 the calls (> 0), x3 five words out: ticks, then x0..x3 after the last call).
       They differ only in `smc #0` against `nop`, as the payload's do: the difference is what
       ran at EL3. The byte written is the countdown with bit 7 set, so two calls in a row never
       see the same byte (a new candidate each call, where the address is in the candidate). */
    .macro update_loop name, op
    .section .text.\name, "ax"
    .global \name
\name:
    stp     x19, x20, [sp, #-48]!
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    ldr     x19, ={update}
    mov     x20, x0
    mov     x22, x1
    mov     x21, x2
    mov     x23, x3
    isb
    mrs     x24, cntvct_el0
1:  orr     w9, w21, #0x80
    strb    w9, [x22]
    mov     x0, x19
    mov     x1, x20
    .ifc \op, smc
    smc     #0
    .else
    nop
    .endif
    subs    x21, x21, #1
    b.ne    1b
    isb
    mrs     x9, cntvct_el0
    sub     x9, x9, x24
    stp     x9, x0, [x23]
    stp     x1, x2, [x23, #16]
    str     x3, [x23, #32]
    ldp     x23, x24, [sp, #32]
    ldp     x21, x22, [sp, #16]
    ldp     x19, x20, [sp], #48
    ret
    .endm
    update_loop tzmk_bench_secure_update_smc, smc
    update_loop tzmk_bench_secure_update_empty, nop

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
        flag = const UPDATE_BENCH_FLAG,
        magic = const UPDATE_BENCH_MAGIC,
        update = const smc::UPDATE_MANIFEST,
    );

    unsafe extern "C" {
        fn tzmk_bench_secure_update_smc(length: u64, written: *mut u8, calls: u64, out: *mut [u64; 5]);
        fn tzmk_bench_secure_update_empty(length: u64, written: *mut u8, calls: u64, out: *mut [u64; 5]);
    }

    /// Words of a manifest.
    const MANIFEST_WORDS: usize = MANIFEST_BYTES / 4;

    /// The candidate region's word `index` (physical: the MMU is off).
    fn region_word(index: usize) -> *mut u32 {
        (MANIFEST_UPDATE_BASE as usize + 4 * index) as *mut u32
    }

    /// Copies the stored manifest (slot A, what stage 1 booted) into `manifest_update`, word by
    /// word: with the MMU off every access is Device memory, which takes no unaligned access.
    fn put_stored() {
        for index in 0..MANIFEST_WORDS {
            // SAFETY: slot A lies in secure flash, read-array mode outside an update, readable at
            // S-EL1 at its physical address (MMU off); `manifest_update` is secure RAM this image
            // alone writes while the monitor is not running on this core. Both are word aligned
            // and hold MANIFEST_BYTES (build.rs, system.xml).
            unsafe {
                let word = ((MANIFEST_SLOT_A as usize + 4 * index) as *const u32).read_volatile();
                region_word(index).write_volatile(word);
            }
        }
    }

    /// Changes the region's word holding byte `offset`: `f` of its old value.
    fn change_word(offset: usize, f: impl FnOnce(u32) -> u32) {
        let word = region_word(offset / 4);
        // SAFETY: as in `put_stored`; `offset` is inside the manifest.
        unsafe { word.write_volatile(f(word.read_volatile())) }
    }

    /// The update bench: each case of `UPDATE_CASES` timed, one line each on the secure UART,
    /// then the done line. Runs before `go`, so the normal core still waits in the monitor and
    /// only this core runs (docs/monitor-bench.md, "Update requests").
    #[unsafe(no_mangle)]
    extern "C" fn tzmk_bench_secure_updates() {
        const { assert!(MANIFEST_UPDATE_SIZE as usize > MANIFEST_BYTES && MANIFEST_BYTES.is_multiple_of(4)) };
        let counter = Counter { frequency_hz: CNTFRQ_EL0.get() };
        let _ = writeln!(console(), "{}", UpdateStartLine { counter });
        // Where a case that keeps its candidate writes its countdown byte instead.
        let mut scratch = 0u8;
        let region = MANIFEST_UPDATE_BASE as usize as *mut u8;
        for case in &UPDATE_CASES {
            let mut length = MANIFEST_BYTES as u64;
            let mut written: *mut u8 = &raw mut scratch;
            match case.candidate {
                Candidate::Stored => put_stored(),
                Candidate::WrongLength => {
                    put_stored();
                    length -= 1;
                }
                Candidate::Unparsable => {
                    put_stored();
                    written = region;
                }
                Candidate::Rollback => {
                    put_stored();
                    change_word(MANIFEST_SECURITY_VERSION_OFFSET, |_| 0);
                    written = region.wrapping_add(MANIFEST_SIGNATURE_S_OFFSET);
                }
                Candidate::BadSignature => {
                    put_stored();
                    // S's second byte flipped for good (the stored manifest's S[0] might equal
                    // a byte the loop writes there; this keeps every call's candidate new).
                    change_word(MANIFEST_SIGNATURE_S_OFFSET, |w| w ^ 0x100);
                    written = region.wrapping_add(MANIFEST_SIGNATURE_S_OFFSET);
                }
                Candidate::Previous => {}
            }
            let (mut timed, mut empty) = ([0u64; 5], [0u64; 5]);
            // SAFETY: the loops write one byte at `written` (the scratch byte or a byte of the
            // candidate in `manifest_update`) before each call, keep the AAPCS64 callee-saved
            // registers and fill the five words out. The empty loop first, so the timed loop's
            // first call is the case's first sight of its candidate.
            unsafe {
                tzmk_bench_secure_update_empty(length, written, case.calls, &mut empty);
                tzmk_bench_secure_update_smc(length, written, case.calls, &mut timed);
            }
            let line = UpdateLine {
                case,
                counter,
                length,
                ticks: timed[0],
                empty_ticks: empty[0],
                x: [timed[1], timed[2], timed[3], timed[4]],
            };
            let _ = writeln!(console(), "{line}");
        }
        let _ = writeln!(console(), "{UPDATE_DONE}");
    }

    /// The secure UART as the monitor left it (it logs there, 115200 8N1): written, not set up.
    fn console() -> Uart<'static> {
        let registers = NonNull::new(SECURE_UART_BASE as *mut PL011Registers).expect("the UART is not at address 0");
        // SAFETY: SECURE_UART_BASE is the secure PL011's register block (platform range
        // `secure-uart`), reached at its physical address because the MMU is off. Each line
        // (a failure report, or the update bench's) makes this pointer for one `writeln!` and
        // drops it, so no two exist at once; the monitor, which logs there too, does not run on
        // this core while this one writes, and the other core waits for `go` meanwhile.
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
