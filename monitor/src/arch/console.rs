//! The monitor's log on the secure UART (PL011, the platform's `secure-uart`), through `log`.

use arm_pl011_uart::{DataBits, LineConfig, Parity, StopBits, Uart};
use core::fmt::Write;
use core::ptr::NonNull;
use safe_mmio::UniqueMmioPointer;
use spin::mutex::SpinMutex;
use tzmk_monitor::config;

static UART: SpinMutex<Option<Uart<'static>>> = SpinMutex::new(None);

/// QEMU's PL011 ignores the divisors; these are the usual 115200 8N1 from a 24 MHz clock.
const BAUD: u32 = 115_200;
const UART_CLOCK: u32 = 24_000_000;

pub fn init() {
    // SAFETY: the secure UART's registers; this is the only pointer to them (UART's mutex).
    let regs = unsafe { UniqueMmioPointer::new(NonNull::new(config::SECURE_UART.base as *mut _).unwrap()) };
    let mut uart = Uart::new(regs);
    let config = LineConfig { data_bits: DataBits::Bits8, parity: Parity::None, stop_bits: StopBits::One };
    let _ = uart.enable(config, BAUD, UART_CLOCK);
    *UART.lock() = Some(uart);
}

/// One line, for errors: takes the lock if it can, writes anyway if a core died holding it.
pub fn early_line(args: core::fmt::Arguments) {
    let mut guard = match UART.try_lock() {
        Some(guard) => guard,
        // SAFETY: only reached when the holder will never release it (a fault while logging);
        // interleaved characters are better than silence.
        None => unsafe {
            UART.force_unlock();
            UART.lock()
        },
    };
    if let Some(uart) = guard.as_mut() {
        let _ = uart.write_fmt(args);
        let _ = uart.write_str("\r\n");
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        if let Some(uart) = UART.lock().as_mut() {
            let _ = write!(uart, "tzmk-monitor: {}: {}\r\n", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

pub fn install_logger() {
    static LOGGER: Logger = Logger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}
