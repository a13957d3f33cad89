//! SMCCC dispatch (Arm DEN 0028, SMC Calling Convention 1.2): each service owns a range of
//! function ids; an id no service owns, or a yielding call, answers NOT_SUPPORTED.
//!
//! | owner (fid bits 29..24) | service |
//! | --- | --- |
//! | 0, Arm architecture | SMCCC_VERSION, SMCCC_ARCH_FEATURES |
//! | 4, standard secure | PSCI 1.1 (Arm DEN 0022) for Linux; PSCI_VERSION and PSCI_FEATURES for everyone |
//! | 2, SiP | tzmk: UID, revision, `notify_secure`, `notify_normal`, `go` |
//!
//! Every call is checked against the caller's world: a secure-only function from the normal world,
//! or a Linux power call from the secure world, is refused (tzmk `DENIED`, PSCI `DENIED`). Registers
//! are allegations: every argument is range-checked before it is used.

use crate::config;
use crate::psci::{self, CoreState, CpuOnError, Start};
use arm_psci::{AffinityInfo, ErrorCode, Function, MigrateInfoType, PowerState, PsciFeature};
use core::sync::atomic::{AtomicU8, Ordering};
use tzmk_interface::smc::{self, FunctionId};
use tzmk_interface::update::UpdateOutcome;

/// The SMCCC version this monitor implements: 1.2 (x4..x17 are preserved unless a function
/// returns results in them; none of tzmk's does).
pub const SMCCC_VERSION_1_2: u64 = 0x1_0002;
/// PSCI 1.1.
pub const PSCI_VERSION_1_1: u64 = 0x1_0001;
/// PSCI_FEATURES(CPU_SUSPEND) flags: bit 1, power_state uses the extended StateID format
/// (DEN 0022 5.1.14), which is the format arm-psci parses.
const CPU_SUSPEND_EXTENDED_STATE_ID: u64 = 1 << 1;
/// SiP functions besides the general queries (`SIP_CALL_COUNT` answers this).
const SIP_FUNCTIONS: u64 = 4;

const OWNER_ARCH: u32 = 0;
const OWNER_STANDARD: u32 = 4;

/// The world an SMC comes from (the SCR_EL3.NS bit of its core: a core never changes world).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Secure,
    Normal,
}

/// Who made the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub world: World,
    /// MPIDR Aff0 of the calling core.
    pub core: usize,
}

/// What the binary must do after a call; the results are already in the registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Disposition {
    /// Return to the caller.
    Return,
    /// PSCI CPU_OFF: park this core in the monitor until a CPU_ON.
    CpuOff,
    /// PSCI CPU_SUSPEND to a standby state: wait for an interrupt, then return.
    Standby,
    SystemOff,
    SystemReset,
}

/// Effects on other cores and devices, done by the binary (faked by the host tests).
pub trait Hardware {
    /// Pends the secure world's kick interrupt (GICD_ISPENDR; GIC arch spec 4.3.7).
    fn pend_kick(&self);
    /// Raises the doorbell interrupt at normal core `core`.
    fn raise_doorbell(&self, core: usize);
    /// Gives Linux its interrupts on the distributor (Group 1 for every SPI not in the partition's
    /// Group 0, then Group 1 enabled). False, and nothing changed, when the distributor was never
    /// initialised (GICD_CTLR shows Group 0 disabled).
    fn hand_back_distributor(&self) -> bool;
    /// Wakes cores waiting in the monitor (SEV).
    fn wake_cores(&self);
    /// `UPDATE_MANIFEST`: checks the candidate, the first `length` bytes of the `manifest_update`
    /// region (an allegation: checked against the region and the manifest's size), and, when it is
    /// accepted, writes it and raises the counter (crate::update). Called from the secure world only.
    fn update_manifest(&self, length: u64) -> UpdateOutcome;
}

/// Where the secure world is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SecureWorld {
    /// Entered, not yet `go`: Linux is held.
    Booting = 0,
    /// No secure image: Linux runs alone and `notify_secure` answers `NO_SECURE_WORLD`.
    Absent = 1,
    /// `go` received: both worlds run.
    Running = 2,
}

/// The monitor's shared state.
#[derive(Debug)]
pub struct Monitor {
    pub cores: psci::Cores,
    secure_world: AtomicU8,
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new()
    }
}

impl Monitor {
    pub const fn new() -> Self {
        Self { cores: psci::Cores::new(), secure_world: AtomicU8::new(SecureWorld::Booting as u8) }
    }

    pub fn secure_world(&self) -> SecureWorld {
        match self.secure_world.load(Ordering::Acquire) {
            0 => SecureWorld::Booting,
            1 => SecureWorld::Absent,
            _ => SecureWorld::Running,
        }
    }

    /// At boot, when there is no secure image: Linux may start at once.
    pub fn secure_world_absent(&self) {
        self.secure_world.store(SecureWorld::Absent as u8, Ordering::Release);
    }

    /// Whether Linux may run (its cores leave the monitor).
    pub fn normal_world_released(&self) -> bool {
        self.secure_world() != SecureWorld::Booting
    }
}

fn ret(regs: &mut [u64; 8], value: i64) -> Disposition {
    regs[0] = value as u64;
    Disposition::Return
}

fn psci_error(regs: &mut [u64; 8], code: ErrorCode) -> Disposition {
    ret(regs, i64::from(i32::from(code)))
}

/// Handles one SMC: `regs` holds x0..x7 on entry and x0..x3 on return.
///
/// The calls that are made often or that only discover (the versions, the UID, `notify_secure`,
/// anything unknown) are answered here without a stack frame; the rest go to out-of-line
/// handlers, so that their register pressure does not cost the common calls (docs/monitor-bench.md).
#[inline]
pub fn dispatch(monitor: &Monitor, hw: &impl Hardware, caller: Caller, regs: &mut [u64; 8]) -> Disposition {
    // SMCCC 2.5: the function id is w0; the upper half of x0 is ignored.
    let function = FunctionId(regs[0] as u32);
    if !function.is_fast() {
        // A yielding call: tzmk has none.
        return ret(regs, smc::NOT_SUPPORTED);
    }
    let fid = function.0;
    match function.owner() {
        OWNER_ARCH => arch(fid, regs),
        OWNER_STANDARD if fid == arm_psci::FunctionId::PsciVersion as u32 => ret(regs, PSCI_VERSION_1_1 as i64),
        // PSCI owns functions 0x00..0x1f of the standard secure service (SMCCC table 6-2).
        OWNER_STANDARD if function.number() < 0x20 => power(monitor, hw, caller, regs),
        smc::OWNER_SIP => sip(monitor, hw, caller, fid, regs),
        _ => ret(regs, smc::NOT_SUPPORTED),
    }
}

#[inline]
fn arch(fid: u32, regs: &mut [u64; 8]) -> Disposition {
    match fid {
        smccc::arch::SMCCC_VERSION => ret(regs, SMCCC_VERSION_1_2 as i64),
        smccc::arch::SMCCC_ARCH_FEATURES => {
            let queried = regs[1] as u32;
            // Cortex-A53 needs none of the firmware workarounds (ARCH_WORKAROUND_1..3), and tzmk
            // has no SoC id: only the discovery functions themselves are implemented.
            let implemented = matches!(queried, smccc::arch::SMCCC_VERSION | smccc::arch::SMCCC_ARCH_FEATURES);
            ret(regs, if implemented { smc::SUCCESS } else { smc::NOT_SUPPORTED })
        }
        _ => ret(regs, smc::NOT_SUPPORTED),
    }
}

#[inline(never)]
fn power(monitor: &Monitor, hw: &impl Hardware, caller: Caller, regs: &mut [u64; 8]) -> Disposition {
    let function = match Function::try_from(&[regs[0], regs[1], regs[2], regs[3]]) {
        Ok(function) => function,
        Err(e) => return psci_error(regs, e.into()),
    };
    // The secure world may only discover PSCI (the Microkit loader asks its version); powering
    // Linux's cores or the machine is Linux's business.
    let powers_linux = matches!(
        function,
        Function::CpuOn { .. }
            | Function::CpuOff
            | Function::AffinityInfo { .. }
            | Function::CpuSuspend { .. }
            | Function::MigrateInfoType
            | Function::SystemOff
            | Function::SystemReset
    );
    if caller.world == World::Secure && powers_linux {
        return psci_error(regs, ErrorCode::Denied);
    }
    match function {
        Function::Version => ret(regs, PSCI_VERSION_1_1 as i64),
        Function::Features { psci_func_id } => {
            let flags = match psci_func_id {
                PsciFeature::SmcccVersion => Some(0),
                PsciFeature::PsciFunction(id) => {
                    use arm_psci::FunctionId as F;
                    match id {
                        F::CpuSuspend32 | F::CpuSuspend64 => Some(CPU_SUSPEND_EXTENDED_STATE_ID),
                        F::PsciVersion
                        | F::CpuOff
                        | F::CpuOn32
                        | F::CpuOn64
                        | F::AffinityInfo32
                        | F::AffinityInfo64
                        | F::MigrateInfoType
                        | F::SystemOff
                        | F::SystemReset
                        | F::PsciFeatures => Some(0),
                        _ => None,
                    }
                }
            };
            match flags {
                Some(flags) => ret(regs, flags as i64),
                None => psci_error(regs, ErrorCode::NotSupported),
            }
        }
        Function::CpuOn { target_cpu, entry } => {
            let Some(core) = psci::core_of(target_cpu) else {
                return psci_error(regs, ErrorCode::InvalidParameters);
            };
            let start = Start { entry: entry.entry_point_address(), context: entry.context_id() };
            match monitor.cores.cpu_on(core, start) {
                Ok(()) => {
                    hw.wake_cores();
                    ret(regs, smc::SUCCESS)
                }
                Err(e) => psci_error(
                    regs,
                    match e {
                        CpuOnError::NoSuchCore => ErrorCode::InvalidParameters,
                        CpuOnError::SecureCore => ErrorCode::Denied,
                        CpuOnError::InvalidAddress => ErrorCode::InvalidAddress,
                        CpuOnError::AlreadyOn => ErrorCode::AlreadyOn,
                        CpuOnError::OnPending => ErrorCode::OnPending,
                    },
                ),
            }
        }
        Function::CpuOff => {
            monitor.cores.cpu_off(caller.core);
            Disposition::CpuOff
        }
        Function::AffinityInfo { mpidr, lowest_affinity_level } => {
            // Only level 0 (cores) is tracked; secure cores are not Linux's to ask about.
            let state = psci::core_of(mpidr).and_then(|core| monitor.cores.state(core));
            match (lowest_affinity_level, state) {
                (0, Some(state)) => ret(
                    regs,
                    match state {
                        CoreState::On => AffinityInfo::On,
                        CoreState::Off => AffinityInfo::Off,
                        CoreState::Claimed | CoreState::OnPending => AffinityInfo::OnPending,
                    } as i64,
                ),
                _ => psci_error(regs, ErrorCode::InvalidParameters),
            }
        }
        Function::CpuSuspend { state, .. } => match state {
            // No power-down state exists (Linux's DTB lists no idle states): standby only.
            PowerState::StandbyOrRetention(_) => {
                regs[0] = smc::SUCCESS as u64;
                Disposition::Standby
            }
            PowerState::PowerDown(_) => psci_error(regs, ErrorCode::InvalidParameters),
        },
        // The secure world runs on its own core and never migrates.
        Function::MigrateInfoType => ret(regs, MigrateInfoType::MigrationNotRequired as i64),
        Function::SystemOff => Disposition::SystemOff,
        Function::SystemReset => Disposition::SystemReset,
        _ => psci_error(regs, ErrorCode::NotSupported),
    }
}

#[inline]
fn sip(monitor: &Monitor, hw: &impl Hardware, caller: Caller, fid: u32, regs: &mut [u64; 8]) -> Disposition {
    match fid {
        smc::SIP_CALL_COUNT => ret(regs, SIP_FUNCTIONS as i64),
        smc::SIP_CALL_UID => {
            for (reg, word) in regs.iter_mut().zip(smc::TZMK_UID) {
                *reg = u64::from(word);
            }
            Disposition::Return
        }
        smc::SIP_REVISION => {
            regs[1] = u64::from(smc::REVISION.1);
            ret(regs, i64::from(smc::REVISION.0))
        }
        smc::NOTIFY_SECURE => {
            if caller.world != World::Normal {
                return ret(regs, smc::DENIED);
            }
            if regs[1] >= smc::PORT_LIMIT {
                return ret(regs, smc::INVALID_PARAMETER);
            }
            match monitor.secure_world() {
                SecureWorld::Running => {
                    hw.pend_kick();
                    ret(regs, smc::SUCCESS)
                }
                SecureWorld::Absent | SecureWorld::Booting => ret(regs, smc::NO_SECURE_WORLD),
            }
        }
        smc::NOTIFY_NORMAL => notify_normal(monitor, hw, caller, regs),
        smc::GO => go(monitor, hw, caller, regs),
        smc::UPDATE_MANIFEST => update_manifest(hw, caller, regs),
        _ => ret(regs, smc::NOT_SUPPORTED),
    }
}

/// Cold, as `go`: the secure world calls each a few times in a boot, and without the hint LLVM's
/// decision tree over the SiP ids grew a level for the fourth 64-bit id, four instructions more on
/// `notify_secure` (docs/monitor-bench.md).
#[cold]
#[inline(never)]
fn update_manifest(hw: &impl Hardware, caller: Caller, regs: &mut [u64; 8]) -> Disposition {
    let outcome = if caller.world == World::Secure { hw.update_manifest(regs[1]) } else { UpdateOutcome::Denied };
    let (status, details) = outcome.encode();
    for (reg, detail) in regs[1..4].iter_mut().zip(details) {
        *reg = u64::from(detail);
    }
    ret(regs, status)
}

#[inline(never)]
fn notify_normal(monitor: &Monitor, hw: &impl Hardware, caller: Caller, regs: &mut [u64; 8]) -> Disposition {
    if caller.world != World::Secure {
        return ret(regs, smc::DENIED);
    }
    if monitor.secure_world() != SecureWorld::Running {
        return ret(regs, smc::NORMAL_WORLD_NOT_STARTED);
    }
    let core = match regs[1] {
        smc::ANY_NORMAL_CORE => config::FIRST_NORMAL_CORE,
        core if core < 64 => core as usize,
        _ => return ret(regs, smc::INVALID_PARAMETER),
    };
    if regs[2] >= smc::PORT_LIMIT || monitor.cores.state(core) != Some(CoreState::On) {
        return ret(regs, smc::INVALID_PARAMETER);
    }
    hw.raise_doorbell(core);
    ret(regs, smc::SUCCESS)
}

#[cold]
#[inline(never)]
fn go(monitor: &Monitor, hw: &impl Hardware, caller: Caller, regs: &mut [u64; 8]) -> Disposition {
    if caller.world != World::Secure || monitor.secure_world() != SecureWorld::Booting {
        return ret(regs, smc::DENIED);
    }
    if !hw.hand_back_distributor() {
        return ret(regs, smc::GIC_NOT_INITIALISED);
    }
    monitor.secure_world.store(SecureWorld::Running as u8, Ordering::Release);
    hw.wake_cores();
    ret(regs, smc::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    #[derive(Default)]
    struct FakeHardware {
        kicks: Cell<u32>,
        doorbells: RefCell<Vec<usize>>,
        distributor_initialised: Cell<bool>,
        handed_back: Cell<u32>,
        wakes: Cell<u32>,
        updates: Cell<u32>,
    }

    impl Hardware for FakeHardware {
        fn pend_kick(&self) {
            self.kicks.set(self.kicks.get() + 1);
        }
        fn raise_doorbell(&self, core: usize) {
            self.doorbells.borrow_mut().push(core);
        }
        fn hand_back_distributor(&self) -> bool {
            if self.distributor_initialised.get() {
                self.handed_back.set(self.handed_back.get() + 1);
            }
            self.distributor_initialised.get()
        }
        fn wake_cores(&self) {
            self.wakes.set(self.wakes.get() + 1);
        }
        fn update_manifest(&self, _length: u64) -> UpdateOutcome {
            self.updates.set(self.updates.get() + 1);
            UpdateOutcome::Rollback { found: 1, stored: 2 }
        }
    }

    const LINUX: Caller = Caller { world: World::Normal, core: 1 };
    const SEL4: Caller = Caller { world: World::Secure, core: 0 };

    fn call(m: &Monitor, hw: &FakeHardware, caller: Caller, args: &[u64]) -> (Disposition, [u64; 8]) {
        let mut regs = [0xdead_0000_0000_0000u64; 8];
        regs[..args.len()].copy_from_slice(args);
        let d = dispatch(m, hw, caller, &mut regs);
        (d, regs)
    }

    fn x0(m: &Monitor, hw: &FakeHardware, caller: Caller, args: &[u64]) -> i64 {
        let (d, regs) = call(m, hw, caller, args);
        assert_eq!(d, Disposition::Return, "{args:x?}");
        regs[0] as i64
    }

    fn running() -> (Monitor, FakeHardware) {
        let m = Monitor::new();
        let hw = FakeHardware::default();
        hw.distributor_initialised.set(true);
        assert_eq!(x0(&m, &hw, SEL4, &[u64::from(smc::GO)]), smc::SUCCESS);
        (m, hw)
    }

    #[test]
    fn discovery() {
        let (m, hw) = (Monitor::new(), FakeHardware::default());
        assert_eq!(x0(&m, &hw, LINUX, &[0x8000_0000]), 0x1_0002, "SMCCC_VERSION 1.2");
        assert_eq!(x0(&m, &hw, LINUX, &[0x8000_0001, 0x8000_8000]), -1, "no ARCH_WORKAROUND_1 needed");
        assert_eq!(x0(&m, &hw, LINUX, &[0x8000_0001, 0x8000_0000]), 0);
        assert_eq!(x0(&m, &hw, SEL4, &[0x8400_0000]), 0x1_0001, "the loader's PSCI_VERSION");
        // The upper half of x0 is not part of the function id.
        assert_eq!(x0(&m, &hw, LINUX, &[0xffff_ffff_8400_0000]), 0x1_0001);
        let (_, regs) = call(&m, &hw, LINUX, &[u64::from(smc::SIP_CALL_UID)]);
        assert_eq!(regs[..4], smc::TZMK_UID.map(u64::from));
        let (_, regs) = call(&m, &hw, LINUX, &[u64::from(smc::SIP_REVISION)]);
        assert_eq!(regs[..2], [0, 1]);
        assert_eq!(x0(&m, &hw, LINUX, &[u64::from(smc::SIP_CALL_COUNT)]), 4);
    }

    #[test]
    fn unknown_and_yielding_calls_are_not_supported() {
        let (m, hw) = running();
        for fid in [
            0xc200_0fffu64,
            0x8200_0000,
            0x0200_0001,
            0x4200_0001,
            0xb000_0000,
            0x8500_0000,
            0x8400_0020,
            0xc400_0012,
            0x8100_0000,
        ] {
            assert_eq!(x0(&m, &hw, LINUX, &[fid]), smc::NOT_SUPPORTED, "{fid:#x}");
            assert_eq!(x0(&m, &hw, SEL4, &[fid]), smc::NOT_SUPPORTED, "{fid:#x}");
        }
    }

    #[test]
    fn psci_features() {
        let (m, hw) = (Monitor::new(), FakeHardware::default());
        for fid in [
            0x8400_0000u64,
            0x8400_0002,
            0xc400_0003,
            0xc400_0004,
            0x8400_0006,
            0x8400_0008,
            0x8400_0009,
            0x8400_000a,
            0x8000_0000,
        ] {
            assert_eq!(x0(&m, &hw, LINUX, &[0x8400_000a, fid]), 0, "{fid:#x}");
        }
        assert_eq!(x0(&m, &hw, LINUX, &[0x8400_000a, 0xc400_0001]), 2, "CPU_SUSPEND: extended StateID");
        for fid in [0x8400_0005u64, 0xc400_0012, 0x8400_0014, 0x1234] {
            assert_eq!(x0(&m, &hw, LINUX, &[0x8400_000a, fid]), -1, "{fid:#x}");
        }
    }

    #[test]
    fn psci_power_calls() {
        let (m, hw) = running();
        let cpu_on = |core: u64, entry: u64| x0(&m, &hw, LINUX, &[0xc400_0003, core, entry, 7]);
        let wakes = hw.wakes.get();
        assert_eq!(cpu_on(2, 0xc020_1000), 0);
        assert_eq!(hw.wakes.get(), wakes + 1, "the target core is woken");
        assert_eq!(cpu_on(2, 0xc020_1000), -5, "ON_PENDING");
        assert_eq!(m.cores.take_start(2), Some(Start { entry: 0xc020_1000, context: 7 }));
        assert_eq!(cpu_on(2, 0xc020_1000), -4, "ALREADY_ON");
        assert_eq!(cpu_on(0, 0xc020_1000), -3, "the secure core: DENIED");
        assert_eq!(cpu_on(9, 0xc020_1000), -2, "no core 9");
        assert_eq!(cpu_on(0x100, 0xc020_1000), -2, "no cluster 1");
        assert_eq!(cpu_on(1 << 24, 0xc020_1000), -2, "MBZ bits set");
        assert_eq!(cpu_on(3, 0x7000_0000), -9, "an entry in seL4's RAM: INVALID_ADDRESS");
        let affinity = |core: u64, level: u64| x0(&m, &hw, LINUX, &[0xc400_0004, core, level]);
        assert_eq!((affinity(1, 0), affinity(2, 0), affinity(3, 0)), (0, 0, 1));
        assert_eq!(affinity(0, 0), -2, "the secure core is not Linux's to ask about");
        assert_eq!(affinity(2, 1), -2, "only level 0");
        let (d, _) = call(&m, &hw, Caller { world: World::Normal, core: 2 }, &[0x8400_0002]);
        assert_eq!(d, Disposition::CpuOff);
        assert_eq!(affinity(2, 0), 1);
        assert_eq!(x0(&m, &hw, LINUX, &[0x8400_0006]), 2, "MIGRATE_INFO_TYPE: migration not required");
        assert_eq!(call(&m, &hw, LINUX, &[0x8400_0008]).0, Disposition::SystemOff);
        assert_eq!(call(&m, &hw, LINUX, &[0x8400_0009]).0, Disposition::SystemReset);
        assert_eq!(call(&m, &hw, LINUX, &[0xc400_0001, 0, 0, 0]).0, Disposition::Standby);
        assert_eq!(x0(&m, &hw, LINUX, &[0xc400_0001, 1 << 30, 0, 0]), -2, "no power-down state");
        assert_eq!(x0(&m, &hw, LINUX, &[0xc400_0001, 1 << 31, 0, 0]), -2, "MBZ bits in power_state");
    }

    #[test]
    fn the_secure_world_cannot_power_linux() {
        let (m, hw) = running();
        for args in [
            &[0xc400_0003u64, 2, 0xc020_0000, 0][..],
            &[0x8400_0002],
            &[0x8400_0008],
            &[0x8400_0009],
            &[0xc400_0004, 1, 0],
        ] {
            assert_eq!(x0(&m, &hw, SEL4, args), -3, "{args:x?}");
        }
        assert_eq!(m.cores.state(2), Some(CoreState::Off));
    }

    #[test]
    fn notify_secure_depends_on_the_secure_world() {
        let m = Monitor::new();
        let hw = FakeHardware::default();
        m.secure_world_absent();
        assert!(m.normal_world_released());
        assert_eq!(x0(&m, &hw, LINUX, &[u64::from(smc::NOTIFY_SECURE), 0]), smc::NO_SECURE_WORLD);
        let (m, hw) = running();
        assert_eq!(x0(&m, &hw, LINUX, &[u64::from(smc::NOTIFY_SECURE), 3]), smc::SUCCESS);
        assert_eq!(hw.kicks.get(), 1);
        assert_eq!(x0(&m, &hw, LINUX, &[u64::from(smc::NOTIFY_SECURE), smc::PORT_LIMIT]), smc::INVALID_PARAMETER);
        assert_eq!(x0(&m, &hw, SEL4, &[u64::from(smc::NOTIFY_SECURE), 0]), smc::DENIED);
        assert_eq!(hw.kicks.get(), 1, "refused calls pend nothing");
    }

    #[test]
    fn notify_normal_is_the_secure_worlds_and_checks_its_core() {
        let (m, hw) = running();
        let notify = |caller, core: u64, port: u64| x0(&m, &hw, caller, &[u64::from(smc::NOTIFY_NORMAL), core, port]);
        assert_eq!(notify(SEL4, smc::ANY_NORMAL_CORE, 0), smc::SUCCESS);
        assert_eq!(notify(SEL4, 1, 5), smc::SUCCESS);
        assert_eq!(notify(LINUX, 1, 0), smc::DENIED);
        assert_eq!(notify(SEL4, 0, 0), smc::INVALID_PARAMETER, "the secure core has no doorbell");
        assert_eq!(notify(SEL4, 2, 0), smc::INVALID_PARAMETER, "core 2 is off");
        assert_eq!(notify(SEL4, 64, 0), smc::INVALID_PARAMETER);
        assert_eq!(notify(SEL4, 1, smc::PORT_LIMIT), smc::INVALID_PARAMETER);
        assert_eq!(*hw.doorbells.borrow(), [1, 1]);
    }

    #[test]
    fn update_manifest_is_the_secure_worlds_and_answers_in_four_registers() {
        let (m, hw) = running();
        let (_, regs) = call(&m, &hw, LINUX, &[u64::from(smc::UPDATE_MANIFEST)]);
        assert_eq!(regs[0] as i64, smc::DENIED);
        assert_eq!(hw.updates.get(), 0, "the normal world never reaches the update");
        let (_, regs) = call(&m, &hw, SEL4, &[u64::from(smc::UPDATE_MANIFEST)]);
        assert_eq!(hw.updates.get(), 1);
        let outcome = UpdateOutcome::from_registers([regs[0], regs[1], regs[2], regs[3]]);
        assert_eq!(outcome, UpdateOutcome::Rollback { found: 1, stored: 2 });
    }

    #[test]
    fn go_hands_the_gic_back_once() {
        let m = Monitor::new();
        let hw = FakeHardware::default();
        let go = |caller| x0(&m, &hw, caller, &[u64::from(smc::GO)]);
        assert_eq!(x0(&m, &hw, SEL4, &[u64::from(smc::NOTIFY_NORMAL), 1, 0]), smc::NORMAL_WORLD_NOT_STARTED);
        assert_eq!(go(SEL4), smc::GIC_NOT_INITIALISED);
        assert!(!m.normal_world_released());
        hw.distributor_initialised.set(true);
        assert_eq!(go(LINUX), smc::DENIED, "the normal world cannot release itself");
        assert_eq!(go(SEL4), smc::SUCCESS);
        assert!(m.normal_world_released());
        assert_eq!((hw.handed_back.get(), hw.wakes.get()), (1, 1));
        assert_eq!(go(SEL4), smc::DENIED, "go is once");
        assert_eq!(hw.handed_back.get(), 1);
    }

    proptest::proptest! {
        /// Whatever the registers hold, a call returns a defined answer and only Linux's own power
        /// calls change power state.
        #[test]
        fn arbitrary_registers_never_panic(regs in proptest::array::uniform8(proptest::prelude::any::<u64>()), secure: bool, core in 0usize..4) {
            let (m, hw) = running();
            let caller = Caller { world: if secure { World::Secure } else { World::Normal }, core };
            let mut r = regs;
            let _ = dispatch(&m, &hw, caller, &mut r);
            if secure {
                proptest::prop_assert_eq!(m.cores.state(2), Some(CoreState::Off));
                proptest::prop_assert_eq!(m.cores.state(3), Some(CoreState::Off));
            }
        }
    }
}
