//! Trusted boot, stage 1 (docs/trusted-boot.md): what the monitor decides on core 0 before either
//! world runs, as plain Rust over a [`Memory`] that host tests fake.
//!
//! [`stage1`] reads the provisioning block and the manifest's two slots from secure flash, picks
//! the newest committed slot whose manifest verifies with the platform key, carries a security
//! version not below the stored one (the larger of the provisioning block's floor and the counter
//! in secure flash) and names images at the platform's addresses ([`select_manifest`]; the other
//! slot when the newest fails: a torn or damaged write), checks that
//! every image lies at the platform's address for its kind and inside that kind's window, hashes
//! each image where QEMU's loader (or a bootloader) placed it and writes the TCG2 event log.
//! - With a secure image in the manifest, the secure image must match its digest (else the machine
//!   stops); Linux's images are only measured (attestation-pd, stage 2, decides); the CDIs, the
//!   device-identity key and the layer-1 certificate go into the [`BootHandoff`].
//! - Without one (standalone: no stage 2 exists), the monitor checks Linux's images itself.
//!
//! Every secret (the UDS's copy, the CDIs' working copies, the private keys) lives in values that
//! wipe themselves when dropped; the caller wipes the stack after this returns (the hash and KDF
//! states the crypto crates leave behind).

use core::fmt;
use sha2::{Digest as _, Sha512};
use tzmk_interface::attestation::{
    BootHandoff, HANDOFF_CERT_MAX, HANDOFF_LOG_MAX, HANDOFF_MAGIC, HANDOFF_MANIFEST_SIZE, HANDOFF_VERSION,
};
use tzmk_sha256::{BlockFunction, Sha256};
use tzmk_trust::dice::{self, Config, DiceError, Inputs, Mode};
use tzmk_trust::eventlog::{EventLogError, EventLogWriter};
use tzmk_trust::manifest::{ImageKind, Manifest, ManifestError, MANIFEST_SIZE, NAME_SIZE};
use tzmk_trust::provisioning::{Provisioning, ProvisioningError, PROVISIONING_SIZE};
use tzmk_trust::slot::{self, RECORD_OFFSET, SLOT_BYTES};
use zerocopy::{FromZeros, IntoBytes};
use zeroize::Zeroizing;

const _: () = assert!(MANIFEST_SIZE == HANDOFF_MANIFEST_SIZE);

/// Physical memory as stage 1 reads it.
pub trait Memory {
    /// The `length` bytes at physical `address`, or `None` where the monitor may not read (not
    /// mapped, or the range wraps).
    fn read(&self, address: u64, length: u64) -> Option<&[u8]>;

    /// The SHA-256 block function every image hash goes through (the monitor picks the Armv8
    /// instructions where the CPU has them; the default is the `sha2` crate's portable code).
    fn sha256_blocks(&self) -> BlockFunction {
        tzmk_sha256::software
    }

    /// SHA-256 of the `length` bytes at `address`. The default hashes [`read`](Memory::read)'s
    /// slice; memory at physical address 0 (secure flash on QEMU virt, where the monitor itself
    /// is) must override it: a Rust reference is never null, so no slice can start there.
    fn sha256(&self, address: u64, length: u64) -> Option<[u8; 32]> {
        self.read(address, length).map(|bytes| Sha256::digest(self.sha256_blocks(), bytes))
    }
}

/// A physical window `[base, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First address.
    pub base: u64,
    /// One past the last address.
    pub end: u64,
}

/// Where stage 1 looks (from the platform description, monitor/platform/*.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The monitor's own image in secure flash: monitor.bin's bytes (code, read-only data, .data's
    /// load image). Stage 1 measures it for the attestation token's first software component.
    pub monitor: Window,
    /// The provisioning block's address in secure flash (`[trust] provisioning`).
    pub provisioning: u64,
    /// The manifest's slots A and B in secure flash (`[trust] manifest`, `manifest_b`): each the
    /// manifest, then its commit record (`tzmk_trust::slot`).
    pub manifests: [u64; 2],
    /// Per kind, in [`ImageKind::ALL`] order: its `[boot]` address (the window's base) and how
    /// far an image of that kind may reach.
    pub windows: [Window; 4],
}

impl Layout {
    /// The window of `kind`.
    pub fn window(&self, kind: ImageKind) -> Window {
        self.windows[kind as usize - 1]
    }
}

/// An image's name as the manifest gives it (for messages).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name([u8; NAME_SIZE]);

impl Name {
    /// The name without its padding.
    pub fn as_str(&self) -> &str {
        let length = self.0.iter().position(|&b| b == 0).unwrap_or(NAME_SIZE);
        core::str::from_utf8(&self.0[..length]).unwrap_or("?")
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first 8 bytes of a digest, in hex, for a log line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Short(pub [u8; 32]);

impl fmt::Debug for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("..")
    }
}

/// A kind as log lines name it ("secure image", "Linux kernel", ...).
pub fn kind_name(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::SecureImage => "secure image",
        ImageKind::LinuxKernel => "Linux kernel",
        ImageKind::LinuxDtb => "Linux DTB",
        ImageKind::LinuxInitramfs => "Linux initramfs",
    }
}

/// Why stage 1 stopped the machine. Each names what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage1Error {
    /// The monitor cannot read the flash block at `address` (a platform or mapping bug).
    FlashUnreadable {
        /// `"provisioning block"` or `"manifest"`.
        what: &'static str,
        /// Its address.
        address: u64,
    },
    /// The provisioning block is missing or malformed.
    Provisioning(ProvisioningError),
    /// The manifest's flash block is blank (all zero or all erased bytes).
    NoManifest {
        /// Its address.
        address: u64,
    },
    /// Neither manifest slot holds a commit record (an erased flash, or one written before the
    /// A/B slots).
    NoCommittedSlot {
        /// Slot A's and slot B's addresses.
        slots: [u64; 2],
    },
    /// The manifest is malformed, not signed by the platform key, or below the stored security
    /// version.
    Manifest(ManifestError),
    /// The manifest names no image of a kind every boot needs (Linux's kernel and DTB).
    MissingImage {
        /// The kind.
        kind: ImageKind,
    },
    /// An entry's load address is not the platform's address for its kind.
    WrongLoadAddress {
        /// The entry's kind.
        kind: ImageKind,
        /// The entry's name.
        name: Name,
        /// The entry's load address.
        found: u64,
        /// The platform's address for the kind.
        expected: u64,
    },
    /// An entry's image reaches past its kind's window (into the next image or out of its RAM).
    OutsideWindow {
        /// The entry's kind.
        kind: ImageKind,
        /// The entry's name.
        name: Name,
        /// The image's size.
        size: u64,
        /// Where the window ends.
        window_end: u64,
    },
    /// The monitor cannot read an image's memory (a mapping bug).
    ImageUnreadable {
        /// The entry's kind.
        kind: ImageKind,
    },
    /// An image in memory does not match its manifest digest where stage 1 must check it: the
    /// secure image always, Linux's images when there is no secure image.
    DigestMismatch {
        /// The entry's kind.
        kind: ImageKind,
        /// The entry's name.
        name: Name,
        /// Where it lies.
        address: u64,
        /// The manifest's digest.
        expected: Short,
        /// What memory holds.
        measured: Short,
    },
    /// The event log did not fit the handoff (a build bug).
    EventLog(EventLogError),
    /// The DICE certificate or descriptor did not fit (a build bug).
    Dice(DiceError),
}

impl fmt::Display for Stage1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Stage1Error::FlashUnreadable { what, address } => write!(f, "{what} at {address:#x}: not readable"),
            Stage1Error::Provisioning(e) => write!(f, "{e}"),
            Stage1Error::NoManifest { address } => write!(f, "no manifest in flash at {address:#x} (blank)"),
            Stage1Error::NoCommittedSlot { slots: [a, b] } => {
                write!(f, "no committed manifest slot in flash (slots at {a:#x} and {b:#x})")
            }
            Stage1Error::Manifest(e) => write!(f, "{e}"),
            Stage1Error::MissingImage { kind } => write!(f, "manifest names no {}", kind_name(kind)),
            Stage1Error::WrongLoadAddress { kind, name, found, expected } => {
                write!(f, "{} '{name}': load address {found:#x} is not the platform's {expected:#x}", kind_name(kind))
            }
            Stage1Error::OutsideWindow { kind, name, size, window_end } => write!(
                f,
                "{} '{name}': {size} bytes reach past {window_end:#x}, the end of its window",
                kind_name(kind)
            ),
            Stage1Error::ImageUnreadable { kind } => write!(f, "{}: memory not readable", kind_name(kind)),
            Stage1Error::DigestMismatch { kind, name, address, expected, measured } => write!(
                f,
                "{} '{name}' at {address:#x}: SHA-256 {measured} does not match the manifest's {expected}",
                kind_name(kind)
            ),
            Stage1Error::EventLog(e) => write!(f, "event log: {e}"),
            Stage1Error::Dice(e) => write!(f, "DICE: {e}"),
        }
    }
}

impl From<ManifestError> for Stage1Error {
    fn from(e: ManifestError) -> Self {
        Stage1Error::Manifest(e)
    }
}

impl From<EventLogError> for Stage1Error {
    fn from(e: EventLogError) -> Self {
        Stage1Error::EventLog(e)
    }
}

impl From<DiceError> for Stage1Error {
    fn from(e: DiceError) -> Self {
        Stage1Error::Dice(e)
    }
}

/// One image as stage 1 measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// Its kind.
    pub kind: ImageKind,
    /// Its manifest name.
    pub name: Name,
    /// Where it lies and its size.
    pub address: u64,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of memory.
    pub sha256: [u8; 32],
    /// Whether memory matches the manifest's digest.
    pub matches: bool,
}

/// What stage 1 found: the boot may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the manifest names a secure image (verified: the monitor enters it). `false`:
    /// Linux runs alone, and its images were checked.
    pub secure_world: bool,
    /// The manifest's security version.
    pub security_version: u32,
    /// The slot it came from (0 = A, 1 = B) and that slot's sequence.
    pub slot: usize,
    /// The slot's commit sequence.
    pub sequence: u32,
    /// Each image, in manifest order (`count` of them).
    pub images: [Option<Measurement>; 4],
    /// Whether `handoff` now holds a valid boot handoff (only with a secure image).
    pub handoff_written: bool,
}

fn blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0) || bytes.iter().all(|&b| b == 0xff)
}

/// SHA-256 through `blocks` (and, for the secure image, SHA-512 in software: DICE's code hash) of
/// an image in memory.
fn hash(bytes: &[u8], with_sha512: bool, blocks: BlockFunction) -> ([u8; 32], Option<[u8; 64]>) {
    let mut sha256 = Sha256::new(blocks);
    let mut sha512 = with_sha512.then(Sha512::new);
    for chunk in bytes.chunks(64 * 1024) {
        sha256.update(chunk);
        if let Some(sha512) = sha512.as_mut() {
            sha512.update(chunk);
        }
    }
    (sha256.finalize(), sha512.map(|h| h.finalize().into()))
}

/// Stage 1. `handoff` is the boot handoff's memory (secure RAM): zeroed first, filled only when
/// the boot goes on with a secure image. On any error it is left zeroed and the caller stops the
/// machine.
///
/// `counter` is the security-version counter's value (secure flash, `crate::counter`): the
/// manifest's security version must be at least the larger of it and the provisioning block's floor.
pub fn stage1(
    memory: &impl Memory,
    layout: &Layout,
    counter: u32,
    handoff: &mut BootHandoff,
) -> Result<Verdict, Stage1Error> {
    handoff.zero();
    let result = run(memory, layout, counter, handoff);
    if result.is_err() {
        handoff.zero();
    }
    result
}

/// What stage 1 requires of the images a verified manifest names, before anything is hashed:
/// Linux's kernel and DTB named, every entry at the platform's address for its kind and inside
/// that kind's window. A signed update must pass it too (`crate::update`).
pub fn check_images(manifest: &Manifest, layout: &Layout) -> Result<(), Stage1Error> {
    for kind in [ImageKind::LinuxKernel, ImageKind::LinuxDtb] {
        if manifest.image(kind).is_none() {
            return Err(Stage1Error::MissingImage { kind });
        }
    }
    for entry in manifest.images() {
        // Parsed: the kind is known and the range does not overflow.
        let Some(kind) = entry.kind() else { continue };
        let name = Name(entry.name);
        let window = layout.window(kind);
        let (found, size) = (entry.load_address.get(), entry.size.get());
        if found != window.base {
            return Err(Stage1Error::WrongLoadAddress { kind, name, found, expected: window.base });
        }
        if size > window.end - window.base {
            return Err(Stage1Error::OutsideWindow { kind, name, size, window_end: window.end });
        }
    }
    Ok(())
}

/// The manifest stage 1 boots: its slot, the slot's commit sequence, and the manifest.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'m> {
    /// 0 = A, 1 = B.
    pub slot: usize,
    /// The slot's commit sequence.
    pub sequence: u32,
    /// The manifest, verified.
    pub manifest: &'m Manifest,
}

/// Whether a slot's manifest may boot: it parses, verifies with `platform_key`, is not below
/// `stored` and names its images where stage 1 accepts them.
fn bootable<'m>(
    bytes: &'m [u8],
    address: u64,
    platform_key: &[u8; 32],
    stored: u32,
    layout: &Layout,
) -> Result<&'m Manifest, Stage1Error> {
    if blank(bytes) {
        return Err(Stage1Error::NoManifest { address });
    }
    let manifest = Manifest::parse(bytes)?;
    manifest.verify(platform_key)?;
    manifest.check_security_version(stored)?;
    check_images(manifest, layout)?;
    Ok(manifest)
}

/// Picks the manifest to boot from the two slots (docs/trusted-boot.md, "Atomic updates"): of the
/// committed slots, newest first, the first whose manifest is bootable (see `bootable`); an
/// uncommitted slot (erased, or an update a power cut stopped before its commit word) never
/// counts. When no committed slot is bootable, the newest one's reason.
pub fn select_manifest<'m>(
    memory: &'m impl Memory,
    layout: &Layout,
    platform_key: &[u8; 32],
    stored: u32,
) -> Result<Selected<'m>, Stage1Error> {
    let mut slots = [&[][..]; 2];
    for (bytes, &address) in slots.iter_mut().zip(&layout.manifests) {
        *bytes = memory
            .read(address, SLOT_BYTES as u64)
            .ok_or(Stage1Error::FlashUnreadable { what: "manifest", address })?;
    }
    let sequences = slots.map(|bytes| slot::committed_sequence(&bytes[RECORD_OFFSET..]));
    let mut first_error = None;
    for (index, sequence) in slot::newest_first(sequences) {
        let address = layout.manifests[index];
        match bootable(&slots[index][..MANIFEST_SIZE], address, platform_key, stored, layout) {
            Ok(manifest) => return Ok(Selected { slot: index, sequence, manifest }),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(Stage1Error::NoCommittedSlot { slots: layout.manifests }))
}

fn run(memory: &impl Memory, layout: &Layout, counter: u32, handoff: &mut BootHandoff) -> Result<Verdict, Stage1Error> {
    let provisioning = memory
        .read(layout.provisioning, PROVISIONING_SIZE as u64)
        .ok_or(Stage1Error::FlashUnreadable { what: "provisioning block", address: layout.provisioning })?;
    let provisioning = Provisioning::parse(provisioning).map_err(Stage1Error::Provisioning)?;
    let platform_key = provisioning.platform_public_key;
    let stored = provisioning.security_version_floor.get().max(counter);
    // Every address checked first: nothing is hashed from where the platform does not put it.
    let Selected { slot, sequence, manifest } = select_manifest(memory, layout, &platform_key, stored)?;
    let monitor = layout.monitor;
    let monitor_sha256 = memory
        .sha256(monitor.base, monitor.end - monitor.base)
        .ok_or(Stage1Error::FlashUnreadable { what: "the monitor's image", address: monitor.base })?;
    let secure_world = manifest.image(ImageKind::SecureImage).is_some();
    let mut images = [None; 4];
    let mut code_hash = [0u8; 64];
    let mut log = EventLogWriter::new(&mut handoff.event_log)?;
    for (slot, entry) in images.iter_mut().zip(manifest.images()) {
        let Some(kind) = entry.kind() else { continue };
        let (address, size) = (entry.load_address.get(), entry.size.get());
        let bytes = memory.read(address, size).ok_or(Stage1Error::ImageUnreadable { kind })?;
        let (sha256, sha512) = hash(bytes, kind == ImageKind::SecureImage, memory.sha256_blocks());
        if let Some(sha512) = sha512 {
            code_hash = sha512;
        }
        let matches = sha256 == entry.sha256;
        let checked_here = kind == ImageKind::SecureImage || !secure_world;
        if checked_here && !matches {
            return Err(Stage1Error::DigestMismatch {
                kind,
                name: Name(entry.name),
                address,
                expected: Short(entry.sha256),
                measured: Short(sha256),
            });
        }
        // The event log records what memory holds, matching or not: stage 2 compares.
        log.measure_image(entry.name(), &sha256)?;
        *slot = Some(Measurement { kind, name: Name(entry.name), address, size, sha256, matches });
    }
    let log_length = log.len();
    let mut verdict = Verdict {
        secure_world,
        security_version: manifest.header.security_version.get(),
        slot,
        sequence,
        images,
        handoff_written: false,
    };
    let Some(secure) = manifest.image(ImageKind::SecureImage) else {
        return Ok(verdict);
    };

    // DICE layer 0 -> 1 (docs/trusted-boot.md, "DICE").
    let uds = Zeroizing::new(provisioning.uds);
    let mut descriptor = [0u8; 64];
    let security_version = u64::from(secure.security_version.get());
    let descriptor_length =
        dice::config_descriptor(secure.name(), security_version, security_version, &mut descriptor)?;
    let inputs = Inputs {
        code_hash,
        config: Config::Descriptor(&descriptor[..descriptor_length]),
        authority_hash: Sha512::digest(platform_key).into(),
        mode: Mode::Normal,
        hidden: [0; 64],
    };
    let cdis = dice::derive_cdis(&uds, &inputs);
    let device = dice::device_identity_key(&uds);
    let layer1 = dice::key_pair_from_cdi(&cdis.attest);
    let certificate_length = dice::certificate(&device, &layer1.verifying_key(), &inputs, &mut handoff.certificate)?;
    debug_assert!(certificate_length <= HANDOFF_CERT_MAX && log_length <= HANDOFF_LOG_MAX);
    handoff.secure_image_sha256 = secure.sha256;
    handoff.cdi_attest = cdis.attest;
    handoff.cdi_seal = cdis.seal;
    handoff.device_public_key = device.verifying_key().to_bytes();
    handoff.platform_public_key = platform_key;
    handoff.monitor_sha256 = monitor_sha256;
    handoff.certificate_length = certificate_length as u32;
    handoff.event_log_length = log_length as u32;
    handoff.manifest.copy_from_slice(manifest.as_bytes());
    handoff.version = HANDOFF_VERSION;
    handoff.magic = HANDOFF_MAGIC;
    verdict.handoff_written = true;
    Ok(verdict)
}

#[cfg(test)]
mod tests;
