//! The bare-metal half of the monitor: reset, vectors and world entry (entry.S), and the hardware
//! behind [`tzmk_monitor::Hardware`].
//!
//! Boot (docs/monitor.md): core 0 copies .data, zeroes .bss, opens the secure UART, builds the page
//! tables and turns the MMU and caches on, then publishes the boot magic that releases the other
//! cores into the same tables. The first secure core enters the Microkit loader at S-EL1 (or, with
//! no secure image, hands Linux the GIC itself); normal cores wait for `go`, take their banked GIC
//! state and enter Linux at NS-EL1 (the first) or wait for PSCI CPU_ON (the others).

mod console;
mod flash;
mod gic;
mod mmu;
mod power;
mod trusted_boot;

use arm_sysregs::el1::accessors::read_mpidr_el1;
use arm_sysregs::el3::accessors::read_scr_el3;
use arm_sysregs::el3::registers::ScrEl3;
use core::sync::atomic::{AtomicU64, Ordering};
use tzmk_monitor::config;
use tzmk_monitor::{dispatch, Caller, Disposition, Hardware, Monitor, World};

core::arch::global_asm!(
    include_str!("entry.S"),
    cores = const config::CORES,
    boot_magic = const BOOT_MAGIC,
    copied_magic = const COPIED_MAGIC,
    stack_slot = const config::STACK_SLOT,
);

/// What core 0 writes once memory and page tables are ready ("TZMKBOOT"); the other cores compare
/// against it, so whatever RAM held at reset cannot release them early.
const BOOT_MAGIC: u64 = 0x545a_4d4b_424f_4f54;
#[unsafe(no_mangle)]
static tzmk_boot_magic: AtomicU64 = AtomicU64::new(0);
/// What core 0's reset stub writes once the image is in RAM ("TZMKCOPY"); the other cores leave
/// flash only then.
const COPIED_MAGIC: u64 = 0x545a_4d4b_434f_5059;
#[unsafe(no_mangle)]
static tzmk_image_copied: AtomicU64 = AtomicU64::new(0);

/// Forgets both releases before a system reset: QEMU's reset keeps RAM, and the next boot's
/// cores must wait for its own copy and its own stage 1, not this boot's.
pub(crate) fn forget_releases() {
    tzmk_image_copied.store(0, Ordering::SeqCst);
    tzmk_boot_magic.store(0, Ordering::SeqCst);
    mmu::clean_to_poc(&tzmk_image_copied);
    mmu::clean_to_poc(&tzmk_boot_magic);
}

use config::STACK_SLOT;

/// SCR_EL3 for each world (Arm ARM D13.2.119): RW (lower ELs are AArch64) and the RES1 bits 5:4;
/// the normal world adds NS and HCE. IRQ, FIQ and external aborts are never routed to EL3.
const SCR_SECURE: u64 = 1 << 10 | 0b11 << 4;
const SCR_NORMAL: u64 = SCR_SECURE | 1 << 8 | 1;
/// SPSR_EL3 to enter EL1h with D, A, I and F masked.
const SPSR_EL1H: u64 = 0x3c5;
/// SCTLR_EL1 for a world's entry: MMU, caches and alignment checks off, only the RES1 bits of
/// Armv8.0 set (29, 28, 23, 22, 20, 11; Arm ARM D13.2.113). PSCI (DEN 0022 6.4) requires the MMU
/// and caches off at CPU_ON's entry point; a core that ran Linux before its CPU_OFF still has
/// Linux's SCTLR_EL1, MMU on, and would fetch its physical entry address as a virtual one.
const SCTLR_EL1_ENTRY: u64 = 0x30d0_0800;

/// Enters a world at EL1 for good, with EL1's system control register reset (see above).
fn enter_el1(entry: u64, scr: u64, x0: u64, core: usize) -> ! {
    // SAFETY: SCTLR_EL1 is not used at EL3; EL1 starts with it as after reset, then `enter_world`
    // erets to `entry` on this core's fresh stack. The caller vouches for the entry point.
    unsafe {
        core::arch::asm!("msr sctlr_el1, {}", "isb", in(reg) SCTLR_EL1_ENTRY, options(nostack, preserves_flags));
        enter_world(entry, SPSR_EL1H, scr, x0, stack_top(core))
    }
}

static MONITOR: Monitor = Monitor::new();

unsafe extern "C" {
    fn enter_world(entry: u64, spsr: u64, scr: u64, x0: u64, stack_top: u64) -> !;
    fn park_core(core: usize, stack_top: u64) -> !;
    static __stacks_start: u8;
}

fn stack_top(core: usize) -> u64 {
    let base = (&raw const __stacks_start) as u64;
    base + (core as u64 + 1) * STACK_SLOT
}

fn halt() -> ! {
    loop {
        aarch64_wfi();
    }
}

fn aarch64_wfi() {
    // SAFETY: WFI only waits for an interrupt or event.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

fn aarch64_wfe() {
    // SAFETY: WFE only waits for an event.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

fn aarch64_sev() {
    // SAFETY: SEV only signals an event to every core; `dsb` first so stores are visible.
    unsafe { core::arch::asm!("dsb sy", "sev", options(nostack, preserves_flags)) };
}

/// Core 0, after .data and .bss are set up (entry.S): the MMU, trusted boot stage 1, then the
/// other cores.
#[unsafe(no_mangle)]
extern "C" fn boot_core_main(core: usize) -> ! {
    console::init();
    let root = match mmu::build() {
        Ok(root) => root,
        Err(e) => {
            console::early_line(format_args!("tzmk-monitor: ERROR: page tables: {e}"));
            halt()
        }
    };
    // SAFETY: `root` is the root of the identity map just built, covering this code, its data and
    // stacks and every device the monitor touches.
    unsafe { mmu::enable(root) };
    console::install_logger();
    log::info!(
        "tzmk monitor {} on {}: secure cores {:#x}, normal cores {:#x}; MMU and caches on",
        env!("CARGO_PKG_VERSION"),
        config::PLATFORM,
        config::SECURE_CORES,
        config::NORMAL_CORES
    );
    // Trusted boot stage 1, before any other core leaves reset's wait: a failure stops here.
    trusted_boot::run(core);
    tzmk_boot_magic.store(BOOT_MAGIC, Ordering::Release);
    mmu::clean_to_poc(&tzmk_boot_magic);
    aarch64_sev();
    core_main(core)
}

/// Every other core, once the boot magic is published (MMU still off).
#[unsafe(no_mangle)]
extern "C" fn secondary_core_main(core: usize) -> ! {
    // SAFETY: the tables core 0 built before publishing the magic.
    unsafe { mmu::enable(mmu::root()) };
    core_main(core)
}

fn core_main(core: usize) -> ! {
    if core == config::FIRST_SECURE_CORE {
        boot_secure_world(core)
    } else if config::is_normal_core(core) {
        while !MONITOR.normal_world_released() {
            aarch64_wfe();
        }
        gic::cpu_interface_for_linux();
        if core == config::FIRST_NORMAL_CORE {
            log::info!(
                "core {core}: entering Linux at {:#x} (NS-EL1), DTB at {:#x}",
                config::LINUX_KERNEL,
                config::LINUX_DTB
            );
            // The normal world's image entry, with the DTB in x0 (Linux's arm64 boot protocol).
            enter_el1(config::LINUX_KERNEL, SCR_NORMAL, config::LINUX_DTB, core)
        }
        wait_for_cpu_on(core)
    } else {
        log::warn!("core {core} belongs to no world: parked");
        halt()
    }
}

fn boot_secure_world(core: usize) -> ! {
    if trusted_boot::secure_world_verified() {
        log::info!("core {core}: entering the secure world at {:#x} (S-EL1)", config::SECURE_ENTRY);
        // The secure image's entry (the Microkit loader), verified by stage 1.
        enter_el1(config::SECURE_ENTRY, SCR_SECURE, 0, core)
    }
    if mmu::secure_image_present() {
        log::warn!("memory at {:#x} is not entered: the manifest names no secure image", config::SECURE_ENTRY);
    }
    log::warn!(
        "no secure image at {:#x}: the normal world runs alone; notify_secure answers NO_SECURE_WORLD",
        config::SECURE_ENTRY
    );
    gic::init_distributor_alone();
    MONITOR.secure_world_absent();
    aarch64_sev();
    halt()
}

fn wait_for_cpu_on(core: usize) -> ! {
    loop {
        if let Some(start) = MONITOR.cores.take_start(core) {
            // CPU_ON checked that the entry lies in Linux's RAM; x0 is its context id.
            enter_el1(start.entry, SCR_NORMAL, start.context, core)
        }
        aarch64_wfe();
    }
}

/// After CPU_OFF (entry.S `park_core`, on a fresh stack).
#[unsafe(no_mangle)]
extern "C" fn parked_core_main(core: usize) -> ! {
    wait_for_cpu_on(core)
}

/// The hardware behind the SiP service.
struct Platform;

impl Hardware for Platform {
    fn pend_kick(&self) {
        // Linux's GIC driver retargets every SPI at its boot CPU when it starts, and QEMU's GICv2
        // applies that non-secure write even to a Group 0 interrupt's target byte: a kick pended
        // there would sit at a Linux core whose Group 0 is off and, at priority 0, hide every
        // other interrupt of that core. So the kick is re-aimed at the secure core each time
        // (docs/qemu-and-sel4-facts.md).
        gic::raise_at(config::KICK_INTID, config::FIRST_SECURE_CORE);
    }

    fn raise_doorbell(&self, core: usize) {
        gic::raise_at(config::DOORBELL_INTID, core);
    }

    fn hand_back_distributor(&self) -> bool {
        let handed = gic::hand_back_distributor();
        if handed {
            log::info!("go: the secure world initialised the GIC; Linux's interrupts are Group 1 again");
        }
        handed
    }

    fn wake_cores(&self) {
        aarch64_sev();
    }

    fn update_manifest(&self, length: u64) -> tzmk_interface::update::UpdateOutcome {
        flash::update_manifest(length)
    }
}

/// Every SMC from S-EL1 or NS-EL1 (entry.S `lower_sync`): x0..x7 in, x0..x3 out.
#[unsafe(no_mangle)]
extern "C" fn handle_smc(frame: &mut [u64; 20]) {
    let world = if read_scr_el3().contains(ScrEl3::NS) { World::Normal } else { World::Secure };
    let core = (read_mpidr_el1().bits() & 0xff) as usize;
    let regs = frame.first_chunk_mut::<8>().expect("the frame holds x0..x7");
    match dispatch(&MONITOR, &Platform, Caller { world, core }, regs) {
        Disposition::Return => {}
        Disposition::Standby => aarch64_wfi(),
        Disposition::CpuOff => cpu_off(core),
        Disposition::SystemOff => power::system_off(core),
        Disposition::SystemReset => power::system_reset(core),
    }
}

#[cold]
fn cpu_off(core: usize) -> ! {
    // SAFETY: this core's own stack slot; nothing on the current stack is needed any more.
    unsafe { park_core(core, stack_top(core)) }
}

/// Any other exception: a monitor bug or a world doing what it must not. Reported, then the core stops.
#[unsafe(no_mangle)]
extern "C" fn unexpected_exception(kind: u64) -> ! {
    let (esr, elr, far): (u64, u64, u64);
    // SAFETY: reads of EL3 syndrome registers.
    unsafe {
        core::arch::asm!("mrs {}, esr_el3", "mrs {}, elr_el3", "mrs {}, far_el3", out(reg) esr, out(reg) elr, out(reg) far);
    }
    let core = read_mpidr_el1().bits() & 0xff;
    console::early_line(format_args!(
        "tzmk-monitor: ERROR: core {core}: unexpected exception (vector {kind}): ESR_EL3 {esr:#x} ELR_EL3 {elr:#x} FAR_EL3 {far:#x}; core stopped"
    ));
    halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let core = read_mpidr_el1().bits() & 0xff;
    console::early_line(format_args!("tzmk-monitor: ERROR: core {core}: panic: {info}"));
    halt()
}
