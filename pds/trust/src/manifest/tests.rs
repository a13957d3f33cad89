use super::*;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn sample() -> Manifest {
    let mut builder = ManifestBuilder::new(3);
    builder
        .image(ImageKind::SecureImage, "loader.img", 1, 0x7000_0000, b"secure world")
        .unwrap()
        .image(ImageKind::LinuxKernel, "image", 0, 0xc000_0000, b"kernel")
        .unwrap()
        .image(ImageKind::LinuxDtb, "linux.dtb", 0, 0xc800_0000, b"dtb")
        .unwrap();
    builder.sign(&key(7)).unwrap()
}

/// The manifest's bytes after `change`, re-signed so that only the layout check can object.
fn mutated(change: impl FnOnce(&mut Manifest)) -> [u8; MANIFEST_SIZE] {
    let mut manifest = sample();
    change(&mut manifest);
    let mut bytes = [0u8; MANIFEST_SIZE];
    bytes.copy_from_slice(manifest.as_bytes());
    bytes
}

#[test]
fn round_trip() {
    let manifest = sample();
    let parsed = Manifest::parse(manifest.as_bytes()).unwrap();
    assert_eq!(parsed, &manifest);
    parsed.verify(&key(7).verifying_key().to_bytes()).unwrap();
    assert_eq!(parsed.images().len(), 3);
    let secure = parsed.image(ImageKind::SecureImage).unwrap();
    assert_eq!(secure.name(), "loader.img");
    assert_eq!(secure.load_address.get(), 0x7000_0000);
    assert!(secure.matches(b"secure world"));
    assert!(!secure.matches(b"secure worle"));
    assert!(parsed.image(ImageKind::LinuxInitramfs).is_none());
    assert_eq!(parsed.image(ImageKind::LinuxDtb).unwrap().kind(), Some(ImageKind::LinuxDtb));
    assert_eq!(&manifest.as_bytes()[..4], b"TZMF");
    assert_eq!(manifest.as_bytes()[4..8], 1u32.to_le_bytes());
    assert_eq!(manifest.as_bytes()[8..12], 3u32.to_le_bytes());
}

#[test]
fn length() {
    let manifest = sample();
    let bytes = manifest.as_bytes();
    assert_eq!(Manifest::parse(&bytes[..MANIFEST_SIZE - 1]), Err(ManifestError::Length { found: 671 }));
    let mut longer = [0u8; MANIFEST_SIZE + 1];
    longer[..MANIFEST_SIZE].copy_from_slice(bytes);
    assert_eq!(Manifest::parse(&longer), Err(ManifestError::Length { found: 673 }));
    assert_eq!(Manifest::parse(&[]), Err(ManifestError::Length { found: 0 }));
}

#[test]
fn header_errors() {
    let bytes = mutated(|m| m.header.magic = *b"TZMG");
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::BadMagic { found: *b"TZMG" }));
    let bytes = mutated(|m| m.header.version.set(2));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::UnsupportedVersion { found: 2 }));
    let bytes = mutated(|m| m.header.image_count.set(9));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::TooManyImages { count: 9 }));
    let bytes = mutated(|m| m.header.image_count.set(u32::MAX));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::TooManyImages { count: u32::MAX }));
}

#[test]
fn entry_errors() {
    for bad in [&b"Loader"[..], b"a b", b"", b"x/y", b"\xff"] {
        let bytes = mutated(|m| {
            m.entries[1].name = [0; NAME_SIZE];
            m.entries[1].name[..bad.len()].copy_from_slice(bad);
        });
        assert_eq!(Manifest::parse(&bytes), Err(ManifestError::BadName { index: 1 }), "{bad:?}");
    }
    // Bytes after the NUL padding.
    let bytes = mutated(|m| m.entries[0].name[15] = b'a');
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::BadName { index: 0 }));
    // A full 16-byte name is fine.
    let bytes = mutated(|m| m.entries[0].name = *b"0123456789abcdef");
    assert!(Manifest::parse(&bytes).is_ok());

    let bytes = mutated(|m| m.entries[2].kind.set(5));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::UnknownKind { index: 2, kind: 5 }));
    let bytes = mutated(|m| m.entries[2].kind.set(0));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::UnknownKind { index: 2, kind: 0 }));
    let bytes = mutated(|m| m.entries[2].kind.set(1));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::DuplicateKind { index: 2, kind: 1 }));
    let bytes = mutated(|m| m.entries[2].name = m.entries[0].name);
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::DuplicateName { index: 2 }));
    let bytes = mutated(|m| m.entries[1].size.set(0));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::EmptyImage { index: 1 }));
    let bytes = mutated(|m| m.entries[1].load_address.set(u64::MAX));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::AddressOverflow { index: 1 }));
    // The DTB starts on the kernel's last byte.
    let bytes = mutated(|m| m.entries[2].load_address.set(0xc000_0000 + 5));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::Overlap { first: 1, second: 2 }));
    // Adjacent is fine.
    let bytes = mutated(|m| m.entries[2].load_address.set(0xc000_0000 + 6));
    assert!(Manifest::parse(&bytes).is_ok());
    let bytes = mutated(|m| m.entries[5].sha256[31] = 1);
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::UnusedEntryNotZero { index: 5 }));
    // Lowering the count leaves a used entry behind.
    let bytes = mutated(|m| m.header.image_count.set(2));
    assert_eq!(Manifest::parse(&bytes), Err(ManifestError::UnusedEntryNotZero { index: 2 }));
}

#[test]
fn signature_errors() {
    let manifest = sample();
    let public_key = key(7).verifying_key().to_bytes();
    assert_eq!(manifest.verify(&key(8).verifying_key().to_bytes()), Err(ManifestError::WrongKeyId));

    let mut tampered = manifest;
    tampered.entries[0].sha256[0] ^= 1;
    assert_eq!(tampered.verify(&public_key), Err(ManifestError::BadSignature));
    let mut tampered = manifest;
    tampered.signature[10] ^= 0x80;
    assert_eq!(tampered.verify(&public_key), Err(ManifestError::BadSignature));
    let mut tampered = manifest;
    tampered.header.security_version.set(4);
    assert_eq!(tampered.verify(&public_key), Err(ManifestError::BadSignature));

    // A key id that matches a public key that is not a curve point.
    let mut bad_key = [0xffu8; 32];
    bad_key[31] = 0x7f;
    let mut other = manifest;
    other.header.key_id = key_id(&bad_key);
    assert!(matches!(other.verify(&bad_key), Err(ManifestError::BadPublicKey | ManifestError::BadSignature)));
}

#[test]
fn security_version() {
    let manifest = sample();
    assert_eq!(manifest.check_security_version(0), Ok(()));
    assert_eq!(manifest.check_security_version(3), Ok(()));
    assert_eq!(manifest.check_security_version(4), Err(ManifestError::Rollback { manifest: 3, stored: 4 }));
}

#[test]
fn builder_refuses_what_the_parser_would() {
    let mut builder = ManifestBuilder::new(0);
    builder.image(ImageKind::LinuxKernel, "Image", 0, 0x1000, b"k").unwrap();
    assert_eq!(builder.sign(&key(1)), Err(ManifestError::BadName { index: 0 }));
    let mut builder = ManifestBuilder::new(0);
    assert_eq!(builder.image(ImageKind::LinuxKernel, "", 0, 0, b"k").err(), Some(ManifestError::BadName { index: 0 }));
    let mut builder = ManifestBuilder::new(0);
    for i in 0..MAX_IMAGES as u64 {
        builder.image_digest(ImageKind::LinuxKernel, "k", 0, i * 16, 16, [0; 32]).unwrap();
    }
    assert_eq!(builder.image_digest(ImageKind::LinuxKernel, "k", 0, 0, 1, [0; 32]).err(), Some(ManifestError::Full));
    assert_eq!(builder.sign(&key(1)), Err(ManifestError::DuplicateKind { index: 1, kind: 2 }));
}

#[test]
fn errors_have_distinct_codes_and_messages() {
    let errors = [
        ManifestError::Length { found: 1 },
        ManifestError::BadMagic { found: [0; 4] },
        ManifestError::UnsupportedVersion { found: 2 },
        ManifestError::TooManyImages { count: 9 },
        ManifestError::BadName { index: 0 },
        ManifestError::UnknownKind { index: 0, kind: 9 },
        ManifestError::DuplicateKind { index: 1, kind: 1 },
        ManifestError::DuplicateName { index: 1 },
        ManifestError::EmptyImage { index: 0 },
        ManifestError::AddressOverflow { index: 0 },
        ManifestError::Overlap { first: 0, second: 1 },
        ManifestError::UnusedEntryNotZero { index: 3 },
        ManifestError::WrongKeyId,
        ManifestError::BadPublicKey,
        ManifestError::BadSignature,
        ManifestError::Rollback { manifest: 1, stored: 2 },
        ManifestError::Full,
    ];
    let mut codes: std::vec::Vec<u32> = errors.iter().map(|e| e.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
    use std::string::ToString;
    assert!(ManifestError::Overlap { first: 0, second: 1 }.to_string().contains("entries[0]"));
    assert!(ManifestError::TooManyImages { count: 9 }.to_string().contains("image_count"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
        let _ = Manifest::parse(&bytes).map(|m| m.verify(&[9; 32]));
    }

    #[test]
    fn mutated_manifest_never_panics_and_never_verifies(
        flips in proptest::collection::vec((0..MANIFEST_SIZE, 1u8..=255), 1..8)
    ) {
        let manifest = sample();
        let mut bytes = [0u8; MANIFEST_SIZE];
        bytes.copy_from_slice(manifest.as_bytes());
        for (offset, mask) in &flips {
            bytes[*offset] ^= mask;
        }
        let changed = bytes[..] != *manifest.as_bytes();
        if let Ok(parsed) = Manifest::parse(&bytes) {
            let verified = parsed.verify(&key(7).verifying_key().to_bytes());
            if changed {
                prop_assert!(verified.is_err());
            }
        }
    }
}
