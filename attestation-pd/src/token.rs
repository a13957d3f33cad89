//! The PSA attestation token (RFC 9783, profile `tag:psacertified.org,2023:psa#tfm`) as a
//! COSE_Sign1 (RFC 9052, tag 18) signed ES256, written into a caller's buffer without an allocator.
//!
//! What goes in and why (docs/trusted-boot.md, "Attestation token"):
//!
//! - Claims: RFC 9783 §4 makes nonce (10), instance id (256), implementation id (2396), client id
//!   (2394), security lifecycle (2395), software components (2399) and the profile (265)
//!   mandatory; boot seed (268), certification reference (2398) and the verification service
//!   indicator (2400) are optional ("MAY be present"; `?` in RFC 9783 §6, Collated CDDL) and
//!   this token leaves them out.
//! - The claims map is written in RFC 8949 §4.2.1 deterministic order (keys ascending), definite
//!   lengths only (the baseline profile, RFC 9783 §5.1, requires definite lengths).
//! - COSE: protected header `{1: -7}` (alg ES256) serialized as a bstr, an empty unprotected
//!   header, the claims as the payload, the signature over
//!   `Sig_structure = ["Signature1", protected, h'', payload]` (RFC 9052 §4.4) as the 64-byte
//!   `r || s` (RFC 9053 §2.1).
//! - Instance id: `0x01 || SHA-256(IAK public key)`, the public key as the 65-byte SEC1 uncompressed
//!   point `0x04 || x || y`. RFC 9783 §4.2.1 asks for 0x01 (RAND) and "the 32-byte unique
//!   identifier of the IAK", pointing at the PSA Attestation API (IHI 0085 §3, Table 4:
//!   `InstanceID = H(IAK)` for a key pair) for how; TF-M and Trusted Services hash the key as
//!   `psa_export_public_key` exports it, which for a Weierstrass curve is the uncompressed point.
//!   A COSE_Key was not chosen: its CBOR map has optional members and no single serialization, so
//!   two verifiers could hash different bytes for the same key.
#![deny(missing_docs)]

use hkdf::Hkdf;
use minicbor::encode::write::{Cursor, EndOfSlice, Write};
use minicbor::Encoder;
use p256::ecdsa::signature::MultipartSigner;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The `eat_profile` value of RFC 9783's TF-M profile (§5.2).
pub const PROFILE: &str = "tag:psacertified.org,2023:psa#tfm";

/// Claim key of `eat_nonce` (RFC 9711, EAT).
pub const CLAIM_NONCE: u64 = 10;
/// Claim key of `ueid`, PSA's instance id (RFC 9711).
pub const CLAIM_INSTANCE_ID: u64 = 256;
/// Claim key of `eat_profile` (RFC 9711).
pub const CLAIM_PROFILE: u64 = 265;
/// Claim key of `psa-client-id` (RFC 9783).
pub const CLAIM_CLIENT_ID: u64 = 2394;
/// Claim key of `psa-security-lifecycle` (RFC 9783).
pub const CLAIM_SECURITY_LIFECYCLE: u64 = 2395;
/// Claim key of `psa-implementation-id` (RFC 9783).
pub const CLAIM_IMPLEMENTATION_ID: u64 = 2396;
/// Claim key of `psa-software-components` (RFC 9783).
pub const CLAIM_SOFTWARE_COMPONENTS: u64 = 2399;

/// Software component key: measurement type (tstr).
pub const COMPONENT_MEASUREMENT_TYPE: u64 = 1;
/// Software component key: measurement value (bstr).
pub const COMPONENT_MEASUREMENT_VALUE: u64 = 2;
/// Software component key: version (tstr).
pub const COMPONENT_VERSION: u64 = 4;
/// Software component key: signer id (bstr).
pub const COMPONENT_SIGNER_ID: u64 = 5;
/// Software component key: measurement description (tstr), the hash algorithm's name.
pub const COMPONENT_MEASUREMENT_DESCRIPTION: u64 = 6;
/// The measurement description of every component: the measurement is a SHA-256 (the "Hash Name
/// String" of the IANA Named Information registry, as RFC 9783 §4.4.1.5 asks).
pub const MEASUREMENT_DESCRIPTION: &str = "sha-256";

/// `psa-security-lifecycle` SECURED with implementation-defined minor state 0 (RFC 9783 §4.3.1).
pub const LIFECYCLE_SECURED: u16 = 0x3000;

/// The first byte of a UEID of type RAND (RFC 9711 §4.2.1), as RFC 9783's instance id uses.
pub const UEID_TYPE_RAND: u8 = 0x01;

/// The COSE_Sign1 CBOR tag (RFC 9052 §4.2).
pub const COSE_SIGN1_TAG: u64 = 18;
/// The protected header `{1: -7}` (alg: ES256), serialized: it is signed as these bytes.
pub const PROTECTED_HEADER: [u8; 3] = [0xa1, 0x01, 0x26];

/// At most this many software components in one token.
pub const MAX_COMPONENTS: usize = 16;
// The monitor, four images, a pending update and every runtime measurement.
const _: () = assert!(MAX_COMPONENTS >= 5 + 1 + tzmk_interface::attestation::MAX_RUNTIME_MEASUREMENTS);

/// Open DICE's `ID_SALT`, the salt of the attestation key's HKDF (docs/trusted-boot.md, "Keys"):
/// tzmk-trust's, where the DICE derivations live.
pub use tzmk_trust::dice::ID_SALT;

/// The HKDF info of the attestation key, before the counter byte.
pub const ATTESTATION_KEY_INFO: &[u8] = b"tzmk attestation key P-256";

/// Why no token was written. Stable codes, for an answer on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TokenError {
    /// The caller's buffer cannot hold the token.
    BufferTooSmall = 1,
    /// The nonce is not 32, 48 or 64 bytes (RFC 9783 §4.1.1).
    BadNonceLength = 2,
    /// More than [`MAX_COMPONENTS`] software components.
    TooManyComponents = 3,
    /// No software component: RFC 9783 requires at least one (`[+ psa-software-component]`).
    NoComponents = 4,
    /// Client id 0, which RFC 9783 §4.1.2 does not permit.
    BadClientId = 5,
    /// The signer failed (it does not for a valid P-256 key; kept typed rather than a panic).
    Signing = 6,
}

impl From<minicbor::encode::Error<EndOfSlice>> for TokenError {
    fn from(_: minicbor::encode::Error<EndOfSlice>) -> Self {
        TokenError::BufferTooSmall
    }
}

/// No counter in 0..=255 gave a scalar in [1, n-1]: the chance is below 2^-8000, so this means a
/// broken HKDF, never bad luck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoValidScalar;

/// One measured software component (an entry of `psa-software-components`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftwareComponent<'a> {
    /// The component's role: "BL", "PRoT", "ARoT", "App", "TS" (RFC 9783 §4.4.1.1) or the image's
    /// manifest name.
    pub measurement_type: &'a str,
    /// SHA-256 of the component as loaded.
    pub measurement_value: [u8; 32],
    /// The version from the component's signed manifest.
    pub version: &'a str,
    /// Hash of the public key that signed the component.
    pub signer_id: [u8; 32],
}

/// The claims the caller supplies; the instance id and the profile come from the key and this
/// module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    /// The verifier's challenge: 32, 48 or 64 bytes.
    pub nonce: &'a [u8],
    /// The immutable platform's identity (RFC 9783 §4.2.2).
    pub implementation_id: [u8; 32],
    /// The caller's security domain: negative for the normal world, positive for the secure
    /// world, never 0.
    pub client_id: i32,
    /// `psa-security-lifecycle`, e.g. [`LIFECYCLE_SECURED`].
    pub security_lifecycle: u16,
    /// The measured software, at least one and at most [`MAX_COMPONENTS`].
    pub components: &'a [SoftwareComponent<'a>],
}

/// The attestation key (the IAK) and the instance id derived from its public key. Not `Clone`:
/// the private scalar exists once and is zeroized when dropped (`p256`'s `SigningKey`); `Debug`
/// does not show it.
#[derive(Debug)]
pub struct AttestationKey {
    signing_key: SigningKey,
    instance_id: [u8; 33],
}

impl AttestationKey {
    /// The key pair from its private scalar; `None` unless the bytes are a scalar in [1, n-1].
    pub fn from_scalar_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let signing_key = SigningKey::from_slice(bytes).ok()?;
        let instance_id = instance_id(signing_key.verifying_key());
        Some(Self { signing_key, instance_id })
    }

    /// The public key, for the verifier.
    pub fn verifying_key(&self) -> &VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// The public key as the 65-byte SEC1 uncompressed point `0x04 || x || y`.
    pub fn public_key_sec1(&self) -> [u8; 65] {
        let point = self.verifying_key().to_sec1_point(false);
        let mut out = [0u8; 65];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// The `ueid` claim's value: `0x01 || SHA-256(uncompressed public key)`.
    pub fn instance_id(&self) -> &[u8; 33] {
        &self.instance_id
    }
}

/// The instance id of a public key: `0x01 || SHA-256(0x04 || x || y)` (see the module comment).
pub fn instance_id(key: &VerifyingKey) -> [u8; 33] {
    let point = key.to_sec1_point(false);
    let mut out = [0u8; 33];
    out[0] = UEID_TYPE_RAND;
    out[1..].copy_from_slice(&Sha256::digest(point.as_bytes()));
    out
}

/// The attestation key from CDI_Attest (docs/trusted-boot.md, "Keys"): the first counter byte
/// c = 0, 1, ... for which the 32 bytes of `HKDF-SHA256(ikm = CDI_Attest, salt = ID_SALT,
/// info = "tzmk attestation key P-256" || c)` are a scalar in [1, n-1]. The counter is one byte.
pub fn derive_attestation_key(cdi_attest: &[u8; 32]) -> Result<AttestationKey, NoValidScalar> {
    // The HKDF state is two SHA-256 states keyed with CDI_Attest: it wipes itself when dropped
    // (sha2's `zeroize` feature); the output is wiped by `Zeroizing`.
    let hkdf = Hkdf::<Sha256>::new(Some(&ID_SALT), cdi_attest);
    let mut okm = zeroize::Zeroizing::new([0u8; 32]);
    for counter in 0..=u8::MAX {
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: expand cannot fail.
        if hkdf.expand_multi_info(&[ATTESTATION_KEY_INFO, &[counter]], &mut okm[..]).is_err() {
            break;
        }
        let key = AttestationKey::from_scalar_bytes(&okm);
        if let Some(key) = key {
            return Ok(key);
        }
    }
    Err(NoValidScalar)
}

/// A [`Write`] that only counts, to learn the payload's length before writing its bstr header.
struct Counter(usize);

impl Write for Counter {
    type Error = core::convert::Infallible;

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(())
    }
}

/// Checks the caller's claims before anything is written.
fn validate(claims: &Claims<'_>) -> Result<(), TokenError> {
    if !matches!(claims.nonce.len(), 32 | 48 | 64) {
        return Err(TokenError::BadNonceLength);
    }
    if claims.components.is_empty() {
        return Err(TokenError::NoComponents);
    }
    if claims.components.len() > MAX_COMPONENTS {
        return Err(TokenError::TooManyComponents);
    }
    if claims.client_id == 0 {
        return Err(TokenError::BadClientId);
    }
    Ok(())
}

/// Writes the claims map (the COSE payload), keys in ascending order.
fn encode_claims<W: Write>(
    e: &mut Encoder<W>,
    claims: &Claims<'_>,
    instance_id: &[u8; 33],
) -> Result<(), minicbor::encode::Error<W::Error>> {
    e.map(7)?;
    e.u64(CLAIM_NONCE)?.bytes(claims.nonce)?;
    e.u64(CLAIM_INSTANCE_ID)?.bytes(instance_id)?;
    e.u64(CLAIM_PROFILE)?.str(PROFILE)?;
    e.u64(CLAIM_CLIENT_ID)?.i32(claims.client_id)?;
    e.u64(CLAIM_SECURITY_LIFECYCLE)?.u16(claims.security_lifecycle)?;
    e.u64(CLAIM_IMPLEMENTATION_ID)?.bytes(&claims.implementation_id)?;
    e.u64(CLAIM_SOFTWARE_COMPONENTS)?.array(claims.components.len() as u64)?;
    for component in claims.components {
        e.map(5)?;
        e.u64(COMPONENT_MEASUREMENT_TYPE)?.str(component.measurement_type)?;
        e.u64(COMPONENT_MEASUREMENT_VALUE)?.bytes(&component.measurement_value)?;
        e.u64(COMPONENT_VERSION)?.str(component.version)?;
        e.u64(COMPONENT_SIGNER_ID)?.bytes(&component.signer_id)?;
        e.u64(COMPONENT_MEASUREMENT_DESCRIPTION)?.str(MEASUREMENT_DESCRIPTION)?;
    }
    Ok(())
}

/// The payload's length in bytes.
fn claims_len(claims: &Claims<'_>, instance_id: &[u8; 33]) -> usize {
    let mut counter = Encoder::new(Counter(0));
    // A `Counter` never fails and `encode_claims` fails only when its writer does.
    match encode_claims(&mut counter, claims, instance_id) {
        Ok(()) => counter.into_writer().0,
        Err(_) => usize::MAX,
    }
}

/// Writes the signed token for `claims` into `out` and answers its length.
pub fn encode_token(claims: &Claims<'_>, key: &AttestationKey, out: &mut [u8]) -> Result<usize, TokenError> {
    validate(claims)?;
    let payload_len = claims_len(claims, &key.instance_id);

    let mut e = Encoder::new(Cursor::new(&mut *out));
    e.tag(minicbor::data::Tag::new(COSE_SIGN1_TAG))?.array(4)?.bytes(&PROTECTED_HEADER)?.map(0)?;
    e.bytes_len(payload_len as u64)?;
    let payload_start = e.writer().position();
    encode_claims(&mut e, claims, &key.instance_id)?;
    let payload_end = e.writer().position();
    assert_eq!(payload_end - payload_start, payload_len, "the counted and the written payload agree");

    // Sig_structure = ["Signature1", protected, external_aad = h'', payload], its head written
    // here and the payload signed where it already lies in `out`.
    let mut head = [0u8; 32];
    let mut h = Encoder::new(Cursor::new(&mut head[..]));
    h.array(4)?.str("Signature1")?.bytes(&PROTECTED_HEADER)?.bytes(&[])?.bytes_len(payload_len as u64)?;
    let head_len = h.writer().position();
    let signature: Signature = key
        .signing_key
        .try_multipart_sign(&[&head[..head_len], &out[payload_start..payload_end]])
        .map_err(|_| TokenError::Signing)?;

    let mut e = Encoder::new(Cursor::new(&mut *out));
    e.writer_mut().set_position(payload_end);
    e.bytes(&signature.to_bytes())?;
    Ok(e.writer().position())
}

/// An upper bound of the token's length for these claims, for sizing a buffer.
pub fn token_len(claims: &Claims<'_>, key: &AttestationKey) -> Result<usize, TokenError> {
    validate(claims)?;
    let payload_len = claims_len(claims, &key.instance_id);
    // tag (1) + array (1) + protected (4) + map (1) + payload head (at most 9) + signature (2 + 64)
    Ok(1 + 1 + 4 + 1 + 9 + payload_len + 66)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value;
    use coset::TaggedCborSerializable;
    use p256::ecdsa::signature::Verifier;

    const CDI: [u8; 32] = [7; 32];

    fn component(name: &'static str, byte: u8) -> SoftwareComponent<'static> {
        SoftwareComponent {
            measurement_type: name,
            measurement_value: [byte; 32],
            version: "1.2.3",
            signer_id: [0x55; 32],
        }
    }

    fn claims<'a>(nonce: &'a [u8], components: &'a [SoftwareComponent<'a>]) -> Claims<'a> {
        Claims {
            nonce,
            implementation_id: [0xaa; 32],
            client_id: -1,
            security_lifecycle: LIFECYCLE_SECURED,
            components,
        }
    }

    fn token(claims: &Claims<'_>, key: &AttestationKey) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let len = encode_token(claims, key, &mut buf).expect("encodes");
        buf[..len].to_vec()
    }

    fn map_get(map: &[(Value, Value)], key: u64) -> &Value {
        map.iter()
            .find(|(k, _)| k.as_integer() == Some(key.into()))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("claim {key} missing"))
    }

    #[test]
    fn key_derivation_is_deterministic_and_cdi_bound() {
        let a = derive_attestation_key(&CDI).unwrap();
        let b = derive_attestation_key(&CDI).unwrap();
        assert_eq!(a.public_key_sec1(), b.public_key_sec1());
        let c = derive_attestation_key(&[8; 32]).unwrap();
        assert_ne!(a.public_key_sec1(), c.public_key_sec1());
        assert_eq!(a.public_key_sec1()[0], 0x04);
    }

    #[test]
    fn key_is_the_first_valid_hkdf_output() {
        // Counter 0 is valid for this CDI (the usual case): the key is HKDF's output for c = 0.
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&ID_SALT), &CDI).expand_multi_info(&[ATTESTATION_KEY_INFO, &[0]], &mut okm).unwrap();
        let expected = AttestationKey::from_scalar_bytes(&okm).unwrap();
        assert_eq!(derive_attestation_key(&CDI).unwrap().public_key_sec1(), expected.public_key_sec1());
        assert!(AttestationKey::from_scalar_bytes(&[0; 32]).is_none(), "zero is no scalar");
        assert!(AttestationKey::from_scalar_bytes(&[0xff; 32]).is_none(), "above n is no scalar");
    }

    #[test]
    fn instance_id_is_rand_ueid_of_the_public_key_hash() {
        let key = derive_attestation_key(&CDI).unwrap();
        let id = key.instance_id();
        assert_eq!(id[0], 0x01);
        assert_eq!(&id[1..], Sha256::digest(key.public_key_sec1()).as_slice());
    }

    #[test]
    fn token_decodes_to_exactly_the_claims() {
        let key = derive_attestation_key(&CDI).unwrap();
        let nonce = [0x11u8; 32];
        let components = [component("BL", 1), component("PRoT", 2)];
        let bytes = token(&claims(&nonce, &components), &key);

        let sign1 = coset::CoseSign1::from_tagged_slice(&bytes).expect("a tagged COSE_Sign1");
        assert_eq!(sign1.protected.header.alg, Some(coset::Algorithm::Assigned(coset::iana::Algorithm::ES256)));
        assert_eq!(sign1.protected.original_data.as_deref(), Some(&PROTECTED_HEADER[..]));
        assert!(sign1.unprotected.is_empty());
        assert_eq!(bytes[0], 0xd2, "tag 18");

        let payload: Value = ciborium::from_reader(sign1.payload.as_deref().unwrap()).unwrap();
        let map = payload.as_map().unwrap();
        assert_eq!(map.len(), 7, "exactly the mandatory claims");
        assert_eq!(map_get(map, 10).as_bytes().unwrap(), &nonce);
        assert_eq!(map_get(map, 256).as_bytes().unwrap(), key.instance_id());
        assert_eq!(map_get(map, 265).as_text().unwrap(), PROFILE);
        assert_eq!(map_get(map, 2394).as_integer().unwrap(), (-1).into());
        assert_eq!(map_get(map, 2395).as_integer().unwrap(), 0x3000.into());
        assert_eq!(map_get(map, 2396).as_bytes().unwrap(), &[0xaa; 32]);
        let decoded = map_get(map, 2399).as_array().unwrap();
        assert_eq!(decoded.len(), 2);
        for (value, expected) in decoded.iter().zip(&components) {
            let c = value.as_map().unwrap();
            assert_eq!(c.len(), 5);
            assert_eq!(map_get(c, 1).as_text().unwrap(), expected.measurement_type);
            assert_eq!(map_get(c, 2).as_bytes().unwrap(), &expected.measurement_value);
            assert_eq!(map_get(c, 4).as_text().unwrap(), expected.version);
            assert_eq!(map_get(c, 5).as_bytes().unwrap(), &expected.signer_id);
            assert_eq!(map_get(c, 6).as_text().unwrap(), "sha-256");
        }
        // Keys ascending: RFC 8949 deterministic order.
        let keys: Vec<_> = map.iter().map(|(k, _)| u64::try_from(k.as_integer().unwrap()).unwrap()).collect();
        assert_eq!(keys, [10, 256, 265, 2394, 2395, 2396, 2399]);
        // Re-encoding what coset decoded gives the same bytes: nothing was lost or reordered.
        assert_eq!(sign1.to_tagged_vec().unwrap(), bytes);
    }

    #[test]
    fn signature_verifies_with_the_public_key_only() {
        let key = derive_attestation_key(&CDI).unwrap();
        let nonce = [0x22u8; 64];
        let components = [component("App", 3)];
        let bytes = token(&claims(&nonce, &components), &key);
        let sign1 = coset::CoseSign1::from_tagged_slice(&bytes).unwrap();
        assert_eq!(sign1.signature.len(), 64, "r || s");
        let verify = |public: &VerifyingKey| {
            sign1.verify_signature(b"", |sig, data| {
                let sig = Signature::from_slice(sig).map_err(|_| "bad signature encoding")?;
                public.verify(data, &sig).map_err(|_| "signature does not verify")
            })
        };
        assert_eq!(verify(key.verifying_key()), Ok(()));
        let other = derive_attestation_key(&[9; 32]).unwrap();
        assert_eq!(verify(other.verifying_key()), Err("signature does not verify"));
        // The public key as bytes round-trips, as a verifier reads it.
        let reread = VerifyingKey::from_sec1_bytes(&key.public_key_sec1()).unwrap();
        assert_eq!(verify(&reread), Ok(()));
    }

    #[test]
    fn nonce_lengths() {
        let key = derive_attestation_key(&CDI).unwrap();
        let components = [component("BL", 1)];
        let mut buf = [0u8; 1024];
        for len in [32, 48, 64] {
            let nonce = vec![1u8; len];
            assert!(encode_token(&claims(&nonce, &components), &key, &mut buf).is_ok(), "{len}");
        }
        for len in [0, 1, 31, 33, 47, 49, 63, 65, 128] {
            let nonce = vec![1u8; len];
            assert_eq!(
                encode_token(&claims(&nonce, &components), &key, &mut buf),
                Err(TokenError::BadNonceLength),
                "{len}"
            );
        }
    }

    #[test]
    fn buffer_too_small_at_every_length() {
        let key = derive_attestation_key(&CDI).unwrap();
        let nonce = [3u8; 48];
        let components = [component("BL", 1), component("PRoT", 2)];
        let c = claims(&nonce, &components);
        let full = token(&c, &key);
        assert!(token_len(&c, &key).unwrap() >= full.len());
        for len in 0..full.len() {
            let mut buf = vec![0u8; len];
            assert_eq!(encode_token(&c, &key, &mut buf), Err(TokenError::BufferTooSmall), "{len}");
        }
        let mut exact = vec![0u8; full.len()];
        assert_eq!(encode_token(&c, &key, &mut exact), Ok(full.len()));
        assert_eq!(exact, full, "deterministic (RFC 6979) signatures: the same token twice");
    }

    #[test]
    fn component_count_and_client_id_are_checked() {
        let key = derive_attestation_key(&CDI).unwrap();
        let nonce = [3u8; 32];
        let mut buf = [0u8; 4096];
        let many = [component("BL", 1); MAX_COMPONENTS + 1];
        assert_eq!(encode_token(&claims(&nonce, &many), &key, &mut buf), Err(TokenError::TooManyComponents));
        assert!(encode_token(&claims(&nonce, &many[..MAX_COMPONENTS]), &key, &mut buf).is_ok());
        assert_eq!(encode_token(&claims(&nonce, &[]), &key, &mut buf), Err(TokenError::NoComponents));
        let mut zero = claims(&nonce, &many[..1]);
        zero.client_id = 0;
        assert_eq!(encode_token(&zero, &key, &mut buf), Err(TokenError::BadClientId));
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics_the_encoder(
            nonce in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            count in 0usize..12,
            name in ".{0,40}",
            version in ".{0,300}",
            client_id in proptest::num::i32::ANY,
            lifecycle in proptest::num::u16::ANY,
            buf_len in 0usize..3000,
            cdi in proptest::array::uniform32(proptest::num::u8::ANY),
        ) {
            let key = derive_attestation_key(&cdi).unwrap();
            let components: Vec<_> = (0..count)
                .map(|i| SoftwareComponent { measurement_type: &name, measurement_value: [i as u8; 32], version: &version, signer_id: [1; 32] })
                .collect();
            let c = Claims { nonce: &nonce, implementation_id: [0; 32], client_id, security_lifecycle: lifecycle, components: &components };
            let mut buf = vec![0u8; buf_len];
            if let Ok(len) = encode_token(&c, &key, &mut buf) {
                let sign1 = coset::CoseSign1::from_tagged_slice(&buf[..len]).expect("what was written decodes");
                proptest::prop_assert_eq!(sign1.signature.len(), 64);
                proptest::prop_assert!(len <= token_len(&c, &key).unwrap());
            }
        }
    }
}
