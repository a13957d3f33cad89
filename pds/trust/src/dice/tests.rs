use super::*;
use proptest::prelude::*;
use std::vec::Vec;

fn unhex<const N: usize>(hex: &str) -> [u8; N] {
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

fn zero_inputs() -> Inputs<'static> {
    Inputs {
        code_hash: [0; 64],
        config: Config::Inline([0; 64]),
        authority_hash: [0; 64],
        mode: Mode::NotConfigured,
        hidden: [0; 64],
    }
}

// open-dice's known-answer values for the all-zero input (UDS of zeros, every input zero, mode
// "not configured", inline configuration): include/dice/known_test_values.h,
// kExpectedCdiAttest_ZeroInput, kExpectedCdiSeal_ZeroInput, and the issuer, subject and subject
// key of kExpectedX509Ed25519Cert_ZeroInput / kExpectedCborEd25519Cert_ZeroInput.
const ZERO_CDI_ATTEST: &str = "fbfc679771342eeacb908659ce49d6b63b4535da2c51433d7f04efa6319e0c19";
const ZERO_CDI_SEAL: &str = "8ff8b22571325e7defefbfea8df1c9f34bf4d9ee03b75b788219c6b1ef49bdc5";
const ZERO_UDS_ID: &str = "7a06eee41b789f4863d86b8778b1a201a6fedd56";
const ZERO_CDI_ID: &str = "67c22a8859062b986818e8e72b0bcd9f59349c89";
const ZERO_CDI_PUBLIC_KEY: &str = "0d14e5de292eb1c8b31beae43ab55d8e9dc014b73eaa83b925a0788cc62e5c8d";
/// The 441-byte CBOR certificate's signature (its last 64 bytes). Ed25519 is deterministic, so an
/// equal signature means an equal signed payload.
const ZERO_CBOR_CERT_SIGNATURE: &str = "f99bd6dbc1247153c10f881c0f5f33bf0223d22232712441b128d383de321b67\
                                         c09a1f4591c420dcc9d62121eca3d3897a244dcbe11a0f9ab79f67093fee560f";

#[test]
fn open_dice_known_answers_for_the_zero_input() {
    let uds = [0u8; 32];
    let cdis = derive_cdis(&uds, &zero_inputs());
    assert_eq!(cdis.attest, unhex::<32>(ZERO_CDI_ATTEST));
    assert_eq!(cdis.seal, unhex::<32>(ZERO_CDI_SEAL));

    let device = device_identity_key(&uds);
    assert_eq!(id_from_public_key(&device.verifying_key().to_bytes()), unhex::<20>(ZERO_UDS_ID));
    let layer = key_pair_from_cdi(&cdis.attest);
    assert_eq!(layer.verifying_key().to_bytes(), unhex::<32>(ZERO_CDI_PUBLIC_KEY));
    assert_eq!(&id_hex(&id_from_public_key(&layer.verifying_key().to_bytes())), ZERO_CDI_ID.as_bytes());

    let mut out = [0u8; 600];
    let length = certificate(&device, &layer.verifying_key(), &zero_inputs(), &mut out).unwrap();
    assert_eq!(length, 441);
    // COSE_Sign1 head: array(4), h'A10127', {}, bstr of 366 bytes, map of 8 claims, iss.
    assert_eq!(out[..12], [0x84, 0x43, 0xa1, 0x01, 0x27, 0xa0, 0x59, 0x01, 0x6e, 0xa8, 0x01, 0x78]);
    assert_eq!(out[375..377], [0x58, 0x40]);
    assert_eq!(out[377..441], unhex::<64>(&ZERO_CBOR_CERT_SIGNATURE.replace(' ', "")));

    let certified = verify_certificate(&out[..length], &device.verifying_key().to_bytes()).unwrap();
    assert_eq!(certified.issuer, ZERO_UDS_ID);
    assert_eq!(certified.subject, ZERO_CDI_ID);
    assert_eq!(certified.subject_public_key(), Some(layer.verifying_key().to_bytes()));
    assert_eq!(certified.mode, 0);
    assert_eq!(certified.config_hash, None);
    assert_eq!(certified.config_descriptor, [0u8; 64]);
    assert_eq!(certified.key_usage, [KEY_USAGE_CERT_SIGN]);
}

#[test]
fn cose_key_encoding() {
    let key = cose_key(&[0xab; 32]);
    // The same map, encoded by minicbor.
    let encoded = cbor(|e| {
        e.map(5)?
            .i64(1)?
            .i64(1)?
            .i64(3)?
            .i64(-8)?
            .i64(4)?
            .array(1)?
            .i64(2)?
            .i64(-1)?
            .i64(6)?
            .i64(-2)?
            .bytes(&[0xab; 32])?;
        Ok(())
    });
    assert_eq!(key[..], encoded[..]);
    assert_eq!(key[..13], [0xa5, 0x01, 0x01, 0x03, 0x27, 0x04, 0x81, 0x02, 0x20, 0x06, 0x21, 0x58, 0x20]);
    assert_eq!(key[13..], [0xab; 32]);
}

fn descriptor(security_version: u64, buffer: &mut [u8; 64]) -> usize {
    config_descriptor("loader.img", 1, security_version, buffer).unwrap()
}

fn tzmk_inputs<'a>(code: u8, authority: u8, descriptor: &'a [u8]) -> Inputs<'a> {
    Inputs {
        code_hash: Sha512::digest([code]).into(),
        config: Config::Descriptor(descriptor),
        authority_hash: Sha512::digest([authority]).into(),
        mode: Mode::Normal,
        hidden: [0; 64],
    }
}

#[test]
fn config_descriptor_encoding() {
    let mut buffer = [0u8; 64];
    let length = descriptor(5, &mut buffer);
    // {-70002: "loader.img", -70003: 1, -70005: 5}
    let mut expected = std::vec![0xa3, 0x3a, 0x00, 0x01, 0x11, 0x71, 0x6a];
    expected.extend_from_slice(b"loader.img");
    expected.extend_from_slice(&[0x3a, 0x00, 0x01, 0x11, 0x72, 0x01, 0x3a, 0x00, 0x01, 0x11, 0x74, 0x05]);
    assert_eq!(&buffer[..length], &expected[..]);
    assert_eq!(config_descriptor("loader.img", 1, 5, &mut [0u8; 10]), Err(DiceError::BufferTooSmall));
}

#[test]
fn cdis_follow_the_inputs_they_should() {
    let uds = [0x5a; 32];
    let mut buffer = [0u8; 64];
    let length = descriptor(1, &mut buffer);
    let config = &buffer[..length];
    let base = derive_cdis(&uds, &tzmk_inputs(1, 1, config));
    let again = derive_cdis(&uds, &tzmk_inputs(1, 1, config));
    assert_eq!((again.attest, again.seal), (base.attest, base.seal), "deterministic");

    let new_code = derive_cdis(&uds, &tzmk_inputs(2, 1, config));
    assert_ne!(new_code.attest, base.attest, "different code, different CDI_Attest");
    assert_eq!(new_code.seal, base.seal, "same authority and mode, same CDI_Seal");

    let mut other = [0u8; 64];
    let other_length = descriptor(2, &mut other);
    let new_config = derive_cdis(&uds, &tzmk_inputs(1, 1, &other[..other_length]));
    assert_ne!(new_config.attest, base.attest);
    assert_eq!(new_config.seal, base.seal);

    let new_authority = derive_cdis(&uds, &tzmk_inputs(1, 2, config));
    assert_ne!(new_authority.attest, base.attest);
    assert_ne!(new_authority.seal, base.seal, "different authority, different CDI_Seal");

    let mut debug = tzmk_inputs(1, 1, config);
    debug.mode = Mode::Debug;
    assert_ne!(derive_cdis(&uds, &debug).seal, base.seal, "different mode, different CDI_Seal");

    let other_device = derive_cdis(&[0x5b; 32], &tzmk_inputs(1, 1, config));
    assert_ne!(other_device.attest, base.attest);
    assert_ne!(other_device.seal, base.seal);

    // Layering: each CDI of the next layer is derived from the same CDI of this one.
    let next_inputs = tzmk_inputs(3, 1, config);
    let next = base.next(&next_inputs);
    assert_eq!(next.attest, derive_cdis(&base.attest, &next_inputs).attest);
    assert_eq!(next.seal, derive_cdis(&base.seal, &next_inputs).seal);
    assert_ne!(next.attest, base.attest);
}

#[test]
fn certificate_with_descriptor_verifies_and_walks_a_chain() {
    let uds = [0x11; 32];
    let mut buffer = [0u8; 64];
    let length = descriptor(4, &mut buffer);
    let config = &buffer[..length];

    // Layer 0 -> 1: the device-identity key certifies layer 1's key.
    let device = device_identity_key(&uds);
    let layer1_inputs = tzmk_inputs(1, 9, config);
    let layer1 = derive_cdis(&uds, &layer1_inputs);
    let layer1_key = key_pair_from_cdi(&layer1.attest);
    let mut first = [0u8; 1024];
    let first_length = certificate(&device, &layer1_key.verifying_key(), &layer1_inputs, &mut first).unwrap();

    // Layer 1 -> 2.
    let layer2_inputs = tzmk_inputs(2, 9, config);
    let layer2 = layer1.next(&layer2_inputs);
    let layer2_key = key_pair_from_cdi(&layer2.attest);
    let mut second = [0u8; 1024];
    let second_length = certificate(&layer1_key, &layer2_key.verifying_key(), &layer2_inputs, &mut second).unwrap();

    // A verifier starts from the device-identity public key alone.
    let certified1 = verify_certificate(&first[..first_length], &device.verifying_key().to_bytes()).unwrap();
    assert_eq!(certified1.code_hash, layer1_inputs.code_hash);
    assert_eq!(certified1.config_descriptor, config);
    assert_eq!(certified1.config_hash, Some(layer1_inputs.config_input()));
    assert_eq!(certified1.authority_hash, layer1_inputs.authority_hash);
    assert_eq!(certified1.mode, Mode::Normal as u8);
    let certified2 = verify_certificate(&second[..second_length], &certified1.subject_public_key().unwrap()).unwrap();
    assert_eq!(certified2.issuer, certified1.subject);
    assert_eq!(certified2.subject_public_key(), Some(layer2_key.verifying_key().to_bytes()));

    // Out of order, the chain does not verify.
    assert_eq!(
        verify_certificate(&second[..second_length], &device.verifying_key().to_bytes()),
        Err(DiceError::BadSignature)
    );
}

#[test]
fn certificate_fails_with_another_key_or_any_flipped_byte() {
    let device = device_identity_key(&[3; 32]);
    let subject = key_pair_from_cdi(&[4; 32]);
    let mut buffer = [0u8; 64];
    let length = descriptor(1, &mut buffer);
    let inputs = tzmk_inputs(1, 1, &buffer[..length]);
    let mut out = [0u8; 1024];
    let length = certificate(&device, &subject.verifying_key(), &inputs, &mut out).unwrap();
    let cert = &out[..length];
    let issuer_key = device.verifying_key().to_bytes();
    assert!(verify_certificate(cert, &issuer_key).is_ok());
    assert_eq!(verify_certificate(cert, &subject.verifying_key().to_bytes()), Err(DiceError::BadSignature));
    for index in (0..length).step_by(3) {
        let mut flipped = cert.to_vec();
        flipped[index] ^= 0x01;
        assert!(verify_certificate(&flipped, &issuer_key).is_err(), "byte {index} flipped still verifies");
    }
    assert_eq!(verify_certificate(&cert[..length - 1], &issuer_key), Err(DiceError::Malformed { field: "signature" }));
    let mut longer = cert.to_vec();
    longer.push(0);
    assert_eq!(verify_certificate(&longer, &issuer_key), Err(DiceError::TrailingBytes));
    // A tagged COSE_Sign1 (tag 18) is not the profile's untagged certificate.
    let mut tagged = std::vec![0xd2];
    tagged.extend_from_slice(cert);
    assert!(matches!(verify_certificate(&tagged, &issuer_key), Err(DiceError::Malformed { .. })));
}

#[test]
fn certificate_needs_room_and_says_so() {
    let device = device_identity_key(&[0; 32]);
    let subject = key_pair_from_cdi(&[0; 32]);
    let mut out = [0u8; 441];
    assert_eq!(certificate(&device, &subject.verifying_key(), &zero_inputs(), &mut out), Ok(441));
    for size in [0, 10, 25, 26, 300, 400, 440] {
        let mut out = std::vec![0u8; size];
        assert_eq!(
            certificate(&device, &subject.verifying_key(), &zero_inputs(), &mut out),
            Err(DiceError::BufferTooSmall),
            "size {size}"
        );
    }
}

type Encoding<'a> = Encoder<Cursor<&'a mut [u8]>>;
type EncodeResult = Result<(), minicbor::encode::Error<minicbor::encode::write::EndOfSlice>>;

/// CBOR built by `build` (no allocator in the crate's minicbor: encode into an array).
fn cbor(build: impl FnOnce(&mut Encoding<'_>) -> EncodeResult) -> Vec<u8> {
    let mut buffer = [0u8; 2048];
    let mut encoder = Encoder::new(Cursor::new(&mut buffer[..]));
    build(&mut encoder).unwrap();
    let length = encoder.writer().position();
    buffer[..length].to_vec()
}

/// A certificate around the given claims map, signed by `issuer`.
fn signed_with_claims(issuer: &SigningKey, claims: &[u8]) -> Vec<u8> {
    let to_be_signed = cbor(|e| {
        e.array(4)?.str("Signature1")?.bytes(&PROTECTED)?.bytes(&[])?.bytes(claims)?;
        Ok(())
    });
    let signature = issuer.sign(&to_be_signed).to_bytes();
    cbor(|e| {
        e.array(4)?.bytes(&PROTECTED)?.map(0)?.bytes(claims)?.bytes(&signature)?;
        Ok(())
    })
}

#[test]
fn claim_errors_are_named() {
    let issuer = device_identity_key(&[1; 32]);
    let subject = key_pair_from_cdi(&[2; 32]);
    let issuer_key = issuer.verifying_key().to_bytes();
    let subject_key = subject.verifying_key().to_bytes();
    let issuer_id = id_hex_of(&issuer_key);
    let subject_id = id_hex_of(&subject_key);
    let claims = |skip: Option<i64>, wrong_sub: bool, usage: u8| {
        cbor(|e| {
            let all = [
                label::ISSUER,
                label::SUBJECT,
                label::CODE_HASH,
                label::CONFIG_DESCRIPTOR,
                label::AUTHORITY_HASH,
                label::MODE,
                label::SUBJECT_PUBLIC_KEY,
                label::KEY_USAGE,
            ];
            e.map(if skip.is_some() { 7 } else { 8 })?;
            for claim in all {
                if Some(claim) == skip {
                    continue;
                }
                e.i64(claim)?;
                match claim {
                    label::ISSUER => e.str(core::str::from_utf8(&issuer_id).unwrap())?,
                    label::SUBJECT if wrong_sub => e.str("00")?,
                    label::SUBJECT => e.str(core::str::from_utf8(&subject_id).unwrap())?,
                    label::MODE => e.bytes(&[1])?,
                    label::SUBJECT_PUBLIC_KEY => e.bytes(&cose_key(&subject_key))?,
                    label::KEY_USAGE => e.bytes(&[usage])?,
                    _ => e.bytes(&[0; 64])?,
                };
            }
            Ok(())
        })
    };
    assert!(verify_certificate(&signed_with_claims(&issuer, &claims(None, false, 0x20)), &issuer_key).is_ok());
    assert_eq!(
        verify_certificate(&signed_with_claims(&issuer, &claims(Some(label::MODE), false, 0x20)), &issuer_key),
        Err(DiceError::MissingClaim { label: label::MODE })
    );
    assert_eq!(
        verify_certificate(&signed_with_claims(&issuer, &claims(None, true, 0x20)), &issuer_key),
        Err(DiceError::SubjectMismatch)
    );
    assert_eq!(
        verify_certificate(&signed_with_claims(&issuer, &claims(None, false, 0x01)), &issuer_key),
        Err(DiceError::KeyUsage)
    );
    // Signed by someone else, with iss naming the expected issuer.
    let impostor = device_identity_key(&[9; 32]);
    assert_eq!(
        verify_certificate(&signed_with_claims(&impostor, &claims(None, false, 0x20)), &issuer_key),
        Err(DiceError::BadSignature)
    );
    // iss naming someone else, correctly signed by the issuer.
    assert_eq!(
        verify_certificate(
            &signed_with_claims(&issuer, &claims(None, false, 0x20)),
            &impostor.verifying_key().to_bytes()
        ),
        Err(DiceError::BadSignature)
    );
    let mut duplicated = claims(None, false, 0x20);
    duplicated[0] = 0xa9;
    duplicated.extend_from_slice(&[0x3a, 0x00, 0x47, 0x44, 0x56, 0x41, 0x01]);
    assert_eq!(
        verify_certificate(&signed_with_claims(&issuer, &duplicated), &issuer_key),
        Err(DiceError::DuplicateClaim { label: label::MODE })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn verify_never_panics_on_random_input(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = verify_certificate(&bytes, &device_identity_key(&[0; 32]).verifying_key().to_bytes());
    }

    #[test]
    fn verify_never_panics_on_mutated_certificates(flips in proptest::collection::vec((0usize..441, any::<u8>()), 1..4)) {
        let device = device_identity_key(&[0; 32]);
        let subject = key_pair_from_cdi(&[0; 32]);
        let mut out = [0u8; 441];
        certificate(&device, &subject.verifying_key(), &zero_inputs(), &mut out).unwrap();
        let original = out;
        for (index, value) in &flips {
            out[*index] = *value;
        }
        let result = verify_certificate(&out, &device.verifying_key().to_bytes());
        if out != original {
            prop_assert!(result.is_err());
        }
    }
}

/// A layer certifies a P-256 attestation key: EC2 COSE_Key, digitalSignature, and the chain
/// ends there (no Ed25519 key to go on with).
#[test]
fn a_p256_attestation_key_certificate() {
    let mut buffer = [0u8; 64];
    let length = descriptor(1, &mut buffer);
    let inputs = tzmk_inputs(1, 1, &buffer[..length]);
    let layer = key_pair_from_cdi(&derive_cdis(&[3; 32], &inputs).attest);
    let mut point = [0u8; 65];
    point[0] = 0x04;
    point.iter_mut().skip(1).enumerate().for_each(|(i, b)| *b = i as u8);
    let subject = SubjectKey::P256(point);
    let mut cert = [0u8; 1024];
    let n = certificate_of(&layer, &subject, &inputs, &mut cert).unwrap();
    let certified = verify_certificate(&cert[..n], &layer.verifying_key().to_bytes()).unwrap();
    assert_eq!(certified.subject_key, subject);
    assert_eq!(certified.subject_public_key(), None);
    assert_eq!(certified.key_usage, [KEY_USAGE_DIGITAL_SIGNATURE]);
    assert_eq!(certified.subject.as_bytes(), id_hex(&id_from_key_bytes(&point)));
    // Another issuer, or a flipped byte of the key, and it does not verify.
    assert!(verify_certificate(&cert[..n], &[9; 32]).is_err());
    let at = cert[..n].windows(4).position(|w| w == [0x21, 0x58, 0x20, 0x00]).unwrap() + 5;
    cert[at] ^= 1;
    assert!(verify_certificate(&cert[..n], &layer.verifying_key().to_bytes()).is_err());
}
