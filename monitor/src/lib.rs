//! tzmk's EL3 monitor, the part that is plain Rust: SMCCC dispatch, PSCI, the tzmk SiP service and
//! the world partition, tested on the host.
//!
//! The bare-metal binary (src/main.rs and src/arch/) owns the registers, the GIC, the UART and the
//! MMU; it hands every SMC to [`smc::dispatch`] with the caller's world and core, and carries out
//! the [`smc::Disposition`] it gets back. Nothing here touches hardware: effects on other cores or
//! devices go through the [`smc::Hardware`] trait, which the host tests fake.
#![cfg_attr(not(test), no_std)]

pub mod config;
pub mod counter;
pub mod flash;
pub mod psci;
pub mod smc;
pub mod trusted_boot;
pub mod update;

pub use config::PhysRange;
pub use smc::{dispatch, Caller, Disposition, Hardware, Monitor, World};
