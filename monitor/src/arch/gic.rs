//! The GICv2 distributor and CPU interface as the monitor uses them, with arm-gic's register
//! blocks. The monitor runs in the secure state, so it sees both groups (GIC architecture
//! specification v2, 4.3 and 4.4; IHI 0048B).

use arm_gic::gicv2::registers::{Gicc, Gicd, GicdCtlr};
use core::ptr::NonNull;
use safe_mmio::{field, field_shared, UniqueMmioPointer};
use tzmk_monitor::config;

fn distributor() -> UniqueMmioPointer<'static, Gicd> {
    // SAFETY: the distributor's registers, mapped as device memory. Several cores may hold a
    // pointer at once: the monitor writes only set/clear registers (ISPENDR: 4.3.7), byte-wide
    // targets, and the group registers during the one-time hand-back, which no other core touches.
    unsafe { UniqueMmioPointer::new(NonNull::new(config::GIC_DISTRIBUTOR.base as *mut Gicd).unwrap()) }
}

fn cpu_interface() -> UniqueMmioPointer<'static, Gicc> {
    // SAFETY: the CPU interface is banked per core: this core's own registers.
    unsafe { UniqueMmioPointer::new(NonNull::new(config::GIC_CPU_INTERFACE.base as *mut Gicc).unwrap()) }
}

/// The number of GICD_IGROUPR registers the distributor implements (ITLinesNumber + 1, 4.3.2).
fn group_registers(gicd: &UniqueMmioPointer<Gicd>) -> usize {
    (field_shared!(gicd, typer).read().num_irqs() as usize).div_ceil(32).min(32)
}

fn write_groups(mut gicd: &mut UniqueMmioPointer<Gicd>) {
    for n in 1..group_registers(gicd) {
        field!(gicd, igroupr).get(n).unwrap().write(config::IGROUPR[n]);
    }
}

/// After `go`: every SPI not in the partition's Group 0 goes to Linux (Group 1) and Group 1 is
/// enabled. False, and nothing written, if the secure world never enabled the distributor.
pub fn hand_back_distributor() -> bool {
    let mut gicd = distributor();
    let ctlr = field_shared!(gicd, ctlr).read();
    if !ctlr.contains(GicdCtlr::EnableGrp0) {
        return false;
    }
    write_groups(&mut gicd);
    field!(gicd, ctlr).write(GicdCtlr::EnableGrp0 | GicdCtlr::EnableGrp1);
    true
}

/// With no secure world: the monitor initialises the distributor for Linux alone. The secure
/// world's SPIs stay Group 0 and disabled, so nothing of Linux's can reach them.
pub fn init_distributor_alone() {
    let mut gicd = distributor();
    field!(gicd, ctlr).write(GicdCtlr::empty());
    write_groups(&mut gicd);
    for n in 1..group_registers(&gicd) {
        field!(gicd, icenabler).get(n).unwrap().write(!config::IGROUPR[n]);
    }
    field!(gicd, ctlr).write(GicdCtlr::EnableGrp0 | GicdCtlr::EnableGrp1);
}

/// On each Linux core before it enters Linux: its banked SGIs and PPIs are Group 1 (4.3.4) and
/// its secure priority mask lets every priority through (4.4.2; Linux then sets its own).
pub fn cpu_interface_for_linux() {
    let mut gicd = distributor();
    field!(gicd, igroupr).get(0).unwrap().write(config::IGROUPR[0]);
    let mut gicc = cpu_interface();
    field!(gicc, pmr).write(0xff);
}

/// Sets interrupt `intid` pending (GICD_ISPENDR, 4.3.7: write-one-to-set, safe from any core).
pub fn pend(intid: u32) {
    let mut gicd = distributor();
    field!(gicd, ispendr).get((intid / 32) as usize).unwrap().write(1 << (intid % 32));
}

/// Targets SPI `intid` at `core` and sets it pending.
pub fn raise_at(intid: u32, core: usize) {
    // GICD_ITARGETSR is byte-accessible (4.3.12); a byte store changes this SPI's target only,
    // whatever Linux writes to its neighbours' bytes meanwhile. arm-gic models the registers as
    // words, hence the raw byte address.
    let target = (config::GIC_DISTRIBUTOR.base as usize + 0x800 + intid as usize) as *mut u8;
    // SAFETY: inside the distributor's mapped registers (intid < 1020 by the partition).
    unsafe { target.write_volatile(1 << core) };
    pend(intid);
}
