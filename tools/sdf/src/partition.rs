//! The world partition the EL3 monitor enforces, computed from the platform description and
//! system.xml at build time.
//!
//! [`Partition::compute`] decides which cores go to which world, which interrupts stay Group 0
//! (the secure world's: every `<irq>` a PD claims and the platform's secure, kernel and monitor
//! interrupts) and which are handed to Linux as Group 1, where each world's first image is entered
//! and which physical ranges the monitor maps. [`Partition::to_rust`] writes it as the constants
//! the monitor's build includes; [`crate::dtb`] turns it into Linux's device tree. Nothing here is
//! restated by hand anywhere else.

use crate::model::System;
use crate::platform::{IrqWorld, Platform, Range, RangeUse, World};
use std::fmt::Write as _;

/// Highest GICv2 interrupt id plus one (INTIDs 1020..1023 are special).
pub const GIC_INTIDS: u32 = 1020;
/// First shared peripheral interrupt.
pub const FIRST_SPI: u32 = 32;

/// A physical range by name, as the monitor or Linux sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysRange {
    pub name: String,
    pub base: u64,
    pub size: u64,
}

impl PhysRange {
    fn of(range: &Range) -> Self {
        Self { name: range.name.clone(), base: range.base, size: range.size }
    }

    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// The partition of one platform for one system description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub platform: String,
    /// Core numbers (MPIDR Aff0) of each world, ascending. seL4 boots on the first secure core,
    /// Linux on the first normal core.
    pub secure_cores: Vec<u32>,
    pub normal_cores: Vec<u32>,
    pub secure_entry: u64,
    pub linux_kernel: u64,
    pub linux_dtb: u64,
    pub linux_initrd: u64,
    /// Where the monitor runs in place (`-bios`) and its RAM (data, page tables, stacks).
    pub monitor_rom: PhysRange,
    pub monitor_ram: PhysRange,
    pub gic_distributor: PhysRange,
    pub gic_cpu_interface: PhysRange,
    /// The monitor's log.
    pub secure_uart: PhysRange,
    /// Linux's console (for its DTB).
    pub normal_uart: PhysRange,
    pub normal_uart_intid: u32,
    pub secure_gpio: PhysRange,
    pub poweroff_gpio: u32,
    pub reset_gpio: u32,
    /// The interrupt the monitor pends on `notify_secure`, and the one it raises on `notify_normal`.
    pub kick_intid: u32,
    pub doorbell_intid: u32,
    /// SPIs that stay in Group 0 (the secure world's), ascending. Every other SPI goes to Linux.
    pub group0_spis: Vec<u32>,
    /// Secure-only RAM PDs may map (the monitor writes the boot handoff there).
    pub secret_ram: Vec<PhysRange>,
    /// seL4's RAM, where the secure image lies (the monitor reads it to measure the image).
    pub secure_image_ram: PhysRange,
    /// Linux's own RAM and the shared window: the memory of Linux's DTB; a CPU_ON entry point must
    /// lie in it.
    pub normal_ram: Vec<PhysRange>,
    /// The shared window (reserved-memory in Linux's DTB).
    pub shared_window: Vec<PhysRange>,
    /// The regions of system.xml in the shared window (the tzmk device node's `reg`).
    pub shared_regions: Vec<PhysRange>,
    /// Trusted boot's blocks in secure flash (`[trust]`): the provisioning block (4 KiB), the
    /// manifest's and the counter's erase sectors.
    pub provisioning_block: PhysRange,
    pub manifest_block: PhysRange,
    /// The manifest's slot B (slot A is `manifest_block`).
    pub manifest_b_block: PhysRange,
    pub counter_block: PhysRange,
    /// system.xml's `boot_handoff` region (its physical address, in a secret range), where stage 1
    /// of trusted boot leaves its handoff; `None` if the system has none.
    pub boot_handoff: Option<PhysRange>,
    /// system.xml's `manifest_update` region (its physical address, in a secret range), where
    /// attestation-pd leaves a signed manifest for `UPDATE_MANIFEST`; `None` if the system has none.
    pub manifest_update: Option<PhysRange>,
    /// Where each image of the manifest may lie, by kind (secure image, Linux kernel, DTB,
    /// initramfs): from its `[boot]` address to the next `[boot]` address above it or the end of
    /// its range, whichever comes first. The monitor maps them read-only to measure the images.
    pub image_windows: [PhysRange; 4],
}

impl Partition {
    /// Computes the partition; an error names the platform entry or system.xml element at fault.
    pub fn compute(system: &System, platform: &Platform) -> Result<Partition, String> {
        let range = |name: &str| {
            platform
                .range_named(name)
                .map(PhysRange::of)
                .ok_or_else(|| format!("platform '{}' has no range named '{name}'", platform.name))
        };
        let interrupt = |name: &str, world: IrqWorld| -> Result<u32, String> {
            let irq = platform
                .interrupt_named(name)
                .ok_or_else(|| format!("platform '{}' has no interrupt named '{name}'", platform.name))?;
            if irq.world != world {
                return Err(format!("interrupt '{name}' ({}) must belong to the {world:?} world", irq.intid));
            }
            u32::try_from(irq.intid)
                .ok()
                .filter(|&id| id < GIC_INTIDS)
                .ok_or_else(|| format!("interrupt '{name}' ({}) is no GICv2 interrupt id", irq.intid))
        };
        let spi = |name: &str, world: IrqWorld| -> Result<u32, String> {
            let id = interrupt(name, world)?;
            if id < FIRST_SPI {
                return Err(format!("interrupt '{name}' ({id}) must be an SPI (32 or above): it is raised by id"));
            }
            Ok(id)
        };

        let mut group0 = std::collections::BTreeSet::new();
        for irq in &platform.interrupts {
            if irq.intid >= u64::from(FIRST_SPI) && irq.world != IrqWorld::Normal {
                group0.insert(irq.intid as u32);
            }
        }
        for pd in &system.protection_domains {
            for irq in &pd.irqs {
                if irq.irq >= u64::from(GIC_INTIDS) {
                    return Err(format!("PD '{}' claims interrupt {}, which GICv2 does not have", pd.name, irq.irq));
                }
                if let Some(p) = platform.interrupt(irq.irq) {
                    if p.world == IrqWorld::Normal {
                        return Err(format!(
                            "PD '{}' claims interrupt {} ('{}'), which the platform gives to Linux",
                            pd.name, irq.irq, p.name
                        ));
                    }
                }
                if irq.irq >= u64::from(FIRST_SPI) {
                    group0.insert(irq.irq as u32);
                }
            }
        }

        let normal_uart = range("uart0")?;
        let with_use = |use_: RangeUse| -> Vec<PhysRange> {
            platform.ranges.iter().filter(|r| r.use_ == use_).map(PhysRange::of).collect()
        };
        let secure_image_ram = platform
            .range_containing(platform.boot.secure_entry, 4)
            .map(PhysRange::of)
            .ok_or_else(|| format!("[boot] secure_entry {:#x} lies in no range", platform.boot.secure_entry))?;
        let mut normal_ram: Vec<PhysRange> = platform
            .ranges
            .iter()
            .filter(|r| matches!(r.use_, RangeUse::Linux | RangeUse::Shared) && r.world == World::Normal)
            .map(PhysRange::of)
            .collect();
        normal_ram.sort_by_key(|r| r.base);
        let shared_window = with_use(RangeUse::Shared);
        let mut shared_regions: Vec<PhysRange> = system
            .memory_regions
            .iter()
            .filter_map(|mr| {
                let base = mr.phys_addr?;
                shared_window.iter().any(|w| base >= w.base && base + mr.size <= w.end()).then(|| PhysRange {
                    name: mr.name.clone(),
                    base,
                    size: mr.size,
                })
            })
            .collect();
        shared_regions.sort_by_key(|r| r.base);

        let (provisioning, manifest) = platform.trust_addresses();
        let sector = platform.trust.sector;
        let block = |name: &str, base: u64, size: u64| PhysRange { name: name.into(), base, size };
        let secret_region = |name: &str| -> Result<Option<PhysRange>, String> {
            let Some(mr) = system.memory_regions.iter().find(|mr| mr.name == name) else { return Ok(None) };
            let base = mr.phys_addr.ok_or(format!("memory region '{name}' has no phys_addr: the monitor maps it"))?;
            if !platform.ranges.iter().any(|r| r.use_ == RangeUse::Secret && r.contains(base, mr.size)) {
                return Err(format!(
                    "memory region '{name}' ({base:#x}, {:#x} bytes) lies in no secret range",
                    mr.size
                ));
            }
            Ok(Some(PhysRange { name: mr.name.clone(), base, size: mr.size }))
        };
        let boot_handoff = secret_region("boot_handoff")?;
        let manifest_update = secret_region("manifest_update")?;
        let boot = &platform.boot;
        let starts = [boot.secure_entry, boot.linux_kernel, boot.linux_dtb, boot.linux_initrd];
        let mut image_windows = Vec::new();
        for (name, start) in ["secure-image", "linux-kernel", "linux-dtb", "linux-initramfs"].into_iter().zip(starts) {
            let range =
                platform.range_containing(start, 1).ok_or_else(|| format!("[boot] {start:#x} lies in no range"))?;
            let end = starts.iter().copied().filter(|&s| s > start && s < range.end()).min().unwrap_or(range.end());
            image_windows.push(PhysRange { name: name.into(), base: start, size: end - start });
        }
        let image_windows: [PhysRange; 4] = image_windows.try_into().expect("four kinds");

        let mut secure_cores = platform.cores.secure.clone();
        let mut normal_cores = platform.cores.normal.clone();
        secure_cores.sort_unstable();
        normal_cores.sort_unstable();
        if let Some(core) = secure_cores.iter().chain(&normal_cores).find(|&&c| c >= 64) {
            return Err(format!("core {core}: the monitor supports cores 0..63"));
        }

        Ok(Partition {
            platform: platform.name.clone(),
            secure_cores,
            normal_cores,
            secure_entry: platform.boot.secure_entry,
            linux_kernel: platform.boot.linux_kernel,
            linux_dtb: platform.boot.linux_dtb,
            linux_initrd: platform.boot.linux_initrd,
            monitor_rom: range("secure-flash")?,
            monitor_ram: range("monitor-ram")?,
            gic_distributor: range("gic-distributor")?,
            gic_cpu_interface: range("gic-cpu-interface")?,
            secure_uart: range("secure-uart")?,
            normal_uart_intid: spi("uart0", IrqWorld::Normal)?,
            normal_uart,
            secure_gpio: range("secure-gpio")?,
            poweroff_gpio: platform.boot.poweroff_gpio,
            reset_gpio: platform.boot.reset_gpio,
            kick_intid: spi("kick", IrqWorld::Secure)?,
            doorbell_intid: spi("doorbell", IrqWorld::Normal)?,
            group0_spis: group0.into_iter().collect(),
            secret_ram: with_use(RangeUse::Secret),
            secure_image_ram,
            normal_ram,
            shared_window,
            shared_regions,
            provisioning_block: block("provisioning", provisioning, crate::platform::TRUST_BLOCK_SIZE),
            manifest_block: block("manifest", manifest, sector),
            manifest_b_block: block("manifest_b", platform.manifest_slots()[1], sector),
            counter_block: block("counter", platform.counter_address(), sector),
            boot_handoff,
            manifest_update,
            image_windows,
        })
    }

    /// The number of core slots the monitor needs: the highest core number of either world, plus one.
    pub fn cores(&self) -> u32 {
        self.secure_cores.iter().chain(&self.normal_cores).max().map_or(0, |&c| c + 1)
    }

    /// Whether an SPI stays with the secure world.
    pub fn is_group0(&self, intid: u32) -> bool {
        self.group0_spis.binary_search(&intid).is_ok()
    }

    /// GICD_IGROUPR<n> values for n = 0..32 as the hand-back writes them on the distributor: a set
    /// bit is Group 1 (Linux's). Register 0 (SGIs and PPIs) is banked per core and written by each
    /// core itself, so it is all Group 1 here (Linux cores); the secure core keeps seL4's setting.
    pub fn igroupr(&self) -> [u32; 32] {
        let mut regs = [u32::MAX; 32];
        for &id in &self.group0_spis {
            regs[(id / 32) as usize] &= !(1 << (id % 32));
        }
        regs
    }

    fn core_mask(cores: &[u32]) -> u64 {
        cores.iter().fold(0, |mask, &c| mask | 1 << c)
    }

    /// The bytes of secure flash the monitor's image may take: up to the first of trusted boot's
    /// blocks.
    pub fn monitor_image_size(&self) -> u64 {
        [&self.manifest_block, &self.manifest_b_block, &self.counter_block]
            .iter()
            .fold(self.provisioning_block.base, |lowest, block| lowest.min(block.base))
            - self.monitor_rom.base
    }

    /// The MEMORY block of the monitor's linker script. ROM ends where trusted boot's blocks
    /// begin, so a monitor image that would reach them does not link.
    pub fn linker_memory(&self) -> String {
        format!(
            "/* Generated from platform '{}'. */\nMEMORY\n{{\n    ROM (rx) : ORIGIN = {:#x}, LENGTH = {:#x}\n    RAM (rwx) : ORIGIN = {:#x}, LENGTH = {:#x}\n}}\n",
            self.platform,
            self.monitor_rom.base,
            self.monitor_image_size(),
            self.monitor_ram.base,
            self.monitor_ram.size
        )
    }

    /// The partition as Rust constants for the monitor (`include!`d from its build's OUT_DIR).
    pub fn to_rust(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "// Generated by tzmk-sdf's partition from platform '{}' and system.xml. Do not edit.",
            self.platform
        ));
        line(format!("pub const PLATFORM: &str = {:?};", self.platform));
        line(format!("pub const SECURE_CORES: u64 = {:#x};", Self::core_mask(&self.secure_cores)));
        line(format!("pub const NORMAL_CORES: u64 = {:#x};", Self::core_mask(&self.normal_cores)));
        line(format!("pub const CORES: usize = {};", self.cores()));
        line(format!("pub const FIRST_SECURE_CORE: usize = {};", self.secure_cores[0]));
        line(format!("pub const FIRST_NORMAL_CORE: usize = {};", self.normal_cores[0]));
        line(format!("pub const SECURE_ENTRY: u64 = {:#x};", self.secure_entry));
        line(format!("pub const LINUX_KERNEL: u64 = {:#x};", self.linux_kernel));
        line(format!("pub const LINUX_DTB: u64 = {:#x};", self.linux_dtb));
        line(format!("pub const LINUX_INITRD: u64 = {:#x};", self.linux_initrd));
        for (name, r) in [
            ("MONITOR_ROM", &self.monitor_rom),
            ("MONITOR_RAM", &self.monitor_ram),
            ("GIC_DISTRIBUTOR", &self.gic_distributor),
            ("GIC_CPU_INTERFACE", &self.gic_cpu_interface),
            ("SECURE_UART", &self.secure_uart),
            ("SECURE_GPIO", &self.secure_gpio),
            ("SECURE_IMAGE_RAM", &self.secure_image_ram),
            ("PROVISIONING_BLOCK", &self.provisioning_block),
            ("MANIFEST_BLOCK", &self.manifest_block),
            ("MANIFEST_B_BLOCK", &self.manifest_b_block),
            ("COUNTER_BLOCK", &self.counter_block),
        ] {
            line(format!("pub const {name}: PhysRange = PhysRange {{ base: {:#x}, size: {:#x} }};", r.base, r.size));
        }
        line(format!("pub const POWEROFF_GPIO: u32 = {};", self.poweroff_gpio));
        line(format!("pub const RESET_GPIO: u32 = {};", self.reset_gpio));
        line(format!("pub const KICK_INTID: u32 = {};", self.kick_intid));
        line(format!("pub const DOORBELL_INTID: u32 = {};", self.doorbell_intid));
        let regs = self.igroupr().iter().map(|r| format!("{r:#010x}")).collect::<Vec<_>>().join(", ");
        line(format!("pub const IGROUPR: [u32; 32] = [{regs}];"));
        let list = |ranges: &[PhysRange]| {
            ranges
                .iter()
                .map(|r| format!("PhysRange {{ base: {:#x}, size: {:#x} }}", r.base, r.size))
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(format!("pub const SECRET_RAM: &[PhysRange] = &[{}];", list(&self.secret_ram)));
        line(format!("pub const NORMAL_RAM: &[PhysRange] = &[{}];", list(&self.normal_ram)));
        line(format!("pub const IMAGE_WINDOWS: [PhysRange; 4] = [{}];", list(&self.image_windows)));
        for (name, region) in [("BOOT_HANDOFF", &self.boot_handoff), ("MANIFEST_UPDATE", &self.manifest_update)] {
            line(match region {
                Some(r) => format!("pub const {name}: Option<PhysRange> = Some({});", list(std::slice::from_ref(r))),
                None => format!("pub const {name}: Option<PhysRange> = None;"),
            });
        }
        let mut text = out;
        let _ = writeln!(text);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_system;

    fn system_xml() -> System {
        let text = include_str!("../../../system.xml");
        parse_system("system.xml", text).expect("system.xml parses")
    }

    #[test]
    fn qemu_virt_partition_of_system_xml() {
        let p = Partition::compute(&system_xml(), &Platform::qemu_virt()).unwrap();
        assert_eq!(p.secure_cores, [0]);
        assert_eq!(p.normal_cores, [1, 2, 3]);
        assert_eq!((p.kick_intid, p.doorbell_intid), (144, 145));
        // The kick (comm-pd's <irq>) and the secure UART stay secure; Linux's UART and the
        // doorbell do not.
        assert!(p.is_group0(144) && p.is_group0(40));
        assert!(!p.is_group0(33) && !p.is_group0(145));
        let regs = p.igroupr();
        assert_eq!(regs[144 / 32] & (1 << (144 % 32)), 0);
        assert_ne!(regs[145 / 32] & (1 << (145 % 32)), 0);
        assert_eq!(regs[0], u32::MAX, "Linux cores get every SGI and PPI");
        let names: Vec<_> = p.shared_regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["port_ctrl", "port_rx", "port_tx"]);
        assert_eq!(p.secure_image_ram.name, "sel4-ram");
        assert_eq!(
            p.image_windows.iter().map(|r| (r.base, r.end())).collect::<Vec<_>>(),
            [
                (0x7000_0000, 0xc000_0000),
                (0xc020_0000, 0xc800_0000),
                (0xc800_0000, 0xc840_0000),
                (0xc840_0000, 0xfe00_0000)
            ]
        );
        assert_eq!(p.boot_handoff.as_ref().map(|r| (r.base, r.size)), Some((0x0e80_1000, 0x1000)));
        assert_eq!(p.monitor_image_size(), 0x10_0000);
        assert!(p.linker_memory().contains("ROM (rx) : ORIGIN = 0x0, LENGTH = 0x100000"));
        assert_eq!(
            p.normal_ram.iter().map(|r| (r.base, r.end())).collect::<Vec<_>>(),
            [(0xc000_0000, 0xfe00_0000), (0xfe00_0000, 0x1_0000_0000)]
        );
    }

    #[test]
    fn a_pd_claiming_a_linux_interrupt_is_refused() {
        let text = include_str!("../../../system.xml").replace(r#"irq="144""#, r#"irq="145""#);
        let system = parse_system("system.xml", &text).unwrap();
        let err = Partition::compute(&system, &Platform::qemu_virt()).unwrap_err();
        assert_eq!(err, "PD 'comm-pd' claims interrupt 145 ('doorbell'), which the platform gives to Linux");
    }

    #[test]
    fn a_platform_without_a_named_device_is_refused() {
        let text = crate::platform::QEMU_VIRT.replace("name = \"secure-gpio\"", "name = \"gpio-s\"");
        let platform = Platform::parse("p.toml", &text).unwrap();
        let err = Partition::compute(&system_xml(), &platform).unwrap_err();
        assert_eq!(err, "platform 'qemu-virt' has no range named 'secure-gpio'");
    }

    #[test]
    fn a_doorbell_that_is_a_ppi_is_refused() {
        let text = crate::platform::QEMU_VIRT.replace("intid = 145", "intid = 29");
        let platform = Platform::parse("p.toml", &text).unwrap();
        let err = Partition::compute(&system_xml(), &platform).unwrap_err();
        assert_eq!(err, "interrupt 'doorbell' (29) must be an SPI (32 or above): it is raised by id");
    }

    #[test]
    fn rust_constants_name_every_number() {
        let p = Partition::compute(&system_xml(), &Platform::qemu_virt()).unwrap();
        let rust = p.to_rust();
        for want in [
            "pub const SECURE_CORES: u64 = 0x1;",
            "pub const NORMAL_CORES: u64 = 0xe;",
            "pub const CORES: usize = 4;",
            "pub const SECURE_ENTRY: u64 = 0x70000000;",
            "pub const KICK_INTID: u32 = 144;",
            "pub const GIC_DISTRIBUTOR: PhysRange = PhysRange { base: 0x8000000, size: 0x10000 };",
        ] {
            assert!(rust.contains(want), "{want} missing from:\n{rust}");
        }
    }

    #[test]
    fn boot_addresses_are_checked() {
        for (from, to, message) in [
            ("linux_kernel = 0xc020_0000", "linux_kernel = 0xc030_0000", "not 2 MiB aligned"),
            (
                "linux_dtb = 0xc800_0000",
                "linux_dtb = 0x4000_0000",
                "lies in range 'sel4-ram' (Kernel), not in a Linux range",
            ),
            ("secure_entry = 0x7000_0000", "secure_entry = 0xc000_0000", "lies in range 'linux-ram'"),
        ] {
            let text = crate::platform::QEMU_VIRT.replace(from, to);
            let err = Platform::parse("p.toml", &text).unwrap_err();
            assert!(err.message.contains(message), "{from} -> {to}: {}", err.message);
        }
    }
}
