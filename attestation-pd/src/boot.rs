//! Trusted boot stage 2 (docs/trusted-boot.md): whether Linux may run.
//!
//! The monitor (stage 1) verified the manifest's signature and the secure image, and *measured*
//! Linux's kernel Image, DTB and initramfs into the event log without judging them. attestation-pd
//! judges: each of the three must be named by the manifest the monitor verified, measured exactly
//! once into PCR 0 under that name, and its measurement must be the manifest's digest. Only then
//! does it send the monitor `go`; otherwise Linux's cores stay parked, and the log says why.
//!
//! Everything is read from the handoff (secure RAM that only the monitor wrote and only this PD
//! maps), but parsed as if hostile all the same: a corrupted page is a refusal, never a panic.

use tzmk_interface::attestation::{BootHandoff, HANDOFF_LOG_MAX, HANDOFF_MAGIC, HANDOFF_VERSION};
use tzmk_trust::eventlog::{EventLog, EventLogError, EV_POST_CODE, PCR_BOOT};
use tzmk_trust::manifest::{ImageKind, Manifest, ManifestError};

/// The images Linux boots from, every one of which must check out.
pub const LINUX_IMAGES: [ImageKind; 3] = [ImageKind::LinuxKernel, ImageKind::LinuxDtb, ImageKind::LinuxInitramfs];

/// Why Linux may not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No handoff, or one of another magic or version: stage 1 did not run.
    NoHandoff,
    /// The handoff's manifest does not parse (the monitor verified it: a corrupted page).
    Manifest(ManifestError),
    /// The event log length is beyond its room.
    LogLength { length: u32 },
    /// The event log does not parse.
    EventLog(EventLogError),
    /// The manifest names no image of this kind: nothing to check it against.
    NotInManifest(ImageKind),
    /// The image was not measured (no PCR 0 EV_POST_CODE event under its manifest name).
    NotMeasured(ImageKind),
    /// The image was measured more than once.
    MeasuredTwice(ImageKind),
    /// The measurement is not the manifest's digest: the image in memory is not the one signed.
    Mismatch(ImageKind),
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::NoHandoff => f.write_str("the monitor left no boot handoff: nothing was verified or measured"),
            Refusal::Manifest(e) => write!(f, "the handoff's manifest: {e}"),
            Refusal::LogLength { length } => {
                write!(f, "the handoff's event log is {length} bytes, more than its {HANDOFF_LOG_MAX}")
            }
            Refusal::EventLog(e) => write!(f, "the handoff's event log: {e}"),
            Refusal::NotInManifest(kind) => write!(f, "the manifest names no Linux {}", kind.label()),
            Refusal::NotMeasured(kind) => write!(f, "Linux's {} was not measured", kind.label()),
            Refusal::MeasuredTwice(kind) => write!(f, "Linux's {} was measured more than once", kind.label()),
            Refusal::Mismatch(kind) => write!(
                f,
                "Linux's {} in memory is not the signed one (its measurement differs from the manifest's digest)",
                kind.label()
            ),
        }
    }
}

/// The handoff, if it is one of this version.
pub fn valid_handoff(handoff: &BootHandoff) -> bool {
    handoff.magic == HANDOFF_MAGIC && handoff.version == HANDOFF_VERSION
}

/// Stage 2's verdict on the handoff: `Ok` when Linux's kernel, DTB and initramfs are each the
/// signed one.
pub fn check_linux(handoff: &BootHandoff) -> Result<(), Refusal> {
    if !valid_handoff(handoff) {
        return Err(Refusal::NoHandoff);
    }
    let manifest = Manifest::parse(&handoff.manifest).map_err(Refusal::Manifest)?;
    let length = handoff.event_log_length;
    let log_bytes = handoff.event_log.get(..length as usize).ok_or(Refusal::LogLength { length })?;
    let log = EventLog::parse(log_bytes).map_err(Refusal::EventLog)?;
    for kind in LINUX_IMAGES {
        let entry = manifest.image(kind).ok_or(Refusal::NotInManifest(kind))?;
        let name = entry.name().as_bytes();
        let mut measured = log.events().filter(|e| e.pcr == PCR_BOOT && e.event_type == EV_POST_CODE && e.data == name);
        let event = measured.next().ok_or(Refusal::NotMeasured(kind))?;
        if measured.next().is_some() {
            return Err(Refusal::MeasuredTwice(kind));
        }
        if event.digest != entry.sha256 {
            return Err(Refusal::Mismatch(kind));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use tzmk_interface::attestation::HANDOFF_MANIFEST_SIZE;
    use tzmk_trust::eventlog::EventLogWriter;
    use tzmk_trust::manifest::{ManifestBuilder, MANIFEST_SIZE};
    use tzmk_trust::SigningKey;
    use zerocopy::{FromZeros, IntoBytes};

    const KERNEL: &[u8] = b"an arm64 Image";
    const DTB: &[u8] = b"a device tree";
    const INITRAMFS: &[u8] = b"a cpio archive";

    /// A handoff as stage 1 leaves it: the manifest of the secure image and Linux's three, and
    /// a log of what memory held (`measured`: kernel, DTB, initramfs).
    fn handoff(measured: [&[u8]; 3]) -> BootHandoff {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut builder = ManifestBuilder::new(3);
        builder.image(ImageKind::SecureImage, "loader.img", 3, 0x7000_0000, b"seL4 and its PDs").unwrap();
        builder.image(ImageKind::LinuxKernel, "image", 3, 0xc020_0000, KERNEL).unwrap();
        builder.image(ImageKind::LinuxDtb, "tzmk.dtb", 3, 0xc000_0000, DTB).unwrap();
        builder.image(ImageKind::LinuxInitramfs, "initramfs.cpio", 3, 0xc800_0000, INITRAMFS).unwrap();
        let manifest = builder.sign(&key).unwrap();
        let mut h = BootHandoff::new_zeroed();
        (h.magic, h.version) = (HANDOFF_MAGIC, HANDOFF_VERSION);
        h.manifest.copy_from_slice(manifest.as_bytes());
        let mut writer = EventLogWriter::new(&mut h.event_log).unwrap();
        writer.measure_image("loader.img", &Sha256::digest(b"seL4 and its PDs").into()).unwrap();
        for (name, bytes) in ["image", "tzmk.dtb", "initramfs.cpio"].into_iter().zip(measured) {
            writer.measure_image(name, &Sha256::digest(bytes).into()).unwrap();
        }
        h.event_log_length = writer.len() as u32;
        h
    }

    #[test]
    fn the_manifest_sizes_agree() {
        assert_eq!(HANDOFF_MANIFEST_SIZE, MANIFEST_SIZE);
    }

    #[test]
    fn linux_runs_only_as_signed() {
        assert_eq!(check_linux(&handoff([KERNEL, DTB, INITRAMFS])), Ok(()));
        assert_eq!(
            check_linux(&handoff([b"tampered", DTB, INITRAMFS])),
            Err(Refusal::Mismatch(ImageKind::LinuxKernel))
        );
        assert_eq!(check_linux(&handoff([KERNEL, b"other", INITRAMFS])), Err(Refusal::Mismatch(ImageKind::LinuxDtb)));
        assert_eq!(check_linux(&handoff([KERNEL, DTB, b"more"])), Err(Refusal::Mismatch(ImageKind::LinuxInitramfs)));
        let text = Refusal::Mismatch(ImageKind::LinuxKernel).to_string();
        assert!(text.contains("Linux's kernel in memory is not the signed one"), "{text}");
    }

    #[test]
    fn a_broken_handoff_is_a_refusal() {
        assert_eq!(check_linux(&BootHandoff::new_zeroed()), Err(Refusal::NoHandoff));
        let mut old = handoff([KERNEL, DTB, INITRAMFS]);
        old.version = 1;
        assert_eq!(check_linux(&old), Err(Refusal::NoHandoff));
        let mut long = handoff([KERNEL, DTB, INITRAMFS]);
        long.event_log_length = u32::MAX;
        assert_eq!(check_linux(&long), Err(Refusal::LogLength { length: u32::MAX }));
        let mut cut = handoff([KERNEL, DTB, INITRAMFS]);
        cut.event_log_length -= 1;
        assert!(matches!(check_linux(&cut), Err(Refusal::EventLog(_))));
        let mut garbled = handoff([KERNEL, DTB, INITRAMFS]);
        garbled.manifest[0] ^= 1;
        assert!(matches!(check_linux(&garbled), Err(Refusal::Manifest(_))));
    }

    #[test]
    fn every_image_must_be_measured_once() {
        // A log of the secure image alone.
        let mut h = handoff([KERNEL, DTB, INITRAMFS]);
        let mut writer = EventLogWriter::new(&mut h.event_log).unwrap();
        writer.measure_image("loader.img", &[0; 32]).unwrap();
        h.event_log_length = writer.len() as u32;
        assert_eq!(check_linux(&h), Err(Refusal::NotMeasured(ImageKind::LinuxKernel)));
        // The kernel twice.
        let mut h = handoff([KERNEL, DTB, INITRAMFS]);
        let digest: [u8; 32] = Sha256::digest(KERNEL).into();
        let mut log = h.event_log;
        let mut writer = EventLogWriter::new(&mut log).unwrap();
        for (name, bytes) in [("image", KERNEL), ("image", KERNEL), ("tzmk.dtb", DTB), ("initramfs.cpio", INITRAMFS)] {
            let d: [u8; 32] = Sha256::digest(bytes).into();
            writer.measure_image(name, if name == "image" { &digest } else { &d }).unwrap();
        }
        h.event_log_length = writer.len() as u32;
        h.event_log = log;
        assert_eq!(check_linux(&h), Err(Refusal::MeasuredTwice(ImageKind::LinuxKernel)));
    }
}
