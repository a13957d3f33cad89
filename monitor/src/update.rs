//! Signed updates of the security assets (docs/trusted-boot.md, "Signed updates"): what the
//! monitor decides when attestation-pd hands it a manifest (`UPDATE_MANIFEST`), and how it writes
//! it to secure flash.
//!
//! The candidate is an allegation from the normal world (attestation-pd only relays it): it must
//! parse, verify with the provisioning block's platform key, carry a security version not below the
//! stored one (the larger of the floor and the counter), name images that stage 1 would accept at
//! the next boot, and name the same kinds as the manifest in flash (an update replaces reference
//! values; it does not turn a boot with a secure world into one without). Only then is flash
//! written: the manifest's sector erased and programmed, then one counter slot appended. Nothing is
//! written for a refused candidate.

use crate::counter::{self, CounterError};
use crate::flash::{Cfi01, FlashBus, FlashError};
use crate::trusted_boot::{check_images, Layout, Stage1Error};
use tzmk_interface::update::{self, UpdateOutcome};
use tzmk_trust::manifest::{ImageKind, Manifest, ManifestError, MANIFEST_SIZE};
use zerocopy::IntoBytes;

/// What the candidate is checked against.
#[derive(Debug)]
pub struct Stored<'a> {
    /// The provisioning block's platform public key.
    pub platform_key: [u8; 32],
    /// The provisioning block's floor.
    pub floor: u32,
    /// The counter's value.
    pub counter: u32,
    /// The manifest in flash now (verified at boot or by an earlier update).
    pub current: &'a Manifest,
}

fn refused_manifest(e: ManifestError) -> UpdateOutcome {
    match e {
        ManifestError::Rollback { manifest, stored } => UpdateOutcome::Rollback { found: manifest, stored },
        ManifestError::WrongKeyId | ManifestError::BadSignature | ManifestError::BadPublicKey => {
            UpdateOutcome::NotSigned { code: e.code() }
        }
        e => UpdateOutcome::Malformed { code: e.code() },
    }
}

fn refused_images(e: Stage1Error) -> UpdateOutcome {
    let (kind, reason) = match e {
        Stage1Error::MissingImage { kind } => (kind, update::IMAGE_MISSING),
        Stage1Error::WrongLoadAddress { kind, .. } => (kind, update::IMAGE_WRONG_ADDRESS),
        Stage1Error::OutsideWindow { kind, .. } => (kind, update::IMAGE_OUTSIDE_WINDOW),
        // check_images returns no other error.
        _ => (ImageKind::LinuxKernel, 0),
    };
    UpdateOutcome::Images { kind: kind as u32, reason }
}

/// Checks a candidate; the parsed manifest when it may replace `stored.current`.
pub fn check<'m>(candidate: &'m [u8], stored: &Stored, layout: &Layout) -> Result<&'m Manifest, UpdateOutcome> {
    let manifest = Manifest::parse(candidate).map_err(refused_manifest)?;
    manifest.verify(&stored.platform_key).map_err(refused_manifest)?;
    manifest.check_security_version(stored.floor.max(stored.counter)).map_err(refused_manifest)?;
    check_images(manifest, layout).map_err(refused_images)?;
    for kind in ImageKind::ALL {
        if manifest.image(kind).is_some() != stored.current.image(kind).is_some() {
            return Err(UpdateOutcome::Images { kind: kind as u32, reason: update::IMAGE_KINDS_DIFFER });
        }
    }
    Ok(manifest)
}

fn flash_failed(e: FlashError) -> UpdateOutcome {
    UpdateOutcome::Flash { code: e.code(), offset: e.offset() as u32 }
}

/// Writes a checked manifest into the manifest's sector at `manifest_at` (unless it is already
/// there, byte for byte) and raises the counter at `counter_at` to its security version.
/// `previous` is the counter before. The order (manifest, then counter) means a power cut leaves
/// either the old counter with the old or new manifest (both boot: the new one is not below it),
/// or the new counter with the new manifest; never a counter above the manifest in flash, unless
/// the cut falls inside the manifest's own rewrite (docs/trusted-boot.md says what then).
pub fn apply<B: FlashBus>(
    flash: &mut Cfi01<B>,
    manifest_at: u64,
    counter_at: u64,
    manifest: &Manifest,
    previous: u32,
) -> UpdateOutcome {
    let bytes = manifest.as_bytes();
    let mut in_flash = [0u8; MANIFEST_SIZE];
    if let Err(e) = flash.read_bytes(manifest_at, &mut in_flash) {
        return flash_failed(e);
    }
    if in_flash[..] != bytes[..] {
        if let Err(e) = flash.erase(manifest_at).and_then(|()| flash.program_bytes(manifest_at, bytes)) {
            return flash_failed(e);
        }
    }
    match counter::raise(flash, counter_at, manifest.header.security_version.get()) {
        Ok(counter) => UpdateOutcome::Accepted { counter: counter.value, previous },
        Err(CounterError::Full) => UpdateOutcome::CounterFull,
        Err(CounterError::Flash(e)) => flash_failed(e),
        Err(CounterError::NotRaised { .. }) => UpdateOutcome::Flash { code: 0, offset: counter_at as u32 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::scan;
    use crate::flash::fake::FakeFlash;
    use crate::trusted_boot::Window;
    use tzmk_trust::manifest::ManifestBuilder;
    use tzmk_trust::SigningKey;

    const SECTOR: u64 = 0x1000;
    const MANIFEST_AT: u64 = SECTOR;
    const COUNTER_AT: u64 = 2 * SECTOR;
    const KERNEL: u64 = 0xc020_0000;
    const DTB: u64 = 0xc800_0000;
    const SECURE: u64 = 0x7000_0000;

    const LAYOUT: Layout = Layout {
        monitor: Window { base: 0, end: 0x1000 },
        provisioning: 0x800,
        manifest: MANIFEST_AT,
        windows: [
            Window { base: SECURE, end: 0xc000_0000 },
            Window { base: KERNEL, end: DTB },
            Window { base: DTB, end: 0xc840_0000 },
            Window { base: 0xc840_0000, end: 0xfe00_0000 },
        ],
    };

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[0x42; 32])
    }

    fn manifest_with(version: u32, key: &SigningKey, kernel_at: u64, secure: bool) -> Vec<u8> {
        let mut builder = ManifestBuilder::new(version);
        if secure {
            builder.image(ImageKind::SecureImage, "loader.img", version, SECURE, b"loader").unwrap();
        }
        builder
            .image(ImageKind::LinuxKernel, "image", version, kernel_at, b"kernel")
            .unwrap()
            .image(ImageKind::LinuxDtb, "tzmk-full.dtb", version, DTB, b"dtb")
            .unwrap();
        builder.sign(key).unwrap().as_bytes().to_vec()
    }

    fn manifest(version: u32) -> Vec<u8> {
        manifest_with(version, &key(), KERNEL, true)
    }

    fn flash() -> Cfi01<FakeFlash> {
        Cfi01::new(
            FakeFlash::new(3 * SECTOR as usize, SECTOR as usize),
            SECTOR,
            [(MANIFEST_AT, MANIFEST_AT + SECTOR), (COUNTER_AT, COUNTER_AT + SECTOR)],
        )
    }

    fn stored(current: &Manifest, counter: u32) -> Stored<'_> {
        Stored { platform_key: key().verifying_key().to_bytes(), floor: 1, counter, current }
    }

    #[test]
    fn a_newer_manifest_is_written_and_raises_the_counter() {
        let current_bytes = manifest(1);
        let current = Manifest::parse(&current_bytes).unwrap();
        let candidate_bytes = manifest(2);
        let candidate = check(&candidate_bytes, &stored(current, 1), &LAYOUT).unwrap();
        let mut flash = flash();
        let outcome = apply(&mut flash, MANIFEST_AT, COUNTER_AT, candidate, 1);
        assert_eq!(outcome, UpdateOutcome::Accepted { counter: 2, previous: 1 });
        let mut back = [0u8; MANIFEST_SIZE];
        flash.read_bytes(MANIFEST_AT, &mut back).unwrap();
        assert_eq!(back[..], candidate_bytes[..]);
        assert_eq!(scan(&mut flash, COUNTER_AT).unwrap().value, 2);
        // One erase, the manifest's 168 words and one counter slot's 4.
        assert_eq!((flash.bus().erased, flash.bus().programmed), (1, MANIFEST_SIZE / 4 + 4));
        // The same manifest again: accepted, nothing written.
        let outcome = apply(&mut flash, MANIFEST_AT, COUNTER_AT, candidate, 2);
        assert_eq!(outcome, UpdateOutcome::Accepted { counter: 2, previous: 2 });
        assert_eq!((flash.bus().erased, flash.bus().programmed), (1, MANIFEST_SIZE / 4 + 4));
    }

    #[test]
    fn refusals_name_their_reason() {
        let current_bytes = manifest(2);
        let current = Manifest::parse(&current_bytes).unwrap();
        let stored = stored(current, 2);
        let other_key = SigningKey::from_bytes(&[0x43; 32]);
        let mut garbled = manifest(3);
        garbled[0] ^= 1;
        let mut bad_signature = manifest(3);
        *bad_signature.last_mut().unwrap() ^= 1;
        let cases: [(Vec<u8>, UpdateOutcome, &str); 7] = [
            (
                manifest(1),
                UpdateOutcome::Rollback { found: 1, stored: 2 },
                "refused: security version 1 is below the stored 2",
            ),
            (
                manifest_with(3, &other_key, KERNEL, true),
                UpdateOutcome::NotSigned { code: 13 },
                "refused: the manifest names another key than the platform key",
            ),
            (
                bad_signature,
                UpdateOutcome::NotSigned { code: 15 },
                "refused: the signature does not verify with the platform key",
            ),
            (garbled, UpdateOutcome::Malformed { code: 2 }, "refused: the manifest is malformed (manifest error 2)"),
            (
                manifest(3)[..100].to_vec(),
                UpdateOutcome::Malformed { code: 1 },
                "refused: the manifest has the wrong length",
            ),
            (
                manifest_with(3, &key(), KERNEL + 0x20_0000, true),
                UpdateOutcome::Images { kind: 2, reason: update::IMAGE_WRONG_ADDRESS },
                "refused: the Linux kernel is not at the platform's load address",
            ),
            (
                manifest_with(3, &key(), KERNEL, false),
                UpdateOutcome::Images { kind: 1, reason: update::IMAGE_KINDS_DIFFER },
                "refused: the secure image is named by one of the running and the new manifest only",
            ),
        ];
        for (candidate, outcome, text) in cases {
            assert_eq!(check(&candidate, &stored, &LAYOUT).unwrap_err(), outcome, "{text}");
            assert_eq!(outcome.to_string(), text);
        }
        // The floor counts when it is above the counter.
        let floor = Stored { floor: 4, ..stored };
        assert_eq!(check(&manifest(3), &floor, &LAYOUT).unwrap_err(), UpdateOutcome::Rollback { found: 3, stored: 4 });
    }

    #[test]
    fn a_power_cut_during_the_counter_append_leaves_a_bootable_pair() {
        let candidate_bytes = manifest(2);
        let candidate = Manifest::parse(&candidate_bytes).unwrap();
        for cut in 0..4 {
            let mut flash = flash();
            flash.bus_mut().power_cut_after = Some(MANIFEST_SIZE / 4 + cut);
            let _ = apply(&mut flash, MANIFEST_AT, COUNTER_AT, candidate, 1);
            flash.bus_mut().power_on();
            let counter = scan(&mut flash, COUNTER_AT).unwrap().value;
            let mut back = [0u8; MANIFEST_SIZE];
            flash.read_bytes(MANIFEST_AT, &mut back).unwrap();
            let in_flash = Manifest::parse(&back).unwrap();
            assert!(in_flash.header.security_version.get() >= counter, "cut {cut}: the manifest in flash still boots");
        }
    }
}
