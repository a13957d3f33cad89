//! The monitor's EL3 identity map (aarch64-paging), built once by core 0 into a static pool and
//! shared by every core, then the MMU and caches on (Arm ARM D8: VMSAv8-64, 4 KiB granule).
//!
//! Mapped: the monitor's code and read-only data in its RAM (executable, read-only), its data and
//! each core's stack (read-write, never executable; the page under each stack is left unmapped as
//! a guard), the GIC, the secure UART and GPIO (device), the secure RAM PDs share with it (the boot
//! handoff, the manifest update), its own image in flash and the provisioning block read-only
//! (stage 1 measures and reads them), the manifest's and the counter's flash sectors as device
//! memory, read-write (the CFI flash driver's commands), seL4's RAM
//! read-only (to find and measure the secure image) and the windows of Linux's images read-only,
//! non-secure (to measure them: trusted boot stage 1). Nothing else of the normal world's memory is mapped,
//! and nothing of it writable or executable.

use aarch64_paging::descriptor::{El23Attributes, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El3, MemoryRegion, PageTable, Translation};
use aarch64_paging::{MapError, Mapping};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use tzmk_monitor::config;
use tzmk_monitor::config::{STACK_GUARD, STACK_SLOT};

/// Tables in the pool: a root, one level-2 table per GiB touched below 4 GiB and level-3 tables
/// for the page-granular ranges.
const POOL: usize = 16;

struct Pool(UnsafeCell<[PageTable<El23Attributes>; POOL]>);
// SAFETY: only core 0 writes the pool, before any other core runs Rust (the boot magic orders it).
unsafe impl Sync for Pool {}
static TABLES: Pool = Pool(UnsafeCell::new([PageTable::EMPTY; POOL]));
static ROOT: AtomicUsize = AtomicUsize::new(0);

/// Hands out the pool's tables; VA = PA (identity map, MMU off while building).
struct PoolAllocator {
    next: usize,
}

impl Translation<El23Attributes> for PoolAllocator {
    fn allocate_table(&mut self) -> (NonNull<PageTable<El23Attributes>>, PhysicalAddress) {
        assert!(self.next < POOL, "the monitor's page-table pool ({POOL} tables) is exhausted");
        let table = TABLES.0.get().cast::<PageTable<El23Attributes>>().wrapping_add(self.next);
        self.next += 1;
        (NonNull::new(table).unwrap(), PhysicalAddress(table as usize))
    }

    unsafe fn deallocate_table(&mut self, _table: NonNull<PageTable<El23Attributes>>) {
        // The map is built once and never unmapped; a table given back is simply not reused.
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<El23Attributes>> {
        NonNull::new(pa.0 as *mut PageTable<El23Attributes>).unwrap()
    }
}

/// MAIR_EL3 (D13.2.97): attribute 0 Device-nGnRnE, attribute 1 Normal write-back read/write-allocate.
const MAIR: u64 = 0xff << 8;
const DEVICE: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_0;
const NORMAL: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_1.union(El23Attributes::INNER_SHAREABLE);
const BASE: El23Attributes = El23Attributes::VALID.union(El23Attributes::ACCESSED).union(El23Attributes::USER_RES1);
/// TCR_EL3 (D13.2.131): RES1 bits 31 and 23, PS 40 bits, inner-shareable write-back walks, 4 KiB
/// granule, T0SZ 25 (a 39-bit space: the root is level 1).
const TCR: u64 = 1 << 31 | 1 << 23 | 0b010 << 16 | 0b11 << 12 | 0b01 << 10 | 0b01 << 8 | 25;
const ROOT_LEVEL: usize = 1;

unsafe extern "C" {
    static __image_start: u8;
    static __rom_end: u8;
    static __image_end: u8;
    static __data_start: u8;
    static __bss_end: u8;
    static __stacks_start: u8;
}

fn address(symbol: *const u8) -> usize {
    symbol as usize
}

fn page_up(a: usize) -> usize {
    a.next_multiple_of(0x1000)
}

/// Builds the identity map; returns its root.
pub fn build() -> Result<usize, MapError> {
    let mut map = Mapping::new(PoolAllocator { next: 0 }, ROOT_LEVEL, El3);
    let mut map_range = |start: usize, end: usize, flags: El23Attributes| {
        map.map_range(&MemoryRegion::new(start, end), PhysicalAddress(start), BASE | flags, Constraints::empty())
    };
    let (rom_end, data_start, bss_end, stacks) = (
        address(&raw const __rom_end),
        address(&raw const __data_start),
        address(&raw const __bss_end),
        address(&raw const __stacks_start),
    );
    // The code and read-only data, copied to RAM by the reset stub: the only executable memory.
    map_range(address(&raw const __image_start), page_up(rom_end), NORMAL | El23Attributes::READ_ONLY)?;
    // The image in flash (reset stub, load copy): read, never run, by stage 1's self-measurement.
    let image_end = address(&raw const __image_end);
    let flash_base = config::MONITOR_ROM.base as usize;
    map_range(flash_base, page_up(image_end), NORMAL | El23Attributes::READ_ONLY | El23Attributes::XN)?;
    map_range(data_start, page_up(bss_end), NORMAL | El23Attributes::XN)?;
    for core in 0..config::CORES {
        let slot = stacks + core * STACK_SLOT as usize;
        map_range(slot + STACK_GUARD as usize, slot + STACK_SLOT as usize, NORMAL | El23Attributes::XN)?;
    }
    for device in [config::GIC_DISTRIBUTOR, config::GIC_CPU_INTERFACE, config::SECURE_UART, config::SECURE_GPIO] {
        map_range(device.base as usize, device.end() as usize, DEVICE | El23Attributes::XN)?;
    }
    for secret in config::SECRET_RAM {
        map_range(secret.base as usize, secret.end() as usize, NORMAL | El23Attributes::XN)?;
    }
    let image = config::SECURE_IMAGE_RAM;
    let read_only = NORMAL | El23Attributes::READ_ONLY | El23Attributes::XN;
    map_range(image.base as usize, image.end() as usize, read_only)?;
    let provisioning = config::PROVISIONING_BLOCK;
    map_range(provisioning.base as usize, provisioning.end() as usize, read_only)?;
    // The sectors the monitor writes: CFI commands and status reads are device accesses (each
    // one reaches the flash, in order, uncached).
    for sector in [config::MANIFEST_BLOCK, config::MANIFEST_B_BLOCK, config::COUNTER_BLOCK] {
        map_range(sector.base as usize, sector.end() as usize, DEVICE | El23Attributes::XN)?;
    }
    for window in config::IMAGE_WINDOWS {
        if !image.contains(window.base, window.size) {
            // Linux's images are in the normal world's RAM: read through the non-secure physical
            // address space (NS, D8.3), as a TrustZone address-space controller would require.
            let world = if config::in_normal_ram(window.base, window.size) {
                El23Attributes::NS
            } else {
                El23Attributes::empty()
            };
            map_range(window.base as usize, window.end() as usize, read_only | world)?;
        }
    }
    let root = map.root_address().0;
    // The tables live in the static pool for good; the Mapping is only their builder.
    core::mem::forget(map);
    ROOT.store(root, Ordering::Release);
    Ok(root)
}

pub fn root() -> usize {
    ROOT.load(Ordering::Acquire)
}

/// Turns on the MMU and caches with the map at `root`.
///
/// # Safety
///
/// `root` must be the identity map from [`build`] (it maps the code running now and its stack).
pub unsafe fn enable(root: usize) {
    // SAFETY: the caller guarantees the map; SCTLR_EL3 gains M, C, I, SA and WXN (D13.2.118).
    unsafe {
        core::arch::asm!(
            "msr mair_el3, {mair}",
            "msr tcr_el3, {tcr}",
            "msr ttbr0_el3, {root}",
            "dsb sy",
            "tlbi alle3",
            "dsb sy",
            "isb",
            "mrs {t}, sctlr_el3",
            "orr {t}, {t}, {bits}",
            "msr sctlr_el3, {t}",
            "isb",
            mair = in(reg) MAIR,
            tcr = in(reg) TCR,
            root = in(reg) root,
            bits = in(reg) (1u64 << 0 | 1 << 2 | 1 << 3 | 1 << 12 | 1 << 19),
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// Cleans and invalidates the cache line of `value` to the point of coherency, so a core whose
/// MMU is still off (its loads bypass the caches) sees the store.
pub fn clean_to_poc<T>(value: &T) {
    // SAFETY: cache maintenance by VA on memory this program owns.
    unsafe { core::arch::asm!("dc civac, {}", "dsb sy", in(reg) value as *const T, options(nostack, preserves_flags)) };
}

/// Cleans `[base, base + length)` to the point of coherency by data-cache line, so that a reader
/// with its caches off, or a mapping with other attributes, sees what this core wrote.
pub fn clean_range_to_poc(base: usize, length: usize) {
    let ctr: u64;
    // SAFETY: reads CTR_EL0, the cache type register.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    // CTR_EL0.DminLine (bits 19:16): log2 of the smallest data-cache line in words (D13.2.34).
    let line = 4usize << ((ctr >> 16) & 0xf);
    let mut address = base & !(line - 1);
    while address < base + length {
        // SAFETY: cache maintenance by VA on memory this program mapped.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) address, options(nostack, preserves_flags)) };
        address += line;
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Whether a secure image was loaded at the secure entry (QEMU's RAM reads zero where nothing was
/// loaded; any instruction of the loader is non-zero).
pub fn secure_image_present() -> bool {
    let entry = config::SECURE_ENTRY as *const u64;
    // SAFETY: the entry lies in seL4's RAM, mapped read-only above.
    unsafe { entry.read_volatile() != 0 }
}
