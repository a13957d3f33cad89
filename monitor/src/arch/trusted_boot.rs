//! Trusted boot stage 1 on the hardware: the [`Memory`] the monitor's tables map, the boot handoff
//! in secure RAM, the wipe of the stack, and the stop on failure. The decisions are
//! [`tzmk_monitor::trusted_boot`]'s.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use tzmk_interface::attestation::BootHandoff;
use tzmk_monitor::config::{self, PhysRange, STACK_GUARD, STACK_SLOT};
use tzmk_monitor::trusted_boot::{self, Layout, Memory, Short, Verdict, Window};
use tzmk_sha256::{BlockFunction, Sha256};

mod sha256;
use tzmk_monitor::update::Booted;
use tzmk_trust::manifest::MANIFEST_SIZE;
use tzmk_trust::provisioning::{Provisioning, PROVISIONING_SIZE};
use tzmk_trust::slot::SLOT_BYTES;

/// The handoff's page (system.xml's `boot_handoff`, in secure RAM PDs may map).
const HANDOFF: PhysRange = match config::BOOT_HANDOFF {
    Some(range) => range,
    None => panic!("system.xml has no boot_handoff region: trusted boot has nowhere to hand off"),
};
const _: () = assert!(HANDOFF.size as usize >= size_of::<BootHandoff>() && HANDOFF.base.is_multiple_of(8));

const fn window(range: PhysRange) -> Window {
    Window { base: range.base, end: range.base + range.size }
}

unsafe extern "C" {
    /// The end of the monitor's image in flash (monitor.ld).
    static __image_end: u8;
}

/// The monitor's image in secure flash, from 0 (where `-bios` puts it) to the end of .data's
/// load image: exactly monitor.bin's bytes.
fn monitor_image() -> PhysRange {
    PhysRange { base: 0, size: (&raw const __image_end) as u64 }
}

pub(super) fn layout() -> Layout {
    Layout { monitor: window(monitor_image()), ..LAYOUT }
}

/// The platform's layout (monitor/platform/*.toml, through the generated partition); the
/// monitor's window comes from the linker ([`layout`]).
const LAYOUT: Layout = Layout {
    monitor: Window { base: 0, end: 0 },
    provisioning: config::PROVISIONING_BLOCK.base,
    manifests: [config::MANIFEST_BLOCK.base, config::MANIFEST_B_BLOCK.base],
    windows: [
        window(config::IMAGE_WINDOWS[0]),
        window(config::IMAGE_WINDOWS[1]),
        window(config::IMAGE_WINDOWS[2]),
        window(config::IMAGE_WINDOWS[3]),
    ],
};

/// Whether stage 1 verified a secure image (the first secure core enters it only then).
static SECURE_WORLD_VERIFIED: AtomicBool = AtomicBool::new(false);

pub fn secure_world_verified() -> bool {
    SECURE_WORLD_VERIFIED.load(Ordering::Acquire)
}

/// Both manifest slots' bytes (manifest and commit record), copied out of flash (device memory)
/// before stage 1 reads them.
struct SlotCopies(UnsafeCell<[[u8; SLOT_BYTES]; 2]>);
// SAFETY: only core 0 touches it, in stage 1 (before any other core runs Rust).
unsafe impl Sync for SlotCopies {}
static SLOT_COPIES: SlotCopies = SlotCopies(UnsafeCell::new([[0; SLOT_BYTES]; 2]));

/// What mmu.rs maps read-only for stage 1 (the monitor's image, the provisioning block, the image
/// windows) and the slots' copies in RAM; hashed with `blocks` (the Armv8 SHA-256 instructions
/// where the CPU has them: [`sha256`]).
struct Mapped<'a> {
    slots: &'a [[u8; SLOT_BYTES]; 2],
    blocks: BlockFunction,
}

impl Memory for Mapped<'_> {
    fn read(&self, address: u64, length: u64) -> Option<&[u8]> {
        for (copy, base) in self.slots.iter().zip(LAYOUT.manifests) {
            if let Some(offset) = address.checked_sub(base).filter(|&offset| offset < SLOT_BYTES as u64) {
                let end = offset.checked_add(length).filter(|&end| end <= SLOT_BYTES as u64)?;
                return Some(&copy[offset as usize..end as usize]);
            }
        }
        let mut readable = [monitor_image(), config::PROVISIONING_BLOCK].into_iter().chain(config::IMAGE_WINDOWS);
        if !readable.any(|range| range.contains(address, length)) {
            return None;
        }
        if address == 0 {
            // No slice may start at null (see `sha256` below).
            return None;
        }
        // SAFETY: the range lies inside one the identity map maps readable (mmu::build), memory
        // that nothing writes while stage 1 runs (the other cores are held at reset's wait, the
        // worlds not yet entered), it does not wrap (`contains`) and it does not start at null.
        Some(unsafe { core::slice::from_raw_parts(address as usize as *const u8, length as usize) })
    }

    /// Memory that starts at physical 0 (the monitor's own image in secure flash): its first byte
    /// read with a plain `ldrb` (no Rust pointer may be null, so neither a slice nor
    /// `read_volatile` can reach it), the rest as a slice from address 1.
    fn sha256(&self, address: u64, length: u64) -> Option<[u8; 32]> {
        if address != 0 || length == 0 {
            return self.read(address, length).map(|bytes| Sha256::digest(self.blocks, bytes));
        }
        if !monitor_image().contains(0, length) {
            return None;
        }
        let first: u32;
        // SAFETY: address 0 is the start of secure flash, mapped readable (the monitor runs from
        // it); a byte load there has no other effect.
        unsafe { core::arch::asm!("ldrb {0:w}, [{1}]", out(reg) first, in(reg) 0u64, options(nostack, readonly)) };
        let rest = self.read(1, length - 1)?;
        let mut hasher = Sha256::new(self.blocks);
        hasher.update(&[first as u8]);
        hasher.update(rest);
        Some(hasher.finalize())
    }

    fn sha256_blocks(&self) -> BlockFunction {
        self.blocks
    }
}

fn counter() -> (u64, u64) {
    let (count, frequency): (u64, u64);
    // SAFETY: reads of the generic timer's counter and frequency.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", "mrs {}, cntfrq_el0", out(reg) count, out(reg) frequency, options(nomem, nostack));
    }
    (count, frequency)
}

/// Runs stage 1 on core 0 (`core`), before any other core leaves reset's wait: logs what it
/// verified and measured, or stops the machine.
pub fn run(core: usize) {
    let (start, frequency) = counter();
    let result = stage1();
    let (end, _) = counter();
    let used = wipe_stack(core);
    match result {
        Ok((verdict, counter, raised, torn)) => {
            report(&verdict, end - start, frequency, used);
            if raised != counter {
                log::info!("trusted boot: security-version counter raised from {counter} to {raised}");
            } else {
                log::info!("trusted boot: security-version counter {counter}");
            }
            if torn != 0 {
                log::warn!("trusted boot: the counter's log has {torn} torn slot(s) (a write a power cut stopped)");
            }
        }
        Err(error) => stop(error),
    }
}

/// The part that touches secrets, in its own frame (below `run`'s), so that the wipe after it
/// covers every byte it left on the stack.
#[inline(never)]
fn stage1() -> Result<(Verdict, u32, u32, u32), Stop> {
    // SAFETY: the handoff's page is mapped read-write (secret RAM, mmu::build), aligned, holds a
    // BootHandoff (asserted above) and no one else uses it before seL4 runs; any bytes are a
    // valid BootHandoff (FromBytes).
    let handoff = unsafe { &mut *(HANDOFF.base as usize as *mut BootHandoff) };
    // SAFETY: core 0 alone, here alone (see SlotCopies).
    let slots = unsafe { &mut *SLOT_COPIES.0.get() };
    let counter = super::flash::counter().map_err(Stop::Counter)?;
    super::flash::read_slots(slots).map_err(Stop::Counter)?;
    let memory = Mapped { slots, blocks: sha256::block_function() };
    let result = trusted_boot::stage1(&memory, &layout(), counter.value, handoff);
    // seL4 maps the handoff cached, and attestation-pd's first read must see it: clean to the
    // point of coherency whatever happened (a failure leaves it zeroed).
    super::mmu::clean_range_to_poc(HANDOFF.base as usize, size_of::<BootHandoff>());
    let verdict = result.map_err(Stop::Stage1)?;
    // Parsed by stage 1 already: the provisioning block is good.
    let provisioning = memory
        .read(config::PROVISIONING_BLOCK.base, PROVISIONING_SIZE as u64)
        .and_then(|bytes| Provisioning::parse(bytes).ok())
        .map(|p| (p.platform_public_key, p.security_version_floor.get()));
    let Some((platform_key, floor)) = provisioning else {
        return Err(Stop::Stage1(trusted_boot::Stage1Error::FlashUnreadable {
            what: "provisioning block",
            address: config::PROVISIONING_BLOCK.base,
        }));
    };
    let mut manifest = [0; MANIFEST_SIZE];
    manifest.copy_from_slice(&slots[verdict.slot][..MANIFEST_SIZE]);
    let booted = Booted {
        manifest,
        slot: verdict.slot,
        sequence: verdict.sequence,
        platform_key,
        floor,
        counter: counter.value,
    };
    let raised = super::flash::after_stage1(booted, verdict.security_version).map_err(Stop::Raise)?;
    Ok((verdict, counter.value, raised, counter.torn))
}

/// Why the boot stops.
enum Stop {
    Stage1(trusted_boot::Stage1Error),
    Counter(tzmk_monitor::flash::FlashError),
    Raise(tzmk_monitor::counter::CounterError),
}

impl core::fmt::Display for Stop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Stop::Stage1(e) => write!(f, "{e}"),
            Stop::Counter(e) => write!(f, "security-version counter: {e}"),
            Stop::Raise(e) => write!(f, "{e}"),
        }
    }
}

fn report(verdict: &Verdict, ticks: u64, frequency: u64, stack: usize) {
    log::info!(
        "trusted boot: manifest verified with the platform key, security version {} (slot {}, sequence {})",
        verdict.security_version,
        ["A", "B"][verdict.slot],
        verdict.sequence
    );
    for image in verdict.images.iter().flatten() {
        let state = if image.matches {
            "matches the manifest"
        } else {
            "DIFFERS from the manifest: measured, attestation-pd decides"
        };
        let line = format_args!(
            "trusted boot: {} '{}' at {:#x}, {} bytes: SHA-256 {} {state}",
            trusted_boot::kind_name(image.kind),
            image.name,
            image.address,
            image.size,
            Short(image.sha256)
        );
        if image.matches {
            log::info!("{line}");
        } else {
            log::warn!("{line}");
        }
    }
    if verdict.handoff_written {
        log::info!(
            "trusted boot: boot handoff v2 at {:#x} (CDIs, DICE certificate, event log); secrets wiped",
            HANDOFF.base
        );
    } else {
        log::info!("trusted boot: no secure image in the manifest: Linux's images checked by the monitor");
    }
    let micros = ticks.saturating_mul(1_000_000) / frequency.max(1);
    log::info!(
        "trusted boot: stage 1 took {micros} us ({ticks} counter ticks at {frequency} Hz), {stack} bytes of stack"
    );
    SECURE_WORLD_VERIFIED.store(verdict.secure_world, Ordering::Release);
}

/// A failed check: one line, then this core stops with interrupts masked. The other cores never
/// leave reset's wait (the boot magic is not published) and no world is entered.
fn stop(error: Stop) -> ! {
    super::console::early_line(format_args!("tzmk-monitor: trusted boot: {error}: the machine stops"));
    // SAFETY: masks D, A, I and F at EL3; this core only waits from here on.
    unsafe { core::arch::asm!("msr daifset, #0xf", "isb", options(nomem, nostack)) };
    super::halt()
}

/// Zeroes this core's stack below the current stack pointer (where stage 1's frames were: the
/// UDS's copy, the CDIs' and keys' working copies, the hash and KDF states); returns how many
/// bytes of it had been used (the lowest non-zero byte: QEMU's RAM starts zeroed). Inlined into
/// [`run`], so that the stack pointer it reads is `run`'s own, above every frame of [`stage1`].
#[inline(always)]
fn wipe_stack(core: usize) -> usize {
    let bottom = super::stack_top(core) - (STACK_SLOT - STACK_GUARD);
    let sp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    let mut lowest = sp;
    // SAFETY: [bottom, sp) is this core's stack, mapped read-write, and unused below sp; the loop
    // uses no stack (nostack) and keeps its state in registers.
    unsafe {
        core::arch::asm!(
            "2: cmp {address}, {sp}",
            "b.hs 4f",
            "ldp {a}, {b}, [{address}]",
            "orr {a}, {a}, {b}",
            "cbz {a}, 3f",
            "cmp {address}, {lowest}",
            "csel {lowest}, {address}, {lowest}, lo",
            "3: stp xzr, xzr, [{address}], #16",
            "b 2b",
            "4: dsb sy",
            address = inout(reg) bottom => _,
            sp = in(reg) sp & !0xf,
            lowest = inout(reg) lowest,
            a = out(reg) _,
            b = out(reg) _,
            options(nostack),
        );
    }
    (super::stack_top(core) - lowest) as usize
}
