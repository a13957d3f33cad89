//! The power state of each normal-world core, as PSCI (Arm DEN 0022) sees it.
//!
//! Every core is either the secure world's (never controllable from Linux) or one of Linux's, which
//! moves Off -> (Claimed) -> OnPending -> On -> Off. CPU_ON may race with CPU_ON from another core:
//! the compare-and-swap from Off decides which wins; the loser gets ALREADY_ON or ON_PENDING. The
//! target core, waiting in the monitor, takes the entry point only after it sees OnPending.

use crate::config;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// A normal core's state (stored as u8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CoreState {
    Off = 0,
    /// A CPU_ON is writing the entry point; reported as ON_PENDING.
    Claimed = 1,
    OnPending = 2,
    On = 3,
}

impl CoreState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Off,
            1 => Self::Claimed,
            2 => Self::OnPending,
            _ => Self::On,
        }
    }
}

/// Why a CPU_ON was refused (PSCI return codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuOnError {
    /// No such core, or the secure world's (PSCI: INVALID_PARAMETERS / DENIED).
    NoSuchCore,
    SecureCore,
    InvalidAddress,
    AlreadyOn,
    OnPending,
}

#[derive(Debug)]
struct Core {
    state: AtomicU8,
    entry: AtomicU64,
    context: AtomicU64,
}

/// What a core released by CPU_ON starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub entry: u64,
    pub context: u64,
}

/// The power state of every core.
#[derive(Debug)]
pub struct Cores {
    cores: [Core; config::CORES],
}

impl Default for Cores {
    fn default() -> Self {
        Self::new()
    }
}

impl Cores {
    /// Every normal core Off but the first, on which Linux boots.
    pub const fn new() -> Self {
        // A template for the array repeat, not a shared value: each element is its own atomic.
        #[allow(clippy::declare_interior_mutable_const)]
        const OFF: Core =
            Core { state: AtomicU8::new(CoreState::Off as u8), entry: AtomicU64::new(0), context: AtomicU64::new(0) };
        let mut cores = [OFF; config::CORES];
        cores[config::FIRST_NORMAL_CORE] =
            Core { state: AtomicU8::new(CoreState::On as u8), entry: AtomicU64::new(0), context: AtomicU64::new(0) };
        Self { cores }
    }

    /// The state of a normal core; None for the secure world's cores and cores that do not exist.
    pub fn state(&self, core: usize) -> Option<CoreState> {
        if !config::is_normal_core(core) || core >= config::CORES {
            return None;
        }
        Some(CoreState::from_u8(self.cores[core].state.load(Ordering::Acquire)))
    }

    /// CPU_ON: checks the target and the entry point and publishes the start for the target core.
    pub fn cpu_on(&self, core: usize, start: Start) -> Result<(), CpuOnError> {
        if config::is_secure_core(core) {
            return Err(CpuOnError::SecureCore);
        }
        if !config::is_normal_core(core) || core >= config::CORES {
            return Err(CpuOnError::NoSuchCore);
        }
        if !start.entry.is_multiple_of(4) || !config::in_normal_ram(start.entry, 4) {
            return Err(CpuOnError::InvalidAddress);
        }
        let target = &self.cores[core];
        match target.state.compare_exchange(
            CoreState::Off as u8,
            CoreState::Claimed as u8,
            Ordering::Acquire,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                target.entry.store(start.entry, Ordering::Relaxed);
                target.context.store(start.context, Ordering::Relaxed);
                target.state.store(CoreState::OnPending as u8, Ordering::Release);
                Ok(())
            }
            Err(state) => match CoreState::from_u8(state) {
                CoreState::On => Err(CpuOnError::AlreadyOn),
                _ => Err(CpuOnError::OnPending),
            },
        }
    }

    /// On the target core: takes a published start (OnPending -> On), if there is one.
    pub fn take_start(&self, core: usize) -> Option<Start> {
        let me = &self.cores[core];
        if me.state.load(Ordering::Acquire) != CoreState::OnPending as u8 {
            return None;
        }
        let start = Start { entry: me.entry.load(Ordering::Relaxed), context: me.context.load(Ordering::Relaxed) };
        me.state.store(CoreState::On as u8, Ordering::Release);
        Some(start)
    }

    /// CPU_OFF on `core` itself.
    pub fn cpu_off(&self, core: usize) {
        self.cores[core].state.store(CoreState::Off as u8, Ordering::Release);
    }
}

/// The core an MPIDR value names (Aff0; QEMU virt with GICv2 puts up to 8 cores in cluster 0).
pub fn core_of(mpidr: arm_psci::Mpidr) -> Option<usize> {
    (mpidr.aff1 == 0 && mpidr.aff2 == 0 && mpidr.aff3.unwrap_or(0) == 0).then_some(usize::from(mpidr.aff0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX: u64 = 0xc020_0000;

    #[test]
    fn only_the_first_normal_core_is_on_at_reset() {
        let cores = Cores::new();
        assert_eq!(cores.state(config::FIRST_NORMAL_CORE), Some(CoreState::On));
        assert_eq!(cores.state(2), Some(CoreState::Off));
        assert_eq!(cores.state(config::FIRST_SECURE_CORE), None);
        assert_eq!(cores.state(config::CORES), None);
    }

    #[test]
    fn cpu_on_then_the_target_takes_its_start() {
        let cores = Cores::new();
        let start = Start { entry: LINUX + 0x100, context: 42 };
        assert_eq!(cores.take_start(2), None);
        cores.cpu_on(2, start).unwrap();
        assert_eq!(cores.state(2), Some(CoreState::OnPending));
        assert_eq!(cores.cpu_on(2, start), Err(CpuOnError::OnPending));
        assert_eq!(cores.take_start(2), Some(start));
        assert_eq!(cores.state(2), Some(CoreState::On));
        assert_eq!(cores.cpu_on(2, start), Err(CpuOnError::AlreadyOn));
        cores.cpu_off(2);
        assert_eq!(cores.state(2), Some(CoreState::Off));
        cores.cpu_on(2, start).unwrap();
    }

    #[test]
    fn cpu_on_refuses_secure_cores_missing_cores_and_bad_entries() {
        let cores = Cores::new();
        let ok = Start { entry: LINUX, context: 0 };
        assert_eq!(cores.cpu_on(config::FIRST_SECURE_CORE, ok), Err(CpuOnError::SecureCore));
        assert_eq!(cores.cpu_on(config::CORES, ok), Err(CpuOnError::NoSuchCore));
        assert_eq!(cores.cpu_on(63, ok), Err(CpuOnError::NoSuchCore));
        for entry in [0, LINUX + 2, config::SECURE_ENTRY, 0x0e00_0000, u64::MAX - 1] {
            assert_eq!(cores.cpu_on(2, Start { entry, context: 0 }), Err(CpuOnError::InvalidAddress), "{entry:#x}");
        }
        assert_eq!(cores.state(2), Some(CoreState::Off), "a refused CPU_ON changes nothing");
    }

    #[test]
    fn racing_cpu_ons_start_a_core_once() {
        let cores = std::sync::Arc::new(Cores::new());
        let winners: usize = (0..8)
            .map(|i| {
                let cores = cores.clone();
                std::thread::spawn(move || cores.cpu_on(3, Start { entry: LINUX + 4 * i, context: i }).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(winners, 1);
        let start = cores.take_start(3).unwrap();
        assert_eq!(start.entry, LINUX + 4 * start.context, "entry and context come from the same call");
    }

    #[test]
    fn mpidr_to_core() {
        assert_eq!(core_of(arm_psci::Mpidr::from_aff3210(0, 0, 0, 3)), Some(3));
        assert_eq!(core_of(arm_psci::Mpidr::from_aff3210(0, 0, 1, 0)), None);
    }
}
