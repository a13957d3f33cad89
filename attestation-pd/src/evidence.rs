//! Evidence for a nonce (docs/trusted-boot.md, "Evidence"): a PSA attestation token signed by
//! the attestation key, and the certificate chain that binds that key to the device.
//!
//! At start attestation-pd turns the boot handoff into an [`Attester`]: the P-256 attestation
//! key derived from CDI_Attest (the private scalar never leaves this PD), the chain
//! `[device-identity public key, the monitor's certificate of this layer's CDI key, this layer's
//! certificate of the attestation key]`, and the software components the token reports: the
//! monitor (as it measured itself), then every image of the verified manifest with its
//! measurement from the event log, its security version and the platform key as signer. After
//! that the handoff's CDIs are not needed: [`Attester::new`] is the only reader.
//!
//! The attestation key's certificate is a CWT like the DICE layer certificates (tzmk-trust's
//! `certificate_of`) but certifies a signing key (digitalSignature), not a layer: its code hash is
//! the secure image's SHA-256, padded, and its other inputs are zero.

use heapless::{String, Vec};
use minicbor::encode::write::Cursor;
use minicbor::Encoder;
use sha2::{Digest, Sha256};
use tzmk_interface::attestation::{BootHandoff, EvidenceHeader, EVIDENCE_MAGIC, EVIDENCE_VERSION, MAX_NONCE};
use tzmk_trust::dice::{self, Config, Inputs, Mode, SubjectKey, INLINE_CONFIG_SIZE};
use tzmk_trust::eventlog::{EventLog, EV_POST_CODE, PCR_BOOT};
use tzmk_trust::manifest::Manifest;
use zerocopy::IntoBytes;

use crate::runtime::Measurement;
use crate::token::{self, AttestationKey, Claims, SoftwareComponent, TokenError, LIFECYCLE_SECURED, MAX_COMPONENTS};

/// The platform this image attests: `psa-implementation-id` is SHA-256 of it.
pub const IMPLEMENTATION: &[u8] = b"tzmk secure world on qemu-virt";
/// The token's client id: the normal world's requests (RFC 9783: negative for non-secure callers).
pub const NORMAL_WORLD_CLIENT: i32 = -1;
/// The version runtime measurements are reported with (the normal world gives none).
pub const RUNTIME_VERSION: &str = "runtime";
/// The measurement type of a pending update's component.
pub use tzmk_interface::attestation::PENDING_MEASUREMENT_TYPE;
/// Room for the chain: three CBOR byte strings (a key and two ~450-byte certificates).
pub const CHAIN_MAX: usize = 1280;

/// Why no evidence could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceError {
    /// The handoff's manifest or event log does not parse (stage 2 refuses such a handoff too).
    Handoff,
    /// No valid P-256 scalar from CDI_Attest (a broken HKDF).
    Key,
    /// A certificate could not be written.
    Certificate(dice::DiceError),
    /// The token could not be written (a bad nonce length, a full buffer).
    Token(TokenError),
    /// The evidence does not fit the caller's buffer.
    BufferTooSmall,
}

impl From<TokenError> for EvidenceError {
    fn from(e: TokenError) -> Self {
        EvidenceError::Token(e)
    }
}

/// One software component's facts, kept for every token.
#[derive(Debug, Clone)]
struct Component {
    measurement_type: &'static str,
    measurement_value: [u8; 32],
    version: String<12>,
}

/// What attestation-pd answers evidence requests with.
#[derive(Debug)]
pub struct Attester {
    key: AttestationKey,
    chain: Vec<u8, CHAIN_MAX>,
    implementation_id: [u8; 32],
    signer_id: [u8; 32],
    components: Vec<Component, MAX_COMPONENTS>,
    /// The update the monitor accepted this boot, which the next boot runs (`take_pending_update`).
    pending: Option<Component>,
}

fn decimal(value: u32) -> String<12> {
    let mut text = String::new();
    // Ten digits at most: they fit.
    let _ = core::fmt::write(&mut text, format_args!("{value}"));
    text
}

impl Attester {
    /// The attester of a handoff that stage 2 accepted (or that carries no Linux entries: the
    /// token then reports what was measured).
    pub fn new(handoff: &BootHandoff) -> Result<Attester, EvidenceError> {
        let manifest = Manifest::parse(&handoff.manifest).map_err(|_| EvidenceError::Handoff)?;
        let log_bytes = handoff.event_log.get(..handoff.event_log_length as usize).ok_or(EvidenceError::Handoff)?;
        let log = EventLog::parse(log_bytes).map_err(|_| EvidenceError::Handoff)?;

        let key = token::derive_attestation_key(&handoff.cdi_attest).map_err(|_| EvidenceError::Key)?;
        let layer_key = dice::key_pair_from_cdi(&handoff.cdi_attest);
        let mut code_hash = [0u8; 64];
        code_hash[..32].copy_from_slice(&handoff.secure_image_sha256);
        let inputs = Inputs {
            code_hash,
            config: Config::Inline([0; INLINE_CONFIG_SIZE]),
            authority_hash: [0; 64],
            mode: Mode::Normal,
            hidden: [0; 64],
        };
        let mut key_certificate = [0u8; 640];
        let key_certificate_length =
            dice::certificate_of(&layer_key, &SubjectKey::P256(key.public_key_sec1()), &inputs, &mut key_certificate)
                .map_err(EvidenceError::Certificate)?;
        let layer_certificate =
            handoff.certificate.get(..handoff.certificate_length as usize).ok_or(EvidenceError::Handoff)?;
        let mut chain = [0u8; CHAIN_MAX];
        let chain_length = {
            let mut encoder = Encoder::new(Cursor::new(&mut chain[..]));
            encoder
                .array(3)
                .and_then(|e| e.bytes(&handoff.device_public_key))
                .and_then(|e| e.bytes(layer_certificate))
                .and_then(|e| e.bytes(&key_certificate[..key_certificate_length]))
                .map_err(|_| EvidenceError::BufferTooSmall)?;
            encoder.writer().position()
        };

        let mut components = Vec::new();
        let monitor = Component {
            measurement_type: "BL",
            measurement_value: handoff.monitor_sha256,
            version: decimal(manifest.header.security_version.get()),
        };
        let _ = components.push(monitor);
        for entry in manifest.images() {
            let (Some(kind), name) = (entry.kind(), entry.name().as_bytes()) else { continue };
            let measured = log
                .events()
                .find(|e| e.pcr == PCR_BOOT && e.event_type == EV_POST_CODE && e.data == name)
                .map(|e| e.digest);
            // An image the monitor did not measure is not reported: there is nothing to vouch for.
            if let Some(measurement_value) = measured {
                let component = Component {
                    measurement_type: kind.measurement_type(),
                    measurement_value,
                    version: decimal(entry.security_version.get()),
                };
                if components.push(component).is_err() {
                    break;
                }
            }
        }
        Ok(Attester {
            key,
            chain: Vec::from_slice(&chain[..chain_length]).map_err(|_| EvidenceError::BufferTooSmall)?,
            implementation_id: Sha256::digest(IMPLEMENTATION).into(),
            signer_id: Sha256::digest(handoff.platform_public_key).into(),
            components,
            pending: None,
        })
    }

    /// Records a manifest the monitor accepted as an update (it verified it) as the *pending*
    /// update: every later token reports it as one more software component,
    /// [`PENDING_MEASUREMENT_TYPE`] with the SHA-256 of the manifest's bytes, its security version
    /// and the platform key as signer. The boot's components stay exactly as measured and as
    /// versioned at boot: the running images are the booted manifest's, whatever flash holds
    /// now, so reporting the new version against the old images would vouch for a pairing that
    /// never booted. A later accepted update replaces the pending one (flash holds the last); a
    /// manifest that does not parse changes nothing.
    pub fn take_pending_update(&mut self, manifest: &[u8]) {
        let Ok(parsed) = Manifest::parse(manifest) else { return };
        self.pending = Some(Component {
            measurement_type: PENDING_MEASUREMENT_TYPE,
            measurement_value: Sha256::digest(manifest).into(),
            version: decimal(parsed.header.security_version.get()),
        });
    }

    /// The attestation public key (SEC1 uncompressed).
    pub fn public_key(&self) -> [u8; 65] {
        self.key.public_key_sec1()
    }

    /// Writes the evidence for `nonce` into `out`: an [`EvidenceHeader`], the token, the chain.
    /// The token reports the boot components, then each runtime measurement (its name as the
    /// measurement type, version "runtime", an all-zero signer id: the normal world reported it,
    /// nobody signed it).
    pub fn evidence(&self, nonce: &[u8], runtime: &[Measurement], out: &mut [u8]) -> Result<usize, EvidenceError> {
        if nonce.len() > MAX_NONCE {
            return Err(EvidenceError::Token(TokenError::BadNonceLength));
        }
        let components: Vec<SoftwareComponent<'_>, MAX_COMPONENTS> = self
            .components
            .iter()
            .chain(self.pending.as_ref())
            .map(|c| SoftwareComponent {
                measurement_type: c.measurement_type,
                measurement_value: c.measurement_value,
                version: c.version.as_str(),
                signer_id: self.signer_id,
            })
            .chain(runtime.iter().map(|m| SoftwareComponent {
                measurement_type: m.name.as_str(),
                measurement_value: m.sha256,
                version: RUNTIME_VERSION,
                signer_id: [0; 32],
            }))
            .collect();
        if components.len() < self.components.len() + runtime.len() {
            return Err(EvidenceError::Token(TokenError::TooManyComponents));
        }
        let claims = Claims {
            nonce,
            implementation_id: self.implementation_id,
            client_id: NORMAL_WORLD_CLIENT,
            security_lifecycle: LIFECYCLE_SECURED,
            components: &components,
        };
        let header_size = core::mem::size_of::<EvidenceHeader>();
        let body = out.get_mut(header_size..).ok_or(EvidenceError::BufferTooSmall)?;
        let token_length = token::encode_token(&claims, &self.key, body)?;
        let chain_at = header_size + token_length;
        out.get_mut(chain_at..chain_at + self.chain.len())
            .ok_or(EvidenceError::BufferTooSmall)?
            .copy_from_slice(&self.chain);
        let header = EvidenceHeader {
            magic: EVIDENCE_MAGIC,
            version: EVIDENCE_VERSION,
            token_length: token_length as u32,
            chain_length: self.chain.len() as u32,
        };
        out[..header_size].copy_from_slice(header.as_bytes());
        Ok(chain_at + self.chain.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coset::TaggedCborSerializable;
    use p256::ecdsa::signature::Verifier;
    use tzmk_interface::attestation::{HANDOFF_MAGIC, HANDOFF_VERSION, MAX_EVIDENCE, MAX_RUNTIME_MEASUREMENTS};
    use tzmk_trust::eventlog::EventLogWriter;
    use tzmk_trust::manifest::{ImageKind, ManifestBuilder};
    use tzmk_trust::SigningKey;
    use zerocopy::{FromBytes, FromZeros};

    /// A handoff as stage 1 writes it, for a UDS of all 5s.
    fn handoff() -> BootHandoff {
        let platform = SigningKey::from_bytes(&[7; 32]);
        let images: [(ImageKind, &str, &[u8]); 4] = [
            (ImageKind::SecureImage, "loader.img", b"seL4 and its PDs"),
            (ImageKind::LinuxKernel, "image", b"Image"),
            (ImageKind::LinuxDtb, "tzmk.dtb", b"dtb"),
            (ImageKind::LinuxInitramfs, "initramfs.cpio", b"cpio"),
        ];
        let mut builder = ManifestBuilder::new(4);
        for (i, (kind, name, bytes)) in images.iter().enumerate() {
            builder.image(*kind, name, i as u32, 0x4000_0000 + (i as u64) * 0x100_0000, bytes).unwrap();
        }
        let manifest = builder.sign(&platform).unwrap();
        let mut h = BootHandoff::new_zeroed();
        (h.magic, h.version) = (HANDOFF_MAGIC, HANDOFF_VERSION);
        h.manifest.copy_from_slice(manifest.as_bytes());
        h.platform_public_key = platform.verifying_key().to_bytes();
        h.monitor_sha256 = Sha256::digest(b"the monitor").into();
        h.secure_image_sha256 = Sha256::digest(images[0].2).into();
        let mut writer = EventLogWriter::new(&mut h.event_log).unwrap();
        for (_, name, bytes) in images {
            writer.measure_image(name, &Sha256::digest(bytes).into()).unwrap();
        }
        h.event_log_length = writer.len() as u32;
        // Stage 1's DICE: device key from the UDS, CDIs, the layer certificate.
        let uds = [5u8; 32];
        let device = dice::device_identity_key(&uds);
        let inputs = Inputs {
            code_hash: [1; 64],
            config: Config::Inline([2; INLINE_CONFIG_SIZE]),
            authority_hash: [3; 64],
            mode: Mode::Normal,
            hidden: [0; 64],
        };
        let cdis = dice::derive_cdis(&uds, &inputs);
        h.cdi_attest = cdis.attest;
        h.cdi_seal = cdis.seal;
        h.device_public_key = device.verifying_key().to_bytes();
        let layer = dice::key_pair_from_cdi(&cdis.attest);
        let n = dice::certificate(&device, &layer.verifying_key(), &inputs, &mut h.certificate).unwrap();
        h.certificate_length = n as u32;
        h
    }

    #[test]
    fn evidence_is_a_token_and_a_chain_to_the_device_key() {
        let h = handoff();
        let attester = Attester::new(&h).unwrap();
        let nonce = [0x42u8; 32];
        let mut out = [0u8; MAX_EVIDENCE];
        let n = attester.evidence(&nonce, &[], &mut out).unwrap();
        let (header, rest) = EvidenceHeader::read_from_prefix(&out[..n]).unwrap();
        assert_eq!((header.magic, header.version), (EVIDENCE_MAGIC, EVIDENCE_VERSION));
        let (token, chain) = rest.split_at(header.token_length as usize);
        assert_eq!(chain.len(), header.chain_length as usize);

        // The chain: device key -> layer CDI key -> attestation key.
        let chain: Vec<ciborium::Value, 3> = match ciborium::from_reader(chain).unwrap() {
            ciborium::Value::Array(items) => items.into_iter().collect(),
            other => panic!("{other:?}"),
        };
        let bytes = |v: &ciborium::Value| v.as_bytes().unwrap().clone();
        let device: [u8; 32] = bytes(&chain[0]).try_into().unwrap();
        assert_eq!(device, h.device_public_key);
        let layer = dice::verify_certificate(&bytes(&chain[1]), &device).unwrap();
        let key = dice::verify_certificate(&bytes(&chain[2]), &layer.subject_public_key().unwrap()).unwrap();
        let SubjectKey::P256(point) = key.subject_key else { panic!("{:?}", key.subject_key) };
        assert_eq!(point, attester.public_key());

        // The token verifies with the certified key, and says what the handoff measured.
        let sign1 = coset::CoseSign1::from_tagged_slice(token).unwrap();
        let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
        sign1
            .verify_signature(b"", |sig, data| {
                verifying.verify(data, &p256::ecdsa::Signature::from_slice(sig).unwrap())
            })
            .unwrap();
        let claims: ciborium::Value = ciborium::from_reader(&sign1.payload.unwrap()[..]).unwrap();
        let claims = claims.as_map().unwrap();
        let claim =
            |key: i128| claims.iter().find(|(k, _)| k.as_integer() == Some(key.try_into().unwrap())).map(|(_, v)| v);
        assert_eq!(claim(10).unwrap().as_bytes().unwrap(), &nonce.to_vec());
        let components = claim(2399).unwrap().as_array().unwrap();
        let types: std::vec::Vec<&str> = components
            .iter()
            .map(|c| {
                c.as_map().unwrap().iter().find(|(k, _)| k.as_integer() == Some(1.into())).unwrap().1.as_text().unwrap()
            })
            .collect();
        assert_eq!(types, ["BL", "PRoT", "kernel", "dtb", "initramfs"]);
        let kernel = components[2].as_map().unwrap();
        let value = kernel.iter().find(|(k, _)| k.as_integer() == Some(2.into())).unwrap().1.as_bytes().unwrap();
        assert_eq!(value[..], Sha256::digest(b"Image")[..]);
        assert_eq!(token[0], 0xd2, "COSE_Sign1 under tag 18");
    }

    /// The component types and values of a token's claims.
    fn components_of(evidence: &[u8]) -> std::vec::Vec<(std::string::String, std::vec::Vec<u8>, std::vec::Vec<u8>)> {
        let (header, rest) = EvidenceHeader::read_from_prefix(evidence).unwrap();
        let sign1 = coset::CoseSign1::from_tagged_slice(&rest[..header.token_length as usize]).unwrap();
        let claims: ciborium::Value = ciborium::from_reader(&sign1.payload.unwrap()[..]).unwrap();
        let claims = claims.as_map().unwrap();
        let components =
            claims.iter().find(|(k, _)| k.as_integer() == Some(2399.into())).unwrap().1.as_array().unwrap();
        let field = |c: &ciborium::Value, key: i64| {
            c.as_map().unwrap().iter().find(|(k, _)| k.as_integer() == Some(key.into())).unwrap().1.clone()
        };
        components
            .iter()
            .map(|c| {
                (
                    field(c, 1).as_text().unwrap().to_owned(),
                    field(c, 2).as_bytes().unwrap().clone(),
                    field(c, 5).as_bytes().unwrap().clone(),
                )
            })
            .collect()
    }

    #[test]
    fn an_accepted_update_is_reported_as_pending_and_the_boot_stays_as_booted() {
        let h = handoff();
        let mut attester = Attester::new(&h).unwrap();
        let report = |attester: &Attester| {
            let mut out = [0u8; MAX_EVIDENCE];
            let n = attester.evidence(&[9; 32], &[], &mut out).unwrap();
            components_of(&out[..n])
        };
        let before = report(&attester);
        let types = |r: &[(std::string::String, std::vec::Vec<u8>, std::vec::Vec<u8>)]| {
            r.iter().map(|(t, _, _)| t.clone()).collect::<std::vec::Vec<_>>()
        };
        assert_eq!(types(&before), ["BL", "PRoT", "kernel", "dtb", "initramfs"]);
        let versions = |attester: &Attester| {
            let mut out = [0u8; MAX_EVIDENCE];
            let n = attester.evidence(&[9; 32], &[], &mut out).unwrap();
            versions_of(&out[..n])
        };
        assert_eq!(versions(&attester), ["4", "0", "1", "2", "3"]);
        // Garbage changes nothing.
        attester.take_pending_update(&[0u8; 10]);
        assert_eq!(report(&attester), before);
        // The same images at security version 9 (what the monitor accepted).
        let platform = SigningKey::from_bytes(&[7; 32]);
        let mut builder = ManifestBuilder::new(9);
        let images: [(ImageKind, &str, &[u8]); 4] = [
            (ImageKind::SecureImage, "loader.img", b"seL4 and its PDs"),
            (ImageKind::LinuxKernel, "image", b"Image"),
            (ImageKind::LinuxDtb, "tzmk.dtb", b"dtb"),
            (ImageKind::LinuxInitramfs, "initramfs.cpio", b"cpio"),
        ];
        for (i, (kind, name, bytes)) in images.iter().enumerate() {
            builder.image(*kind, name, 9, 0x4000_0000 + (i as u64) * 0x100_0000, bytes).unwrap();
        }
        let update = builder.sign(&platform).unwrap();
        attester.take_pending_update(update.as_bytes());
        let after = report(&attester);
        assert_eq!(after[..5], before[..], "the boot's components stay as booted: measurements and versions");
        assert_eq!(versions(&attester), ["4", "0", "1", "2", "3", "9"]);
        let signer: std::vec::Vec<u8> = Sha256::digest(h.platform_public_key).to_vec();
        assert_eq!(
            after[5],
            (PENDING_MEASUREMENT_TYPE.into(), Sha256::digest(update.as_bytes()).to_vec(), signer),
            "the pending update: the manifest's digest, signed by the platform key"
        );
        // A second update replaces the pending one.
        let mut builder = ManifestBuilder::new(10);
        builder.image(ImageKind::LinuxKernel, "image", 10, 0x4000_0000, b"Image").unwrap();
        let second = builder.sign(&platform).unwrap();
        attester.take_pending_update(second.as_bytes());
        assert_eq!(versions(&attester), ["4", "0", "1", "2", "3", "10"]);
        assert_eq!(report(&attester)[5].1, Sha256::digest(second.as_bytes()).to_vec());
    }

    fn versions_of(evidence: &[u8]) -> std::vec::Vec<std::string::String> {
        let (header, rest) = EvidenceHeader::read_from_prefix(evidence).unwrap();
        let sign1 = coset::CoseSign1::from_tagged_slice(&rest[..header.token_length as usize]).unwrap();
        let claims: ciborium::Value = ciborium::from_reader(&sign1.payload.unwrap()[..]).unwrap();
        let components =
            claims.as_map().unwrap().iter().find(|(k, _)| k.as_integer() == Some(2399.into())).unwrap().1.clone();
        components
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let version = c.as_map().unwrap().iter().find(|(k, _)| k.as_integer() == Some(4.into())).unwrap();
                version.1.as_text().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn tokens_report_runtime_measurements_and_the_most_of_them_fit() {
        let h = handoff();
        let attester = Attester::new(&h).unwrap();
        let mut runtime = crate::runtime::RuntimeLog::new(&h.event_log[..h.event_log_length as usize]).unwrap();
        let mut name = [0u8; 16];
        name[..11].copy_from_slice(b"container-a");
        runtime.measure(&name, &[0xaa; 32]).unwrap();
        let mut out = [0u8; MAX_EVIDENCE];
        let n = attester.evidence(&[1; 64], runtime.measurements(), &mut out).unwrap();
        let components = components_of(&out[..n]);
        assert_eq!(components.len(), 6);
        assert_eq!(components[5], ("container-a".into(), vec![0xaa; 32], vec![0; 32]), "nobody signed it");

        // Every runtime measurement, with 16-byte names and a 64-byte nonce: the largest evidence.
        for i in 1..MAX_RUNTIME_MEASUREMENTS {
            runtime
                .measure(&std::format!("measurement-{i:04}").as_bytes().try_into().unwrap(), &[i as u8; 32])
                .unwrap();
        }
        // And a pending update.
        let mut attester = attester;
        let mut builder = ManifestBuilder::new(u32::MAX);
        builder.image(ImageKind::LinuxKernel, "image", u32::MAX, 0x4000_0000, b"Image").unwrap();
        attester.take_pending_update(builder.sign(&SigningKey::from_bytes(&[7; 32])).unwrap().as_bytes());
        let n = attester.evidence(&[1; 64], runtime.measurements(), &mut out).unwrap();
        assert_eq!(components_of(&out[..n]).len(), 5 + 1 + MAX_RUNTIME_MEASUREMENTS);
        assert!(n <= MAX_EVIDENCE, "{n}");
    }

    #[test]
    fn bad_requests_and_handoffs() {
        let attester = Attester::new(&handoff()).unwrap();
        let mut out = [0u8; MAX_EVIDENCE];
        assert_eq!(attester.evidence(&[1; 31], &[], &mut out), Err(EvidenceError::Token(TokenError::BadNonceLength)));
        assert_eq!(attester.evidence(&[1; 65], &[], &mut out), Err(EvidenceError::Token(TokenError::BadNonceLength)));
        assert!(attester.evidence(&[1; 64], &[], &mut out[..100]).is_err());
        let mut garbled = handoff();
        garbled.event_log_length = 9999;
        assert_eq!(Attester::new(&garbled).unwrap_err(), EvidenceError::Handoff);
        let mut no_cert = handoff();
        no_cert.certificate_length = 9999;
        assert_eq!(Attester::new(&no_cert).unwrap_err(), EvidenceError::Handoff);
    }
}
