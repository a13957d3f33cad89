//! Wire types shared by tzmk's PDs, the monitor and linux-side: one definition for both worlds.
//!
//! Everything here is plain data with a fixed `#[repr(C)]` layout (checked by `zerocopy`), so a
//! peer in the other world, or in another process of the simulator, reads the same bytes.
#![no_std]

pub mod attestation;
pub mod driver;
pub mod forward;
pub mod port;
pub mod rt;
pub mod smc;
pub mod status;
pub mod update;
