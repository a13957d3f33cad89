//! The Open Profile for DICE (docs/trusted-boot.md, "DICE"): CDI derivation, the key pairs and
//! identifiers derived from a CDI or the UDS, and CBOR (CWT, COSE_Sign1, EdDSA) CDI certificates.
//!
//! The algorithms are the profile's defaults: SHA-512, HKDF-SHA512 and Ed25519. Every constant
//! is the one the open-dice repository (google/open-dice) publishes: `docs/specification.md`
//! ("Cryptography", "Computing CDI Values", "Deriving Asymmetric Key Pairs", "Deriving
//! Identifiers", "CBOR CDI Certificates") and `src/dice.c` (the hashed input layout). The tests
//! check this module against open-dice's published known-answer values for the all-zero input
//! (`include/dice/known_test_values.h`).
//!
//! ```text
//! CDI_Attest = HKDF-SHA512(ikm = UDS or CDI_Attest[n], salt = SHA-512(code || config || authority || mode || hidden), "CDI_Attest", 32)
//! CDI_Seal   = HKDF-SHA512(ikm = UDS or CDI_Seal[n],   salt = SHA-512(authority || mode || hidden), "CDI_Seal", 32)
//! private key seed = HKDF-SHA512(CDI_Attest or UDS, ASYM_SALT, "Key Pair", 32)   (Ed25519 seed)
//! ID = HKDF-SHA512(public key, ID_SALT, "ID", 20), top bit cleared
//! ```

use core::fmt;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use minicbor::encode::write::Cursor;
use minicbor::Encoder;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes of a CDI (and of the UDS).
pub const CDI_SIZE: usize = 32;
/// Bytes of a hash input (code, configuration, authority): SHA-512.
pub const HASH_SIZE: usize = 64;
/// Bytes of the hidden input.
pub const HIDDEN_SIZE: usize = 64;
/// Bytes of an inline configuration value.
pub const INLINE_CONFIG_SIZE: usize = 64;
/// Bytes of a certificate identifier.
pub const ID_SIZE: usize = 20;
/// Bytes of an Ed25519 public key's COSE_Key encoding as [`certificate`] writes it.
pub const COSE_KEY_SIZE: usize = 45;

/// `ASYM_SALT` of the specification: the salt of every key pair derivation.
pub const ASYM_SALT: [u8; 64] = [
    0x63, 0xb6, 0xa0, 0x4d, 0x2c, 0x07, 0x7f, 0xc1, 0x0f, 0x63, 0x9f, 0x21, 0xda, 0x79, 0x38, 0x44, 0x35, 0x6c, 0xc2,
    0xb0, 0xb4, 0x41, 0xb3, 0xa7, 0x71, 0x24, 0x03, 0x5c, 0x03, 0xf8, 0xe1, 0xbe, 0x60, 0x35, 0xd3, 0x1f, 0x28, 0x28,
    0x21, 0xa7, 0x45, 0x0a, 0x02, 0x22, 0x2a, 0xb1, 0xb3, 0xcf, 0xf1, 0x67, 0x9b, 0x05, 0xab, 0x1c, 0xa5, 0xd1, 0xaf,
    0xfb, 0x78, 0x9c, 0xcd, 0x2b, 0x0b, 0x3b,
];

/// `ID_SALT` of the specification: the salt of every identifier derivation.
pub const ID_SALT: [u8; 64] = [
    0xdb, 0xdb, 0xae, 0xbc, 0x80, 0x20, 0xda, 0x9f, 0xf0, 0xdd, 0x5a, 0x24, 0xc8, 0x3a, 0xa5, 0xa5, 0x42, 0x86, 0xdf,
    0xc2, 0x63, 0x03, 0x1e, 0x32, 0x9b, 0x4d, 0xa1, 0x48, 0x43, 0x06, 0x59, 0xfe, 0x62, 0xcd, 0xb5, 0xb7, 0xe1, 0xe0,
    0x0f, 0xc6, 0x80, 0x30, 0x67, 0x11, 0xeb, 0x44, 0x4a, 0xf7, 0x72, 0x09, 0x35, 0x94, 0x96, 0xfc, 0xff, 0x1d, 0xb9,
    0x52, 0x0b, 0xa5, 0x1c, 0x7b, 0x29, 0xea,
];

/// CWT claim labels: RFC 8392 (issuer, subject) and the profile's "CBOR CDI Certificates" table.
pub mod label {
    /// `iss` (RFC 8392): the issuer's ID, lowercase hex.
    pub const ISSUER: i64 = 1;
    /// `sub` (RFC 8392): the subject's ID, lowercase hex.
    pub const SUBJECT: i64 = 2;
    /// The 64-byte code input.
    pub const CODE_HASH: i64 = -4670545;
    /// Optional information the code hash covers.
    pub const CODE_DESCRIPTOR: i64 = -4670546;
    /// The configuration input when it is the hash of a descriptor.
    pub const CONFIG_HASH: i64 = -4670547;
    /// The configuration descriptor, or the 64-byte inline configuration value.
    pub const CONFIG_DESCRIPTOR: i64 = -4670548;
    /// The 64-byte authority input.
    pub const AUTHORITY_HASH: i64 = -4670549;
    /// Optional information the authority hash covers.
    pub const AUTHORITY_DESCRIPTOR: i64 = -4670550;
    /// The mode, a one-byte byte string.
    pub const MODE: i64 = -4670551;
    /// The subject's public key, a COSE_Key in a byte string.
    pub const SUBJECT_PUBLIC_KEY: i64 = -4670552;
    /// X.509 key usage bits, little-endian, in a byte string.
    pub const KEY_USAGE: i64 = -4670553;
    /// The name of the profile that defines the certificate's contents (text).
    pub const PROFILE_NAME: i64 = -4670554;
}

/// `keyUsage` with only keyCertSign (RFC 5280 bit 5): every DICE certificate's subject is a CA.
pub const KEY_USAGE_CERT_SIGN: u8 = 0x20;

/// Configuration descriptor labels of the Android Profile for DICE (open-dice `docs/android.md`,
/// `src/android.c`), which tzmk's descriptors follow.
pub mod config_label {
    /// Component name (text).
    pub const COMPONENT_NAME: i64 = -70002;
    /// Component version (integer).
    pub const COMPONENT_VERSION: i64 = -70003;
    /// Security version (unsigned integer).
    pub const SECURITY_VERSION: i64 = -70005;
}

/// The mode input ("Mode Value Details").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// At least one security mechanism is not configured.
    NotConfigured = 0,
    /// Verified boot on, debug off: tzmk's production boot.
    Normal = 1,
    /// A criterion for normal is not met.
    Debug = 2,
    /// Recovery or maintenance.
    Recovery = 3,
}

/// The configuration input: a 64-byte value, or a descriptor whose SHA-512 is the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config<'a> {
    /// The 64-byte value itself.
    Inline([u8; INLINE_CONFIG_SIZE]),
    /// A descriptor (tzmk: [`config_descriptor`]'s CBOR map); the input is its SHA-512.
    Descriptor(&'a [u8]),
}

/// A layer's DICE inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs<'a> {
    /// SHA-512 of the next layer's code (tzmk: of the secure image).
    pub code_hash: [u8; HASH_SIZE],
    /// The configuration.
    pub config: Config<'a>,
    /// SHA-512 of the authority that verified the code (tzmk: of the platform public key).
    pub authority_hash: [u8; HASH_SIZE],
    /// The mode.
    pub mode: Mode,
    /// Hidden input, never certified (tzmk: zeros).
    pub hidden: [u8; HIDDEN_SIZE],
}

const INPUT_SIZE: usize = HASH_SIZE + INLINE_CONFIG_SIZE + HASH_SIZE + 1 + HIDDEN_SIZE;
const AUTHORITY_OFFSET: usize = HASH_SIZE + INLINE_CONFIG_SIZE;

impl Inputs<'_> {
    /// The 64-byte configuration input: the inline value or SHA-512 of the descriptor.
    pub fn config_input(&self) -> [u8; INLINE_CONFIG_SIZE] {
        match self.config {
            Config::Inline(value) => value,
            Config::Descriptor(descriptor) => Sha512::digest(descriptor).into(),
        }
    }

    /// code || config || authority || mode || hidden, the layout open-dice's `DiceMainFlow`
    /// hashes; the sealing input is its tail from the authority on.
    fn serialize(&self) -> [u8; INPUT_SIZE] {
        let mut buffer = [0u8; INPUT_SIZE];
        buffer[..HASH_SIZE].copy_from_slice(&self.code_hash);
        buffer[HASH_SIZE..AUTHORITY_OFFSET].copy_from_slice(&self.config_input());
        buffer[AUTHORITY_OFFSET..AUTHORITY_OFFSET + HASH_SIZE].copy_from_slice(&self.authority_hash);
        buffer[AUTHORITY_OFFSET + HASH_SIZE] = self.mode as u8;
        buffer[AUTHORITY_OFFSET + HASH_SIZE + 1..].copy_from_slice(&self.hidden);
        buffer
    }
}

/// A layer's two CDIs; wiped when dropped. No `PartialEq`: secrets are not compared in variable
/// time by accident.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Cdis {
    /// CDI_Attest: changes with the code and configuration; the layer's identity.
    pub attest: [u8; CDI_SIZE],
    /// CDI_Seal: stable across code updates under the same authority and mode.
    pub seal: [u8; CDI_SIZE],
}

impl fmt::Debug for Cdis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cdis { .. }")
    }
}

/// The profile's `KDF(length, ikm, salt, info)`: HKDF-SHA512. The output is the caller's to
/// wipe; the HKDF state (HMAC's two SHA-512 states, keyed with the secret) wipes itself when it
/// is dropped (sha2's `zeroize` feature, on for the workspace: `hash_states_wipe_themselves`).
fn kdf<const N: usize>(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; N] {
    let mut okm = [0u8; N];
    // HKDF-SHA512 refuses only outputs above 255 * 64 bytes; N is at most 32 here.
    Hkdf::<Sha512>::new(Some(salt), ikm).expand(info, &mut okm).expect("HKDF-SHA512 output of at most 32 bytes");
    okm
}

fn derive(attest_ikm: &[u8; CDI_SIZE], seal_ikm: &[u8; CDI_SIZE], inputs: &Inputs<'_>) -> Cdis {
    let mut input = inputs.serialize();
    let mut attest_salt: [u8; HASH_SIZE] = Sha512::digest(input).into();
    let mut seal_salt: [u8; HASH_SIZE] = Sha512::digest(&input[AUTHORITY_OFFSET..]).into();
    let cdis =
        Cdis { attest: kdf(attest_ikm, &attest_salt, b"CDI_Attest"), seal: kdf(seal_ikm, &seal_salt, b"CDI_Seal") };
    input.zeroize();
    attest_salt.zeroize();
    seal_salt.zeroize();
    cdis
}

/// Layer 0: the CDIs of the next layer from the UDS and that layer's inputs.
pub fn derive_cdis(uds: &[u8; CDI_SIZE], inputs: &Inputs<'_>) -> Cdis {
    derive(uds, uds, inputs)
}

impl Cdis {
    /// Layering: the CDIs of the layer after this one, from its inputs.
    pub fn next(&self, inputs: &Inputs<'_>) -> Cdis {
        derive(&self.attest, &self.seal, inputs)
    }
}

/// `ASYM_KDF`: the Ed25519 key pair whose seed is `KDF(32, input, ASYM_SALT, "Key Pair")`.
fn asymmetric_key(input: &[u8; CDI_SIZE]) -> SigningKey {
    let mut seed: [u8; 32] = kdf(input, &ASYM_SALT, b"Key Pair");
    let key = SigningKey::from_bytes(&seed);
    seed.zeroize();
    key
}

/// A layer's DICE key pair, from its CDI_Attest (`CDI_Private`, `CDI_Public`).
pub fn key_pair_from_cdi(cdi_attest: &[u8; CDI_SIZE]) -> SigningKey {
    asymmetric_key(cdi_attest)
}

/// The device-identity key (DICE layer 0, `UDS_Private`, `UDS_Public`): the same derivation from
/// the UDS, so that it certifies layer 1 exactly as a CDI key certifies the next layer.
pub fn device_identity_key(uds: &[u8; CDI_SIZE]) -> SigningKey {
    asymmetric_key(uds)
}

/// A key's certificate identifier: `KDF(20, public key, ID_SALT, "ID")` with the top bit cleared
/// (so that it is a positive ASN.1 integer without padding).
pub fn id_from_public_key(public_key: &[u8; 32]) -> [u8; ID_SIZE] {
    id_from_key_bytes(public_key)
}

/// [`id_from_public_key`] of any key's bytes: an Ed25519 key's 32, a P-256 key's 65-byte
/// uncompressed point.
pub fn id_from_key_bytes(public_key: &[u8]) -> [u8; ID_SIZE] {
    let mut id: [u8; ID_SIZE] = kdf(public_key, &ID_SALT, b"ID");
    id[0] &= 0x7f;
    id
}

/// An ID in lowercase hex, as `iss` and `sub` carry it. Hand-written (a dozen lines) because it
/// fills a fixed array, where a hex crate's slice API would return an error for a length that
/// cannot be wrong.
pub fn id_hex(id: &[u8; ID_SIZE]) -> [u8; 2 * ID_SIZE] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 2 * ID_SIZE];
    for (index, byte) in id.iter().enumerate() {
        hex[2 * index] = DIGITS[(byte >> 4) as usize];
        hex[2 * index + 1] = DIGITS[(byte & 0xf) as usize];
    }
    hex
}

fn id_hex_of(public_key: &[u8]) -> [u8; 2 * ID_SIZE] {
    id_hex(&id_from_key_bytes(public_key))
}

/// Why a certificate or descriptor could not be written, or a certificate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiceError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// The CBOR structure is not what the profile says at `field`.
    Malformed {
        /// What was being decoded.
        field: &'static str,
    },
    /// The protected header is not `{1: -8}` (EdDSA).
    UnsupportedAlgorithm,
    /// The issuer's public key is not a valid Ed25519 key.
    BadIssuerKey,
    /// The signature does not verify with the issuer's key.
    BadSignature,
    /// A required claim is missing.
    MissingClaim {
        /// The claim's label.
        label: i64,
    },
    /// A claim appears twice.
    DuplicateClaim {
        /// The claim's label.
        label: i64,
    },
    /// A claim has the wrong type or size.
    BadClaim {
        /// The claim's label.
        label: i64,
    },
    /// The subject public key is not an Ed25519 COSE_Key.
    BadSubjectPublicKey,
    /// `iss` is not the issuer key's ID.
    IssuerMismatch,
    /// `sub` is not the subject key's ID.
    SubjectMismatch,
    /// The configuration hash is not SHA-512 of the descriptor.
    ConfigHashMismatch,
    /// The key usage lacks keyCertSign.
    KeyUsage,
    /// Bytes follow the certificate or its payload.
    TrailingBytes,
}

impl DiceError {
    /// A stable number for the error's variant.
    pub fn code(&self) -> u32 {
        match self {
            DiceError::BufferTooSmall => 1,
            DiceError::Malformed { .. } => 2,
            DiceError::UnsupportedAlgorithm => 3,
            DiceError::BadIssuerKey => 4,
            DiceError::BadSignature => 5,
            DiceError::MissingClaim { .. } => 6,
            DiceError::DuplicateClaim { .. } => 7,
            DiceError::BadClaim { .. } => 8,
            DiceError::BadSubjectPublicKey => 9,
            DiceError::IssuerMismatch => 10,
            DiceError::SubjectMismatch => 11,
            DiceError::ConfigHashMismatch => 12,
            DiceError::KeyUsage => 13,
            DiceError::TrailingBytes => 14,
        }
    }
}

impl fmt::Display for DiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DiceError::BufferTooSmall => write!(f, "DICE: output buffer too small"),
            DiceError::Malformed { field } => write!(f, "DICE certificate: malformed {field}"),
            DiceError::UnsupportedAlgorithm => write!(f, "DICE certificate: protected header is not {{1: -8}} (EdDSA)"),
            DiceError::BadIssuerKey => write!(f, "DICE certificate: issuer key is not a valid Ed25519 key"),
            DiceError::BadSignature => write!(f, "DICE certificate: signature does not verify with the issuer key"),
            DiceError::MissingClaim { label } => write!(f, "DICE certificate: claim {label} missing"),
            DiceError::DuplicateClaim { label } => write!(f, "DICE certificate: claim {label} repeated"),
            DiceError::BadClaim { label } => write!(f, "DICE certificate: claim {label} has the wrong type or size"),
            DiceError::BadSubjectPublicKey => {
                write!(f, "DICE certificate: subject public key is not an Ed25519 COSE_Key")
            }
            DiceError::IssuerMismatch => write!(f, "DICE certificate: iss is not the issuer key's ID"),
            DiceError::SubjectMismatch => write!(f, "DICE certificate: sub is not the subject key's ID"),
            DiceError::ConfigHashMismatch => {
                write!(f, "DICE certificate: configuration hash is not SHA-512 of the descriptor")
            }
            DiceError::KeyUsage => write!(f, "DICE certificate: key usage lacks keyCertSign"),
            DiceError::TrailingBytes => write!(f, "DICE certificate: trailing bytes"),
        }
    }
}

impl<E> From<minicbor::encode::Error<E>> for DiceError {
    fn from(_: minicbor::encode::Error<E>) -> Self {
        DiceError::BufferTooSmall
    }
}

/// Writes tzmk's configuration descriptor (a CBOR map with the Android profile's labels:
/// component name, component version, security version) into `out`; returns its length.
pub fn config_descriptor(
    component_name: &str,
    component_version: u64,
    security_version: u64,
    out: &mut [u8],
) -> Result<usize, DiceError> {
    let mut encoder = Encoder::new(Cursor::new(out));
    encoder
        .map(3)?
        .i64(config_label::COMPONENT_NAME)?
        .str(component_name)?
        .i64(config_label::COMPONENT_VERSION)?
        .u64(component_version)?
        .i64(config_label::SECURITY_VERSION)?
        .u64(security_version)?;
    Ok(encoder.writer().position())
}

/// COSE protected header `{1: -8}`: alg EdDSA (RFC 9053, table 2).
const PROTECTED: [u8; 3] = [0xa1, 0x01, 0x27];
/// The longest CBOR byte-string head (major type 2 with an 8-byte length).
const MAX_BSTR_HEAD: usize = 9;
/// `Sig_structure` (RFC 9052, section 4.4) up to the payload's head: array(4), "Signature1",
/// bstr(protected), bstr(empty external AAD).
const SIG_STRUCTURE_FIXED: usize = 1 + 11 + 1 + PROTECTED.len() + 1;
/// `COSE_Sign1` up to the payload's head: array(4), bstr(protected), map(0).
const COSE_SIGN1_FIXED: usize = 1 + 1 + PROTECTED.len() + 1;

/// The head of the subject public key's COSE_Key (RFC 9052 section 7, RFC 9053 tables 2 and
/// 18), in open-dice's order: `A5` map(5), `01 01` kty: OKP, `03 27` alg: EdDSA (-8), `04 81 02`
/// key_ops: [verify], `20 06` crv (-1): Ed25519, `21 58 20` x (-2): a 32-byte string.
const COSE_KEY_HEAD: [u8; 13] = [0xa5, 0x01, 0x01, 0x03, 0x27, 0x04, 0x81, 0x02, 0x20, 0x06, 0x21, 0x58, 0x20];

/// The subject public key as a COSE_Key: `{1: 1, 3: -8, 4: [2], -1: 6, -2: x}`.
pub fn cose_key(public_key: &[u8; 32]) -> [u8; COSE_KEY_SIZE] {
    let mut key = [0u8; COSE_KEY_SIZE];
    key[..COSE_KEY_HEAD.len()].copy_from_slice(&COSE_KEY_HEAD);
    key[COSE_KEY_HEAD.len()..].copy_from_slice(public_key);
    key
}

/// The head of a P-256 subject key's COSE_Key: `A6` map(6), `01 02` kty: EC2, `03 26` alg: ES256
/// (-7), `04 81 02` key_ops: [verify], `20 01` crv (-1): P-256, `21 58 20` x (-2): 32 bytes; then
/// `22 58 20` y (-3): 32 bytes (RFC 9053 tables 18 and 19).
const COSE_KEY_P256_HEAD: [u8; 13] = [0xa6, 0x01, 0x02, 0x03, 0x26, 0x04, 0x81, 0x02, 0x20, 0x01, 0x21, 0x58, 0x20];
/// Bytes of a P-256 subject key's COSE_Key.
pub const COSE_KEY_P256_SIZE: usize = COSE_KEY_P256_HEAD.len() + 32 + 3 + 32;
/// A P-256 public key as the SEC1 uncompressed point `04 || x || y`.
pub type P256Point = [u8; 65];

/// Key usage digitalSignature (RFC 5280's bit 0): the subject key signs data (an attestation
/// token), not certificates.
pub const KEY_USAGE_DIGITAL_SIGNATURE: u8 = 0x01;

/// The key a certificate certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKey {
    /// A layer's CDI key (Ed25519, EdDSA): it certifies the next layer.
    Ed25519([u8; 32]),
    /// An attestation key (P-256, ES256), as its uncompressed point: it signs tokens.
    P256(P256Point),
}

impl SubjectKey {
    /// The bytes its ID is derived from.
    pub fn bytes(&self) -> &[u8] {
        match self {
            SubjectKey::Ed25519(key) => key,
            SubjectKey::P256(point) => point,
        }
    }

    /// Its COSE_Key in `out`; the length used.
    fn cose_key(&self, out: &mut [u8; COSE_KEY_P256_SIZE]) -> usize {
        match self {
            SubjectKey::Ed25519(key) => {
                out[..COSE_KEY_SIZE].copy_from_slice(&cose_key(key));
                COSE_KEY_SIZE
            }
            SubjectKey::P256(point) => {
                out[..13].copy_from_slice(&COSE_KEY_P256_HEAD);
                out[13..45].copy_from_slice(&point[1..33]);
                out[45..48].copy_from_slice(&[0x22, 0x58, 0x20]);
                out[48..80].copy_from_slice(&point[33..65]);
                COSE_KEY_P256_SIZE
            }
        }
    }

    /// keyCertSign for a CDI key, digitalSignature for an attestation key.
    fn key_usage(&self) -> u8 {
        match self {
            SubjectKey::Ed25519(_) => KEY_USAGE_CERT_SIGN,
            SubjectKey::P256(_) => KEY_USAGE_DIGITAL_SIGNATURE,
        }
    }
}

fn bstr_head(length: usize) -> Result<([u8; MAX_BSTR_HEAD], usize), DiceError> {
    let mut head = Cursor::new([0u8; MAX_BSTR_HEAD]);
    Encoder::new(&mut head).bytes_len(length as u64)?;
    let size = head.position();
    Ok((head.into_inner(), size))
}

fn encode_payload(
    issuer_public_key: &[u8; 32],
    subject_key: &SubjectKey,
    inputs: &Inputs<'_>,
    out: &mut [u8],
) -> Result<usize, DiceError> {
    let issuer = id_hex_of(issuer_public_key);
    let subject = id_hex_of(subject_key.bytes());
    let mut cose_key = [0u8; COSE_KEY_P256_SIZE];
    let cose_key_length = subject_key.cose_key(&mut cose_key);
    let cose_key = &cose_key[..cose_key_length];
    // Both are ASCII hex digits.
    let issuer = core::str::from_utf8(&issuer).map_err(|_| DiceError::Malformed { field: "iss" })?;
    let subject = core::str::from_utf8(&subject).map_err(|_| DiceError::Malformed { field: "sub" })?;
    let mut encoder = Encoder::new(Cursor::new(out));
    let entries = match inputs.config {
        Config::Inline(_) => 8,
        Config::Descriptor(_) => 9,
    };
    encoder
        .map(entries)?
        .i64(label::ISSUER)?
        .str(issuer)?
        .i64(label::SUBJECT)?
        .str(subject)?
        .i64(label::CODE_HASH)?
        .bytes(&inputs.code_hash)?;
    match inputs.config {
        Config::Inline(value) => {
            encoder.i64(label::CONFIG_DESCRIPTOR)?.bytes(&value)?;
        }
        Config::Descriptor(descriptor) => {
            encoder
                .i64(label::CONFIG_DESCRIPTOR)?
                .bytes(descriptor)?
                .i64(label::CONFIG_HASH)?
                .bytes(&inputs.config_input())?;
        }
    }
    encoder
        .i64(label::AUTHORITY_HASH)?
        .bytes(&inputs.authority_hash)?
        .i64(label::MODE)?
        .bytes(&[inputs.mode as u8])?
        .i64(label::SUBJECT_PUBLIC_KEY)?
        .bytes(cose_key)?
        .i64(label::KEY_USAGE)?
        .bytes(&[subject_key.key_usage()])?;
    Ok(encoder.writer().position())
}

/// Writes the CDI certificate of `subject_public_key` (the next layer's key), signed by `issuer`
/// (the device-identity key or the current layer's CDI key), into `out`; returns its length.
///
/// The certificate is an untagged COSE_Sign1 `[h'A10127', {}, payload, signature]` whose
/// payload is the CWT claims map: `iss`, `sub`, code hash, configuration descriptor (and its hash
/// for a descriptor), authority hash, mode, subject public key, key usage, in open-dice's order.
/// `out` is also the work area (no allocator): it must hold the whole certificate.
pub fn certificate(
    issuer: &SigningKey,
    subject_public_key: &VerifyingKey,
    inputs: &Inputs<'_>,
    out: &mut [u8],
) -> Result<usize, DiceError> {
    certificate_of(issuer, &SubjectKey::Ed25519(subject_public_key.to_bytes()), inputs, out)
}

/// [`certificate`] of any [`SubjectKey`]: a layer's CDI key (keyCertSign), or an attestation
/// key (P-256, digitalSignature) that the layer certifies for its tokens.
pub fn certificate_of(
    issuer: &SigningKey,
    subject_key: &SubjectKey,
    inputs: &Inputs<'_>,
    out: &mut [u8],
) -> Result<usize, DiceError> {
    let issuer_public_key = issuer.verifying_key().to_bytes();
    // The payload goes where the longest Sig_structure head would end, then moves left.
    let work = SIG_STRUCTURE_FIXED + MAX_BSTR_HEAD;
    let payload_length =
        encode_payload(&issuer_public_key, subject_key, inputs, out.get_mut(work..).ok_or(DiceError::BufferTooSmall)?)?;
    let (head, head_length) = bstr_head(payload_length)?;
    let head = &head[..head_length];
    let cose_prefix = COSE_SIGN1_FIXED + head_length;
    let total = cose_prefix + payload_length + 2 + 64;
    if out.len() < total {
        return Err(DiceError::BufferTooSmall);
    }

    // Sig_structure = ["Signature1", protected, h'', payload], contiguous in `out`.
    let sig_prefix = SIG_STRUCTURE_FIXED + head_length;
    out.copy_within(work..work + payload_length, sig_prefix);
    {
        let mut encoder = Encoder::new(Cursor::new(&mut out[..sig_prefix]));
        encoder.array(4)?.str("Signature1")?.bytes(&PROTECTED)?.bytes(&[])?;
    }
    out[sig_prefix - head_length..sig_prefix].copy_from_slice(head);
    let signature = issuer.sign(&out[..sig_prefix + payload_length]);

    // COSE_Sign1 = [protected, {}, payload, signature].
    out.copy_within(sig_prefix..sig_prefix + payload_length, cose_prefix);
    {
        let mut encoder = Encoder::new(Cursor::new(&mut out[..cose_prefix]));
        encoder.array(4)?.bytes(&PROTECTED)?.map(0)?;
    }
    out[cose_prefix - head_length..cose_prefix].copy_from_slice(head);
    let mut encoder = Encoder::new(Cursor::new(&mut out[cose_prefix + payload_length..total]));
    encoder.bytes(&signature.to_bytes())?;
    Ok(total)
}

#[cfg(any(feature = "std", test))]
pub use verify::{verify_certificate, Certified};

#[cfg(any(feature = "std", test))]
mod verify {
    use super::*;
    use ed25519_dalek::Signature;
    use minicbor::data::Type;
    use minicbor::Decoder;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// What a verified certificate says about its subject.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Certified {
        /// `iss`: the issuer's ID in hex.
        pub issuer: String,
        /// `sub`: the subject's ID in hex.
        pub subject: String,
        /// The subject's key: a CDI key (Ed25519, the issuer key of the next certificate in a
        /// chain) or an attestation key (P-256).
        pub subject_key: SubjectKey,
        /// The code hash.
        pub code_hash: [u8; HASH_SIZE],
        /// The configuration descriptor (or the 64-byte inline value).
        pub config_descriptor: Vec<u8>,
        /// The configuration hash, when the input was a descriptor's hash.
        pub config_hash: Option<[u8; HASH_SIZE]>,
        /// The authority hash.
        pub authority_hash: [u8; HASH_SIZE],
        /// The mode byte.
        pub mode: u8,
        /// The key usage bytes.
        pub key_usage: Vec<u8>,
        /// The profile name, if the certificate names one.
        pub profile_name: Option<String>,
    }

    impl Certified {
        /// The subject's Ed25519 key when it is a CDI key (what the next certificate of a chain
        /// is verified with).
        pub fn subject_public_key(&self) -> Option<[u8; 32]> {
            match self.subject_key {
                SubjectKey::Ed25519(key) => Some(key),
                SubjectKey::P256(_) => None,
            }
        }
    }

    fn malformed(field: &'static str) -> impl Fn(minicbor::decode::Error) -> DiceError {
        move |_| DiceError::Malformed { field }
    }

    fn fixed<const N: usize>(bytes: &[u8], label: i64) -> Result<[u8; N], DiceError> {
        bytes.try_into().map_err(|_| DiceError::BadClaim { label })
    }

    fn definite(length: Option<u64>, field: &'static str) -> Result<u64, DiceError> {
        length.ok_or(DiceError::Malformed { field })
    }

    /// Decodes the subject's COSE_Key: OKP/EdDSA/Ed25519 with a 32-byte x, or EC2/ES256/P-256
    /// with 32-byte x and y (the point's validity is the token verifier's to check).
    fn decode_cose_key(bytes: &[u8]) -> Result<SubjectKey, DiceError> {
        let bad = |_| DiceError::BadSubjectPublicKey;
        let mut decoder = Decoder::new(bytes);
        let entries = decoder.map().map_err(bad)?.ok_or(DiceError::BadSubjectPublicKey)?;
        let (mut kty, mut alg, mut crv, mut x, mut y) = (None, None, None, None, None);
        for _ in 0..entries {
            match decoder.i64().map_err(bad)? {
                1 => kty = Some(decoder.i64().map_err(bad)?),
                3 => alg = Some(decoder.i64().map_err(bad)?),
                4 => decoder.skip().map_err(bad)?,
                -1 => crv = Some(decoder.i64().map_err(bad)?),
                -2 => x = Some(decoder.bytes().map_err(bad)?),
                -3 => y = Some(decoder.bytes().map_err(bad)?),
                _ => return Err(DiceError::BadSubjectPublicKey),
            }
        }
        if decoder.position() != bytes.len() {
            return Err(DiceError::BadSubjectPublicKey);
        }
        let x32 = |v: Option<&[u8]>| -> Result<[u8; 32], DiceError> {
            v.and_then(|v| v.try_into().ok()).ok_or(DiceError::BadSubjectPublicKey)
        };
        match (kty, alg, crv, y) {
            (Some(1), Some(-8), Some(6), None) => {
                let x = x32(x)?;
                VerifyingKey::from_bytes(&x).map_err(|_| DiceError::BadSubjectPublicKey)?;
                Ok(SubjectKey::Ed25519(x))
            }
            (Some(2), Some(-7), Some(1), Some(y)) => {
                let mut point = [0u8; 65];
                point[0] = 0x04;
                point[1..33].copy_from_slice(&x32(x)?);
                point[33..].copy_from_slice(&x32(Some(y))?);
                Ok(SubjectKey::P256(point))
            }
            _ => Err(DiceError::BadSubjectPublicKey),
        }
    }

    /// Verifies a CDI certificate against its issuer's public key and returns what it certifies:
    /// the strict Ed25519 signature over the COSE `Sig_structure`, then every claim the profile
    /// requires (types and sizes), `iss` and `sub` against the two keys' IDs, the configuration
    /// hash against the descriptor, and keyCertSign. A chain is walked by passing each result's
    /// `subject_public_key()` as the next certificate's issuer key.
    pub fn verify_certificate(certificate: &[u8], issuer_public_key: &[u8; 32]) -> Result<Certified, DiceError> {
        let mut decoder = Decoder::new(certificate);
        if decoder.datatype().map_err(malformed("COSE_Sign1"))? != Type::Array {
            return Err(DiceError::Malformed { field: "COSE_Sign1 (untagged array)" });
        }
        if decoder.array().map_err(malformed("COSE_Sign1"))? != Some(4) {
            return Err(DiceError::Malformed { field: "COSE_Sign1 (array of 4)" });
        }
        let protected = decoder.bytes().map_err(malformed("protected header"))?;
        if protected != PROTECTED {
            return Err(DiceError::UnsupportedAlgorithm);
        }
        let unprotected = decoder.map().map_err(malformed("unprotected header"))?;
        if definite(unprotected, "unprotected header")? != 0 {
            return Err(DiceError::Malformed { field: "unprotected header (not empty)" });
        }
        let payload = decoder.bytes().map_err(malformed("payload"))?;
        let signature = decoder.bytes().map_err(malformed("signature"))?;
        let signature: [u8; 64] = signature.try_into().map_err(|_| DiceError::Malformed { field: "signature" })?;
        if decoder.position() != certificate.len() {
            return Err(DiceError::TrailingBytes);
        }

        let issuer = VerifyingKey::from_bytes(issuer_public_key).map_err(|_| DiceError::BadIssuerKey)?;
        let (head, head_length) = bstr_head(payload.len())?;
        let mut to_be_signed = vec![0u8; SIG_STRUCTURE_FIXED + head_length + payload.len()];
        {
            let mut encoder = Encoder::new(Cursor::new(&mut to_be_signed[..]));
            encoder.array(4)?.str("Signature1")?.bytes(&PROTECTED)?.bytes(&[])?;
        }
        to_be_signed[SIG_STRUCTURE_FIXED..SIG_STRUCTURE_FIXED + head_length].copy_from_slice(&head[..head_length]);
        to_be_signed[SIG_STRUCTURE_FIXED + head_length..].copy_from_slice(payload);
        issuer.verify_strict(&to_be_signed, &Signature::from_bytes(&signature)).map_err(|_| DiceError::BadSignature)?;

        decode_claims(payload, issuer_public_key)
    }

    fn decode_claims(payload: &[u8], issuer_public_key: &[u8; 32]) -> Result<Certified, DiceError> {
        let mut decoder = Decoder::new(payload);
        let entries = definite(decoder.map().map_err(malformed("claims map"))?, "claims map")?;
        let mut seen: Vec<i64> = Vec::new();
        let mut issuer = None;
        let mut subject = None;
        let mut code_hash = None;
        let mut config_descriptor = None;
        let mut config_hash = None;
        let mut authority_hash = None;
        let mut mode = None;
        let mut subject_key = None;
        let mut key_usage = None;
        let mut profile_name = None;
        for _ in 0..entries {
            let claim = decoder.i64().map_err(malformed("claim label"))?;
            if seen.contains(&claim) {
                return Err(DiceError::DuplicateClaim { label: claim });
            }
            seen.push(claim);
            let bad = |_| DiceError::BadClaim { label: claim };
            match claim {
                label::ISSUER => issuer = Some(String::from(decoder.str().map_err(bad)?)),
                label::SUBJECT => subject = Some(String::from(decoder.str().map_err(bad)?)),
                label::CODE_HASH => code_hash = Some(fixed::<HASH_SIZE>(decoder.bytes().map_err(bad)?, claim)?),
                label::CONFIG_DESCRIPTOR => config_descriptor = Some(decoder.bytes().map_err(bad)?.to_vec()),
                label::CONFIG_HASH => config_hash = Some(fixed::<HASH_SIZE>(decoder.bytes().map_err(bad)?, claim)?),
                label::AUTHORITY_HASH => {
                    authority_hash = Some(fixed::<HASH_SIZE>(decoder.bytes().map_err(bad)?, claim)?)
                }
                label::MODE => mode = Some(fixed::<1>(decoder.bytes().map_err(bad)?, claim)?[0]),
                label::SUBJECT_PUBLIC_KEY => subject_key = Some(decode_cose_key(decoder.bytes().map_err(bad)?)?),
                label::KEY_USAGE => key_usage = Some(decoder.bytes().map_err(bad)?.to_vec()),
                label::PROFILE_NAME => profile_name = Some(String::from(decoder.str().map_err(bad)?)),
                label::CODE_DESCRIPTOR | label::AUTHORITY_DESCRIPTOR => {
                    decoder.bytes().map_err(bad)?;
                }
                _ => decoder.skip().map_err(bad)?,
            }
        }
        if decoder.position() != payload.len() {
            return Err(DiceError::TrailingBytes);
        }
        let missing = |label| DiceError::MissingClaim { label };
        let certified = Certified {
            issuer: issuer.ok_or(missing(label::ISSUER))?,
            subject: subject.ok_or(missing(label::SUBJECT))?,
            subject_key: subject_key.ok_or(missing(label::SUBJECT_PUBLIC_KEY))?,
            code_hash: code_hash.ok_or(missing(label::CODE_HASH))?,
            config_descriptor: config_descriptor.ok_or(missing(label::CONFIG_DESCRIPTOR))?,
            config_hash,
            authority_hash: authority_hash.ok_or(missing(label::AUTHORITY_HASH))?,
            mode: mode.ok_or(missing(label::MODE))?,
            key_usage: key_usage.ok_or(missing(label::KEY_USAGE))?,
            profile_name,
        };
        if certified.issuer.as_bytes() != id_hex_of(issuer_public_key) {
            return Err(DiceError::IssuerMismatch);
        }
        if certified.subject.as_bytes() != id_hex_of(certified.subject_key.bytes()) {
            return Err(DiceError::SubjectMismatch);
        }
        if let Some(hash) = certified.config_hash {
            if hash[..] != Sha512::digest(&certified.config_descriptor)[..] {
                return Err(DiceError::ConfigHashMismatch);
            }
        } else if certified.config_descriptor.len() != INLINE_CONFIG_SIZE {
            return Err(DiceError::BadClaim { label: label::CONFIG_DESCRIPTOR });
        }
        if certified.key_usage.first().is_none_or(|bits| bits & certified.subject_key.key_usage() == 0) {
            return Err(DiceError::KeyUsage);
        }
        Ok(certified)
    }
}

#[cfg(test)]
mod tests;
