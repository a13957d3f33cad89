//! SYSTEM_OFF and SYSTEM_RESET through the secure PL061 GPIO that QEMU virt wires to its power
//! controller (PrimeTime PL061 TRM 3.3: GPIODIR at 0x400; GPIODATA is masked by address bits 9:2).

use tzmk_monitor::config;

const GPIODIR: usize = 0x400;

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
    log::info!("PSCI SYSTEM_OFF from core {core}: powering off");
    drive_high(config::POWEROFF_GPIO)
}

pub fn system_reset(core: usize) -> ! {
    log::info!("PSCI SYSTEM_RESET from core {core}: resetting");
    super::forget_releases();
    drive_high(config::RESET_GPIO)
}
