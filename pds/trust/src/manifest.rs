//! The image manifest: a fixed binary layout (docs/trusted-boot.md, "Manifest"), signed with the
//! platform key (Ed25519) and checked by the monitor before anything it names is used.
//!
//! ```text
//! Header    (32 B): magic "TZMF", format version (1), image count (<= 8), security version,
//!                   key id (first 16 bytes of SHA-256 of the platform public key)
//! Entry     (72 B) x 8: name [16] (NUL-padded [a-z0-9._-]), kind, security version,
//!                   load address, size, SHA-256 of the image
//! Signature (64 B): Ed25519 over the header and all 8 entries (unused entries all zero)
//! ```
//!
//! All integers are little-endian; the layout has no padding and an alignment of 1, so a manifest
//! is parsed in place from any byte slice (`zerocopy`). The parser is as small as it can be: the
//! ROM stage runs it before anything is verified.

use core::fmt;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `Header::magic`: the bytes "TZMF" in file order.
pub const MAGIC: [u8; 4] = *b"TZMF";
/// The only format version this parser accepts.
pub const FORMAT_VERSION: u32 = 1;
/// How many entries a manifest has room for.
pub const MAX_IMAGES: usize = 8;
/// Bytes in an image name, NUL padding included.
pub const NAME_SIZE: usize = 16;
/// Bytes of the key id (a prefix of SHA-256 of the public key).
pub const KEY_ID_SIZE: usize = 16;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_SIZE: usize = 64;
/// Bytes of a whole manifest.
pub const MANIFEST_SIZE: usize = core::mem::size_of::<Manifest>();
/// Bytes the signature covers: the header and all entries.
pub const SIGNED_SIZE: usize = MANIFEST_SIZE - SIGNATURE_SIZE;

/// What an entry's image is (`Entry::kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ImageKind {
    /// The secure world's image: the Microkit loader.img (seL4 and its PDs).
    SecureImage = 1,
    /// Linux's kernel Image.
    LinuxKernel = 2,
    /// Linux's device tree blob.
    LinuxDtb = 3,
    /// Linux's initramfs.
    LinuxInitramfs = 4,
}

impl ImageKind {
    /// Every kind, in wire-value order.
    pub const ALL: [ImageKind; 4] =
        [ImageKind::SecureImage, ImageKind::LinuxKernel, ImageKind::LinuxDtb, ImageKind::LinuxInitramfs];

    /// The kind for a wire value, if it is one.
    pub fn from_u32(value: u32) -> Option<ImageKind> {
        ImageKind::ALL.into_iter().find(|kind| *kind as u32 == value)
    }

    /// The short name tools use for the kind (`tzmk sign --image secure=loader.img@0x70000000`).
    pub fn label(self) -> &'static str {
        match self {
            ImageKind::SecureImage => "secure",
            ImageKind::LinuxKernel => "kernel",
            ImageKind::LinuxDtb => "dtb",
            ImageKind::LinuxInitramfs => "initramfs",
        }
    }

    /// The measurement type a PSA token reports the kind's image under (RFC 9783's "PRoT" for
    /// the secure image; the Linux images by their label).
    pub fn measurement_type(self) -> &'static str {
        match self {
            ImageKind::SecureImage => "PRoT",
            kind => kind.label(),
        }
    }

    /// The kind a [`label`](ImageKind::label) names.
    pub fn from_label(label: &str) -> Option<ImageKind> {
        ImageKind::ALL.into_iter().find(|kind| kind.label() == label)
    }
}

/// The manifest's first 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`FORMAT_VERSION`].
    pub version: U32,
    /// Used entries, at the front of `entries`; at most [`MAX_IMAGES`].
    pub image_count: U32,
    /// The platform's security version: never below the monitor's stored counter (anti-rollback).
    pub security_version: U32,
    /// The first 16 bytes of SHA-256 of the public key that signed the manifest.
    pub key_id: [u8; KEY_ID_SIZE],
}

/// One image the manifest names (72 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Entry {
    /// The image's name, `[a-z0-9._-]{1,16}`, NUL-padded; the event log records it.
    pub name: [u8; NAME_SIZE],
    /// An [`ImageKind`] wire value.
    pub kind: U32,
    /// The image's own security version (reported in attestation, not compared at boot).
    pub security_version: U32,
    /// Physical address the image is loaded at.
    pub load_address: U64,
    /// Bytes of the image; never zero.
    pub size: U64,
    /// SHA-256 of the image's `size` bytes.
    pub sha256: [u8; 32],
}

/// A whole manifest (672 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Manifest {
    /// The header.
    pub header: Header,
    /// `header.image_count` used entries, then all-zero ones.
    pub entries: [Entry; MAX_IMAGES],
    /// Ed25519 over the first [`SIGNED_SIZE`] bytes.
    pub signature: [u8; SIGNATURE_SIZE],
}

const _: () = assert!(core::mem::size_of::<Header>() == 32);
const _: () = assert!(core::mem::size_of::<Entry>() == 72);
const _: () = assert!(MANIFEST_SIZE == 672);

/// Why a manifest was refused; each names the field at fault. `code()` is a stable number for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestError {
    /// The input is not [`MANIFEST_SIZE`] bytes long.
    Length {
        /// What the input has.
        found: usize,
    },
    /// `header.magic` is not "TZMF".
    BadMagic {
        /// What the input has.
        found: [u8; 4],
    },
    /// `header.version` is not [`FORMAT_VERSION`].
    UnsupportedVersion {
        /// What the input has.
        found: u32,
    },
    /// `header.image_count` is above [`MAX_IMAGES`].
    TooManyImages {
        /// The header's image count.
        count: u32,
    },
    /// `entries[index].name` is empty, has a byte outside `[a-z0-9._-]`, or bytes after its NUL.
    BadName {
        /// The entry's index.
        index: usize,
    },
    /// `entries[index].kind` is no [`ImageKind`].
    UnknownKind {
        /// The entry's index.
        index: usize,
        /// The entry's kind wire value.
        kind: u32,
    },
    /// `entries[index].kind` repeats an earlier entry's kind.
    DuplicateKind {
        /// The entry's index.
        index: usize,
        /// The entry's kind wire value.
        kind: u32,
    },
    /// `entries[index].name` repeats an earlier entry's name.
    DuplicateName {
        /// The entry's index.
        index: usize,
    },
    /// `entries[index].size` is zero.
    EmptyImage {
        /// The entry's index.
        index: usize,
    },
    /// `entries[index].load_address + size` does not fit in 64 bits.
    AddressOverflow {
        /// The entry's index.
        index: usize,
    },
    /// The images of `entries[first]` and `entries[second]` overlap in memory.
    Overlap {
        /// The earlier entry's index.
        first: usize,
        /// The later entry's index.
        second: usize,
    },
    /// `entries[index]` is past `image_count` but not all zero.
    UnusedEntryNotZero {
        /// The entry's index.
        index: usize,
    },
    /// `header.key_id` is not the verifying key's.
    WrongKeyId,
    /// The verifying key is not a valid Ed25519 point.
    BadPublicKey,
    /// `signature` does not verify (strict Ed25519) over the header and entries.
    BadSignature,
    /// `header.security_version` is below the stored counter.
    Rollback {
        /// The manifest's security version.
        manifest: u32,
        /// The stored counter.
        stored: u32,
    },
    /// The builder was given more than [`MAX_IMAGES`] images.
    Full,
}

impl ManifestError {
    /// A stable number for the error's variant, for a log line or a register.
    pub fn code(&self) -> u32 {
        match self {
            ManifestError::Length { .. } => 1,
            ManifestError::BadMagic { .. } => 2,
            ManifestError::UnsupportedVersion { .. } => 3,
            ManifestError::TooManyImages { .. } => 4,
            ManifestError::BadName { .. } => 5,
            ManifestError::UnknownKind { .. } => 6,
            ManifestError::DuplicateKind { .. } => 7,
            ManifestError::DuplicateName { .. } => 8,
            ManifestError::EmptyImage { .. } => 9,
            ManifestError::AddressOverflow { .. } => 10,
            ManifestError::Overlap { .. } => 11,
            ManifestError::UnusedEntryNotZero { .. } => 12,
            ManifestError::WrongKeyId => 13,
            ManifestError::BadPublicKey => 14,
            ManifestError::BadSignature => 15,
            ManifestError::Rollback { .. } => 16,
            ManifestError::Full => 17,
        }
    }
}

/// How an update refusal for a manifest error is reported (`tzmk_interface::update`): the
/// monitor's and attestation-pd's checks answer alike.
impl From<ManifestError> for tzmk_interface::update::UpdateOutcome {
    fn from(e: ManifestError) -> Self {
        use tzmk_interface::update::UpdateOutcome;
        match e {
            ManifestError::Rollback { manifest, stored } => UpdateOutcome::Rollback { found: manifest, stored },
            ManifestError::WrongKeyId | ManifestError::BadSignature | ManifestError::BadPublicKey => {
                UpdateOutcome::NotSigned { code: e.code() }
            }
            e => UpdateOutcome::Malformed { code: e.code() },
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ManifestError::Length { found } => {
                write!(f, "manifest: length {found} bytes, expected {MANIFEST_SIZE}")
            }
            ManifestError::BadMagic { found } => write!(f, "manifest: header.magic {found:02x?} is not \"TZMF\""),
            ManifestError::UnsupportedVersion { found } => {
                write!(f, "manifest: header.version {found} unsupported (expected {FORMAT_VERSION})")
            }
            ManifestError::TooManyImages { count } => {
                write!(f, "manifest: header.image_count {count} above {MAX_IMAGES}")
            }
            ManifestError::BadName { index } => {
                write!(f, "manifest: entries[{index}].name is not NUL-padded [a-z0-9._-]{{1,16}}")
            }
            ManifestError::UnknownKind { index, kind } => write!(f, "manifest: entries[{index}].kind {kind} unknown"),
            ManifestError::DuplicateKind { index, kind } => {
                write!(f, "manifest: entries[{index}].kind {kind} repeats an earlier entry's")
            }
            ManifestError::DuplicateName { index } => {
                write!(f, "manifest: entries[{index}].name repeats an earlier entry's")
            }
            ManifestError::EmptyImage { index } => write!(f, "manifest: entries[{index}].size is zero"),
            ManifestError::AddressOverflow { index } => {
                write!(f, "manifest: entries[{index}].load_address + size overflows")
            }
            ManifestError::Overlap { first, second } => {
                write!(f, "manifest: entries[{first}] and entries[{second}] overlap in memory")
            }
            ManifestError::UnusedEntryNotZero { index } => {
                write!(f, "manifest: unused entries[{index}] is not all zero")
            }
            ManifestError::WrongKeyId => write!(f, "manifest: header.key_id is not the platform key's"),
            ManifestError::BadPublicKey => write!(f, "manifest: the platform public key is not a valid Ed25519 key"),
            ManifestError::BadSignature => write!(f, "manifest: signature does not verify"),
            ManifestError::Rollback { manifest, stored } => {
                write!(f, "manifest: security version {manifest} is below the stored {stored}")
            }
            ManifestError::Full => write!(f, "manifest: more than {MAX_IMAGES} images"),
        }
    }
}

/// The key id of a public key: the first 16 bytes of its SHA-256.
pub fn key_id(public_key: &[u8; 32]) -> [u8; KEY_ID_SIZE] {
    let digest = Sha256::digest(public_key);
    let mut id = [0u8; KEY_ID_SIZE];
    id.copy_from_slice(&digest[..KEY_ID_SIZE]);
    id
}

fn name_is_valid(name: &[u8; NAME_SIZE]) -> bool {
    let length = name.iter().position(|&b| b == 0).unwrap_or(NAME_SIZE);
    length > 0
        && name[..length].iter().all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        && name[length..].iter().all(|&b| b == 0)
}

impl Entry {
    /// The name without its NUL padding (empty if the entry was never parsed and is not UTF-8).
    pub fn name(&self) -> &str {
        let length = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_SIZE);
        core::str::from_utf8(&self.name[..length]).unwrap_or("")
    }

    /// The entry's kind, if its wire value is one.
    pub fn kind(&self) -> Option<ImageKind> {
        ImageKind::from_u32(self.kind.get())
    }

    /// The image's physical address range, `[load_address, load_address + size)`; `None` if it
    /// overflows.
    pub fn range(&self) -> Option<(u64, u64)> {
        let start = self.load_address.get();
        start.checked_add(self.size.get()).map(|end| (start, end))
    }

    /// Whether `image` is the image this entry names: its size and SHA-256.
    pub fn matches(&self, image: &[u8]) -> bool {
        image.len() as u64 == self.size.get() && Sha256::digest(image).as_slice() == self.sha256
    }
}

impl Manifest {
    /// Checks the layout of `bytes` (exactly [`MANIFEST_SIZE`]) field by field and borrows it as a
    /// manifest. The signature is *not* checked: call [`verify`](Manifest::verify) before trusting
    /// anything in it.
    pub fn parse(bytes: &[u8]) -> Result<&Manifest, ManifestError> {
        let manifest = Manifest::ref_from_bytes(bytes).map_err(|_| ManifestError::Length { found: bytes.len() })?;
        manifest.check_layout()?;
        Ok(manifest)
    }

    fn check_layout(&self) -> Result<(), ManifestError> {
        let header = &self.header;
        if header.magic != MAGIC {
            return Err(ManifestError::BadMagic { found: header.magic });
        }
        if header.version.get() != FORMAT_VERSION {
            return Err(ManifestError::UnsupportedVersion { found: header.version.get() });
        }
        let count = header.image_count.get();
        if count as usize > MAX_IMAGES {
            return Err(ManifestError::TooManyImages { count });
        }
        let count = count as usize;
        for (index, entry) in self.entries[..count].iter().enumerate() {
            if !name_is_valid(&entry.name) {
                return Err(ManifestError::BadName { index });
            }
            let kind = entry.kind.get();
            if ImageKind::from_u32(kind).is_none() {
                return Err(ManifestError::UnknownKind { index, kind });
            }
            if entry.size.get() == 0 {
                return Err(ManifestError::EmptyImage { index });
            }
            let Some((start, end)) = entry.range() else {
                return Err(ManifestError::AddressOverflow { index });
            };
            for (earlier_index, earlier) in self.entries[..index].iter().enumerate() {
                if earlier.kind.get() == kind {
                    return Err(ManifestError::DuplicateKind { index, kind });
                }
                if earlier.name == entry.name {
                    return Err(ManifestError::DuplicateName { index });
                }
                // Earlier entries were checked: their range exists.
                if let Some((earlier_start, earlier_end)) = earlier.range() {
                    if start < earlier_end && earlier_start < end {
                        return Err(ManifestError::Overlap { first: earlier_index, second: index });
                    }
                }
            }
        }
        for (index, entry) in self.entries.iter().enumerate().skip(count) {
            if entry.as_bytes().iter().any(|&b| b != 0) {
                return Err(ManifestError::UnusedEntryNotZero { index });
            }
        }
        Ok(())
    }

    /// The bytes the signature covers: the header and all entries.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.as_bytes()[..SIGNED_SIZE]
    }

    /// Checks that `public_key` is the one the header names (key id) and that the signature is
    /// its strict Ed25519 signature (RFC 8032 with canonical encodings and no small-order keys:
    /// `ed25519_dalek::VerifyingKey::verify_strict`) over the header and entries.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), ManifestError> {
        if key_id(public_key) != self.header.key_id {
            return Err(ManifestError::WrongKeyId);
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| ManifestError::BadPublicKey)?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(self.signed_bytes(), &signature).map_err(|_| ManifestError::BadSignature)
    }

    /// Anti-rollback: the manifest's security version must not be below the `stored` counter.
    pub fn check_security_version(&self, stored: u32) -> Result<(), ManifestError> {
        let manifest = self.header.security_version.get();
        if manifest < stored {
            return Err(ManifestError::Rollback { manifest, stored });
        }
        Ok(())
    }

    /// The used entries, in manifest order. Only meaningful on a parsed manifest.
    pub fn images(&self) -> &[Entry] {
        let count = (self.header.image_count.get() as usize).min(MAX_IMAGES);
        &self.entries[..count]
    }

    /// The entry of the given kind, if the manifest names one.
    pub fn image(&self, kind: ImageKind) -> Option<&Entry> {
        self.images().iter().find(|entry| entry.kind.get() == kind as u32)
    }
}

/// Host-side construction of signed manifests (`tzmk sign`, tests).
#[cfg(any(feature = "std", test))]
pub use builder::ManifestBuilder;

#[cfg(any(feature = "std", test))]
mod builder {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use zerocopy::FromZeros;

    /// Fills a manifest's entries and signs it; [`sign`](ManifestBuilder::sign) runs the parser on
    /// the result, so a builder never produces a manifest the monitor would refuse.
    #[derive(Debug, Clone)]
    pub struct ManifestBuilder {
        manifest: Manifest,
    }

    impl ManifestBuilder {
        /// An empty manifest with the given platform security version.
        pub fn new(security_version: u32) -> Self {
            let mut manifest = Manifest::new_zeroed();
            manifest.header.magic = MAGIC;
            manifest.header.version.set(FORMAT_VERSION);
            manifest.header.security_version.set(security_version);
            ManifestBuilder { manifest }
        }

        /// Adds an image by its bytes (hashed here). `name` is checked when signing.
        pub fn image(
            &mut self,
            kind: ImageKind,
            name: &str,
            security_version: u32,
            load_address: u64,
            image: &[u8],
        ) -> Result<&mut Self, ManifestError> {
            let digest: [u8; 32] = Sha256::digest(image).into();
            self.image_digest(kind, name, security_version, load_address, image.len() as u64, digest)
        }

        /// Adds an image by its size and SHA-256.
        pub fn image_digest(
            &mut self,
            kind: ImageKind,
            name: &str,
            security_version: u32,
            load_address: u64,
            size: u64,
            sha256: [u8; 32],
        ) -> Result<&mut Self, ManifestError> {
            let index = self.manifest.header.image_count.get() as usize;
            if index >= MAX_IMAGES {
                return Err(ManifestError::Full);
            }
            let mut entry = Entry::new_zeroed();
            if name.len() > NAME_SIZE || name.is_empty() {
                return Err(ManifestError::BadName { index });
            }
            entry.name[..name.len()].copy_from_slice(name.as_bytes());
            entry.kind.set(kind as u32);
            entry.security_version.set(security_version);
            entry.load_address.set(load_address);
            entry.size.set(size);
            entry.sha256 = sha256;
            self.manifest.entries[index] = entry;
            self.manifest.header.image_count.set(index as u32 + 1);
            Ok(self)
        }

        /// Sets the key id from `key`, signs, and checks the result with the parser and verifier.
        pub fn sign(&self, key: &SigningKey) -> Result<Manifest, ManifestError> {
            let mut manifest = self.manifest;
            let public_key = key.verifying_key().to_bytes();
            manifest.header.key_id = key_id(&public_key);
            let signature = key.sign(manifest.signed_bytes());
            manifest.signature = signature.to_bytes();
            let parsed = Manifest::parse(manifest.as_bytes())?;
            parsed.verify(&public_key)?;
            Ok(manifest)
        }
    }
}

#[cfg(test)]
mod tests;
