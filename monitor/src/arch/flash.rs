//! Secure flash on the hardware: the CFI driver's bus (the manifest's two slots and the counter's
//! sector, mapped as device memory by mmu.rs), the state an update is checked against, the lock
//! a reset waits on, and `UPDATE_MANIFEST` (the decisions are [`tzmk_monitor::update`]'s).

use spin::Mutex;
use tzmk_interface::update::UpdateOutcome;
use tzmk_monitor::config::{self, PhysRange};
use tzmk_monitor::counter::{self, Counter, CounterError};
use tzmk_monitor::flash::{Cfi01, FlashBus, FlashError, FlashLock};
use tzmk_monitor::update::{self, Booted, Sectors, Updater};
use tzmk_trust::manifest::MANIFEST_SIZE;
use tzmk_trust::slot::SLOT_BYTES;

/// The bank at physical 0 (secure flash): offsets are physical addresses.
pub struct Bus;

impl FlashBus for Bus {
    fn read(&mut self, offset: u64) -> u32 {
        // SAFETY: the driver only passes word-aligned offsets inside the manifest's and the
        // counter's sectors (Cfi01::check), which mmu.rs maps as device memory; never 0.
        unsafe { ((config::MONITOR_ROM.base + offset) as usize as *const u32).read_volatile() }
    }

    fn write(&mut self, offset: u64, value: u32) {
        // SAFETY: as for `read`; a write there is a CFI command or a data word, nothing else.
        unsafe { ((config::MONITOR_ROM.base + offset) as usize as *mut u32).write_volatile(value) }
    }
}

const fn sector(range: PhysRange) -> (u64, u64) {
    (range.base - config::MONITOR_ROM.base, range.end() - config::MONITOR_ROM.base)
}

/// Only core 0 reaches it (stage 1, then the secure world's SMCs); the lock orders it anyway.
static FLASH: Mutex<Cfi01<Bus>> = Mutex::new(Cfi01::new(
    Bus,
    config::MANIFEST_BLOCK.size,
    [sector(config::MANIFEST_BLOCK), sector(config::MANIFEST_B_BLOCK), sector(config::COUNTER_BLOCK)],
));

/// The manifest's slots and the counter, as offsets into the bank.
const SECTORS: Sectors = Sectors {
    slots: [sector(config::MANIFEST_BLOCK).0, sector(config::MANIFEST_B_BLOCK).0],
    counter: sector(config::COUNTER_BLOCK).0,
};

/// Held by an update for its flash work; PSCI SYSTEM_RESET and SYSTEM_OFF close it first
/// (power.rs), waiting for an update in progress.
pub static FLASH_LOCK: FlashLock = FlashLock::new();

/// What updates are checked against and remember: set once stage 1 verified the manifest.
static UPDATER: Mutex<Option<Updater>> = Mutex::new(None);

/// Reads the counter's log.
pub fn counter() -> Result<Counter, FlashError> {
    counter::scan(&mut FLASH.lock(), COUNTER_AT)
}

const COUNTER_AT: u64 = SECTORS.counter;

/// Copies both manifest slots' bytes (manifest and commit record) out of flash (word reads:
/// device memory takes no unaligned access).
pub fn read_slots(slots: &mut [[u8; SLOT_BYTES]; 2]) -> Result<(), FlashError> {
    let mut flash = FLASH.lock();
    for (bytes, at) in slots.iter_mut().zip(SECTORS.slots) {
        flash.read_bytes(at, bytes)?;
    }
    Ok(())
}

/// After a good stage 1: raises the counter to the verified manifest's security version when it
/// is above (a manifest written offline, or an update whose counter append a power cut stopped),
/// and keeps what updates are checked against.
pub fn after_stage1(mut booted: Booted, security_version: u32) -> Result<u32, CounterError> {
    booted.counter = update::after_boot(&mut FLASH.lock(), COUNTER_AT, booted.counter, security_version)?;
    let counter = booted.counter;
    *UPDATER.lock() = Some(Updater::new(booted));
    Ok(counter)
}

/// The generic timer's count and frequency (power.rs bounds its wait with them too).
pub(super) fn ticks() -> (u64, u64) {
    let (count, frequency): (u64, u64);
    // SAFETY: reads of the generic timer's counter and frequency.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", "mrs {}, cntfrq_el0", out(reg) count, out(reg) frequency, options(nomem, nostack));
    }
    (count, frequency)
}

/// Requests answered from the stored or remembered state since the last update line.
static QUIET_ANSWERS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// `UPDATE_MANIFEST` from the secure world: the first `length` bytes of `manifest_update`.
pub fn update_manifest(length: u64) -> UpdateOutcome {
    let Some(region) = config::MANIFEST_UPDATE else { return UpdateOutcome::Unavailable };
    let mut updater = UPDATER.lock();
    let Some(updater) = updater.as_mut() else { return UpdateOutcome::Unavailable };
    // One copy into private memory before anything is checked (no double fetch).
    let length = (length.min(region.size) as usize).min(MANIFEST_SIZE + 1);
    // 8-byte aligned (as the region is), so that the copy and the update's compares go a word
    // at a time on this strict-alignment target.
    #[repr(C, align(8))]
    struct Candidate([u8; MANIFEST_SIZE + 1]);
    let mut copied = Candidate([0; MANIFEST_SIZE + 1]);
    // SAFETY: `region` is secret RAM mapped read-write by mmu.rs (config::SECRET_RAM holds it:
    // tools/sdf checks), `length` is at most its size and the buffer's; plain bytes.
    unsafe { core::ptr::copy_nonoverlapping(region.base as usize as *const u8, copied.0.as_mut_ptr(), length) };
    let copied = &copied.0[..length];
    let layout = super::trusted_boot::layout();
    let (start, frequency) = ticks();
    let mut flash = FLASH.lock();
    let (before, verified) = (flash.stats(), updater.verifications());
    let outcome = updater.request(copied, &mut flash, &SECTORS, &layout, &FLASH_LOCK);
    let after = flash.stats();
    drop(flash);
    let (end, _) = ticks();
    let micros = (end - start).saturating_mul(1_000_000) / frequency.max(1);
    // A request answered without a verification or flash work is not logged on its own: a line
    // on the PL011 at EL3 costs ~1,500 instructions, more than the answer (docs/trusted-boot.md,
    // "EL3 residency of an update request"). The next line says how many there were.
    if updater.verifications() == verified && after == before {
        QUIET_ANSWERS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        return outcome;
    }
    let quiet = QUIET_ANSWERS.swap(0, core::sync::atomic::Ordering::Relaxed);
    if quiet > 0 {
        log::info!("update: {quiet} requests answered without verification or flash work since the last line");
    }
    if outcome.is_accepted() {
        log::info!(
            "update: {outcome}; slot {} sequence {}; {} words programmed, {} sectors erased, {micros} us",
            ["A", "B"][updater.stored().slot],
            updater.stored().sequence,
            after.programmed - before.programmed,
            after.erased - before.erased
        );
    } else {
        log::warn!(
            "update: {outcome}; {} words programmed, {} sectors erased, {micros} us",
            after.programmed - before.programmed,
            after.erased - before.erased
        );
    }
    outcome
}
