//! Linux's device tree, generated from the [`Partition`]: only Linux's cores and memory, PSCI by
//! SMC, the shared window as reserved memory, and the tzmk device with its doorbell interrupt.
//!
//! Bindings: Documentation/devicetree/bindings in Linux (`arm/psci.yaml`, `arm/cpus.yaml`,
//! `interrupt-controller/arm,gic.yaml`, `timer/arm,arch_timer.yaml`, `serial/pl011.yaml`,
//! `reserved-memory/reserved-memory.yaml`). The tzmk node is this project's own binding,
//! `tzmk,ports` (docs/monitor.md).

use crate::partition::{Partition, FIRST_SPI};
use vm_fdt::{FdtWriter, FdtWriterResult};

/// What the DTB says beyond the partition: the kernel command line and the initramfs.
#[derive(Debug, Clone)]
pub struct LinuxBoot<'a> {
    pub bootargs: &'a str,
    /// Size of the initramfs loaded at the partition's `linux_initrd`; 0 for none.
    pub initrd_size: u64,
}

const GIC_PHANDLE: u32 = 1;
const CLOCK_PHANDLE: u32 = 2;
/// Shared region i's reserved-memory node has phandle FIRST_REGION_PHANDLE + i.
const FIRST_REGION_PHANDLE: u32 = 16;
/// GIC binding interrupt specifier: type 0 = SPI, 1 = PPI; flags 1 = edge rising, 4 = level high.
const SPI: u32 = 0;
const PPI: u32 = 1;
const EDGE_RISING: u32 = 1;
const LEVEL_HIGH: u32 = 4;

/// The phandle of shared region `index`'s reserved-memory node.
fn region_phandle(index: usize) -> u32 {
    FIRST_REGION_PHANDLE + index as u32
}

/// A reserved-memory child: `no-map`, so Linux never maps it in its linear map (the driver maps
/// it with `memremap`).
fn reserve(fdt: &mut FdtWriter, name: &str, base: u64, size: u64, phandle: Option<u32>) -> FdtWriterResult<()> {
    let node = fdt.begin_node(&format!("{name}@{base:x}"))?;
    fdt.property_array_u64("reg", &[base, size])?;
    fdt.property_null("no-map")?;
    if let Some(phandle) = phandle {
        fdt.property_phandle(phandle)?;
    }
    fdt.end_node(node)
}

fn reg(ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<u64> {
    ranges.into_iter().flat_map(|(base, size)| [base, size]).collect()
}

/// Builds the flattened device tree.
pub fn linux_dtb(p: &Partition, boot: &LinuxBoot) -> Result<Vec<u8>, String> {
    build(p, boot).map_err(|e| format!("cannot build Linux's device tree: {e}"))
}

fn build(p: &Partition, boot: &LinuxBoot) -> FdtWriterResult<Vec<u8>> {
    let mut fdt = FdtWriter::new()?;
    fdt.set_boot_cpuid_phys(p.normal_cores[0]);
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", &format!("tzmk normal world on {}", p.platform))?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", boot.bootargs)?;
    fdt.property_string("stdout-path", &format!("/pl011@{:x}", p.normal_uart.base))?;
    if boot.initrd_size > 0 {
        fdt.property_u64("linux,initrd-start", p.linux_initrd)?;
        fdt.property_u64("linux,initrd-end", p.linux_initrd + boot.initrd_size)?;
    }
    fdt.end_node(chosen)?;

    let first = p.normal_ram.first().map_or(0, |r| r.base);
    let memory = fdt.begin_node(&format!("memory@{first:x}"))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &reg(p.normal_ram.iter().map(|r| (r.base, r.size))))?;
    fdt.end_node(memory)?;

    let reserved = fdt.begin_node("reserved-memory")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    // The whole shared window is reserved (no-map): one node per shared region, which the tzmk
    // node names through `memory-region`, and one per gap between them (reserved-memory nodes
    // must not overlap).
    for window in &p.shared_window {
        let mut at = window.base;
        let inside: Vec<(usize, &crate::partition::PhysRange)> = p
            .shared_regions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.base >= window.base && r.end() <= window.end())
            .collect();
        for (index, region) in inside {
            if region.base > at {
                reserve(&mut fdt, "tzmk-shared", at, region.base - at, None)?;
            }
            reserve(&mut fdt, &format!("tzmk-{}", region.name), region.base, region.size, Some(region_phandle(index)))?;
            at = region.end();
        }
        if window.end() > at {
            reserve(&mut fdt, "tzmk-shared", at, window.end() - at, None)?;
        }
    }
    fdt.end_node(reserved)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for &core in &p.normal_cores {
        let cpu = fdt.begin_node(&format!("cpu@{core:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_u32("reg", core)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()])?;
    fdt.property_string("method", "smc")?;
    fdt.end_node(psci)?;

    let gic = fdt.begin_node(&format!("intc@{:x}", p.gic_distributor.base))?;
    fdt.property_string("compatible", "arm,cortex-a15-gic")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_array_u64(
        "reg",
        &reg([(p.gic_distributor.base, p.gic_distributor.size), (p.gic_cpu_interface.base, p.gic_cpu_interface.size)]),
    )?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(gic)?;

    // Generic timer PPIs: secure physical 29, non-secure physical 30, virtual 27, hypervisor 26
    // (Arm BSA); the GICv2 binding's flags carry a mask of the CPU interfaces that receive them.
    let cpu_mask = p.normal_cores.iter().fold(0u32, |m, &c| m | 1 << c) & 0xff;
    let ppi_flags = (cpu_mask << 8) | LEVEL_HIGH;
    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_array_u32(
        "interrupts",
        &[PPI, 29 - 16, ppi_flags, PPI, 30 - 16, ppi_flags, PPI, 27 - 16, ppi_flags, PPI, 26 - 16, ppi_flags],
    )?;
    fdt.property_null("always-on")?;
    fdt.end_node(timer)?;

    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", 24_000_000)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(CLOCK_PHANDLE)?;
    fdt.end_node(clock)?;

    let uart = fdt.begin_node(&format!("pl011@{:x}", p.normal_uart.base))?;
    fdt.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()])?;
    fdt.property_array_u64("reg", &[p.normal_uart.base, p.normal_uart.size])?;
    fdt.property_array_u32("interrupts", &[SPI, p.normal_uart_intid - FIRST_SPI, LEVEL_HIGH])?;
    fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
    fdt.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
    fdt.end_node(uart)?;

    if let Some(ctrl) = p.shared_regions.first() {
        let node = fdt.begin_node(&format!("tzmk@{:x}", ctrl.base))?;
        fdt.property_string("compatible", "tzmk,ports")?;
        let phandles: Vec<u32> = (0..p.shared_regions.len()).map(region_phandle).collect();
        fdt.property_array_u32("memory-region", &phandles)?;
        fdt.property_string_list("memory-region-names", p.shared_regions.iter().map(|r| r.name.clone()).collect())?;
        fdt.property_array_u32("interrupts", &[SPI, p.doorbell_intid - FIRST_SPI, EDGE_RISING])?;
        fdt.end_node(node)?;
    }

    fdt.end_node(root)?;
    fdt.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_system, Platform};

    fn dtb() -> Vec<u8> {
        let system = parse_system("system.xml", include_str!("../../../system.xml")).unwrap();
        let p = Partition::compute(&system, &Platform::qemu_virt()).unwrap();
        linux_dtb(&p, &LinuxBoot { bootargs: "console=ttyAMA0", initrd_size: 0x1234 }).unwrap()
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn header_and_boot_cpu() {
        let b = dtb();
        assert_eq!(be32(&b, 0), 0xd00d_feed, "FDT magic");
        assert_eq!(be32(&b, 4) as usize, b.len(), "totalsize");
        assert_eq!(be32(&b, 28), 1, "boot_cpuid_phys is the first normal core");
    }

    /// The strings and node names a reader of the DTB relies on, found in the blob.
    #[test]
    fn linux_sees_only_its_own_cores_and_memory() {
        let b = dtb();
        let has = |s: &str| b.windows(s.len()).any(|w| w == s.as_bytes());
        for s in ["cpu@1", "cpu@2", "cpu@3", "memory@c0000000", "tzmk-port_ctrl@fe000000", "tzmk,ports", "port_ctrl"] {
            assert!(has(s), "{s} missing");
        }
        assert!(!has("cpu@0"), "the secure core must not be in Linux's DTB");
        assert!(has("smc") && has("arm,psci-1.0"));
        assert!(has("linux,initrd-end"));
    }

    /// Read back with an independent FDT parser: the structure Linux walks.
    #[test]
    fn an_fdt_reader_finds_cpus_memory_psci_and_the_initrd() {
        let b = dtb();
        let fdt = fdt::Fdt::new(&b).expect("a valid FDT");
        let cpus: Vec<usize> = fdt.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(cpus, [1, 2, 3]);
        let memory: Vec<(usize, Option<usize>)> =
            fdt.memory().regions().map(|r| (r.starting_address as usize, r.size)).collect();
        assert_eq!(memory, [(0xc000_0000, Some(0x3e00_0000)), (0xfe00_0000, Some(0x0200_0000))]);
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("smc"));
        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyAMA0"));
        let start = fdt.find_node("/chosen").unwrap().property("linux,initrd-start").unwrap().as_usize();
        let end = fdt.find_node("/chosen").unwrap().property("linux,initrd-end").unwrap().as_usize();
        assert_eq!((start, end), (Some(0xc840_0000), Some(0xc840_1234)));
        let tzmk = fdt.find_compatible(&["tzmk,ports"]).unwrap();
        let names: Vec<&str> = tzmk
            .property("memory-region-names")
            .unwrap()
            .value
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| std::str::from_utf8(n).unwrap())
            .collect();
        assert_eq!(names, ["port_ctrl", "port_rx", "port_tx"]);
        let phandles: Vec<u32> = tzmk
            .property("memory-region")
            .unwrap()
            .value
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        let regions: Vec<(usize, Option<usize>)> = phandles
            .iter()
            .map(|&phandle| {
                let node = fdt.find_phandle(phandle).expect("memory-region names a node");
                assert!(node.property("no-map").is_some(), "{} is mapped by Linux", node.name);
                let reg = node.reg().unwrap().next().unwrap();
                (reg.starting_address as usize, reg.size)
            })
            .collect();
        assert_eq!(
            regions,
            [(0xfe00_0000, Some(0x1000)), (0xfe20_0000, Some(0x20_0000)), (0xfe40_0000, Some(0x20_0000))]
        );
        // The whole window stays reserved, in pieces that do not overlap.
        let mut pieces: Vec<(usize, usize)> = fdt
            .find_node("/reserved-memory")
            .unwrap()
            .children()
            .map(|n| {
                let reg = n.reg().unwrap().next().unwrap();
                (reg.starting_address as usize, reg.size.unwrap())
            })
            .collect();
        pieces.sort();
        assert_eq!(pieces.first().map(|p| p.0), Some(0xfe00_0000));
        assert!(pieces.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0), "{pieces:x?}");
        assert_eq!(pieces.last().map(|p| p.0 + p.1), Some(0x1_0000_0000));
        let doorbell = tzmk.property("interrupts").unwrap().value;
        assert_eq!(doorbell, [0, 0, 0, 0, 0, 0, 0, 113, 0, 0, 0, 1], "SPI 113 (INTID 145), edge");
    }
}
