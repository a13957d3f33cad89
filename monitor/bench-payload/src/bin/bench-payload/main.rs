//! The monitor bench's normal-world payload: times each SMC of `bench_payload::CALLS` on the virtual counter and prints a line per call.
//!
//! Bare metal only (aarch64-unknown-none-softfloat: no FP/SIMD, whose traps the monitor may keep
//! set). On the host the binary only says how to run it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod timing;

#[cfg(target_os = "none")]
mod payload {
    use core::fmt::Write as _;

    use aarch64_cpu::registers::{CurrentEL, Readable, CNTFRQ_EL0};
    use bench_payload::{CallLine, Counter, ResetLine, StartLine, CALLS, DONE, FAILED, ITERATIONS};

    /// Called by `_start` with the counter as it read it at the payload's first instruction.
    #[unsafe(no_mangle)]
    extern "C" fn tzmk_bench_main(entry_ticks: u64) -> ! {
        let mut console = crate::console::take();
        let counter = Counter { frequency_hz: CNTFRQ_EL0.get() };
        let exception_level = CurrentEL.read(CurrentEL::EL) as u8;
        let _ = writeln!(console, "{}", StartLine { exception_level, counter });
        let _ = writeln!(console, "{}", ResetLine { counter, ticks: entry_ticks });
        for call in &CALLS {
            let timing = crate::timing::time(call, ITERATIONS);
            let _ = writeln!(console, "{}", CallLine { call, counter, iterations: ITERATIONS, timing });
        }
        let _ = writeln!(console, "{DONE}");
        let result = smccc::psci::system_off::<smccc::Smc>();
        let _ = writeln!(console, "{FAILED} PSCI SYSTEM_OFF returned: {result:?}");
        crate::park()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let mut console = crate::console::after_failure();
        let _ = writeln!(console, "{FAILED} panic: {info}");
        crate::park()
    }
}

/// Stops here for good: interrupts stay masked, so nothing wakes the core for long.
#[cfg(target_os = "none")]
fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfi();
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "bench-payload runs bare metal in QEMU's normal world: `make -f build.mk bench-payload` builds it, \
         `make -f build.mk bench-monitor` (MONITOR_BIN=...) times the monitor with it"
    );
    std::process::exit(2);
}
