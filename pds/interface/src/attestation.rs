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

/// Operation: evidence for a nonce (docs/trusted-boot.md, "Evidence"): MR0 the nonce's length
/// (32, 48 or 64), MR1.. its bytes (little-endian words); attestation-pd writes the evidence
/// ([`EvidenceHeader`], the PSA token, the certificate chain) at the start of the
/// `attestation_evidence` region and answers its length in MR0.
pub const OP_EVIDENCE: u64 = 3;
/// Operation: a signed update of the reference values (docs/trusted-boot.md, "Signed updates"):
/// MR0 the manifest's length, its bytes at the start of the `attestation_update` region (comm-pd
/// writes, attestation-pd reads); the monitor's outcome in MR0..MR1 (`update::UpdateReply`).
pub const OP_UPDATE: u64 = 5;
/// The longest nonce, and the most message registers a nonce takes.
pub const MAX_NONCE: usize = 64;

/// Operation: a runtime measurement (docs/trusted-boot.md, "Runtime measurements"): MR0..MR1 the
/// component's name ([`MEASURE_NAME_SIZE`] bytes, NUL-padded `[a-z0-9._-]`, little-endian
/// words), MR2..MR5 its SHA-256 (little-endian words). attestation-pd extends PCR 1 with the
/// digest, appends an `EV_EVENT_TAG` event to its event log and reports the component in every
/// later token; it answers the measurement's index (0, 1, ...) in MR0. A refused measurement
/// changes nothing.
pub const OP_MEASURE: u64 = 4;
/// A runtime measurement's name: the bytes of a manifest entry's name, the same rule.
pub const MEASURE_NAME_SIZE: usize = 16;
/// The most runtime measurements per boot: each becomes a software component of every token,
/// and the token's evidence must fit [`MAX_EVIDENCE`].
pub const MAX_RUNTIME_MEASUREMENTS: usize = 8;
/// Names a runtime measurement may not take: the measurement types of the boot components, so
/// that a verifier never mistakes what the normal world reported for what the monitor measured.
pub const RESERVED_MEASUREMENT_NAMES: [&str; 6] =
    ["bl", "prot", "kernel", "dtb", "initramfs", PENDING_MEASUREMENT_TYPE];
/// The measurement type of the software component that reports a pending update: a manifest the
/// monitor accepted this boot (`OP_UPDATE`), which stage 1 boots from the next boot on. Its
/// measurement value is the SHA-256 of the manifest's bytes, its version the manifest's security
/// version, its signer the platform key. The boot's own components keep the booted manifest's
/// versions until then (docs/trusted-boot.md, "Signed updates").
pub const PENDING_MEASUREMENT_TYPE: &str = "pending-update";

/// Reply labels.
pub const OK: u64 = 0;
pub const ERR_UNKNOWN_OPERATION: u64 = 1;
/// The monitor left no valid boot handoff (booted without tzmk's monitor, or it was corrupted).
pub const ERR_NO_HANDOFF: u64 = 2;
/// comm-pd's answer on the attestation port to a request that is no `AttestationRequest`.
pub const ERR_MALFORMED: u64 = 3;
/// A request attestation-pd understood but refuses: a nonce of a length the token cannot carry.
pub const ERR_BAD_ARGUMENT: u64 = 4;
/// OP_MEASURE refused: [`MAX_RUNTIME_MEASUREMENTS`] were taken this boot (the log is unchanged).
pub const ERR_LOG_FULL: u64 = 5;

/// Is `name` a valid runtime measurement name: 1 to [`MEASURE_NAME_SIZE`] bytes of
/// `[a-z0-9._-]`, NUL-padded (nothing but NULs after the first), and not a reserved name?
pub fn measurement_name(name: &[u8; MEASURE_NAME_SIZE]) -> Option<&str> {
    let length = name.iter().position(|&b| b == 0).unwrap_or(MEASURE_NAME_SIZE);
    let valid = length > 0
        && name[..length].iter().all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        && name[length..].iter().all(|&b| b == 0);
    let text = core::str::from_utf8(&name[..length]).ok().filter(|_| valid)?;
    (!RESERVED_MEASUREMENT_NAMES.contains(&text)).then_some(text)
}

/// `EvidenceHeader::magic`: "TZEV".
pub const EVIDENCE_MAGIC: u32 = 0x545a_4556;
pub const EVIDENCE_VERSION: u32 = 1;
/// The most bytes of evidence (header, token, chain): what the attestation port's reply carries.
pub const MAX_EVIDENCE: usize = 3072;

/// The head of an evidence blob: then `token_length` bytes of the PSA token (COSE_Sign1, tag
/// 18) and `chain_length` bytes of the certificate chain: a CBOR array of byte strings, the
/// device-identity public key (32 bytes, Ed25519) first, then each certificate from the one that
/// key signed down to the attestation key's (docs/trusted-boot.md, "Evidence").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EvidenceHeader {
    pub magic: u32,
    pub version: u32,
    pub token_length: u32,
    pub chain_length: u32,
}

/// `BootHandoff::magic`: "TZBH".
pub const HANDOFF_MAGIC: u32 = 0x545a_4248;
/// Version 2: trusted boot (docs/trusted-boot.md): the CDIs, the DICE certificate, the verified
/// manifest and the event log.
pub const HANDOFF_VERSION: u32 = 2;
/// Room for the layer-1 DICE certificate (a CWT of ~450 bytes).
pub const HANDOFF_CERT_MAX: usize = 640;
/// The manifest's size (tzmk-trust's `manifest::MANIFEST_SIZE`, checked there).
pub const HANDOFF_MANIFEST_SIZE: usize = 672;
/// Room for the TCG2 event log: the Spec ID and StartupLocality events and one event per image.
pub const HANDOFF_LOG_MAX: usize = 2048;

/// What the monitor (trusted boot stage 1) leaves in `boot_handoff` (secure RAM, mapped into
/// attestation-pd alone) before it starts seL4, after it verified the manifest and the secure
/// image and measured every image (docs/trusted-boot.md, "Chain of trust"). attestation-pd reads
/// it once at start and wipes the CDIs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootHandoff {
    pub magic: u32,
    pub version: u32,
    /// SHA-256 of the secure-world image (loader.img) as the monitor measured it; the manifest's
    /// entry for it matched.
    pub secure_image_sha256: [u8; 32],
    /// Open DICE's CDI_Attest and CDI_Seal of the next layer (the secure image), derived from the
    /// UDS; the monitor keeps no copy.
    pub cdi_attest: [u8; 32],
    pub cdi_seal: [u8; 32],
    /// The device-identity public key (Ed25519, derived from the UDS: DICE layer 0's).
    pub device_public_key: [u8; 32],
    /// The platform's public key that signed the manifest (the software components' signer).
    pub platform_public_key: [u8; 32],
    /// SHA-256 of the monitor's own image in secure flash, as it measured itself.
    pub monitor_sha256: [u8; 32],
    /// Bytes used of `certificate` and `event_log`.
    pub certificate_length: u32,
    pub event_log_length: u32,
    /// The CWT (COSE_Sign1, EdDSA) in which the device-identity key certifies the key derived
    /// from `cdi_attest` (tzmk-trust's `dice::certificate`).
    pub certificate: [u8; HANDOFF_CERT_MAX],
    /// The manifest the monitor verified, byte for byte (its Linux entries are what attestation-pd
    /// checks the measurements against).
    pub manifest: [u8; HANDOFF_MANIFEST_SIZE],
    /// The TCG2 crypto-agile event log (tzmk-trust's `eventlog`): one EV_POST_CODE event per
    /// image, named as in the manifest.
    pub event_log: [u8; HANDOFF_LOG_MAX],
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_handoff_fits_its_page() {
        const { assert!(core::mem::size_of::<super::BootHandoff>() <= 0x1000) };
    }
}
