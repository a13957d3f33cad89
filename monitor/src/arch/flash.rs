//! Secure flash on the hardware: the CFI driver's bus (the manifest's and the counter's sectors,
//! mapped as device memory by mmu.rs), the state an update is checked against, and
//! `UPDATE_MANIFEST` (the decisions are [`tzmk_monitor::update`]'s).

use spin::Mutex;
use tzmk_interface::update::UpdateOutcome;
use tzmk_monitor::config::{self, PhysRange};
use tzmk_monitor::counter::{self, Counter, CounterError};
use tzmk_monitor::flash::{Cfi01, FlashBus, FlashError};
use tzmk_monitor::update::{self, Stored};
use tzmk_trust::manifest::{Manifest, MANIFEST_SIZE};

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
    [sector(config::MANIFEST_BLOCK), sector(config::COUNTER_BLOCK)],
));

const MANIFEST_AT: u64 = sector(config::MANIFEST_BLOCK).0;
const COUNTER_AT: u64 = sector(config::COUNTER_BLOCK).0;

/// What an update is checked against: set once stage 1 verified the manifest.
struct State {
    manifest: [u8; MANIFEST_SIZE],
    platform_key: [u8; 32],
    floor: u32,
    counter: u32,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Reads the counter's log.
pub fn counter() -> Result<Counter, FlashError> {
    counter::scan(&mut FLASH.lock(), COUNTER_AT)
}

/// Copies the manifest's bytes out of flash (word reads: device memory takes no unaligned access).
pub fn read_manifest(buffer: &mut [u8; MANIFEST_SIZE]) -> Result<(), FlashError> {
    FLASH.lock().read_bytes(MANIFEST_AT, buffer)
}

/// After a good stage 1: raises the counter to the verified manifest's security version when it
/// is above (a manifest written offline, or an update whose counter append a power cut stopped),
/// and keeps what updates are checked against.
pub fn after_stage1(
    manifest: &[u8; MANIFEST_SIZE],
    platform_key: [u8; 32],
    floor: u32,
    counter: u32,
    security_version: u32,
) -> Result<u32, CounterError> {
    let counter = if security_version > counter {
        counter::raise(&mut FLASH.lock(), COUNTER_AT, security_version)?.value
    } else {
        counter
    };
    *STATE.lock() = Some(State { manifest: *manifest, platform_key, floor, counter });
    Ok(counter)
}

fn ticks() -> (u64, u64) {
    let (count, frequency): (u64, u64);
    // SAFETY: reads of the generic timer's counter and frequency.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", "mrs {}, cntfrq_el0", out(reg) count, out(reg) frequency, options(nomem, nostack));
    }
    (count, frequency)
}

/// `UPDATE_MANIFEST` from the secure world: the first `length` bytes of `manifest_update`.
pub fn update_manifest(length: u64) -> UpdateOutcome {
    let Some(region) = config::MANIFEST_UPDATE else { return UpdateOutcome::Unavailable };
    let mut state = STATE.lock();
    let Some(state) = state.as_mut() else { return UpdateOutcome::Unavailable };
    // One copy into private memory before anything is checked (no double fetch).
    let mut candidate = [0u8; MANIFEST_SIZE];
    let length = (length.min(region.size) as usize).min(MANIFEST_SIZE + 1);
    let mut copied = [0u8; MANIFEST_SIZE + 1];
    // SAFETY: `region` is secret RAM mapped read-write by mmu.rs (config::SECRET_RAM holds it:
    // tools/sdf checks), `length` is at most its size and the buffer's; plain bytes.
    unsafe { core::ptr::copy_nonoverlapping(region.base as usize as *const u8, copied.as_mut_ptr(), length) };
    let copied = &copied[..length];
    let current = match Manifest::parse(&state.manifest) {
        Ok(current) => current,
        Err(_) => return UpdateOutcome::Unavailable,
    };
    let stored = Stored { platform_key: state.platform_key, floor: state.floor, counter: state.counter, current };
    let layout = super::trusted_boot::layout();
    let manifest = match update::check(copied, &stored, &layout) {
        Ok(manifest) => manifest,
        Err(outcome) => {
            log::warn!("update: {outcome}");
            return outcome;
        }
    };
    candidate.copy_from_slice(copied);
    let (start, frequency) = ticks();
    let mut flash = FLASH.lock();
    let before = flash.stats();
    let outcome = update::apply(&mut flash, MANIFEST_AT, COUNTER_AT, manifest, state.counter);
    let after = flash.stats();
    drop(flash);
    let (end, _) = ticks();
    if let UpdateOutcome::Accepted { counter, .. } = outcome {
        state.manifest = candidate;
        state.counter = counter;
    }
    let micros = (end - start).saturating_mul(1_000_000) / frequency.max(1);
    log::info!(
        "update: {outcome}; {} words programmed, {} sectors erased, {micros} us in flash",
        after.programmed - before.programmed,
        after.erased - before.erased
    );
    outcome
}
