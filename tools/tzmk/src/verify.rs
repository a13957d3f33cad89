//! `tzmk verify`: checks a PSA attestation token (RFC 9783, the TF-M profile) from attestation-pd
//! against a nonce, reference values and the attestation public key.
//!
//! The logic ([`verify`], [`References::from_json`], [`attestation_key`]) takes bytes and answers
//! typed results, so it is tested without the CLI; [`run`] only reads files and maps results to
//! exit codes (those of `tzmk audit`: 0 accepted, 1 rejected, 2 unreadable input or bad
//! arguments). The reference-values file is described in docs/trusted-boot.md, "Tools".

use attestation_pd::token::{
    CLAIM_CLIENT_ID, CLAIM_IMPLEMENTATION_ID, CLAIM_INSTANCE_ID, CLAIM_NONCE, CLAIM_PROFILE, CLAIM_SECURITY_LIFECYCLE,
    CLAIM_SOFTWARE_COMPONENTS, COMPONENT_MEASUREMENT_DESCRIPTION, COMPONENT_MEASUREMENT_TYPE,
    COMPONENT_MEASUREMENT_VALUE, COMPONENT_SIGNER_ID, COMPONENT_VERSION, PROFILE, UEID_TYPE_RAND,
};
use ciborium::Value;
use coset::{iana, Algorithm, CborSerializable, CoseSign1, TaggedCborSerializable};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code for an accepted token.
const ACCEPTED: u8 = 0;
/// Exit code for a rejected token.
const REJECTED: u8 = 1;
/// Exit code when an input cannot be read or an argument is malformed.
const UNREADABLE: u8 = 2;

/// A token larger than this is rejected unread: attestation-pd's are well under 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// `tzmk verify`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The token: a tagged COSE_Sign1 (CBOR tag 18), binary.
    pub token: PathBuf,
    /// The challenge the token must carry, in hex (32, 48 or 64 bytes).
    #[arg(long)]
    pub nonce: String,
    /// The reference values (JSON; docs/trusted-boot.md, "Tools").
    #[arg(long)]
    pub refs: PathBuf,
    /// The attestation public key: a file with the SEC1 uncompressed point (65 bytes, binary or
    /// hex). Without it (and without --chain), refs.json's `attestation_key`.
    #[arg(long, conflicts_with = "chain")]
    pub key: Option<PathBuf>,
    /// The evidence's certificate chain (`tzctl attest -o T` writes `T.chain`): the key that
    /// signed the token is the one the chain certifies, from refs.json's `device_public_key` down.
    #[arg(long)]
    pub chain: Option<PathBuf>,
}

/// An input that is not usable at all (exit code 2): the verifier could not even start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One reason to reject the token: what failed (a claim, by name and key, or the COSE envelope)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The claim or envelope part, e.g. `eat_nonce (10)` or `signature`.
    pub claim: String,
    /// Why it fails.
    pub reason: String,
}

impl Rejection {
    fn new(claim: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { claim: claim.into(), reason: reason.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.claim, self.reason)
    }
}

/// One software component a token may report (refs.json `components`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceComponent {
    /// The component's measurement type (RFC 9783 "Measurement Type"), e.g. "BL".
    pub measurement_type: String,
    /// The expected measurement, hex.
    pub measurement_value: String,
    /// The expected signer id, hex.
    pub signer_id: String,
    /// The expected version text.
    pub version: String,
}

/// refs.json as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferencesFile {
    implementation_id: String,
    components: Vec<ReferenceComponent>,
    #[serde(default)]
    attestation_key: Option<String>,
    /// The device-identity public key (Ed25519, hex): the trust anchor of a chain.
    #[serde(default)]
    device_public_key: Option<String>,
}

/// A reference component with its hex fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    measurement_type: String,
    measurement_value: Vec<u8>,
    signer_id: Vec<u8>,
    version: String,
}

/// The reference values a token is checked against.
#[derive(Debug, Clone)]
pub struct References {
    implementation_id: Vec<u8>,
    components: Vec<Reference>,
    attestation_key: Option<Vec<u8>>,
    device_public_key: Option<[u8; 32]>,
}

impl References {
    /// Parses refs.json; every hex field is decoded here, so a bad file is an input error.
    pub fn from_json(text: &str) -> Result<Self, InputError> {
        let file: ReferencesFile = serde_json::from_str(text).map_err(|e| InputError(format!("not valid: {e}")))?;
        let implementation_id =
            hex(&file.implementation_id).map_err(|e| InputError(format!("implementation_id: {e}")))?;
        if implementation_id.len() != 32 {
            return Err(InputError(format!("implementation_id: {} bytes, expected 32", implementation_id.len())));
        }
        if file.components.is_empty() {
            return Err(InputError("components: empty; a token must report at least one".into()));
        }
        let components = file
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let field = |name: &str, value: &str| {
                    hex(value).map_err(|e| InputError(format!("components[{i}].{name}: {e}")))
                };
                Ok(Reference {
                    measurement_type: c.measurement_type.clone(),
                    measurement_value: field("measurement_value", &c.measurement_value)?,
                    signer_id: field("signer_id", &c.signer_id)?,
                    version: c.version.clone(),
                })
            })
            .collect::<Result<_, InputError>>()?;
        let attestation_key = match &file.attestation_key {
            Some(text) => Some(hex(text).map_err(|e| InputError(format!("attestation_key: {e}")))?),
            None => None,
        };
        let device_public_key = match &file.device_public_key {
            Some(text) => Some(
                hex(text)
                    .map_err(|e| InputError(format!("device_public_key: {e}")))?
                    .try_into()
                    .map_err(|_| InputError("device_public_key: expected 32 bytes (an Ed25519 public key)".into()))?,
            ),
            None => None,
        };
        Ok(Self { implementation_id, components, attestation_key, device_public_key })
    }

    /// The device-identity key a chain must start from, if refs.json names one.
    pub fn device_public_key(&self) -> Option<[u8; 32]> {
        self.device_public_key
    }
}

/// The attestation key a certificate chain certifies, starting from the trusted device-identity
/// public key: the chain is a CBOR array of byte strings, that key first, then each certificate
/// (tzmk-trust's CWT), each verified with the key the one before certified; every certificate
/// but the last certifies an Ed25519 CDI key, the last a P-256 key. Each failure names the link.
pub fn chain_key(chain: &[u8], device_public_key: &[u8; 32]) -> Result<VerifyingKey, Rejection> {
    let reject = |reason: String| Rejection { claim: "certificate chain".into(), reason };
    let value: ciborium::Value = ciborium::from_reader(chain).map_err(|e| reject(format!("not CBOR: {e}")))?;
    let items = value.as_array().ok_or_else(|| reject("not a CBOR array".into()))?;
    let bytes = |index: usize| -> Result<&[u8], Rejection> {
        items
            .get(index)
            .and_then(|v| v.as_bytes())
            .map(|b| b.as_slice())
            .ok_or_else(|| reject(format!("element {index} is no byte string")))
    };
    if items.len() < 2 {
        return Err(reject(format!("{} elements: the device key and at least one certificate", items.len())));
    }
    if bytes(0)? != device_public_key {
        return Err(reject("its first element is not the device-identity key of the references".into()));
    }
    let mut issuer = *device_public_key;
    for index in 1..items.len() {
        let certified = tzmk_trust::dice::verify_certificate(bytes(index)?, &issuer)
            .map_err(|e| reject(format!("certificate {index}: {e:?}")))?;
        match (certified.subject_key, index == items.len() - 1) {
            (tzmk_trust::dice::SubjectKey::Ed25519(next), false) => issuer = next,
            (tzmk_trust::dice::SubjectKey::P256(point), true) => {
                return VerifyingKey::from_sec1_bytes(&point)
                    .map_err(|_| reject(format!("certificate {index}: its key is not a point on P-256")));
            }
            (_, false) => return Err(reject(format!("certificate {index} certifies no CDI key, but more follow"))),
            (_, true) => {
                return Err(reject(format!("certificate {index}, the last, certifies no P-256 attestation key")))
            }
        }
    }
    Err(reject("no certificate".into()))
}

/// Decodes hex (upper or lower case, surrounding whitespace ignored).
pub fn hex(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("{:?} is not a hex digit", char::from(c))),
    };
    text.as_bytes().chunks_exact(2).map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// The nonce argument: hex of 32, 48 or 64 bytes (RFC 9783, "Nonce").
pub fn parse_nonce(text: &str) -> Result<Vec<u8>, InputError> {
    let nonce = hex(text).map_err(|e| InputError(format!("--nonce: {e}")))?;
    if !matches!(nonce.len(), 32 | 48 | 64) {
        return Err(InputError(format!("--nonce: {} bytes, expected 32, 48 or 64", nonce.len())));
    }
    Ok(nonce)
}

/// A public key from a `--key` file's contents: the 65-byte SEC1 uncompressed point, binary or
/// as hex text.
pub fn parse_key_file(bytes: &[u8]) -> Result<VerifyingKey, InputError> {
    let raw = if bytes.len() == 65 && bytes[0] == 0x04 {
        bytes.to_vec()
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| InputError("neither 65 bytes nor hex text".into()))?;
        hex(text).map_err(InputError)?
    };
    sec1_key(&raw)
}

/// An uncompressed SEC1 point as a P-256 verifying key.
fn sec1_key(raw: &[u8]) -> Result<VerifyingKey, InputError> {
    if raw.len() != 65 || raw[0] != 0x04 {
        return Err(InputError(format!("{} bytes: expected a 65-byte uncompressed point (0x04 || x || y)", raw.len())));
    }
    VerifyingKey::from_sec1_bytes(raw).map_err(|_| InputError("not a point on P-256".into()))
}

/// The key that must have signed the token when no chain is given: `--key` (already parsed) or,
/// without it, refs.json's `attestation_key`. With `--chain`, [`chain_key`] answers it instead.
pub fn attestation_key(given: Option<VerifyingKey>, references: &References) -> Result<VerifyingKey, InputError> {
    match (given, &references.attestation_key) {
        (Some(key), _) => Ok(key),
        (None, Some(raw)) => sec1_key(raw).map_err(|e| InputError(format!("refs attestation_key: {e}"))),
        (None, None) => Err(InputError("no attestation key: give --key or an attestation_key in refs.json".into())),
    }
}

/// What an accepted token said, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The client id claim.
    pub client_id: i64,
    /// The measurement types of the components, in token order.
    pub components: Vec<String>,
}

/// Checks `token` (bytes as read) against the nonce, the references and the attestation key:
/// the COSE envelope (tag 18, ES256 in the protected header, the signature), then every claim
/// the TF-M profile makes mandatory, each software component against the references. An
/// envelope failure stops the check (nothing in an unverified payload is worth reporting); claim
/// failures are all reported.
pub fn verify(
    token: &[u8],
    nonce: &[u8],
    references: &References,
    key: &VerifyingKey,
) -> Result<Accepted, Vec<Rejection>> {
    let sign1 = envelope(token, key).map_err(|r| vec![r])?;
    let payload = sign1.payload.as_deref().unwrap_or_default();
    let claims = decode_claims(payload).map_err(|r| vec![r])?;
    check_claims(&claims, nonce, references, key)
}

/// Decodes and checks the COSE_Sign1 envelope and its signature.
fn envelope(token: &[u8], key: &VerifyingKey) -> Result<CoseSign1, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::new("token", format!("{} bytes, more than {MAX_TOKEN_BYTES}", token.len())));
    }
    let sign1 = match CoseSign1::from_tagged_slice(token) {
        Ok(sign1) => sign1,
        Err(tagged) => {
            return Err(match CoseSign1::from_slice(token) {
                Ok(_) => Rejection::new("token", "a COSE_Sign1 without CBOR tag 18"),
                Err(_) => Rejection::new("token", format!("not a tagged COSE_Sign1: {tagged}")),
            })
        }
    };
    let es256 = Some(Algorithm::Assigned(iana::Algorithm::ES256));
    match (&sign1.protected.header.alg, &sign1.unprotected.alg) {
        (None, Some(_)) => {
            return Err(Rejection::new(
                "alg",
                "only in the unprotected header, where it is not signed; ES256 must be in the protected header",
            ))
        }
        (None, None) => return Err(Rejection::new("alg", "missing from the protected header")),
        (Some(_), Some(_)) => return Err(Rejection::new("alg", "in both the protected and the unprotected header")),
        (Some(alg), None) if Some(alg) != es256.as_ref() => {
            return Err(Rejection::new("alg", format!("{alg:?} in the protected header, expected ES256 (-7)")))
        }
        _ => {}
    }
    if !sign1.protected.header.crit.is_empty() {
        return Err(Rejection::new("crit", "critical header parameters this verifier does not know"));
    }
    if sign1.payload.is_none() {
        return Err(Rejection::new("payload", "detached (nil); the claims must be in the token"));
    }
    sign1.verify_signature(b"", |signature, tbs| {
        let signature = Signature::from_slice(signature)
            .map_err(|_| Rejection::new("signature", format!("{} bytes, expected r || s of 64", signature.len())))?;
        key.verify(tbs, &signature).map_err(|_| Rejection::new("signature", "does not verify with the attestation key"))
    })?;
    Ok(sign1)
}

/// The claims map, integer keys only, each key once.
fn decode_claims(payload: &[u8]) -> Result<Vec<(i128, Value)>, Rejection> {
    let mut rest = payload;
    let value: Value =
        ciborium::from_reader(&mut rest).map_err(|e| Rejection::new("claims", format!("payload is not CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(Rejection::new("claims", format!("{} byte(s) after the claims map", rest.len())));
    }
    let Value::Map(entries) = value else {
        return Err(Rejection::new("claims", "payload is not a CBOR map"));
    };
    let mut claims: Vec<(i128, Value)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Some(key) = key.as_integer().map(i128::from) else {
            continue; // EAT: claims a receiver does not understand are not an error.
        };
        if claims.iter().any(|(k, _)| *k == key) {
            return Err(Rejection::new("claims", format!("key {key} appears twice")));
        }
        claims.push((key, value));
    }
    Ok(claims)
}

/// A claim's display name: the RFC's name and its key.
fn name(key: u64) -> String {
    let text = match key {
        CLAIM_NONCE => "eat_nonce",
        CLAIM_INSTANCE_ID => "ueid (instance id)",
        CLAIM_PROFILE => "eat_profile",
        CLAIM_CLIENT_ID => "psa-client-id",
        CLAIM_SECURITY_LIFECYCLE => "psa-security-lifecycle",
        CLAIM_IMPLEMENTATION_ID => "psa-implementation-id",
        CLAIM_SOFTWARE_COMPONENTS => "psa-software-components",
        _ => "claim",
    };
    format!("{text} ({key})")
}

/// Checks every mandatory claim; all failures, or what was accepted.
fn check_claims(
    claims: &[(i128, Value)],
    nonce: &[u8],
    references: &References,
    key: &VerifyingKey,
) -> Result<Accepted, Vec<Rejection>> {
    let mut rejections = Vec::new();
    let mut get = |claim: u64| {
        let value = claims.iter().find(|(k, _)| *k == i128::from(claim)).map(|(_, v)| v);
        if value.is_none() {
            rejections.push(Rejection::new(name(claim), "missing (mandatory in RFC 9783)"));
        }
        value
    };
    let nonce_value = get(CLAIM_NONCE);
    let instance_value = get(CLAIM_INSTANCE_ID);
    let profile_value = get(CLAIM_PROFILE);
    let client_value = get(CLAIM_CLIENT_ID);
    let lifecycle_value = get(CLAIM_SECURITY_LIFECYCLE);
    let implementation_value = get(CLAIM_IMPLEMENTATION_ID);
    let components_value = get(CLAIM_SOFTWARE_COMPONENTS);
    let mut reject = |claim: u64, reason: String| rejections.push(Rejection::new(name(claim), reason));

    if let Some(value) = nonce_value {
        match value.as_bytes() {
            None => reject(CLAIM_NONCE, "not a byte string (the array form is not allowed)".into()),
            Some(got) if !matches!(got.len(), 32 | 48 | 64) => {
                reject(CLAIM_NONCE, format!("{} bytes, expected 32, 48 or 64", got.len()))
            }
            Some(got) if got.as_slice() != nonce => {
                reject(CLAIM_NONCE, "does not match the challenge (--nonce)".into())
            }
            Some(_) => {}
        }
    }
    if let Some(value) = instance_value {
        let mut expected = vec![UEID_TYPE_RAND];
        expected.extend_from_slice(&Sha256::digest(key.to_sec1_point(false).as_bytes()));
        match value.as_bytes() {
            None => reject(CLAIM_INSTANCE_ID, "not a byte string".into()),
            Some(got) if got.len() != 33 || got[0] != UEID_TYPE_RAND => {
                reject(CLAIM_INSTANCE_ID, format!("{} bytes, expected 0x01 followed by 32", got.len()))
            }
            Some(got) if *got != expected => {
                reject(CLAIM_INSTANCE_ID, "is not 0x01 || SHA-256 of the attestation key's uncompressed point".into())
            }
            Some(_) => {}
        }
    }
    if let Some(value) = profile_value {
        match value.as_text() {
            Some(PROFILE) => {}
            Some(other) => reject(CLAIM_PROFILE, format!("{other:?}, expected {PROFILE:?}")),
            None => reject(CLAIM_PROFILE, "not a text string".into()),
        }
    }
    let client_id = client_value.and_then(|value| {
        match value.as_integer().map(i128::from) {
            Some(id) if id != 0 && i32::try_from(id).is_ok() => return Some(id as i64),
            Some(id) => reject(CLAIM_CLIENT_ID, format!("{id}: expected a non-zero 32-bit integer")),
            None => reject(CLAIM_CLIENT_ID, "not an integer".into()),
        }
        None
    });
    if let Some(value) = lifecycle_value {
        // RFC 9783, "Security Lifecycle": a verifier can only trust SECURED (0x30xx) or
        // NON_PSA_ROT_DEBUG (0x40xx); tzmk's attestation-pd is always SECURED.
        match value.as_integer().map(i128::from) {
            Some(0x3000..=0x30ff) => {}
            Some(state) => reject(CLAIM_SECURITY_LIFECYCLE, format!("{state:#06x}: not SECURED (0x3000..0x30ff)")),
            None => reject(CLAIM_SECURITY_LIFECYCLE, "not an integer".into()),
        }
    }
    if let Some(value) = implementation_value {
        match value.as_bytes() {
            Some(got) if *got == references.implementation_id => {}
            Some(_) => reject(CLAIM_IMPLEMENTATION_ID, "does not match the references' implementation_id".into()),
            None => reject(CLAIM_IMPLEMENTATION_ID, "not a byte string".into()),
        }
    }
    let mut components = Vec::new();
    if let Some(value) = components_value {
        match value.as_array() {
            Some(list) if list.is_empty() => reject(CLAIM_SOFTWARE_COMPONENTS, "empty".into()),
            Some(list) => {
                for (index, entry) in list.iter().enumerate() {
                    match check_component(entry, references) {
                        Ok(kind) => components.push(kind),
                        Err(reason) => reject(CLAIM_SOFTWARE_COMPONENTS, format!("[{index}]: {reason}")),
                    }
                }
                for expected in &references.components {
                    if !components.contains(&expected.measurement_type)
                        && !rejections_name_type(list, &expected.measurement_type)
                    {
                        reject(
                            CLAIM_SOFTWARE_COMPONENTS,
                            format!(
                                "no component of type {:?}, which the references expect",
                                expected.measurement_type
                            ),
                        );
                    }
                }
            }
            None => reject(CLAIM_SOFTWARE_COMPONENTS, "not an array".into()),
        }
    }
    match client_id {
        Some(client_id) if rejections.is_empty() => Ok(Accepted { client_id, components }),
        _ => Err(rejections),
    }
}

/// Whether some entry of the token's list names this measurement type (then a mismatch of that
/// entry was already reported, and "missing" would say it twice).
fn rejections_name_type(list: &[Value], measurement_type: &str) -> bool {
    list.iter().any(|entry| {
        entry.as_map().is_some_and(|map| {
            map.iter().any(|(k, v)| {
                k.as_integer() == Some(COMPONENT_MEASUREMENT_TYPE.into()) && v.as_text() == Some(measurement_type)
            })
        })
    })
}

/// One software component: its fields well-formed (RFC 9783, "Software Components") and equal
/// to one reference component. Answers its measurement type.
fn check_component(entry: &Value, references: &References) -> Result<String, String> {
    let map = entry.as_map().ok_or("not a map")?;
    let field = |key: u64| map.iter().find(|(k, _)| k.as_integer() == Some(key.into())).map(|(_, v)| v);
    let text = |key: u64, what: &str| -> Result<Option<String>, String> {
        match field(key) {
            None => Ok(None),
            Some(v) => v.as_text().map(|t| Some(t.to_owned())).ok_or_else(|| format!("{what} ({key}) is not text")),
        }
    };
    let hash = |key: u64, what: &str| -> Result<Vec<u8>, String> {
        let value = field(key).ok_or_else(|| format!("{what} ({key}) missing"))?;
        let bytes = value.as_bytes().ok_or_else(|| format!("{what} ({key}) is not a byte string"))?;
        if !matches!(bytes.len(), 32 | 48 | 64) {
            return Err(format!("{what} ({key}) is {} bytes, expected 32, 48 or 64", bytes.len()));
        }
        Ok(bytes.clone())
    };
    let measurement_type = text(COMPONENT_MEASUREMENT_TYPE, "measurement type")?;
    let measurement_value = hash(COMPONENT_MEASUREMENT_VALUE, "measurement value")?;
    let version = text(COMPONENT_VERSION, "version")?;
    let signer_id = hash(COMPONENT_SIGNER_ID, "signer id")?;
    let description = text(COMPONENT_MEASUREMENT_DESCRIPTION, "measurement description")?;
    if let Some(description) = &description {
        let expected = match measurement_value.len() {
            32 => "sha-256",
            48 => "sha-384",
            _ => "sha-512",
        };
        if description != expected {
            return Err(format!(
                "measurement description {description:?} for a {}-byte value",
                measurement_value.len()
            ));
        }
    }
    let label = measurement_type.clone().unwrap_or_default();
    let matches = |r: &Reference| {
        Some(&r.measurement_type) == measurement_type.as_ref()
            && r.measurement_value == measurement_value
            && r.signer_id == signer_id
            && Some(&r.version) == version.as_ref()
    };
    if references.components.iter().any(matches) {
        Ok(label)
    } else {
        Err(format!("component {label:?} (version {:?}) is not in the references", version.unwrap_or_default()))
    }
}

/// Reads a file for `what`, at most `limit` bytes (a longer file is an input error, found
/// without reading it whole), naming the file in the error.
fn read(path: &Path, what: &str, limit: usize) -> Result<Vec<u8>, InputError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| InputError(format!("{what} {}: cannot read: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() > limit {
        return Err(InputError(format!("{what} {}: larger than {limit} bytes", path.display())));
    }
    Ok(bytes)
}

/// refs.json and key files larger than this are not read.
const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Everything `run` needs, read and parsed: an error here is exit code 2.
/// Where the key that signed the token comes from.
enum KeySource {
    Given(VerifyingKey),
    Chain(Vec<u8>, [u8; 32]),
}

fn inputs(args: &Args) -> Result<(Vec<u8>, Vec<u8>, References, KeySource), InputError> {
    let nonce = parse_nonce(&args.nonce)?;
    let refs_text = read(&args.refs, "refs", MAX_INPUT_BYTES)?;
    let refs_text =
        String::from_utf8(refs_text).map_err(|_| InputError(format!("refs {}: not UTF-8", args.refs.display())))?;
    let references =
        References::from_json(&refs_text).map_err(|e| InputError(format!("refs {}: {e}", args.refs.display())))?;
    let given = match &args.key {
        Some(path) => Some(
            parse_key_file(&read(path, "key", MAX_INPUT_BYTES)?)
                .map_err(|e| InputError(format!("key {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let key = match &args.chain {
        Some(path) => {
            let anchor = references.device_public_key.ok_or_else(|| {
                InputError(format!(
                    "refs {}: --chain needs a device_public_key, the chain's anchor",
                    args.refs.display()
                ))
            })?;
            KeySource::Chain(read(path, "chain", MAX_INPUT_BYTES)?, anchor)
        }
        None => KeySource::Given(attestation_key(given, &references)?),
    };
    let token = read(&args.token, "token", MAX_TOKEN_BYTES)?;
    Ok((token, nonce, references, key))
}

/// `tzmk verify`: prints `accepted: ...` (exit 0), or each rejection (exit 1), or why an input is
/// unusable (exit 2).
pub fn run(args: &Args) -> ExitCode {
    let (token, nonce, references, key) = match inputs(args) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let file = args.token.display();
    let key = match key {
        KeySource::Given(key) => key,
        KeySource::Chain(chain, anchor) => match chain_key(&chain, &anchor) {
            Ok(key) => key,
            Err(rejection) => {
                eprintln!("{file}: rejected: {rejection}");
                return ExitCode::from(REJECTED);
            }
        },
    };
    match verify(&token, &nonce, &references, &key) {
        Ok(accepted) => {
            println!(
                "{file}: accepted: profile {PROFILE}, client id {}, components {}",
                accepted.client_id,
                accepted.components.join(", ")
            );
            ExitCode::from(ACCEPTED)
        }
        Err(rejections) => {
            for rejection in &rejections {
                eprintln!("{file}: rejected: {rejection}");
            }
            ExitCode::from(REJECTED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestation_pd::token::{self, AttestationKey, Claims, SoftwareComponent};
    use coset::{CoseSign1Builder, HeaderBuilder};
    use p256::ecdsa::signature::Signer;

    fn key() -> AttestationKey {
        token::derive_attestation_key(&[1; 32]).unwrap()
    }

    const NONCE: [u8; 32] = [0x5a; 32];

    fn components() -> [SoftwareComponent<'static>; 2] {
        [
            SoftwareComponent {
                measurement_type: "BL",
                measurement_value: [1; 32],
                version: "1.0",
                signer_id: [9; 32],
            },
            SoftwareComponent {
                measurement_type: "PRoT",
                measurement_value: [2; 32],
                version: "2.0",
                signer_id: [9; 32],
            },
        ]
    }

    fn references() -> References {
        let json = format!(
            r#"{{"implementation_id": "{}", "components": [
                {{"measurement_type": "BL", "measurement_value": "{}", "signer_id": "{}", "version": "1.0"}},
                {{"measurement_type": "PRoT", "measurement_value": "{}", "signer_id": "{}", "version": "2.0"}}]}}"#,
            "cc".repeat(32),
            "01".repeat(32),
            "09".repeat(32),
            "02".repeat(32),
            "09".repeat(32)
        );
        References::from_json(&json).unwrap()
    }

    fn good_token(key: &AttestationKey) -> Vec<u8> {
        let components = components();
        let claims = Claims {
            nonce: &NONCE,
            implementation_id: [0xcc; 32],
            client_id: -1,
            security_lifecycle: token::LIFECYCLE_SECURED,
            components: &components,
        };
        let mut buf = [0u8; 2048];
        let len = token::encode_token(&claims, key, &mut buf).unwrap();
        buf[..len].to_vec()
    }

    /// A token signed by [`custom_key`] with any payload and headers: for the cases attestation-pd never
    /// writes.
    fn custom(payload: Vec<u8>, protected_alg: bool, unprotected_alg: bool) -> Vec<u8> {
        let scalar = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
        let mut protected = HeaderBuilder::new();
        if protected_alg {
            protected = protected.algorithm(iana::Algorithm::ES256);
        }
        let mut unprotected = HeaderBuilder::new();
        if unprotected_alg {
            unprotected = unprotected.algorithm(iana::Algorithm::ES256);
        }
        CoseSign1Builder::new()
            .protected(protected.build())
            .unprotected(unprotected.build())
            .payload(payload)
            .create_signature(b"", |data| {
                let signature: Signature = scalar.sign(data);
                signature.to_bytes().to_vec()
            })
            .build()
            .to_tagged_vec()
            .unwrap()
    }

    fn payload_of(token: &[u8]) -> Vec<(Value, Value)> {
        let sign1 = CoseSign1::from_tagged_slice(token).unwrap();
        let value: Value = ciborium::from_reader(sign1.payload.unwrap().as_slice()).unwrap();
        value.into_map().unwrap()
    }

    fn encode(map: Vec<(Value, Value)>) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(&Value::Map(map), &mut out).unwrap();
        out
    }

    fn custom_key() -> VerifyingKey {
        *p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap().verifying_key()
    }

    fn reasons(result: Result<Accepted, Vec<Rejection>>) -> Vec<String> {
        result.expect_err("rejected").iter().map(ToString::to_string).collect()
    }

    #[test]
    fn accepts_attestation_pd_token() {
        let key = key();
        let accepted = verify(&good_token(&key), &NONCE, &references(), key.verifying_key()).unwrap();
        assert_eq!(accepted, Accepted { client_id: -1, components: vec!["BL".into(), "PRoT".into()] });
    }

    #[test]
    fn rejects_wrong_nonce_and_other_key() {
        let key = key();
        let token = good_token(&key);
        assert_eq!(
            reasons(verify(&token, &[0; 32], &references(), key.verifying_key())),
            ["eat_nonce (10): does not match the challenge (--nonce)"]
        );
        let other = token::derive_attestation_key(&[2; 32]).unwrap();
        assert_eq!(
            reasons(verify(&token, &NONCE, &references(), other.verifying_key())),
            ["signature: does not verify with the attestation key"]
        );
    }

    #[test]
    fn every_flipped_payload_byte_breaks_the_signature() {
        let key = key();
        let token = good_token(&key);
        let sign1 = CoseSign1::from_tagged_slice(&token).unwrap();
        let payload = sign1.payload.unwrap();
        let start = token.windows(payload.len()).position(|w| w == payload.as_slice()).unwrap();
        for i in start..start + payload.len() {
            let mut bad = token.clone();
            bad[i] ^= 0x01;
            let result = verify(&bad, &NONCE, &references(), key.verifying_key());
            let reasons = reasons(result);
            assert_eq!(reasons.len(), 1, "byte {i}: {reasons:?}");
            assert!(
                reasons[0].starts_with("signature: ") || reasons[0].starts_with("token: "),
                "byte {i}: {reasons:?}"
            );
        }
    }

    #[test]
    fn rejects_every_truncation() {
        let key = key();
        let token = good_token(&key);
        for len in 0..token.len() {
            let reasons = reasons(verify(&token[..len], &NONCE, &references(), key.verifying_key()));
            assert!(reasons[0].starts_with("token: not a tagged COSE_Sign1"), "{len}: {reasons:?}");
        }
        let mut long = token.clone();
        long.push(0);
        assert!(reasons(verify(&long, &NONCE, &references(), key.verifying_key()))[0].starts_with("token: "));
    }

    #[test]
    fn rejects_alg_outside_the_protected_header() {
        let key = key();
        let payload = CoseSign1::from_tagged_slice(&good_token(&key)).unwrap().payload.unwrap();
        let only_unprotected = custom(payload.clone(), false, true);
        let reasons = reasons(verify(&only_unprotected, &NONCE, &references(), &custom_key()));
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].starts_with("alg: only in the unprotected header"), "{reasons:?}");
        let none = custom(payload.clone(), false, false);
        assert_eq!(reasons_of(&none), ["alg: missing from the protected header"]);
        let both = custom(payload, true, true);
        assert_eq!(reasons_of(&both), ["alg: in both the protected and the unprotected header"]);
    }

    fn reasons_of(token: &[u8]) -> Vec<String> {
        reasons(verify(token, &NONCE, &references(), &custom_key()))
    }

    #[test]
    fn rejects_untagged_sign1() {
        let key = key();
        let token = good_token(&key);
        // Tag 18 is the single byte 0xd2 in front.
        assert_eq!(token[0], 0xd2);
        assert_eq!(
            reasons(verify(&token[1..], &NONCE, &references(), key.verifying_key())),
            ["token: a COSE_Sign1 without CBOR tag 18"]
        );
    }

    #[test]
    fn names_each_missing_or_bad_claim() {
        let key = key();
        let good = payload_of(&good_token(&key));
        // The custom key signs; the instance id must then be that key's.
        let instance = {
            let mut id = vec![1u8];
            id.extend_from_slice(&Sha256::digest(custom_key().to_sec1_point(false).as_bytes()));
            id
        };
        let with_instance = |mut map: Vec<(Value, Value)>| {
            for (k, v) in map.iter_mut() {
                if k.as_integer() == Some(256.into()) {
                    *v = Value::Bytes(instance.clone());
                }
            }
            map
        };
        let signed = |map| custom(encode(with_instance(map)), true, false);
        assert!(verify(&signed(good.clone()), &NONCE, &references(), &custom_key()).is_ok());
        for (claim, label) in [
            (10u64, "eat_nonce (10)"),
            (256, "ueid (instance id) (256)"),
            (265, "eat_profile (265)"),
            (2394, "psa-client-id (2394)"),
            (2395, "psa-security-lifecycle (2395)"),
            (2396, "psa-implementation-id (2396)"),
            (2399, "psa-software-components (2399)"),
        ] {
            let map: Vec<_> = good.iter().filter(|(k, _)| k.as_integer() != Some(claim.into())).cloned().collect();
            let token = custom(encode(with_instance(map)), true, false);
            assert_eq!(reasons_of(&token), [format!("{label}: missing (mandatory in RFC 9783)")]);
        }
        let replace = |claim: u64, value: Value| {
            let mut map = good.clone();
            for (k, v) in map.iter_mut() {
                if k.as_integer() == Some(claim.into()) {
                    *v = value.clone();
                }
            }
            signed(map)
        };
        assert_eq!(
            reasons_of(&replace(265, Value::Text("http://arm.com/psa/2.0.0".into()))),
            [format!("eat_profile (265): \"http://arm.com/psa/2.0.0\", expected {PROFILE:?}")]
        );
        assert_eq!(
            reasons_of(&replace(2395, Value::Integer(0x2000.into()))),
            ["psa-security-lifecycle (2395): 0x2000: not SECURED (0x3000..0x30ff)"]
        );
        assert_eq!(
            reasons_of(&replace(2394, Value::Integer(0.into()))),
            ["psa-client-id (2394): 0: expected a non-zero 32-bit integer"]
        );
        assert_eq!(
            reasons_of(&replace(10, Value::Array(vec![Value::Bytes(NONCE.to_vec())]))),
            ["eat_nonce (10): not a byte string (the array form is not allowed)"]
        );
        assert_eq!(
            reasons_of(&replace(2396, Value::Bytes(vec![0; 32]))),
            ["psa-implementation-id (2396): does not match the references' implementation_id"]
        );
        // An instance id not derived from the signing key: the token of another device.
        let mut map = good.clone();
        for (k, v) in map.iter_mut() {
            if k.as_integer() == Some(256.into()) {
                *v = Value::Bytes([vec![1u8], vec![0; 32]].concat());
            }
        }
        assert_eq!(
            reasons_of(&custom(encode(map), true, false)),
            ["ueid (instance id) (256): is not 0x01 || SHA-256 of the attestation key's uncompressed point"]
        );
        // Bytes after the claims map.
        let mut trailing = encode(with_instance(good.clone()));
        trailing.push(0);
        assert_eq!(reasons_of(&custom(trailing, true, false)), ["claims: 1 byte(s) after the claims map"]);
        // Unknown claims are ignored (EAT), duplicates are not.
        let mut map = good.clone();
        map.push((Value::Integer(99999.into()), Value::Text("x".into())));
        assert!(verify(&signed(map), &NONCE, &references(), &custom_key()).is_ok());
        let mut map = good.clone();
        map.push((Value::Integer(265.into()), Value::Text(PROFILE.into())));
        assert_eq!(reasons_of(&signed(map)), ["claims: key 265 appears twice"]);
    }

    #[test]
    fn components_are_checked_against_the_references() {
        let key = key();
        let mut components = components().to_vec();
        components[1].measurement_value = [7; 32];
        let claims = Claims {
            nonce: &NONCE,
            implementation_id: [0xcc; 32],
            client_id: -1,
            security_lifecycle: token::LIFECYCLE_SECURED,
            components: &components,
        };
        let mut buf = [0u8; 2048];
        let len = token::encode_token(&claims, &key, &mut buf).unwrap();
        assert_eq!(
            reasons(verify(&buf[..len], &NONCE, &references(), key.verifying_key())),
            ["psa-software-components (2399): [1]: component \"PRoT\" (version \"2.0\") is not in the references"]
        );
        // A component the references expect but the token lacks.
        let claims = Claims { components: &components[..1], ..claims };
        let len = token::encode_token(&claims, &key, &mut buf).unwrap();
        assert_eq!(
            reasons(verify(&buf[..len], &NONCE, &references(), key.verifying_key())),
            ["psa-software-components (2399): no component of type \"PRoT\", which the references expect"]
        );
    }

    proptest::proptest! {
        /// Whatever the bytes, the verifier answers; it never panics. Mutations of a good token
        /// (a byte set, a cut) reach deeper than random bytes do.
        #[test]
        fn no_token_panics_the_verifier(
            random in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            at in proptest::num::usize::ANY,
            byte in proptest::num::u8::ANY,
            cut in proptest::num::usize::ANY,
        ) {
            let key = key();
            let refs = references();
            let _ = verify(&random, &NONCE, &refs, key.verifying_key());
            let mut token = good_token(&key);
            let at = at % token.len();
            token[at] = byte;
            let _ = verify(&token, &NONCE, &refs, key.verifying_key());
            token.truncate(cut % (token.len() + 1));
            let _ = verify(&token, &NONCE, &refs, key.verifying_key());
        }

        /// Claims maps of any shape, correctly signed: the claim checks never panic either.
        #[test]
        fn no_signed_payload_panics_the_verifier(
            entries in proptest::collection::vec((0u64..3000, proptest::num::i64::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..70)), 0..12),
        ) {
            let map = entries
                .into_iter()
                .map(|(key, int, bytes)| {
                    let value = match key % 4 {
                        0 => Value::Integer(int.into()),
                        1 => Value::Bytes(bytes),
                        2 => Value::Array(vec![Value::Map(vec![(Value::Integer(2.into()), Value::Bytes(bytes))])]),
                        _ => Value::Text(String::from_utf8_lossy(&bytes).into_owned()),
                    };
                    (Value::Integer([10, 256, 265, 2394, 2395, 2396, 2399, key][(key % 8) as usize].into()), value)
                })
                .collect();
            let _ = verify(&custom(encode(map), true, false), &NONCE, &references(), &custom_key());
        }
    }

    #[test]
    fn inputs_are_validated() {
        assert_eq!(hex("0aFf").unwrap(), [0x0a, 0xff]);
        assert!(hex("abc").is_err() && hex("zz").is_err());
        assert!(parse_nonce(&"00".repeat(31)).is_err());
        assert!(parse_nonce(&"00".repeat(48)).is_ok());
        let key = key();
        let raw = key.public_key_sec1();
        assert_eq!(parse_key_file(&raw).unwrap(), *key.verifying_key());
        let as_hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_key_file(format!("{as_hex}\n").as_bytes()).unwrap(), *key.verifying_key());
        assert!(parse_key_file(&raw[..64]).is_err());
        let mut off_curve = raw;
        off_curve[64] ^= 1;
        assert!(parse_key_file(&off_curve).is_err());
        assert!(References::from_json("{}").is_err());
        assert!(References::from_json(r#"{"implementation_id": "00", "components": []}"#).is_err());
        let refs = references();
        assert!(attestation_key(None, &refs).is_err(), "no key given anywhere");
    }

    /// A chain as attestation-pd answers it: device key, its certificate of a CDI key, that key's
    /// certificate of the attestation key.
    fn chain(attestation: &AttestationKey) -> (Vec<u8>, [u8; 32], Vec<Vec<u8>>) {
        use tzmk_trust::dice::{self, Config, Inputs, Mode, SubjectKey, INLINE_CONFIG_SIZE};
        let inputs = Inputs {
            code_hash: [1; 64],
            config: Config::Inline([0; INLINE_CONFIG_SIZE]),
            authority_hash: [2; 64],
            mode: Mode::Normal,
            hidden: [0; 64],
        };
        let device = dice::device_identity_key(&[9; 32]);
        let layer = dice::key_pair_from_cdi(&[8; 32]);
        let mut first = [0u8; 1024];
        let n1 = dice::certificate(&device, &layer.verifying_key(), &inputs, &mut first).unwrap();
        let mut second = [0u8; 1024];
        let n2 = dice::certificate_of(&layer, &SubjectKey::P256(attestation.public_key_sec1()), &inputs, &mut second)
            .unwrap();
        let device_key = device.verifying_key().to_bytes();
        let parts = vec![device_key.to_vec(), first[..n1].to_vec(), second[..n2].to_vec()];
        (encode_chain(&parts), device_key, parts)
    }

    fn encode_chain(parts: &[Vec<u8>]) -> Vec<u8> {
        let value = ciborium::Value::Array(parts.iter().map(|p| ciborium::Value::Bytes(p.clone())).collect());
        let mut out = Vec::new();
        ciborium::into_writer(&value, &mut out).unwrap();
        out
    }

    #[test]
    fn a_chain_certifies_the_attestation_key_from_the_device_key() {
        let attestation = key();
        let (good, anchor, parts) = chain(&attestation);
        assert_eq!(chain_key(&good, &anchor).unwrap(), *attestation.verifying_key());
        let reason = |chain: &[u8], anchor: &[u8; 32]| chain_key(chain, anchor).unwrap_err().reason;
        assert!(reason(&good, &[0; 32]).contains("not the device-identity key"));
        let swapped = encode_chain(&[parts[0].clone(), parts[2].clone(), parts[1].clone()]);
        assert!(reason(&swapped, &anchor).starts_with("certificate 1"));
        let short = encode_chain(&parts[..2]);
        assert!(reason(&short, &anchor).contains("the last, certifies no P-256"), "{}", reason(&short, &anchor));
        assert!(reason(&good[..good.len() - 3], &anchor).contains("not CBOR"));
        let mut flipped = parts.clone();
        let last = flipped[2].len() - 1;
        flipped[2][last] ^= 1;
        assert!(reason(&encode_chain(&flipped), &anchor).starts_with("certificate 2"));
        assert!(reason(&encode_chain(&parts[..1]), &anchor).contains("at least one certificate"));
    }
}
