//! tzmk's trusted-boot formats: the signed image manifest, the TCG2 event log and the Open Profile
//! for DICE, shared by the EL3 monitor (stage 1), attestation-pd (stage 2) and the host tools.
//!
//! docs/trusted-boot.md is the design. Everything here is `no_std` without an allocator: the
//! monitor and the PDs have none, so writers fill caller buffers and parsers borrow from them.
//! The `std` feature adds host-only conveniences (key generation, the manifest builder,
//! certificate verification) for `tzmk sign` and the tests.
//!
//! Every parser treats its input as an allegation: sizes are checked against the buffer and a bad
//! input gets a typed error that names the field, never a panic.
#![no_std]
#![warn(missing_docs)]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod dice;
pub mod eventlog;
pub mod manifest;
pub mod provisioning;
#[cfg(feature = "std")]
pub mod refs;
pub mod slot;

pub use ed25519_dalek::{SigningKey, VerifyingKey};

#[cfg(test)]
mod flow_tests;

/// A new random Ed25519 key pair from the operating system's generator (`tzmk sign --keygen`):
/// a 32-byte seed, as RFC 8032 defines the private key.
#[cfg(feature = "std")]
pub fn generate_signing_key() -> std::io::Result<SigningKey> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut())
        .map_err(|e| std::io::Error::other(std::format!("the system's random generator: {e}")))?;
    Ok(SigningKey::from_bytes(&seed))
}
