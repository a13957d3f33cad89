//! Reference values (`refs.json`, the input of `tzmk verify --refs` and of
//! tools/verify-psa-token.py) derived from what a device boots: the monitor's image, its
//! provisioning block and the signed manifest. A verifier holds these from the build; the build
//! (`tzmk refs`), the simulator's monitor model and the QEMU tests all derive them here, so that
//! the three can never disagree about what a token must say.

use std::format;
use std::string::String;
use std::vec::Vec;

use sha2::{Digest, Sha256};
use zerocopy::IntoBytes;

use crate::manifest::Manifest;
use crate::provisioning::Provisioning;

/// The monitor's measurement type (RFC 9783's boot loader role).
pub const MONITOR_MEASUREMENT_TYPE: &str = "BL";

/// One software component a token must report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceComponent {
    /// "BL", "PRoT", "kernel", "dtb", "initramfs", or a runtime measurement's name.
    pub measurement_type: String,
    /// Its SHA-256.
    pub measurement_value: [u8; 32],
    /// SHA-256 of the key that signed it (all zero for a runtime measurement).
    pub signer_id: [u8; 32],
    /// Its version, as the token reports it.
    pub version: String,
}

/// What a token from this device and boot must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValues {
    /// `psa-implementation-id`: SHA-256 of the implementation's description.
    pub implementation_id: [u8; 32],
    /// The components: the monitor, then every manifest image in manifest order.
    pub components: Vec<ReferenceComponent>,
    /// The device-identity public key (DICE layer 0), the chain's anchor.
    pub device_public_key: [u8; 32],
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ReferenceValues {
    /// The values for a device whose monitor image is `monitor` (the bytes stage 1 measures),
    /// provisioned with `provisioning` and booting `manifest`; `implementation` is what
    /// attestation-pd's implementation id is the SHA-256 of.
    pub fn derive(monitor: &[u8], provisioning: &Provisioning, manifest: &Manifest, implementation: &[u8]) -> Self {
        let signer_id: [u8; 32] = Sha256::digest(provisioning.platform_public_key).into();
        let mut components = std::vec![ReferenceComponent {
            measurement_type: MONITOR_MEASUREMENT_TYPE.into(),
            measurement_value: Sha256::digest(monitor).into(),
            signer_id,
            version: format!("{}", manifest.header.security_version.get()),
        }];
        for entry in manifest.images() {
            let Some(kind) = entry.kind() else { continue };
            components.push(ReferenceComponent {
                measurement_type: kind.measurement_type().into(),
                measurement_value: entry.sha256,
                signer_id,
                version: format!("{}", entry.security_version.get()),
            });
        }
        let device_public_key = crate::dice::device_identity_key(&provisioning.uds).verifying_key().to_bytes();
        ReferenceValues { implementation_id: Sha256::digest(implementation).into(), components, device_public_key }
    }

    /// Adds a runtime measurement the verifier expects (`tzctl measure NAME`): attestation-pd
    /// reports it with version "runtime" and no signer.
    pub fn expect_runtime(&mut self, name: &str, sha256: [u8; 32]) {
        self.components.push(ReferenceComponent {
            measurement_type: name.into(),
            measurement_value: sha256,
            signer_id: [0; 32],
            version: "runtime".into(),
        });
    }

    /// Adds the pending update a token reports after the monitor accepted `manifest` (its bytes)
    /// this boot: a component of type "pending-update" with the manifest's SHA-256, its security
    /// version and the platform key as signer (the same signer as the boot's components). The
    /// boot's components stay those of the manifest the device booted.
    pub fn expect_pending_update(&mut self, manifest: &Manifest) {
        let signer_id = self.components.first().map_or([0; 32], |monitor| monitor.signer_id);
        self.components.push(ReferenceComponent {
            measurement_type: tzmk_interface::attestation::PENDING_MEASUREMENT_TYPE.into(),
            measurement_value: Sha256::digest(manifest.as_bytes()).into(),
            signer_id,
            version: format!("{}", manifest.header.security_version.get()),
        });
    }

    /// refs.json, as `tzmk verify` and tools/verify-psa-token.py read it.
    pub fn to_json(&self) -> String {
        let components: Vec<String> = self
            .components
            .iter()
            .map(|c| {
                format!(
                    "    {{\"measurement_type\": \"{}\", \"measurement_value\": \"{}\", \"signer_id\": \"{}\", \"version\": \"{}\"}}",
                    c.measurement_type,
                    hex(&c.measurement_value),
                    hex(&c.signer_id),
                    c.version
                )
            })
            .collect();
        format!(
            "{{\n  \"implementation_id\": \"{}\",\n  \"components\": [\n{}\n  ],\n  \"device_public_key\": \"{}\"\n}}\n",
            hex(&self.implementation_id),
            components.join(",\n"),
            hex(&self.device_public_key)
        )
    }
}
