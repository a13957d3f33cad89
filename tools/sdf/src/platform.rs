//! The platform description: the world partition that system.xml cannot express.
//!
//! One TOML file per machine (monitor/platform/qemu-virt.toml) names which cores and physical ranges
//! belong to which world, who owns each interrupt, and which PDs may hold which role. The monitor's
//! build and `tzmk audit` read it through this module; nothing restates its numbers.

use crate::model::Pos;
use crate::Diagnostic;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The QEMU virt platform description, built into the tools so that an audit needs no second file.
pub const QEMU_VIRT: &str = include_str!("../../../monitor/platform/qemu-virt.toml");
pub const QEMU_VIRT_PATH: &str = "monitor/platform/qemu-virt.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Secure,
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeUse {
    /// The EL3 monitor's own; no PD may map it.
    Monitor,
    /// seL4's RAM pool; regions without `phys_addr` are allocated from it.
    Kernel,
    /// Secure-only RAM that secret holders may map.
    Secret,
    /// The normal-world RAM window shared with the secure world.
    Shared,
    /// The normal world's own RAM.
    Linux,
    /// MMIO.
    Device,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub name: String,
    pub base: u64,
    pub size: u64,
    pub world: World,
    #[serde(rename = "use")]
    pub use_: RangeUse,
    #[serde(default)]
    pub owner: Option<String>,
}

impl Range {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }

    pub fn contains(&self, base: u64, size: u64) -> bool {
        base >= self.base && base.checked_add(size).is_some_and(|end| end <= self.end())
    }

    pub fn overlaps(&self, base: u64, size: u64) -> bool {
        base < self.end() && self.base < base.saturating_add(size)
    }
}

/// Who takes an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IrqWorld {
    /// A PD may claim it.
    Secure,
    /// Linux's: no PD may claim it.
    Normal,
    /// seL4's own (its scheduler timer).
    Kernel,
    /// The EL3 monitor's.
    Monitor,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interrupt {
    pub name: String,
    /// GIC interrupt id.
    pub intid: u64,
    pub world: IrqWorld,
    pub trigger: crate::model::Trigger,
    pub about: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cores {
    pub secure: Vec<u32>,
    pub normal: Vec<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub normal_facing: Vec<String>,
    pub secret_holders: Vec<String>,
    pub realtime: Vec<String>,
    pub smc: Vec<String>,
}

/// Where each world's first image lies and how the monitor enters it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// Entry of the secure world's image (the Microkit loader), at S-EL1 on the first secure core.
    pub secure_entry: u64,
    /// Linux's arm64 Image (2 MiB aligned), entered at NS-EL1 on the first normal core.
    pub linux_kernel: u64,
    /// Linux's DTB (generated from this file and system.xml), passed in x0.
    pub linux_dtb: u64,
    /// Linux's initramfs.
    pub linux_initrd: u64,
    /// Lines of the secure GPIO (range `secure-gpio`) that power the machine off and reset it.
    pub poweroff_gpio: u32,
    pub reset_gpio: u32,
}

/// Where trusted boot's inputs lie in secure flash (docs/trusted-boot.md, "Flash image"): byte
/// offsets into the range named `secure-flash` past the monitor's image (the monitor's linker
/// script ends its ROM at the lowest one, so a monitor that grows into them does not link). The
/// provisioning block takes a 4 KiB page of its own; the manifest's two slots (A and B: an update
/// writes the one not booted from, then commits it: docs/trusted-boot.md, "Atomic updates") and
/// the counter, which the monitor writes at run time, each take a whole erase block (`sector`) of
/// their own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// The flash's erase block in bytes (a power of two, at least 4 KiB).
    pub sector: u64,
    /// The provisioning block: the device's UDS and the platform public key.
    pub provisioning: u64,
    /// The signed image manifest's slot A (where `tzmk flash` puts the first manifest).
    pub manifest: u64,
    /// The manifest's slot B (erased until the first update).
    pub manifest_b: u64,
    /// The security-version counter's log.
    pub counter: u64,
}

/// Bytes the platform reserves for each of trusted boot's blocks in flash.
pub const TRUST_BLOCK_SIZE: u64 = 0x1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub name: String,
    pub cores: Cores,
    pub boot: Boot,
    pub trust: Trust,
    #[serde(rename = "range")]
    pub ranges: Vec<Range>,
    #[serde(rename = "interrupt")]
    pub interrupts: Vec<Interrupt>,
    pub policy: Policy,
}

impl Platform {
    /// Reads and checks a platform description. `path` is only used in messages.
    pub fn parse(path: &str, text: &str) -> Result<Platform, Diagnostic> {
        let platform: Platform = toml::from_str(text).map_err(|e| {
            let pos = e.span().map(|span| pos_of(text, span.start)).unwrap_or(Pos { line: 1, col: 1 });
            Diagnostic::at(path, pos, e.message().to_owned())
        })?;
        platform.check().map_err(|message| Diagnostic::file(path, message))?;
        Ok(platform)
    }

    /// The built-in QEMU virt description.
    pub fn qemu_virt() -> Platform {
        Platform::parse(QEMU_VIRT_PATH, QEMU_VIRT).expect("the built-in platform description is checked by tests")
    }

    fn check(&self) -> Result<(), String> {
        let secure: HashSet<_> = self.cores.secure.iter().collect();
        if let Some(core) = self.cores.normal.iter().find(|c| secure.contains(c)) {
            return Err(format!("core {core} is listed as both secure and normal"));
        }
        if self.cores.secure.is_empty() {
            return Err("at least one core must be secure".into());
        }
        for (i, range) in self.ranges.iter().enumerate() {
            if range.size == 0 || range.base.checked_add(range.size).is_none() {
                return Err(format!("range '{}' is empty or wraps the address space", range.name));
            }
            if range.base % 0x1000 != 0 || range.size % 0x1000 != 0 {
                return Err(format!("range '{}' is not 4 KiB aligned", range.name));
            }
            if let Some(other) = self.ranges[..i].iter().find(|o| o.overlaps(range.base, range.size)) {
                return Err(format!("range '{}' overlaps range '{}'", range.name, other.name));
            }
            if self.ranges[..i].iter().any(|o| o.name == range.name) {
                return Err(format!("duplicate range name '{}'", range.name));
            }
            let world_fits = match range.use_ {
                RangeUse::Monitor | RangeUse::Kernel | RangeUse::Secret => range.world == World::Secure,
                RangeUse::Shared | RangeUse::Linux => range.world == World::Normal,
                RangeUse::Device => true,
            };
            if !world_fits {
                return Err(format!(
                    "range '{}' cannot be used as {:?} by the {:?} world",
                    range.name, range.use_, range.world
                ));
            }
        }
        self.check_boot()?;
        self.check_trust()?;
        for (i, irq) in self.interrupts.iter().enumerate() {
            if let Some(other) = self.interrupts[..i].iter().find(|o| o.intid == irq.intid) {
                return Err(format!("interrupt {} is given to both '{}' and '{}'", irq.intid, other.name, irq.name));
            }
            if self.interrupts[..i].iter().any(|o| o.name == irq.name) {
                return Err(format!("duplicate interrupt name '{}'", irq.name));
            }
            if irq.intid < 16 {
                return Err(format!("interrupt '{}' ({}) is an SGI; PDs cannot own SGIs", irq.name, irq.intid));
            }
        }
        Ok(())
    }

    fn check_boot(&self) -> Result<(), String> {
        let boot = &self.boot;
        let in_use = |what: &str, address: u64, use_: RangeUse| match self.range_containing(address, 1) {
            Some(range) if range.use_ == use_ => Ok(()),
            Some(range) => Err(format!(
                "[boot] {what} {address:#x} lies in range '{}' ({:?}), not in a {:?} range",
                range.name, range.use_, use_
            )),
            None => Err(format!("[boot] {what} {address:#x} lies in no range")),
        };
        in_use("secure_entry", boot.secure_entry, RangeUse::Kernel)?;
        in_use("linux_kernel", boot.linux_kernel, RangeUse::Linux)?;
        in_use("linux_dtb", boot.linux_dtb, RangeUse::Linux)?;
        in_use("linux_initrd", boot.linux_initrd, RangeUse::Linux)?;
        if !boot.linux_kernel.is_multiple_of(0x20_0000) {
            return Err(format!(
                "[boot] linux_kernel {:#x} is not 2 MiB aligned (arm64 Image rule)",
                boot.linux_kernel
            ));
        }
        if !boot.linux_dtb.is_multiple_of(8) {
            return Err(format!("[boot] linux_dtb {:#x} is not 8-byte aligned", boot.linux_dtb));
        }
        if !boot.secure_entry.is_multiple_of(4) {
            return Err(format!("[boot] secure_entry {:#x} is not 4-byte aligned", boot.secure_entry));
        }
        if boot.poweroff_gpio > 7 || boot.reset_gpio > 7 || boot.poweroff_gpio == boot.reset_gpio {
            return Err("[boot] poweroff_gpio and reset_gpio must be two different PL061 lines 0..7".into());
        }
        if self.cores.normal.is_empty() {
            return Err("at least one core must be normal: Linux boots on the first".into());
        }
        Ok(())
    }

    fn check_trust(&self) -> Result<(), String> {
        let flash = self.range_named("secure-flash").ok_or("no range named 'secure-flash' for [trust]")?;
        let sector = self.trust.sector;
        if sector < TRUST_BLOCK_SIZE || !sector.is_power_of_two() {
            return Err(format!("[trust] sector {sector:#x} must be a power of two of at least 4 KiB"));
        }
        let blocks = self.trust_blocks();
        for (what, offset, size) in blocks {
            let unit = if size == TRUST_BLOCK_SIZE { "4 KiB" } else { "the sector" };
            if offset == 0 || !offset.is_multiple_of(size) {
                return Err(format!(
                    "[trust] {what} {offset:#x} must be a non-zero multiple of {unit} (the monitor's image starts at 0)"
                ));
            }
            if offset.checked_add(size).is_none_or(|end| end > flash.size) {
                return Err(format!("[trust] {what} {offset:#x} lies outside secure-flash ({:#x} bytes)", flash.size));
            }
        }
        // The blocks the monitor erases own their sector: nothing else may lie in it.
        for (i, (what, offset, size)) in blocks.iter().enumerate() {
            for (other, other_offset, other_size) in &blocks[..i] {
                let (start, other_start) = (offset / sector * sector, other_offset / sector * sector);
                let shares = if *size == sector || *other_size == sector {
                    start == other_start
                } else {
                    offset.abs_diff(*other_offset) < TRUST_BLOCK_SIZE
                };
                if shares {
                    return Err(format!("[trust] {other} and {what} overlap or share an erase sector"));
                }
            }
        }
        Ok(())
    }

    /// Trusted boot's blocks in secure flash: name, offset and the bytes each owns.
    pub fn trust_blocks(&self) -> [(&'static str, u64, u64); 4] {
        [
            ("provisioning", self.trust.provisioning, TRUST_BLOCK_SIZE),
            ("manifest", self.trust.manifest, self.trust.sector),
            ("manifest_b", self.trust.manifest_b, self.trust.sector),
            ("counter", self.trust.counter, self.trust.sector),
        ]
    }

    /// The physical address of the provisioning block and of the manifest in secure flash.
    pub fn trust_addresses(&self) -> (u64, u64) {
        let base = self.range_named("secure-flash").map_or(0, |flash| flash.base);
        (base + self.trust.provisioning, base + self.trust.manifest)
    }

    /// The physical addresses of the manifest's slots A and B in secure flash.
    pub fn manifest_slots(&self) -> [u64; 2] {
        let base = self.range_named("secure-flash").map_or(0, |flash| flash.base);
        [base + self.trust.manifest, base + self.trust.manifest_b]
    }

    /// The physical address of the counter's sector in secure flash.
    pub fn counter_address(&self) -> u64 {
        self.range_named("secure-flash").map_or(0, |flash| flash.base) + self.trust.counter
    }

    pub fn range_containing(&self, base: u64, size: u64) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(base, size))
    }

    pub fn ranges_overlapping(&self, base: u64, size: u64) -> impl Iterator<Item = &Range> {
        self.ranges.iter().filter(move |r| r.overlaps(base, size))
    }

    pub fn interrupt(&self, intid: u64) -> Option<&Interrupt> {
        self.interrupts.iter().find(|i| i.intid == intid)
    }

    pub fn interrupt_named(&self, name: &str) -> Option<&Interrupt> {
        self.interrupts.iter().find(|i| i.name == name)
    }

    pub fn range_named(&self, name: &str) -> Option<&Range> {
        self.ranges.iter().find(|r| r.name == name)
    }
}

fn pos_of(text: &str, offset: usize) -> Pos {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    Pos { line, col }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_description_is_valid() {
        let p = Platform::qemu_virt();
        assert_eq!(p.cores.secure, vec![0]);
        assert_eq!(p.interrupt_named("kick").map(|i| i.world), Some(IrqWorld::Secure));
        assert_eq!(p.range_named("shared-window").map(|r| r.world), Some(World::Normal));
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let text = QEMU_VIRT.replace("base = 0x0e80_0000", "base = 0x0e70_0000");
        let err = Platform::parse("p.toml", &text).unwrap_err();
        assert_eq!(err.to_string(), "p.toml: range 'secure-pd-ram' overlaps range 'monitor-ram'");
    }

    #[test]
    fn trust_blocks_are_checked() {
        for (from, to, message) in [
            ("provisioning = 0x0010_0000", "provisioning = 0", "non-zero multiple of 4 KiB"),
            ("manifest = 0x0014_0000", "manifest = 0x0014_1000", "non-zero multiple of the sector"),
            ("counter = 0x0018_0000", "counter = 0x0018_1000", "non-zero multiple of the sector"),
            ("manifest = 0x0014_0000", "manifest = 0x0400_0000", "lies outside secure-flash"),
            ("counter = 0x0018_0000", "counter = 0x03fc_0000", ""),
            ("counter = 0x0018_0000", "counter = 0x0014_0000", "manifest and counter overlap or share an erase sector"),
            (
                "manifest_b = 0x001c_0000",
                "manifest_b = 0x001c_1000",
                "[trust] manifest_b 0x1c1000 must be a non-zero multiple of the sector",
            ),
            (
                "manifest_b = 0x001c_0000",
                "manifest_b = 0x0014_0000",
                "[trust] manifest and manifest_b overlap or share an erase sector",
            ),
            (
                "manifest_b = 0x001c_0000",
                "manifest_b = 0x0018_0000",
                "[trust] manifest_b and counter overlap or share an erase sector",
            ),
            (
                "manifest_b = 0x001c_0000",
                "manifest_b = 0x0400_0000",
                "[trust] manifest_b 0x4000000 lies outside secure-flash",
            ),
            ("manifest_b = 0x001c_0000", "manifest_b = 0", "[trust] manifest_b 0x0 must be a non-zero multiple"),
            ("provisioning = 0x0010_0000", "provisioning = 0x0014_1000", "provisioning and manifest overlap or share"),
            ("sector = 0x0004_0000", "sector = 0x0003_0000", "power of two"),
        ] {
            let text = QEMU_VIRT.replace(from, to);
            match Platform::parse("p.toml", &text) {
                Err(err) => assert!(!message.is_empty() && err.to_string().contains(message), "{from} -> {to}: {err}"),
                Ok(_) => assert!(message.is_empty(), "{from} -> {to} was accepted"),
            }
        }
        let qemu = Platform::qemu_virt();
        assert_eq!(qemu.trust_addresses(), (0x10_0000, 0x14_0000));
        assert_eq!(qemu.counter_address(), 0x18_0000);
        assert_eq!(qemu.manifest_slots(), [0x14_0000, 0x1c_0000]);
    }

    #[test]
    fn unknown_keys_get_a_position() {
        let text = format!("{QEMU_VIRT}\n[extra]\nx = 1\n");
        let err = Platform::parse("p.toml", &text).unwrap_err();
        assert!(err.to_string().starts_with("p.toml:"), "{err}");
        assert!(err.to_string().contains("extra"), "{err}");
    }
}
