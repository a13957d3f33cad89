//! Signed updates of the security assets (docs/trusted-boot.md, "Signed updates"): what the
//! monitor decides when attestation-pd hands it a manifest (`UPDATE_MANIFEST`), and how it writes
//! it to secure flash.
//!
//! The candidate is an allegation from the normal world (attestation-pd only relays it): it must
//! parse, verify with the provisioning block's platform key, carry a security version not below the
//! stored one (the larger of the floor and the counter), name images that stage 1 would accept at
//! the next boot, and name the same kinds as the manifest in flash (an update replaces reference
//! values; it does not turn a boot with a secure world into one without). Nothing is written for a
//! refused candidate.
//!
//! Atomic (docs/trusted-boot.md, "Atomic updates"): an accepted manifest goes into the slot that
//! is not the stored manifest's (erase, the manifest's words, then its commit record, whose last
//! word commits it), then one counter slot is appended. At every instant a power cut leaves the
//! stored slot committed and untouched, so stage 1 boots the old manifest or, once the commit
//! word is in, the new one; the counter only reaches the new version after that.
//!
//! Bounded ([`Updater`]): a candidate byte-identical to the stored manifest or to the last refused
//! one gets its answer again without being parsed or verified; and every accepted write appends a
//! counter slot, at most [`SAME_VERSION_WRITES`] of them per security version, so the sectors'
//! erases are bounded by the versions the platform key signs (docs/trusted-boot.md, "Flash wear").

use crate::counter::{self, CounterError};
use crate::flash::{Cfi01, FlashBus, FlashError, FlashLock};
use crate::trusted_boot::{check_images, Layout, Stage1Error};
use tzmk_interface::update::{self, UpdateOutcome};
use tzmk_trust::manifest::{Header, ImageKind, Manifest, FORMAT_VERSION, MAGIC, MANIFEST_SIZE};
use tzmk_trust::slot::{record_words, RECORD_OFFSET};
use zerocopy::{FromBytes, IntoBytes};

/// Accepted manifest writes per security version (counter slots holding that value, the boot
/// that first reaches it included). Past it only a higher security version is accepted.
pub const SAME_VERSION_WRITES: u32 = 8;

/// Where an update writes: offsets into the flash bank of the manifest's slots A and B and of the
/// counter's sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sectors {
    /// Slot A's and slot B's sectors.
    pub slots: [u64; 2],
    /// The counter's sector.
    pub counter: u64,
}

/// What the candidate is checked against.
#[derive(Debug)]
pub struct Stored {
    /// The provisioning block's platform public key.
    pub platform_key: [u8; 32],
    /// The provisioning block's floor.
    pub floor: u32,
    /// The counter's value.
    pub counter: u32,
    /// Which kinds the manifest in flash now names (verified at boot or by an earlier update).
    pub kinds: Kinds,
}

/// For each of [`ImageKind::ALL`], whether a manifest names an image of that kind.
pub type Kinds = [bool; ImageKind::ALL.len()];

/// The kinds `manifest` names.
pub fn kinds_of(manifest: &Manifest) -> Kinds {
    ImageKind::ALL.map(|kind| manifest.image(kind).is_some())
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

/// Checks a candidate; the parsed manifest when it may replace `stored.current`. The cheap
/// checks of what the candidate claims ([`check_claims`]) come before the signature, the one
/// expensive step (an Ed25519 verification, most of an update's time at EL3), so that a
/// candidate refused for any other reason costs the secure core next to nothing; nothing is
/// accepted before it verifies.
pub fn check<'m>(candidate: &'m [u8], stored: &Stored, layout: &Layout) -> Result<&'m Manifest, UpdateOutcome> {
    let manifest = check_claims(candidate, stored, layout)?;
    manifest.verify(&stored.platform_key).map_err(UpdateOutcome::from)?;
    Ok(manifest)
}

/// What [`check`] checks before the signature: the format, the security version against the
/// stored one, the images against the platform and the kinds against the stored manifest.
pub fn check_claims<'m>(candidate: &'m [u8], stored: &Stored, layout: &Layout) -> Result<&'m Manifest, UpdateOutcome> {
    let manifest = Manifest::parse(candidate).map_err(UpdateOutcome::from)?;
    manifest.check_security_version(stored.floor.max(stored.counter)).map_err(UpdateOutcome::from)?;
    check_images(manifest, layout).map_err(refused_images)?;
    for (kind, stored_has) in ImageKind::ALL.into_iter().zip(stored.kinds) {
        if manifest.image(kind).is_some() != stored_has {
            return Err(UpdateOutcome::Images { kind: kind as u32, reason: update::IMAGE_KINDS_DIFFER });
        }
    }
    Ok(manifest)
}

/// Whether flash may take another write of a manifest of `version` (read from the counter's
/// log, no write): a full log, or [`SAME_VERSION_WRITES`] writes of the counter's own version
/// already, refuse it.
fn writable<B: FlashBus>(flash: &mut Cfi01<B>, sectors: &Sectors, version: u32) -> Result<(), UpdateOutcome> {
    let log = counter::scan(flash, sectors.counter).map_err(flash_failed)?;
    if log.next.is_none() {
        return Err(UpdateOutcome::CounterFull);
    }
    if version == log.value && log.at_value >= SAME_VERSION_WRITES {
        return Err(UpdateOutcome::RewriteLimit { version, limit: SAME_VERSION_WRITES });
    }
    Ok(())
}

fn flash_failed(e: FlashError) -> UpdateOutcome {
    UpdateOutcome::Flash { code: e.code(), offset: e.offset() as u32 }
}

/// Writes a checked manifest into slot `target` (erased first) with the commit record of
/// `sequence`, then records the write in the counter's log (raising the counter to the
/// manifest's security version when it is above). `previous` is the counter before. Refused
/// before anything is written: a full counter log, or a security version already written
/// [`SAME_VERSION_WRITES`] times.
pub fn apply<B: FlashBus>(
    flash: &mut Cfi01<B>,
    sectors: &Sectors,
    target: usize,
    sequence: u32,
    manifest: &Manifest,
    previous: u32,
) -> UpdateOutcome {
    let version = manifest.header.security_version.get();
    if let Err(outcome) = writable(flash, sectors, version) {
        return outcome;
    }
    let at = sectors.slots[target % 2];
    let record = at + RECORD_OFFSET as u64;
    let written = flash.erase(at).and_then(|()| flash.program_bytes(at, manifest.as_bytes())).and_then(|()| {
        // The commit word last: until it is in, the slot does not count.
        record_words(sequence)
            .into_iter()
            .enumerate()
            .try_for_each(|(index, word)| flash.program(record + 4 * index as u64, word))
    });
    if let Err(e) = written {
        return flash_failed(e);
    }
    match counter::record(flash, sectors.counter, version) {
        Ok(counter) => UpdateOutcome::Accepted { counter: counter.value, previous },
        Err(CounterError::Full) => UpdateOutcome::CounterFull,
        Err(CounterError::Flash(e)) => flash_failed(e),
        Err(CounterError::NotRaised { .. }) => UpdateOutcome::Flash { code: 0, offset: sectors.counter as u32 },
    }
}

/// After a good stage 1 that booted a manifest of `security_version` with the counter at
/// `counter`: raises the counter when the manifest is above it (a manifest written offline, or
/// an update whose counter append a power cut stopped). Returns the counter now.
pub fn after_boot<B: FlashBus>(
    flash: &mut Cfi01<B>,
    counter_at: u64,
    counter: u32,
    security_version: u32,
) -> Result<u32, CounterError> {
    if security_version > counter {
        return Ok(counter::raise(flash, counter_at, security_version)?.value);
    }
    Ok(counter)
}

/// What stage 1 booted, for [`Updater::new`].
#[derive(Debug, Clone, Copy)]
pub struct Booted {
    /// The manifest's bytes.
    pub manifest: [u8; MANIFEST_SIZE],
    /// Its slot (0 = A, 1 = B) and the slot's commit sequence.
    pub slot: usize,
    /// The slot's commit sequence.
    pub sequence: u32,
    /// The provisioning block's platform key and floor.
    pub platform_key: [u8; 32],
    /// The provisioning block's floor.
    pub floor: u32,
    /// The counter after stage 1 (raised to the manifest's version when it was below).
    pub counter: u32,
}

/// A manifest's bytes, 8-byte aligned so that [`same_bytes`] compares them a word at a time (the
/// monitor's target has strict alignment: an unaligned `u64` is read a byte at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct ManifestBytes(pub [u8; MANIFEST_SIZE]);

/// The monitor's update state between `UPDATE_MANIFEST` calls: the stored manifest (booted, or
/// pending after an accepted update), its slot, and the last refused candidate with its answer.
#[derive(Debug)]
pub struct Updater {
    stored: Booted,
    refused: Option<(ManifestBytes, UpdateOutcome)>,
    /// The stored manifest's bytes, aligned for the compare.
    stored_bytes: ManifestBytes,
    /// Which kinds the stored manifest names (`None`: it does not parse; no update then).
    stored_kinds: Option<Kinds>,
    verifications: u32,
}

impl Updater {
    /// The state after a good stage 1.
    pub fn new(booted: Booted) -> Self {
        let stored_kinds = Manifest::parse(&booted.manifest).ok().map(kinds_of);
        Self {
            stored: booted,
            refused: None,
            stored_bytes: ManifestBytes(booted.manifest),
            stored_kinds,
            verifications: 0,
        }
    }

    /// The stored manifest (booted, or pending after an accepted update) and its slot.
    pub fn stored(&self) -> &Booted {
        &self.stored
    }

    /// Candidates parsed and verified so far (the storm test counts them).
    pub fn verifications(&self) -> u32 {
        self.verifications
    }

    /// Answers one `UPDATE_MANIFEST` for `candidate` (already copied out of shared memory): the
    /// stored manifest again is accepted and the last refused one refused again, both without
    /// parsing, verifying or touching flash; anything else is checked and, when accepted,
    /// written while `lock` is held (no update starts once a reset closed it).
    pub fn request<B: FlashBus>(
        &mut self,
        candidate: &[u8],
        flash: &mut Cfi01<B>,
        sectors: &Sectors,
        layout: &Layout,
        lock: &FlashLock,
    ) -> UpdateOutcome {
        let counter = self.stored.counter;
        if same_bytes(candidate, &self.stored_bytes.0) {
            return UpdateOutcome::Accepted { counter, previous: counter };
        }
        if let Some((bytes, outcome)) = &self.refused {
            if same_bytes(candidate, &bytes.0) {
                return *outcome;
            }
        }
        // A rollback is read off the header, before any parse (the cheapest refusal of all).
        if let Some(outcome) = header_rollback(candidate, self.stored.floor.max(counter)) {
            self.remember(candidate, outcome);
            return outcome;
        }
        let Some(kinds) = self.stored_kinds else { return UpdateOutcome::Unavailable };
        let stored = Stored { platform_key: self.stored.platform_key, floor: self.stored.floor, counter, kinds };
        // The claims, then whether flash may take it, then (only then) the signature.
        let checked = check_claims(candidate, &stored, layout).and_then(|manifest| {
            writable(flash, sectors, manifest.header.security_version.get())?;
            self.verifications += 1;
            manifest.verify(&stored.platform_key).map_err(UpdateOutcome::from)?;
            Ok(manifest)
        });
        let outcome = match checked {
            Err(outcome) => outcome,
            Ok(manifest) => {
                let Some(hold) = lock.try_hold() else { return UpdateOutcome::Unavailable };
                let (target, sequence) = (1 - self.stored.slot, self.stored.sequence.wrapping_add(1));
                let outcome = apply(flash, sectors, target, sequence, manifest, counter);
                drop(hold);
                if let UpdateOutcome::Accepted { counter, .. } = outcome {
                    self.stored.manifest.copy_from_slice(candidate);
                    self.stored_bytes.0.copy_from_slice(candidate);
                    self.stored_kinds = Some(kinds_of(manifest));
                    (self.stored.slot, self.stored.sequence, self.stored.counter) = (target, sequence, counter);
                    self.refused = None;
                }
                outcome
            }
        };
        // A refusal that only a change of the stored state can undo is remembered (a flash
        // failure is not: it may pass next time).
        let lasting = !matches!(
            outcome,
            UpdateOutcome::Accepted { .. } | UpdateOutcome::Flash { .. } | UpdateOutcome::Unavailable
        );
        if lasting {
            self.remember(candidate, outcome);
        }
        outcome
    }

    /// Remembers a lasting refusal of `candidate` (a manifest's size only).
    fn remember(&mut self, candidate: &[u8], outcome: UpdateOutcome) {
        if let Ok(bytes) = <[u8; MANIFEST_SIZE]>::try_from(candidate) {
            self.refused = Some((ManifestBytes(bytes), outcome));
        }
    }
}

/// Whether two byte strings are equal, compared 8 bytes at a time: the monitor's `memcmp`
/// (compiler_builtins, no FP/SIMD) compares a byte per iteration, ~6 instructions a byte, and a
/// 672-byte compare was most of a repeated request's EL3 time (docs/trusted-boot.md, "EL3
/// residency of an update request").
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_tail) = a.split_at(a.len() / 8 * 8);
    let (b_words, b_tail) = b.split_at(a_words.len());
    match (<[u64]>::ref_from_bytes(a_words), <[u64]>::ref_from_bytes(b_words)) {
        // Not `==` on the word slices: that is `memcmp` again. A manifest is 84 words.
        (Ok(x), Ok(y)) => x.iter().zip(y).all(|(p, q)| p == q) && a_tail == b_tail,
        // Either not 8-byte aligned: byte for byte.
        _ => a == b,
    }
}

/// The refusal of a candidate whose header (a manifest's size, magic and format version) claims
/// a security version below `stored`: the same answer [`check_claims`] gives it, without the
/// parse. `None` when the header says otherwise, or is no manifest's.
fn header_rollback(candidate: &[u8], stored: u32) -> Option<UpdateOutcome> {
    if candidate.len() != MANIFEST_SIZE {
        return None;
    }
    let (header, _) = Header::ref_from_prefix(candidate).ok()?;
    let found = header.security_version.get();
    (header.magic == MAGIC && header.version.get() == FORMAT_VERSION && found < stored)
        .then_some(UpdateOutcome::Rollback { found, stored })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::scan;
    use crate::flash::fake::FakeFlash;
    use crate::flash::Stats;
    use crate::trusted_boot::Window;
    use tzmk_trust::manifest::ManifestBuilder;
    use tzmk_trust::slot::{committed_sequence, SLOT_BYTES};
    use tzmk_trust::SigningKey;

    const SECTOR: u64 = 0x1000;
    const SECTORS: Sectors = Sectors { slots: [SECTOR, 2 * SECTOR], counter: 3 * SECTOR };
    const KERNEL: u64 = 0xc020_0000;
    const DTB: u64 = 0xc800_0000;
    const SECURE: u64 = 0x7000_0000;

    const LAYOUT: Layout = Layout {
        monitor: Window { base: 0, end: 0x1000 },
        provisioning: 0x800,
        manifests: SECTORS.slots,
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

    /// The same security version, another kernel: a second validly signed manifest.
    fn other_manifest(version: u32) -> Vec<u8> {
        let mut builder = ManifestBuilder::new(version);
        builder
            .image(ImageKind::SecureImage, "loader.img", version, SECURE, b"loader")
            .unwrap()
            .image(ImageKind::LinuxKernel, "image", version, KERNEL, b"another kernel")
            .unwrap()
            .image(ImageKind::LinuxDtb, "tzmk-full.dtb", version, DTB, b"dtb")
            .unwrap();
        builder.sign(&key()).unwrap().as_bytes().to_vec()
    }

    /// A flash as `tzmk flash` and a first boot leave it: `booted` in slot A (sequence 1), slot B
    /// erased, the counter at its security version.
    fn provisioned(booted: &[u8]) -> (Cfi01<FakeFlash>, Updater) {
        let mut flash = Cfi01::new(
            FakeFlash::new(4 * SECTOR as usize, SECTOR as usize),
            SECTOR,
            [(SECTOR, 2 * SECTOR), (2 * SECTOR, 3 * SECTOR), (3 * SECTOR, 4 * SECTOR)],
        );
        flash.program_bytes(SECTOR, booted).unwrap();
        flash.program_bytes(SECTOR + RECORD_OFFSET as u64, &tzmk_trust::slot::record_bytes(1)).unwrap();
        let version = Manifest::parse(booted).unwrap().header.security_version.get();
        let counter = after_boot(&mut flash, SECTORS.counter, 0, version).unwrap();
        let updater = Updater::new(Booted {
            manifest: booted.try_into().unwrap(),
            slot: 0,
            sequence: 1,
            platform_key: key().verifying_key().to_bytes(),
            floor: 1,
            counter,
        });
        (flash, updater)
    }

    fn slot(flash: &mut Cfi01<FakeFlash>, index: usize) -> (Vec<u8>, Option<u32>) {
        let mut bytes = [0u8; SLOT_BYTES];
        flash.read_bytes(SECTORS.slots[index], &mut bytes).unwrap();
        (bytes[..MANIFEST_SIZE].to_vec(), committed_sequence(&bytes[RECORD_OFFSET..]))
    }

    fn stored(current: &Manifest, counter: u32) -> Stored {
        Stored { platform_key: key().verifying_key().to_bytes(), floor: 1, counter, kinds: kinds_of(current) }
    }

    #[test]
    fn a_newer_manifest_goes_to_the_other_slot_and_commits_last() {
        let (v1, v2, v3) = (manifest(1), manifest(2), manifest(3));
        let (mut flash, mut updater) = provisioned(&v1);
        let before = flash.stats();
        let lock = FlashLock::new();
        assert_eq!(
            updater.request(&v2, &mut flash, &SECTORS, &LAYOUT, &lock),
            UpdateOutcome::Accepted { counter: 2, previous: 1 }
        );
        assert_eq!(slot(&mut flash, 1), (v2.clone(), Some(2)), "slot B: the new manifest, committed");
        assert_eq!(slot(&mut flash, 0), (v1.clone(), Some(1)), "slot A untouched");
        assert_eq!(scan(&mut flash, SECTORS.counter).unwrap().value, 2);
        // One erase; the manifest's 168 words, the record's 4, one counter slot's 4.
        let after = flash.stats();
        assert_eq!((after.erased - before.erased, after.programmed - before.programmed), (1, 168 + 4 + 4));
        assert!(!lock.is_held(), "the hold ends with the update");
        // The stored (pending) manifest again: accepted, nothing verified or written.
        assert_eq!(
            updater.request(&v2, &mut flash, &SECTORS, &LAYOUT, &lock),
            UpdateOutcome::Accepted { counter: 2, previous: 2 }
        );
        assert_eq!((flash.stats(), updater.verifications()), (after, 1));
        // The next one alternates back to slot A.
        assert!(updater.request(&v3, &mut flash, &SECTORS, &LAYOUT, &lock).is_accepted());
        assert_eq!(slot(&mut flash, 0), (v3, Some(3)));
        assert_eq!(slot(&mut flash, 1), (v2, Some(2)));
        assert_eq!((updater.stored().slot, updater.stored().sequence), (0, 3));
    }

    #[test]
    fn a_storm_of_the_same_candidates_is_answered_without_verifying_or_flash_work() {
        let (v2, v3) = (manifest(2), manifest(3));
        let (mut flash, mut updater) = provisioned(&v2);
        let lock = FlashLock::new();
        let mut bad_signature = manifest(3);
        *bad_signature.last_mut().unwrap() ^= 1;
        let refused = UpdateOutcome::NotSigned { code: 15 };
        let before = flash.stats();
        for round in 0..50 {
            assert_eq!(updater.request(&bad_signature, &mut flash, &SECTORS, &LAYOUT, &lock), refused, "{round}");
            let again = updater.request(&v2, &mut flash, &SECTORS, &LAYOUT, &lock);
            assert_eq!(again, UpdateOutcome::Accepted { counter: 2, previous: 2 }, "{round}");
        }
        assert_eq!(updater.verifications(), 1, "the refused candidate was verified once");
        assert_eq!(flash.stats(), before, "no flash work at all");
        // Another refused candidate replaces the remembered one; the first is verified again.
        let v1 = manifest(1);
        assert_eq!(
            updater.request(&v1, &mut flash, &SECTORS, &LAYOUT, &lock),
            UpdateOutcome::Rollback { found: 1, stored: 2 }
        );
        assert_eq!(updater.request(&bad_signature, &mut flash, &SECTORS, &LAYOUT, &lock), refused);
        // The rollback was refused before its signature: only the bad signature was verified again.
        assert_eq!(updater.verifications(), 2);
        // An accepted update forgets the refusal (it was judged against the old state).
        assert!(updater.request(&v3, &mut flash, &SECTORS, &LAYOUT, &lock).is_accepted());
        assert_eq!(updater.request(&bad_signature, &mut flash, &SECTORS, &LAYOUT, &lock), refused);
        assert_eq!(updater.verifications(), 4);
    }

    #[test]
    fn alternating_two_manifests_of_one_version_stops_at_the_bound() {
        let (first, second) = (manifest(3), other_manifest(3));
        let (mut flash, mut updater) = provisioned(&first);
        let lock = FlashLock::new();
        let start: Stats = flash.stats();
        // The boot's counter slot is the first write of version 3; then 7 rewrites.
        let mut accepted = 0;
        let outcome = loop {
            let candidate = if accepted % 2 == 0 { &second } else { &first };
            let outcome = updater.request(candidate, &mut flash, &SECTORS, &LAYOUT, &lock);
            if !outcome.is_accepted() {
                break outcome;
            }
            accepted += 1;
            assert!(accepted < 100, "never bounded");
        };
        assert_eq!(outcome, UpdateOutcome::RewriteLimit { version: 3, limit: SAME_VERSION_WRITES });
        assert_eq!(accepted, SAME_VERSION_WRITES - 1);
        assert_eq!(flash.stats().erased - start.erased, SAME_VERSION_WRITES - 1);
        // From now on the storm costs nothing, and the stored manifest is still answered.
        let stats = flash.stats();
        let verifications = updater.verifications();
        for candidate in [&first, &second].repeat(10) {
            let outcome = updater.request(candidate, &mut flash, &SECTORS, &LAYOUT, &lock);
            assert!(outcome.is_accepted() || outcome == UpdateOutcome::RewriteLimit { version: 3, limit: 8 });
        }
        assert_eq!((flash.stats(), updater.verifications()), (stats, verifications));
        // Nor does a third candidate of that version: the limit is read before the signature.
        let mut third = second.clone();
        *third.last_mut().unwrap() ^= 1;
        let outcome = updater.request(&third, &mut flash, &SECTORS, &LAYOUT, &lock);
        assert_eq!(outcome, UpdateOutcome::RewriteLimit { version: 3, limit: SAME_VERSION_WRITES });
        assert_eq!((flash.stats(), updater.verifications()), (stats, verifications));
        // A higher security version is accepted.
        let v4 = manifest(4);
        assert_eq!(
            updater.request(&v4, &mut flash, &SECTORS, &LAYOUT, &lock),
            UpdateOutcome::Accepted { counter: 4, previous: 3 }
        );
    }

    #[test]
    fn no_update_starts_once_a_reset_closed_the_flash() {
        let (mut flash, mut updater) = provisioned(&manifest(1));
        let lock = FlashLock::new();
        assert_eq!(lock.close(0, || 0, || {}), crate::flash::Closed::Idle);
        let before = flash.stats();
        assert_eq!(updater.request(&manifest(2), &mut flash, &SECTORS, &LAYOUT, &lock), UpdateOutcome::Unavailable);
        assert_eq!(flash.stats(), before);
        assert_eq!(updater.stored().counter, 1);
    }

    #[test]
    fn a_full_counter_log_refuses_before_anything_is_written() {
        let (mut flash, mut updater) = provisioned(&manifest(1));
        for value in 2..=(SECTOR / counter::SLOT_SIZE) as u32 {
            counter::raise(&mut flash, SECTORS.counter, value).unwrap();
        }
        let before = flash.stats();
        let lock = FlashLock::new();
        let full = (SECTOR / counter::SLOT_SIZE) as u32;
        let outcome = updater.request(&manifest(full + 1), &mut flash, &SECTORS, &LAYOUT, &lock);
        assert_eq!(outcome, UpdateOutcome::CounterFull);
        assert_eq!(flash.stats(), before);
    }

    #[test]
    fn word_compares_agree_with_byte_compares() {
        let a: Vec<u8> = (0..=MANIFEST_SIZE).map(|i| (i * 7) as u8).collect();
        for length in [0, 1, 7, 8, 9, 671, 672, 673] {
            let x = &a[..length];
            assert!(same_bytes(x, x), "{length}");
            for at in 0..length {
                let mut y = x.to_vec();
                y[at] ^= 0x80;
                assert!(!same_bytes(x, &y), "length {length}, byte {at}");
            }
            assert!(!same_bytes(x, &a[..length.saturating_sub(1)]) || length == 0);
        }
        // Aligned, as in the monitor: the word path.
        let x = ManifestBytes(core::array::from_fn(|i| (i * 7) as u8));
        assert!(<[u64]>::ref_from_bytes(&x.0[..]).is_ok(), "the word path is taken");
        let copy = x;
        assert!(same_bytes(&x.0, &copy.0));
        for at in 0..MANIFEST_SIZE {
            let mut y = x;
            y.0[at] ^= 1;
            assert!(!same_bytes(&x.0, &y.0), "byte {at}");
        }
    }

    #[test]
    fn a_rollback_is_refused_from_its_header_as_the_full_check_would() {
        let (v3, v1) = (manifest(3), manifest(1));
        let (mut flash, mut updater) = provisioned(&v3);
        let lock = FlashLock::new();
        let outcome = updater.request(&v1, &mut flash, &SECTORS, &LAYOUT, &lock);
        assert_eq!(outcome, UpdateOutcome::Rollback { found: 1, stored: 3 });
        let current = Manifest::parse(&v3).unwrap();
        assert_eq!(check(&v1, &stored(current, 3), &LAYOUT).unwrap_err(), outcome, "the same answer as the full check");
        assert_eq!(updater.verifications(), 0);
        // A header that is no manifest's is left to the parse (its error, not a rollback).
        let mut garbled = v1.clone();
        garbled[0] ^= 1;
        assert_eq!(
            updater.request(&garbled, &mut flash, &SECTORS, &LAYOUT, &lock),
            UpdateOutcome::Malformed { code: 2 }
        );
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
}
