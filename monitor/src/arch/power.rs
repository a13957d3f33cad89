//! SYSTEM_OFF and SYSTEM_RESET through the secure PL061 GPIO that QEMU virt wires to its power
//! controller (PrimeTime PL061 TRM 3.3: GPIODIR at 0x400; GPIODATA is masked by address bits 9:2).
//!
//! Neither cuts a flash update in progress on the secure core: each first closes secure flash
//! ([`FlashLock::close`](tzmk_monitor::flash::FlashLock::close)), which waits, for at most
//! [`FLASH_WAIT_SECONDS`], until the update holding it has finished its flash work, and lets no
//! update start after it (docs/trusted-boot.md, "Atomic updates").

use super::flash::{ticks, FLASH_LOCK};
use tzmk_monitor::config;
use tzmk_monitor::flash::Closed;

const GPIODIR: usize = 0x400;

/// How long a reset or power-off waits for an update's flash work: one update erases a sector
/// and programs 176 words, a few seconds on a slow NOR part (about 1 ms on QEMU). Past it the
/// power goes anyway: the A/B slots leave a bootable manifest whatever the cut.
pub const FLASH_WAIT_SECONDS: u64 = 5;

fn close_flash(what: &str, core: usize) {
    let (_, frequency) = ticks();
    let limit = frequency.saturating_mul(FLASH_WAIT_SECONDS);
    match FLASH_LOCK.close(limit, || ticks().0, core::hint::spin_loop) {
        Closed::Idle => {}
        Closed::AfterUpdate { waited } => {
            let micros = waited.saturating_mul(1_000_000) / frequency.max(1);
            log::info!("PSCI {what} from core {core}: waited {micros} us for the update's flash work");
        }
        Closed::GaveUp { waited } => {
            let micros = waited.saturating_mul(1_000_000) / frequency.max(1);
            log::warn!("PSCI {what} from core {core}: the update still held the flash after {micros} us: cut");
        }
    }
}

fn drive_high(line: u32) -> ! {
    let base = config::SECURE_GPIO.base as usize;
    let bit = 1u32 << line;
    // SAFETY: the secure GPIO's registers, mapped as device memory and used by nothing else; the
    // monitor stops this core right after.
    unsafe {
        let dir = (base + GPIODIR) as *mut u32;
        dir.write_volatile(dir.read_volatile() | bit);
        ((base + ((bit as usize) << 2)) as *mut u32).write_volatile(bit);
    }
    // Waiting for the power controller.
    super::halt()
}

pub fn system_off(core: usize) -> ! {
    close_flash("SYSTEM_OFF", core);
    log::info!("PSCI SYSTEM_OFF from core {core}: powering off");
    drive_high(config::POWEROFF_GPIO)
}

pub fn system_reset(core: usize) -> ! {
    close_flash("SYSTEM_RESET", core);
    log::info!("PSCI SYSTEM_RESET from core {core}: resetting");
    super::forget_releases();
    drive_high(config::RESET_GPIO)
}
