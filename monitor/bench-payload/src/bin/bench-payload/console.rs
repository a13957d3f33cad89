//! The normal world's PL011 UART0, the payload's only output.

use core::ptr::NonNull;

use arm_pl011_uart::{DataBits, LineConfig, PL011Registers, Parity, StopBits, Uart, UniqueMmioPointer};

include!(concat!(env!("OUT_DIR"), "/platform.rs"));

/// QEMU virt's PL011 clock (the DTB's `apb-pclk`, 24 MHz).
const UART_CLOCK_HZ: u32 = 24_000_000;
const BAUD_RATE: u32 = 115_200;

fn uart() -> Uart<'static> {
    let registers = NonNull::new(UART0_BASE as *mut PL011Registers).expect("UART0 is not at address 0");
    // SAFETY: UART0_BASE is a PL011 register block (the platform's `uart0`, QEMU virt's UART0),
    // reached at its physical address because the MMU is off. The payload runs on one core and
    // makes this pointer once for `main`, and once more only on the way to `park` (a failure),
    // after which `main`'s is never used again: no two are used at the same time.
    Uart::new(unsafe { UniqueMmioPointer::new(registers) })
}

/// The console for `main`: UART0 at 115200 8N1.
pub fn take() -> Uart<'static> {
    let mut uart = uart();
    let config = LineConfig { data_bits: DataBits::Bits8, parity: Parity::None, stop_bits: StopBits::One };
    uart.enable(config, BAUD_RATE, UART_CLOCK_HZ).expect("115200 baud is reachable from 24 MHz");
    uart
}

/// The console for a failure report: `main`'s is abandoned, UART0 left as `take` set it up.
pub fn after_failure() -> Uart<'static> {
    uart()
}
