//! attestation-pd's protected procedure interface (comm-pd calls it) and the monitor's boot
//! handoff it reads.
//!
//! A call carries the operation in the message label; the reply's label is [`OK`] or an error
//! code, its message registers the results.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Interface version of attestation-pd, answered by [`OP_VERSION`].
pub const INTERFACE_VERSION: u64 = 1;

/// Operation: the interface version, in MR0.
pub const OP_VERSION: u64 = 1;
/// Operation: the secure image's SHA-256 measured by the monitor, in MR0..MR3 (big-endian words).
pub const OP_SECURE_MEASUREMENT: u64 = 2;

/// Reply labels.
pub const OK: u64 = 0;
pub const ERR_UNKNOWN_OPERATION: u64 = 1;
/// The monitor left no valid boot handoff (booted without tzmk's monitor, or it was corrupted).
pub const ERR_NO_HANDOFF: u64 = 2;
/// comm-pd's answer on the attestation port to a request that is no `AttestationRequest`.
pub const ERR_MALFORMED: u64 = 3;

/// `BootHandoff::magic`: "TZBH".
pub const HANDOFF_MAGIC: u32 = 0x545a_4248;
pub const HANDOFF_VERSION: u32 = 1;

/// What the monitor (trusted boot stage 1) leaves in `boot_handoff` before it starts seL4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootHandoff {
    pub magic: u32,
    pub version: u32,
    /// SHA-256 of the secure-world image (loader.img) as the monitor measured it.
    pub secure_image_sha256: [u8; 32],
}
