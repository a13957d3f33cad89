//! Stage 1 and stage 2 of docs/trusted-boot.md on the host: the three formats fit together.

use crate::dice::{self, Config, Inputs, Mode};
use crate::eventlog::{self, EventLog, EventLogWriter};
use crate::manifest::{ImageKind, Manifest, ManifestBuilder};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha512};
use zerocopy::IntoBytes;

const SECURE: &[u8] = b"loader.img: seL4, the PDs";
const KERNEL: &[u8] = b"Linux Image";
const DTB: &[u8] = b"linux.dtb";

#[test]
fn stage1_verifies_measures_and_certifies_what_stage2_checks() {
    // Build time: `tzmk sign`.
    let platform = SigningKey::from_bytes(&[0x42; 32]);
    let mut builder = ManifestBuilder::new(2);
    builder
        .image(ImageKind::SecureImage, "loader.img", 2, 0x7000_0000, SECURE)
        .unwrap()
        .image(ImageKind::LinuxKernel, "image", 2, 0xc000_0000, KERNEL)
        .unwrap()
        .image(ImageKind::LinuxDtb, "linux.dtb", 2, 0xc800_0000, DTB)
        .unwrap();
    let flash = builder.sign(&platform).unwrap();
    let platform_public = platform.verifying_key().to_bytes();

    // Stage 1 (monitor): verify, anti-rollback, hash and measure, DICE layer 0 -> 1.
    let manifest = Manifest::parse(flash.as_bytes()).unwrap();
    manifest.verify(&platform_public).unwrap();
    manifest.check_security_version(1).unwrap();
    assert!(manifest.check_security_version(3).is_err());
    let mut log_buffer = [0u8; 1024];
    let mut log = EventLogWriter::new(&mut log_buffer).unwrap();
    for (kind, image) in
        [(ImageKind::SecureImage, SECURE), (ImageKind::LinuxKernel, KERNEL), (ImageKind::LinuxDtb, DTB)]
    {
        let entry = manifest.image(kind).unwrap();
        assert!(entry.matches(image));
        log.measure_image(entry.name(), &entry.sha256).unwrap();
    }
    assert!(!manifest.image(ImageKind::LinuxKernel).unwrap().matches(b"Linux Imagf"));
    let log_length = log.len();

    let uds = [0x99; 32];
    let mut descriptor = [0u8; 64];
    let descriptor_length = dice::config_descriptor("loader.img", 2, 2, &mut descriptor).unwrap();
    let inputs = Inputs {
        code_hash: Sha512::digest(SECURE).into(),
        config: Config::Descriptor(&descriptor[..descriptor_length]),
        authority_hash: Sha512::digest(platform_public).into(),
        mode: Mode::Normal,
        hidden: [0; 64],
    };
    let cdis = dice::derive_cdis(&uds, &inputs);
    let device = dice::device_identity_key(&uds);
    let layer1 = dice::key_pair_from_cdi(&cdis.attest);
    let mut certificate = [0u8; 1024];
    let certificate_length = dice::certificate(&device, &layer1.verifying_key(), &inputs, &mut certificate).unwrap();

    // Stage 2 (attestation-pd) and a verifier: replay the log, walk the certificate.
    let log = EventLog::parse(&log_buffer[..log_length]).unwrap();
    let mut pcr0 = [0u8; 32];
    for entry in manifest.images() {
        eventlog::extend(&mut pcr0, &entry.sha256);
    }
    assert_eq!(log.replay()[0], pcr0);
    let names: std::vec::Vec<&[u8]> = log.events().skip(1).map(|event| event.data).collect();
    assert_eq!(names, [&b"loader.img"[..], b"image", b"linux.dtb"]);

    let certified =
        dice::verify_certificate(&certificate[..certificate_length], &device.verifying_key().to_bytes()).unwrap();
    assert_eq!(certified.subject_public_key().unwrap(), layer1.verifying_key().to_bytes());
    assert_eq!(certified.code_hash[..], Sha512::digest(SECURE)[..]);
    assert_eq!(certified.mode, Mode::Normal as u8);
}
