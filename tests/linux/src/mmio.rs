//! One page of physical memory through /dev/mem (as root, O_SYNC: device memory), for the guests
//! that poke at what Linux should not be able to change: the GIC distributor and secure RAM
//! (`tzmk-hostile gic`, `tzmk-rtbench`'s hostile scenarios).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::libc;

/// QEMU virt's GIC distributor (monitor/platform/qemu-virt.toml, `gic-distributor`).
pub const GICD_BASE: u64 = 0x0800_0000;
/// The kick (Group 0, the secure core's) and rt-task's timer (the EL1 physical timer's PPI).
pub const KICK: usize = 144;
pub const RT_TIMER: usize = 30;
/// Secure RAM (`secure-ram`: aborts non-secure accesses).
pub const SECURE_RAM: u64 = 0x0e00_0000;

/// A /dev/mem mapping of one page.
#[derive(Debug)]
pub struct Mmio(*mut u32);

// SAFETY: a device mapping; every access is one volatile MMIO access, safe from any thread.
unsafe impl Send for Mmio {}

impl Mmio {
    /// Maps the page at physical `address` (page-aligned).
    pub fn map(address: u64) -> std::io::Result<Mmio> {
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_SYNC).open("/dev/mem")?;
        // SAFETY: a fresh shared mapping of one page of /dev/mem; nothing else refers to it.
        let pointer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                address as libc::off_t,
            )
        };
        if pointer == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mmio(pointer.cast()))
    }

    pub fn read(&self, offset: usize) -> u32 {
        assert!(offset < 4096 && offset.is_multiple_of(4), "a word inside the page");
        // SAFETY: offset < 4096 and aligned (asserted): inside the mapped page (device memory, O_SYNC).
        unsafe { self.0.add(offset / 4).read_volatile() }
    }

    pub fn write(&self, offset: usize, value: u32) {
        assert!(offset < 4096 && offset.is_multiple_of(4), "a word inside the page");
        // SAFETY: as `read`.
        unsafe { self.0.add(offset / 4).write_volatile(value) }
    }

    pub fn read_byte(&self, offset: usize) -> u8 {
        assert!(offset < 4096, "a byte inside the page");
        // SAFETY: as `read`; the GIC's byte-accessible registers (priority, targets).
        unsafe { self.0.cast::<u8>().add(offset).read_volatile() }
    }

    pub fn write_byte(&self, offset: usize, value: u8) {
        assert!(offset < 4096, "a byte inside the page");
        // SAFETY: as `read_byte`.
        unsafe { self.0.cast::<u8>().add(offset).write_volatile(value) }
    }
}
