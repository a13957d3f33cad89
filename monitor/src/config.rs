//! The world partition, generated at build time from the platform description
//! (monitor/platform/<platform>.toml, `TZMK_PLATFORM`) and system.xml by tzmk-sdf's `partition`.

/// A physical address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    pub base: u64,
    pub size: u64,
}

impl PhysRange {
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }

    /// Whether `[address, address + len)` lies inside.
    pub const fn contains(&self, address: u64, len: u64) -> bool {
        match address.checked_add(len) {
            Some(end) => address >= self.base && end <= self.end(),
            None => false,
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/partition.rs"));

/// Whether core `core` (MPIDR Aff0) belongs to the normal world.
pub const fn is_normal_core(core: usize) -> bool {
    core < 64 && NORMAL_CORES & (1 << core) != 0
}

/// Whether core `core` belongs to the secure world.
pub const fn is_secure_core(core: usize) -> bool {
    core < 64 && SECURE_CORES & (1 << core) != 0
}

/// Whether `address` lies in the normal world's RAM (where a PSCI entry point must be).
pub fn in_normal_ram(address: u64, len: u64) -> bool {
    NORMAL_RAM.iter().any(|r| r.contains(address, len))
}
