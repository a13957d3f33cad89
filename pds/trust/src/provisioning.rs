//! The provisioning block: what a device is given once, at manufacture (docs/trusted-boot.md,
//! "Flash image"). On QEMU it sits in secure flash at the platform's `[trust] provisioning`
//! offset (`tzmk flash` writes it); on hardware these would be fuses or a ROM.
//!
//! ```text
//! magic "TZPB" [4], format version u32 (1), security version floor u32, reserved u32 (0),
//! UDS [32] (the device's unique secret), platform public key [32] (Ed25519)
//! ```
//!
//! Little-endian, no padding, alignment 1: parsed in place like the manifest.

use core::fmt;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `Provisioning::magic`: the bytes "TZPB" in file order.
pub const MAGIC: [u8; 4] = *b"TZPB";
/// The only format version this parser accepts.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of a provisioning block.
pub const PROVISIONING_SIZE: usize = core::mem::size_of::<Provisioning>();

/// A device's provisioning block (80 bytes).
#[derive(Clone, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Provisioning {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`FORMAT_VERSION`].
    pub version: U32,
    /// The lowest manifest security version this device boots (anti-rollback). A monotonic
    /// counter in non-volatile storage is to replace it (future work).
    pub security_version_floor: U32,
    /// Zero.
    pub reserved: U32,
    /// The unique device secret: DICE layer 0's input.
    pub uds: [u8; 32],
    /// The platform's Ed25519 public key, which verifies the manifest.
    pub platform_public_key: [u8; 32],
}

const _: () = assert!(PROVISIONING_SIZE == 80);

impl fmt::Debug for Provisioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The UDS is never printed.
        f.debug_struct("Provisioning")
            .field("version", &self.version.get())
            .field("security_version_floor", &self.security_version_floor.get())
            .field("platform_public_key", &self.platform_public_key)
            .finish_non_exhaustive()
    }
}

/// Why a provisioning block was refused; each names the field at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningError {
    /// The input is not [`PROVISIONING_SIZE`] bytes long.
    Length {
        /// What the input has.
        found: usize,
    },
    /// `magic` is not "TZPB" (an unprovisioned device: erased or zero flash).
    BadMagic {
        /// What the input has.
        found: [u8; 4],
    },
    /// `version` is not [`FORMAT_VERSION`].
    UnsupportedVersion {
        /// What the input has.
        found: u32,
    },
    /// `reserved` is not zero.
    ReservedNotZero,
}

impl fmt::Display for ProvisioningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProvisioningError::Length { found } => {
                write!(f, "provisioning block: length {found} bytes, expected {PROVISIONING_SIZE}")
            }
            ProvisioningError::BadMagic { found } => {
                write!(f, "provisioning block: magic {found:02x?} is not \"TZPB\" (device not provisioned)")
            }
            ProvisioningError::UnsupportedVersion { found } => {
                write!(f, "provisioning block: version {found} unsupported (expected {FORMAT_VERSION})")
            }
            ProvisioningError::ReservedNotZero => write!(f, "provisioning block: reserved is not zero"),
        }
    }
}

impl Provisioning {
    /// Checks `bytes` (exactly [`PROVISIONING_SIZE`]) and borrows it as a provisioning block.
    pub fn parse(bytes: &[u8]) -> Result<&Provisioning, ProvisioningError> {
        let block =
            Provisioning::ref_from_bytes(bytes).map_err(|_| ProvisioningError::Length { found: bytes.len() })?;
        if block.magic != MAGIC {
            return Err(ProvisioningError::BadMagic { found: block.magic });
        }
        if block.version.get() != FORMAT_VERSION {
            return Err(ProvisioningError::UnsupportedVersion { found: block.version.get() });
        }
        if block.reserved.get() != 0 {
            return Err(ProvisioningError::ReservedNotZero);
        }
        Ok(block)
    }

    /// A block of the current format (`tzmk flash`, tests).
    pub fn new(uds: [u8; 32], platform_public_key: [u8; 32], security_version_floor: u32) -> Provisioning {
        Provisioning {
            magic: MAGIC,
            version: U32::new(FORMAT_VERSION),
            security_version_floor: U32::new(security_version_floor),
            reserved: U32::new(0),
            uds,
            platform_public_key,
        }
    }
}

impl Drop for Provisioning {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.uds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_and_each_field_is_checked() {
        let block = Provisioning::new([7; 32], [9; 32], 3);
        let bytes = block.as_bytes().to_vec();
        let parsed = Provisioning::parse(&bytes).unwrap();
        assert_eq!(
            (parsed.uds, parsed.platform_public_key, parsed.security_version_floor.get()),
            ([7; 32], [9; 32], 3)
        );
        assert_eq!(Provisioning::parse(&bytes[1..]).unwrap_err(), ProvisioningError::Length { found: 79 });
        assert_eq!(Provisioning::parse(&[0; 80]).unwrap_err(), ProvisioningError::BadMagic { found: [0; 4] });
        let mut bad = bytes.clone();
        bad[4] = 2;
        assert_eq!(Provisioning::parse(&bad).unwrap_err(), ProvisioningError::UnsupportedVersion { found: 2 });
        let mut bad = bytes.clone();
        bad[12] = 1;
        assert_eq!(Provisioning::parse(&bad).unwrap_err(), ProvisioningError::ReservedNotZero);
        assert!(!std::format!("{block:?}").contains("7, 7"), "the UDS is not printed");
    }
}
