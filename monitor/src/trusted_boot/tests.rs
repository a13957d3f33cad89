//! Stage 1 on fake memory: a good boot, every failure, and what the handoff holds.

use super::*;
use sha2::Sha256;
use std::cell::Cell;
use tzmk_trust::dice::verify_certificate;
use tzmk_trust::eventlog::{self, EventLog};
use tzmk_trust::manifest::ManifestBuilder;
use tzmk_trust::slot::{record_bytes, INITIAL_SEQUENCE};
use tzmk_trust::SigningKey;

const PROVISIONING: u64 = 0x10_0000;
/// A small monitor image for the fakes (the real one reaches the provisioning block).
const MONITOR_END: u64 = 0x1000;
const MONITOR_IMAGE: [u8; 0x1000] = [0xd5; 0x1000];
const MANIFEST: u64 = 0x14_0000;
/// Slot B (qemu-virt.toml's `manifest_b`) and the counter's sector.
const MANIFEST_B: u64 = 0x1c_0000;
const COUNTER_AT: u64 = 0x18_0000;
/// The security-version counter most tests boot with (below the floor, 2).
const COUNTER: u32 = 1;
const SECURE_ENTRY: u64 = 0x7000_0000;
const KERNEL: u64 = 0xc020_0000;
const DTB: u64 = 0xc800_0000;
const INITRD: u64 = 0xc840_0000;
const UDS: [u8; 32] = [0x55; 32];

const LAYOUT: Layout = Layout {
    monitor: Window { base: 0, end: MONITOR_END },
    provisioning: PROVISIONING,
    manifests: [MANIFEST, MANIFEST_B],
    windows: [
        Window { base: SECURE_ENTRY, end: 0xc000_0000 },
        Window { base: KERNEL, end: DTB },
        Window { base: DTB, end: INITRD },
        Window { base: INITRD, end: 0xfe00_0000 },
    ],
};

/// Physical memory as a few byte ranges.
struct FakeMemory(Vec<(u64, Vec<u8>)>);

impl Memory for FakeMemory {
    fn read(&self, address: u64, length: u64) -> Option<&[u8]> {
        let end = address.checked_add(length)?;
        self.0.iter().find_map(|(base, bytes)| {
            let offset = address.checked_sub(*base)?;
            (end <= base + bytes.len() as u64).then(|| &bytes[offset as usize..(offset + length) as usize])
        })
    }
}

impl FakeMemory {
    fn at(&mut self, address: u64) -> &mut Vec<u8> {
        &mut self.0.iter_mut().find(|(base, _)| *base == address).expect("a region there").1
    }
}

fn platform_key() -> SigningKey {
    SigningKey::from_bytes(&[0x42; 32])
}

fn secure_image() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7) as u8).collect()
}

fn kernel() -> Vec<u8> {
    b"ARM64 Linux Image".repeat(100)
}

/// The images of a full boot, optionally without the secure image.
struct Boot {
    secure: Option<Vec<u8>>,
    kernel: Vec<u8>,
    dtb: Vec<u8>,
    initrd: Vec<u8>,
    floor: u32,
    security_version: u32,
}

impl Boot {
    fn full() -> Boot {
        Boot {
            secure: Some(secure_image()),
            kernel: kernel(),
            dtb: b"\xd0\x0d\xfe\xedDTB".to_vec(),
            initrd: b"070701 initramfs".to_vec(),
            floor: 2,
            security_version: 3,
        }
    }

    fn standalone() -> Boot {
        Boot { secure: None, ..Boot::full() }
    }

    fn builder(&self) -> ManifestBuilder {
        let version = self.security_version;
        let mut builder = ManifestBuilder::new(version);
        if let Some(secure) = &self.secure {
            builder.image(ImageKind::SecureImage, "loader.img", version, SECURE_ENTRY, secure).unwrap();
        }
        builder
            .image(ImageKind::LinuxKernel, "image", version, KERNEL, &self.kernel)
            .unwrap()
            .image(ImageKind::LinuxDtb, "tzmk-full.dtb", version, DTB, &self.dtb)
            .unwrap()
            .image(ImageKind::LinuxInitramfs, "initramfs.cpio", version, INITRD, &self.initrd)
            .unwrap();
        builder
    }

    fn manifest(&self) -> Vec<u8> {
        self.builder().sign(&platform_key()).unwrap().as_bytes().to_vec()
    }

    /// Flash and RAM as QEMU's loader leaves them, with `manifest` committed in slot A (as
    /// `tzmk flash` writes it) and slot B erased.
    fn memory_with(&self, manifest: Vec<u8>) -> FakeMemory {
        let mut slot_a = manifest;
        slot_a.resize(RECORD_OFFSET, 0xff);
        slot_a.extend_from_slice(&record_bytes(INITIAL_SEQUENCE));
        self.memory_with_slots(slot_a, vec![0xff; SLOT_BYTES])
    }

    /// Flash and RAM with the two slots' bytes (manifest and record) given.
    fn memory_with_slots(&self, slot_a: Vec<u8>, slot_b: Vec<u8>) -> FakeMemory {
        let provisioning = Provisioning::new(UDS, platform_key().verifying_key().to_bytes(), self.floor);
        let mut regions = vec![
            (0, MONITOR_IMAGE.to_vec()),
            (PROVISIONING, provisioning.as_bytes().to_vec()),
            (MANIFEST, slot_a),
            (MANIFEST_B, slot_b),
            (KERNEL, self.kernel.clone()),
            (DTB, self.dtb.clone()),
            (INITRD, self.initrd.clone()),
        ];
        if let Some(secure) = &self.secure {
            regions.push((SECURE_ENTRY, secure.clone()));
        }
        FakeMemory(regions)
    }

    fn memory(&self) -> FakeMemory {
        self.memory_with(self.manifest())
    }
}

fn run(memory: &FakeMemory) -> (Result<Verdict, Stage1Error>, Box<BootHandoff>) {
    let mut handoff = Box::new(BootHandoff::new_zeroed());
    // Garbage from a previous boot must not survive.
    handoff.cdi_attest = [0xee; 32];
    let result = stage1(memory, &LAYOUT, COUNTER, &mut handoff);
    (result, handoff)
}

fn failure(memory: &FakeMemory) -> Stage1Error {
    let (result, handoff) = run(memory);
    assert!(handoff.as_bytes().iter().all(|&b| b == 0), "a failed stage 1 leaves no handoff");
    result.unwrap_err()
}

#[test]
fn a_good_boot_verifies_measures_and_hands_off() {
    let boot = Boot::full();
    let (result, handoff) = run(&boot.memory());
    let verdict = result.unwrap();
    assert!(verdict.secure_world && verdict.handoff_written);
    assert_eq!(verdict.security_version, 3);
    let images: Vec<_> = verdict.images.iter().flatten().map(|m| (m.kind, m.name.as_str(), m.matches)).collect();
    assert_eq!(
        images,
        [
            (ImageKind::SecureImage, "loader.img", true),
            (ImageKind::LinuxKernel, "image", true),
            (ImageKind::LinuxDtb, "tzmk-full.dtb", true),
            (ImageKind::LinuxInitramfs, "initramfs.cpio", true),
        ]
    );

    assert_eq!((handoff.magic, handoff.version), (HANDOFF_MAGIC, HANDOFF_VERSION));
    let secure = secure_image();
    assert_eq!(handoff.secure_image_sha256[..], Sha256::digest(&secure)[..]);
    assert_eq!(handoff.manifest[..], boot.manifest()[..]);

    // The CDIs are Open DICE's from the UDS and the documented inputs.
    let mut descriptor = [0u8; 64];
    let length = dice::config_descriptor("loader.img", 3, 3, &mut descriptor).unwrap();
    let inputs = Inputs {
        code_hash: Sha512::digest(&secure).into(),
        config: Config::Descriptor(&descriptor[..length]),
        authority_hash: Sha512::digest(platform_key().verifying_key().to_bytes()).into(),
        mode: Mode::Normal,
        hidden: [0; 64],
    };
    let cdis = dice::derive_cdis(&UDS, &inputs);
    assert_eq!((handoff.cdi_attest, handoff.cdi_seal), (cdis.attest, cdis.seal));
    let device = dice::device_identity_key(&UDS).verifying_key().to_bytes();
    assert_eq!(handoff.device_public_key, device);
    assert_eq!(handoff.platform_public_key, platform_key().verifying_key().to_bytes());
    assert_eq!(handoff.monitor_sha256[..], Sha256::digest(MONITOR_IMAGE)[..], "the monitor measured itself");

    // The certificate verifies with the device key and certifies layer 1's key.
    let certificate = &handoff.certificate[..handoff.certificate_length as usize];
    let certified = verify_certificate(certificate, &handoff.device_public_key).unwrap();
    assert_eq!(certified.subject_public_key(), Some(dice::key_pair_from_cdi(&cdis.attest).verifying_key().to_bytes()));
    assert_eq!(certified.code_hash[..], Sha512::digest(&secure)[..]);
    assert_eq!(certified.config_descriptor, &descriptor[..length]);
    assert_eq!(certified.mode, Mode::Normal as u8);

    // The event log replays to PCR 0 over the four images, named as in the manifest.
    let log = EventLog::parse(&handoff.event_log[..handoff.event_log_length as usize]).unwrap();
    let mut pcr0 = [0u8; 32];
    for image in [&secure, &boot.kernel, &boot.dtb, &boot.initrd] {
        eventlog::extend(&mut pcr0, &Sha256::digest(image).into());
    }
    assert_eq!(log.replay()[0], pcr0);
    let names: Vec<&[u8]> = log.events().skip(1).map(|event| event.data).collect();
    assert_eq!(names, [&b"loader.img"[..], b"image", b"tzmk-full.dtb", b"initramfs.cpio"]);
    assert!(log.events().skip(1).all(|e| e.pcr == 0 && e.event_type == eventlog::EV_POST_CODE));
}

thread_local! {
    /// Blocks given to [`counting_blocks`] on this test's thread.
    static BLOCKS: Cell<u64> = const { Cell::new(0) };
}

/// The software block function, counting the blocks.
fn counting_blocks(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    BLOCKS.set(BLOCKS.get() + blocks.len() as u64);
    tzmk_sha256::software(state, blocks);
}

/// A block function that gets every block wrong.
fn broken_blocks(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    tzmk_sha256::software(state, blocks);
    state[0] ^= 1;
}

/// Fake memory whose SHA-256 block function is the one given.
struct WithBlocks(FakeMemory, BlockFunction);

impl Memory for WithBlocks {
    fn read(&self, address: u64, length: u64) -> Option<&[u8]> {
        self.0.read(address, length)
    }

    fn sha256_blocks(&self) -> BlockFunction {
        self.1
    }
}

#[test]
fn every_image_and_the_monitor_are_hashed_through_the_memorys_block_function() {
    // A padded message of n bytes is (n + 9) / 64 blocks, rounded up.
    let blocks = |length: usize| (length as u64 + 9).div_ceil(64);
    for boot in [Boot::full(), Boot::standalone()] {
        BLOCKS.set(0);
        let mut handoff = Box::new(BootHandoff::new_zeroed());
        let verdict = stage1(&WithBlocks(boot.memory(), counting_blocks), &LAYOUT, 0, &mut handoff).unwrap();
        assert!(verdict.images.iter().flatten().all(|m| m.matches));
        let images: u64 = [boot.secure.as_deref().unwrap_or_default(), &boot.kernel, &boot.dtb, &boot.initrd]
            .iter()
            .filter(|image| !image.is_empty())
            .map(|image| blocks(image.len()))
            .sum();
        assert_eq!(BLOCKS.get(), blocks(MONITOR_IMAGE.len()) + images, "secure image: {}", boot.secure.is_some());
    }
}

#[test]
fn the_memorys_block_function_decides_the_digests() {
    // Wrong block function, right images: the standalone boot sees every image differ.
    let mut handoff = Box::new(BootHandoff::new_zeroed());
    let error = stage1(&WithBlocks(Boot::standalone().memory(), broken_blocks), &LAYOUT, 0, &mut handoff).unwrap_err();
    assert!(matches!(error, Stage1Error::DigestMismatch { kind: ImageKind::LinuxKernel, .. }), "{error:?}");
}

#[test]
fn standalone_checks_linux_and_writes_no_handoff() {
    let (result, handoff) = run(&Boot::standalone().memory());
    let verdict = result.unwrap();
    assert!(!verdict.secure_world && !verdict.handoff_written);
    assert!(verdict.images.iter().flatten().all(|m| m.matches));
    assert_eq!(handoff.magic, 0, "no secure world reads a handoff");
    assert_eq!(handoff.cdi_attest, [0; 32]);
}

#[test]
fn a_tampered_secure_image_stops() {
    let boot = Boot::full();
    let mut memory = boot.memory();
    memory.at(SECURE_ENTRY)[100] ^= 1;
    let error = failure(&memory);
    assert!(
        matches!(error, Stage1Error::DigestMismatch { kind: ImageKind::SecureImage, address: SECURE_ENTRY, .. }),
        "{error:?}"
    );
    let line = error.to_string();
    assert!(line.starts_with("secure image 'loader.img' at 0x70000000: SHA-256 "), "{line}");
    assert!(line.contains("does not match the manifest's"), "{line}");
}

#[test]
fn a_tampered_linux_image_is_measured_only_beside_a_secure_image() {
    let boot = Boot::full();
    let mut memory = boot.memory();
    memory.at(KERNEL)[3] ^= 0x80;
    let (result, handoff) = run(&memory);
    let verdict = result.unwrap();
    let kernel = verdict.images.iter().flatten().find(|m| m.kind == ImageKind::LinuxKernel).unwrap();
    assert!(!kernel.matches);
    assert_eq!(kernel.sha256[..], Sha256::digest(memory.at(KERNEL).as_slice())[..]);
    // The log records what memory held; stage 2 compares it with the manifest.
    let log = EventLog::parse(&handoff.event_log[..handoff.event_log_length as usize]).unwrap();
    let event = log.events().find(|e| e.data == b"image").unwrap();
    assert_eq!(event.digest, kernel.sha256);
}

#[test]
fn a_tampered_linux_image_stops_a_standalone_boot() {
    for (address, kind) in
        [(KERNEL, ImageKind::LinuxKernel), (DTB, ImageKind::LinuxDtb), (INITRD, ImageKind::LinuxInitramfs)]
    {
        let mut memory = Boot::standalone().memory();
        memory.at(address)[0] ^= 1;
        let error = failure(&memory);
        assert!(matches!(error, Stage1Error::DigestMismatch { kind: k, .. } if k == kind), "{error:?}");
    }
}

#[test]
fn a_bad_signature_stops() {
    let boot = Boot::full();
    let mut manifest = boot.manifest();
    let last = manifest.len() - 1;
    manifest[last] ^= 1;
    assert_eq!(failure(&boot.memory_with(manifest)), Stage1Error::Manifest(ManifestError::BadSignature));
    // A signed field changed after signing.
    let mut manifest = boot.manifest();
    manifest[12] ^= 1; // header.security_version
    assert_eq!(failure(&boot.memory_with(manifest)), Stage1Error::Manifest(ManifestError::BadSignature));
}

#[test]
fn a_manifest_signed_with_another_key_stops() {
    let boot = Boot::full();
    let other = SigningKey::from_bytes(&[0x43; 32]);
    let manifest = boot.builder().sign(&other).unwrap().as_bytes().to_vec();
    assert_eq!(failure(&boot.memory_with(manifest)), Stage1Error::Manifest(ManifestError::WrongKeyId));
    // The right key id, the wrong key's signature.
    let mut manifest = boot.builder().sign(&other).unwrap();
    manifest.header.key_id = tzmk_trust::manifest::key_id(&platform_key().verifying_key().to_bytes());
    let error = failure(&boot.memory_with(manifest.as_bytes().to_vec()));
    assert_eq!(error, Stage1Error::Manifest(ManifestError::BadSignature));
}

#[test]
fn missing_or_garbled_flash_stops() {
    let boot = Boot::full();
    for blank in [vec![0u8; MANIFEST_SIZE], vec![0xff; MANIFEST_SIZE]] {
        let error = failure(&boot.memory_with(blank));
        assert_eq!(error, Stage1Error::NoManifest { address: MANIFEST });
        assert_eq!(error.to_string(), "no manifest in flash at 0x140000 (blank)");
    }
    let mut garbled = boot.manifest();
    garbled[0] = b'X';
    assert!(matches!(failure(&boot.memory_with(garbled)), Stage1Error::Manifest(ManifestError::BadMagic { .. })));
    let mut garbled = boot.manifest();
    garbled[8] = 9; // image_count
    assert!(matches!(
        failure(&boot.memory_with(garbled)),
        Stage1Error::Manifest(ManifestError::TooManyImages { count: 9 })
    ));
    // Flash the monitor cannot read at all.
    let mut memory = boot.memory();
    memory.0.retain(|(base, _)| *base != MANIFEST);
    assert_eq!(failure(&memory), Stage1Error::FlashUnreadable { what: "manifest", address: MANIFEST });
    // An unprovisioned device (all-zero flash).
    let mut memory = boot.memory();
    memory.at(PROVISIONING).fill(0);
    assert!(matches!(failure(&memory), Stage1Error::Provisioning(ProvisioningError::BadMagic { .. })));
    // Random flash never panics.
    for seed in 0..64u8 {
        let noise: Vec<u8> = (0..MANIFEST_SIZE).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let _ = failure(&boot.memory_with(noise));
    }
}

#[test]
fn a_security_version_below_the_floor_stops() {
    let boot = Boot { security_version: 1, ..Boot::full() };
    assert_eq!(failure(&boot.memory()), Stage1Error::Manifest(ManifestError::Rollback { manifest: 1, stored: 2 }));
    // At the floor boots.
    let boot = Boot { security_version: 2, ..Boot::full() };
    assert!(run(&boot.memory()).0.is_ok());
}

#[test]
fn a_security_version_below_the_counter_stops_with_its_reason() {
    // The floor is 2; the counter in flash says 5: a manifest of 3 (above the floor) is a replay.
    let boot = Boot::full();
    let mut handoff = Box::new(BootHandoff::new_zeroed());
    let error = stage1(&boot.memory(), &LAYOUT, 5, &mut handoff).unwrap_err();
    assert_eq!(error, Stage1Error::Manifest(ManifestError::Rollback { manifest: 3, stored: 5 }));
    assert_eq!(error.to_string(), "manifest: security version 3 is below the stored 5");
    assert!(handoff.as_bytes().iter().all(|&b| b == 0));
    // At the counter boots.
    assert!(stage1(&boot.memory(), &LAYOUT, 3, &mut handoff).is_ok());
}

#[test]
fn a_wrong_load_address_stops() {
    let boot = Boot::full();
    let mut builder = ManifestBuilder::new(3);
    builder
        .image(ImageKind::SecureImage, "loader.img", 3, SECURE_ENTRY + 0x1000, &secure_image())
        .unwrap()
        .image(ImageKind::LinuxKernel, "image", 3, KERNEL, &boot.kernel)
        .unwrap()
        .image(ImageKind::LinuxDtb, "tzmk-full.dtb", 3, DTB, &boot.dtb)
        .unwrap();
    let manifest = builder.sign(&platform_key()).unwrap().as_bytes().to_vec();
    let error = failure(&boot.memory_with(manifest));
    assert_eq!(
        error.to_string(),
        "secure image 'loader.img': load address 0x70001000 is not the platform's 0x70000000"
    );
}

#[test]
fn an_image_past_its_window_stops() {
    let boot = Boot::full();
    let mut builder = ManifestBuilder::new(3);
    builder
        .image(ImageKind::LinuxKernel, "image", 3, KERNEL, &boot.kernel)
        .unwrap()
        .image_digest(ImageKind::LinuxDtb, "tzmk-full.dtb", 3, DTB, INITRD - DTB + 1, [0; 32])
        .unwrap();
    let manifest = builder.sign(&platform_key()).unwrap().as_bytes().to_vec();
    let error = failure(&boot.memory_with(manifest));
    assert!(matches!(error, Stage1Error::OutsideWindow { kind: ImageKind::LinuxDtb, window_end: INITRD, .. }));
}

#[test]
fn a_manifest_without_linux_stops() {
    let boot = Boot::full();
    let mut builder = ManifestBuilder::new(3);
    builder.image(ImageKind::SecureImage, "loader.img", 3, SECURE_ENTRY, &secure_image()).unwrap();
    let manifest = builder.sign(&platform_key()).unwrap().as_bytes().to_vec();
    let error = failure(&boot.memory_with(manifest));
    assert_eq!(error, Stage1Error::MissingImage { kind: ImageKind::LinuxKernel });
    assert_eq!(error.to_string(), "manifest names no Linux kernel");
}

#[test]
fn an_image_the_monitor_cannot_read_stops() {
    let boot = Boot::full();
    let mut memory = boot.memory();
    memory.at(INITRD).pop();
    assert_eq!(failure(&memory), Stage1Error::ImageUnreadable { kind: ImageKind::LinuxInitramfs });
}

/// A slot's bytes: `manifest` and, when `sequence` is given, its commit record.
fn slot_bytes(manifest: &[u8], sequence: Option<u32>) -> Vec<u8> {
    let mut bytes = manifest.to_vec();
    bytes.resize(SLOT_BYTES, 0xff);
    if let Some(sequence) = sequence {
        bytes[RECORD_OFFSET..].copy_from_slice(&record_bytes(sequence));
    }
    bytes
}

#[test]
fn the_newest_committed_valid_slot_boots() {
    let old = Boot { security_version: 3, ..Boot::full() };
    let new = Boot { security_version: 4, ..Boot::full() };
    let (v3, v4) = (old.manifest(), new.manifest());
    let boots = |slot_a: Vec<u8>, slot_b: Vec<u8>| {
        let mut handoff = Box::new(BootHandoff::new_zeroed());
        stage1(&old.memory_with_slots(slot_a, slot_b), &LAYOUT, COUNTER, &mut handoff)
            .map(|v| (v.slot, v.sequence, v.security_version))
    };
    assert_eq!(boots(slot_bytes(&v3, Some(1)), slot_bytes(&v4, Some(2))), Ok((1, 2, 4)), "B is newer");
    assert_eq!(boots(slot_bytes(&v4, Some(7)), slot_bytes(&v3, Some(6))), Ok((0, 7, 4)), "A is newer");
    assert_eq!(boots(slot_bytes(&v3, Some(1)), slot_bytes(&v4, None)), Ok((0, 1, 3)), "B uncommitted");
    let wrapped = boots(slot_bytes(&v3, Some(u32::MAX)), slot_bytes(&v4, Some(0)));
    assert_eq!(wrapped, Ok((1, 0, 4)), "the sequence wraps");
    // The newer slot committed but damaged (a torn erase or a bad part): the other boots.
    let mut damaged = v4.clone();
    damaged[100] ^= 1;
    assert_eq!(boots(slot_bytes(&v3, Some(1)), slot_bytes(&damaged, Some(2))), Ok((0, 1, 3)));
    // Neither bootable: the newer one's reason.
    let mut handoff = Box::new(BootHandoff::new_zeroed());
    let memory = old.memory_with_slots(slot_bytes(&damaged, Some(1)), slot_bytes(&[0; MANIFEST_SIZE], Some(2)));
    assert_eq!(stage1(&memory, &LAYOUT, COUNTER, &mut handoff), Err(Stage1Error::NoManifest { address: MANIFEST_B }));
    assert!(handoff.as_bytes().iter().all(|&b| b == 0));
    // Neither committed.
    let memory = old.memory_with_slots(slot_bytes(&v3, None), vec![0xff; SLOT_BYTES]);
    let error = stage1(&memory, &LAYOUT, COUNTER, &mut handoff).unwrap_err();
    assert_eq!(error, Stage1Error::NoCommittedSlot { slots: [MANIFEST, MANIFEST_B] });
    assert_eq!(error.to_string(), "no committed manifest slot in flash (slots at 0x140000 and 0x1c0000)");
    // A newer slot below the counter never boots: the older one is not below it either here, so
    // the machine stops rather than roll back.
    let error =
        stage1(&old.memory_with_slots(slot_bytes(&v3, Some(1)), slot_bytes(&v4, Some(2))), &LAYOUT, 5, &mut handoff);
    assert_eq!(error.unwrap_err(), Stage1Error::Manifest(ManifestError::Rollback { manifest: 4, stored: 5 }));
}

/// Power cuts during updates: the whole machine's flash as a fake CFI bank (slots, counter), the
/// RAM images as in the other tests.
mod power_cuts {
    use super::*;
    use crate::counter;
    use crate::flash::fake::FakeFlash;
    use crate::flash::{Cfi01, FlashLock};
    use crate::update::{after_boot, Booted, Sectors, Updater};
    use tzmk_interface::update::UpdateOutcome;

    const SECTOR: u64 = 0x1000;
    const SECTORS: Sectors = Sectors { slots: [MANIFEST, MANIFEST_B], counter: COUNTER_AT };

    fn bank() -> Cfi01<FakeFlash> {
        let writable = [MANIFEST, MANIFEST_B, COUNTER_AT].map(|at| (at, at + SECTOR));
        Cfi01::new(FakeFlash::new((MANIFEST_B + SECTOR) as usize, SECTOR as usize), SECTOR, writable)
    }

    /// What `tzmk flash` writes: the manifest in slot A with the first sequence, B erased,
    /// the counter erased.
    fn provisioned(manifest: &[u8]) -> Cfi01<FakeFlash> {
        let mut flash = bank();
        flash.program_bytes(MANIFEST, &slot_bytes(manifest, Some(INITIAL_SEQUENCE))).unwrap();
        flash
    }

    /// Powers on: stage 1 over the flash as it is, then the counter raise that follows a good
    /// stage 1. Returns the booted manifest's security version and the state updates start from.
    fn boot(flash: &mut Cfi01<FakeFlash>, boot: &Boot) -> Result<(u32, Booted), Stage1Error> {
        flash.bus_mut().power_on();
        let bytes = |at: u64| flash.bus().memory[at as usize..at as usize + SLOT_BYTES].to_vec();
        let memory = boot.memory_with_slots(bytes(MANIFEST), bytes(MANIFEST_B));
        let counter = counter::scan(flash, COUNTER_AT).unwrap().value;
        let mut handoff = Box::new(BootHandoff::new_zeroed());
        let verdict = stage1(&memory, &LAYOUT, counter, &mut handoff)?;
        let raised = after_boot(flash, COUNTER_AT, counter, verdict.security_version).unwrap();
        let at = LAYOUT.manifests[verdict.slot] as usize;
        let booted = Booted {
            manifest: flash.bus().memory[at..at + MANIFEST_SIZE].try_into().unwrap(),
            slot: verdict.slot,
            sequence: verdict.sequence,
            platform_key: platform_key().verifying_key().to_bytes(),
            floor: boot.floor,
            counter: raised,
        };
        Ok((verdict.security_version, booted))
    }

    /// Runs the update from `booted` to `candidate` with the power cut after every single
    /// operation (program or erase; torn or not), boots after each cut, and checks the boot:
    /// the old or the new manifest, never one below the counter. Returns the number of cut
    /// points (the update's operations).
    fn cut_everywhere(
        setup: &dyn Fn() -> Cfi01<FakeFlash>,
        boot_images: &Boot,
        candidate: &[u8],
        old: u32,
        new: u32,
    ) -> usize {
        // The whole update once, to count its operations.
        let mut flash = setup();
        let (_, booted) = boot(&mut flash, boot_images).unwrap();
        let start = flash.bus().operations();
        let outcome = Updater::new(booted).request(candidate, &mut flash, &SECTORS, &LAYOUT, &FlashLock::new());
        assert!(outcome.is_accepted(), "{outcome}");
        let operations = flash.bus().operations() - start;
        for tear in [false, true] {
            for cut in 0..=operations {
                let mut flash = setup();
                let (_, booted) = boot(&mut flash, boot_images).unwrap();
                let old_bytes = booted.manifest;
                flash.bus_mut().power_cut_after = Some(flash.bus().operations() + cut);
                flash.bus_mut().tear = tear;
                let _ = Updater::new(booted).request(candidate, &mut flash, &SECTORS, &LAYOUT, &FlashLock::new());
                let (version, after) =
                    boot(&mut flash, boot_images).unwrap_or_else(|e| panic!("cut after {cut} (torn {tear}): {e}"));
                assert!(version == old || version == new, "cut after {cut}: booted version {version}");
                let booted_new = after.manifest[..] == candidate[..];
                assert!(booted_new || after.manifest == old_bytes, "cut after {cut} (torn {tear}): another manifest");
                let counter = counter::scan(&mut flash, COUNTER_AT).unwrap().value;
                assert!(counter <= version, "cut after {cut} (torn {tear}): counter {counter} above {version}");
                assert_eq!(after.counter, counter);
                if cut == operations {
                    assert!(booted_new && version == new, "the whole update boots the new manifest");
                }
            }
        }
        operations
    }

    #[test]
    fn a_power_cut_anywhere_in_an_update_boots_the_old_or_the_new_manifest() {
        let images = Boot { floor: 1, ..Boot::full() };
        let v3 = Boot { security_version: 3, ..Boot::full() }.manifest();
        let v4 = Boot { security_version: 4, ..Boot::full() }.manifest();
        let operations = cut_everywhere(&|| provisioned(&v3), &images, &v4, 3, 4);
        // An erase, 168 manifest words, 4 record words, 4 counter words.
        assert_eq!(operations, 1 + 168 + 4 + 4);
    }

    #[test]
    fn a_power_cut_anywhere_in_a_second_update_boots_the_old_or_the_new_manifest() {
        let images = Boot { floor: 1, ..Boot::full() };
        let [v3, v4, v5] = [3, 4, 5].map(|version| Boot { security_version: version, ..Boot::full() }.manifest());
        // A first update (v3 in A -> v4 in B), then a reboot: the second goes back to slot A.
        let after_first = || {
            let mut flash = provisioned(&v3);
            let (_, booted) = boot(&mut flash, &images).unwrap();
            let outcome = Updater::new(booted).request(&v4, &mut flash, &SECTORS, &LAYOUT, &FlashLock::new());
            assert_eq!(outcome, UpdateOutcome::Accepted { counter: 4, previous: 3 });
            flash
        };
        let mut flash = after_first();
        let (_, booted) = boot(&mut flash, &images).unwrap();
        assert_eq!((booted.slot, booted.sequence), (1, 2));
        cut_everywhere(&after_first, &images, &v5, 4, 5);
        // And the same version rewritten (no counter raise): old or new, both at the counter.
        // Another kernel of the same size: the old manifest's kernel no longer matches memory,
        // which beside a secure image is measured, not refused (stage 2 decides).
        let mut other_kernel = kernel();
        other_kernel[0] ^= 1;
        let v4_again = Boot { security_version: 4, kernel: other_kernel.clone(), ..Boot::full() }.manifest();
        let images_again = Boot { kernel: other_kernel, ..Boot { floor: 1, ..Boot::full() } };
        cut_everywhere(&after_first, &images_again, &v4_again, 4, 4);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any flash contents: a typed error or a boot, never a panic, and no handoff unless the
        /// boot goes on.
        #[test]
        fn no_flash_contents_panic_stage1(
            provisioning in proptest::collection::vec(any::<u8>(), PROVISIONING_SIZE),
            manifest in proptest::collection::vec(any::<u8>(), MANIFEST_SIZE),
        ) {
            let mut memory = Boot::full().memory_with(manifest);
            *memory.at(PROVISIONING) = provisioning;
            let (result, handoff) = run(&memory);
            prop_assert!(result.is_err());
            prop_assert!(handoff.as_bytes().iter().all(|&b| b == 0));
        }

        /// A signed manifest with bytes changed after signing (each at its own offset) never boots.
        #[test]
        fn a_changed_manifest_never_boots(changes in proptest::collection::btree_map(0..MANIFEST_SIZE, 1..=255u8, 1..4)) {
            let boot = Boot::full();
            let mut manifest = boot.manifest();
            for (at, flip) in changes {
                manifest[at] ^= flip;
            }
            let result = run(&boot.memory_with(manifest)).0;
            prop_assert!(result.is_err(), "{result:?}");
        }
    }
}
