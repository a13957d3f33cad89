//! The monitor model's trusted boot: the EL3 monitor's own stage 1 (tzmk-monitor's
//! `trusted_boot::stage1`, the code that runs on QEMU) over a simulated machine, so that
//! attestation-pd starts from the same boot handoff it gets on hardware and `tzctl attest` /
//! `tzctl measure` / `tzmk verify` work end to end in the simulator.
//!
//! The simulated machine (docs/simulator.md, "Trusted boot in the simulator"):
//! - secure flash: the model's monitor image (its identity string), a provisioning block with
//!   the *development* UDS and platform key below (fixed, public, never a product's), and a
//!   manifest the model signs with that key at start;
//! - the secure image: system.xml's bytes followed by the SHA-256 of the simulator's executable
//!   (hashed once per process), since the executable holds every PD's code and system.xml their
//!   configuration: a changed PD or a changed system.xml is a different measurement;
//! - the normal world's images: the simulator has no Linux (normal-world processes attach
//!   through `sim.sock`), so the model signs and measures three descriptors of the simulated
//!   normal world in their place; stage 2 checks them as it checks Linux's.
//!
//! The run directory gets `refs.json`: the reference values a verifier needs (`tzmk verify
//! --refs`), derived by tzmk-trust's `refs` exactly as the QEMU tests derive them.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tzmk_interface::attestation::BootHandoff;
use tzmk_monitor::trusted_boot::{self, Layout, Memory, Window};
use tzmk_sdf::partition::Partition;
use tzmk_trust::manifest::{ImageKind, Manifest, ManifestBuilder, MANIFEST_SIZE};
use tzmk_trust::provisioning::Provisioning;
use tzmk_trust::refs::ReferenceValues;
use tzmk_trust::SigningKey;
use zerocopy::{FromZeros, IntoBytes};

use crate::SimError;

/// The development UDS of every simulator: a fixed, published value (its SHA-256 input), so that
/// a simulated device's identity is the same on every machine. Never a product's.
const DEVELOPMENT_UDS_SEED: &[u8] = b"tzmk simulator development UDS (public: never a product's)";
/// The development platform key's seed, likewise public.
const DEVELOPMENT_PLATFORM_KEY_SEED: &[u8] = b"tzmk simulator development platform key (public)";
/// What the model's monitor image holds: its identity.
const MONITOR_IMAGE: &str = concat!("tzmk-sim monitor model ", env!("CARGO_PKG_VERSION"));
/// The security version the model signs.
const SECURITY_VERSION: u32 = 1;
/// The simulated normal world's images (see the module documentation).
const NORMAL_WORLD: [(ImageKind, &str, &[u8]); 3] = [
    (ImageKind::LinuxKernel, "sim-kernel", b"tzmk-sim normal world: host processes attached through sim.sock\n"),
    (ImageKind::LinuxDtb, "sim.dtb", b"tzmk-sim normal world: the regions of run-dir/regions, ports in port_ctrl\n"),
    (ImageKind::LinuxInitramfs, "sim-initramfs", b"tzmk-sim normal world: tzctl, tzcomm and the demo\n"),
];

/// The boot as the model ran it.
pub(crate) struct Booted {
    pub(crate) handoff: BootHandoff,
    pub(crate) refs: ReferenceValues,
}

/// The simulated physical memory: disjoint segments.
struct Machine(BTreeMap<u64, Vec<u8>>);

impl Memory for Machine {
    fn read(&self, address: u64, length: u64) -> Option<&[u8]> {
        let (base, bytes) = self.0.range(..=address).next_back()?;
        let start = usize::try_from(address - base).ok()?;
        bytes.get(start..start.checked_add(usize::try_from(length).ok()?)?)
    }
}

fn window(range: &tzmk_sdf::partition::PhysRange) -> Window {
    Window { base: range.base, end: range.end() }
}

/// SHA-256 of the running executable, computed once.
fn executable_sha256() -> Result<[u8; 32], String> {
    static DIGEST: std::sync::OnceLock<Result<[u8; 32], String>> = std::sync::OnceLock::new();
    DIGEST
        .get_or_init(|| {
            let path = std::env::current_exe().map_err(|e| format!("the simulator's executable: {e}"))?;
            let mut file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut hasher = Sha256::new();
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                match std::io::Read::read(&mut file, &mut chunk) {
                    Ok(0) => break Ok(hasher.finalize().into()),
                    Ok(n) => hasher.update(&chunk[..n]),
                    Err(e) => break Err(format!("{}: {e}", path.display())),
                }
            }
        })
        .clone()
}

/// Runs stage 1 over the simulated machine of `system_xml` (the file's bytes) and `partition`.
pub(crate) fn boot(system_xml: &[u8], partition: &Partition) -> Result<Booted, SimError> {
    let host = |what: String| SimError::Host(format!("monitor model: {what}"));
    let mut secure_image = system_xml.to_vec();
    secure_image.extend_from_slice(&executable_sha256().map_err(host)?);

    let uds: [u8; 32] = Sha256::digest(DEVELOPMENT_UDS_SEED).into();
    let platform_key = SigningKey::from_bytes(&Sha256::digest(DEVELOPMENT_PLATFORM_KEY_SEED).into());
    let windows = partition.image_windows.each_ref().map(window);
    let layout = Layout {
        monitor: Window {
            base: partition.monitor_rom.base,
            end: partition.monitor_rom.base + MONITOR_IMAGE.len() as u64,
        },
        provisioning: partition.provisioning_block.base,
        manifests: [partition.manifest_block.base, partition.manifest_b_block.base],
        windows,
    };
    let mut builder = ManifestBuilder::new(SECURITY_VERSION);
    let mut images = vec![(ImageKind::SecureImage, "loader.img", secure_image.as_slice())];
    images.extend(NORMAL_WORLD);
    for (kind, name, bytes) in &images {
        builder
            .image(*kind, name, SECURITY_VERSION, layout.window(*kind).base, bytes)
            .map_err(|e| host(format!("manifest entry '{name}': {e}")))?;
    }
    let manifest = builder.sign(&platform_key).map_err(|e| host(format!("signing the manifest: {e}")))?;
    let provisioning = Provisioning::new(uds, platform_key.verifying_key().to_bytes(), SECURITY_VERSION);

    let mut machine = Machine(BTreeMap::new());
    machine.0.insert(layout.monitor.base, MONITOR_IMAGE.as_bytes().to_vec());
    machine.0.insert(layout.provisioning, provisioning.as_bytes().to_vec());
    // Slot A as `tzmk flash` writes it (the manifest, its commit record), slot B erased.
    let mut slot_a = manifest.as_bytes().to_vec();
    slot_a.extend_from_slice(&tzmk_trust::slot::record_bytes(tzmk_trust::slot::INITIAL_SEQUENCE));
    machine.0.insert(layout.manifests[0], slot_a);
    machine.0.insert(layout.manifests[1], vec![0xff; tzmk_trust::slot::SLOT_BYTES]);
    for (kind, _, bytes) in &images {
        machine.0.insert(layout.window(*kind).base, bytes.to_vec());
    }
    let mut handoff = BootHandoff::new_zeroed();
    // The model has no secure flash to keep a counter in: 0, and the provisioning floor rules
    // (signed updates are QEMU's: docs/trusted-boot.md, "Signed updates").
    let counter = 0;
    trusted_boot::stage1(&machine, &layout, counter, &mut handoff).map_err(|e| host(format!("trusted boot: {e}")))?;

    let manifest = Manifest::parse(&manifest.as_bytes()[..MANIFEST_SIZE]).map_err(|e| host(e.to_string()))?;
    let refs = ReferenceValues::derive(
        MONITOR_IMAGE.as_bytes(),
        &provisioning,
        manifest,
        attestation_pd::evidence::IMPLEMENTATION,
    );
    Ok(Booted { handoff, refs })
}

/// Writes the reference values where a verifier of this run finds them.
pub(crate) fn write_refs(path: &Path, refs: &ReferenceValues) -> Result<(), SimError> {
    std::fs::write(path, refs.to_json()).map_err(|e| SimError::Host(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_boots_with_a_handoff_that_stage_2_accepts() {
        let system = tzmk_sdf::load_system(&tzmk_sdf_root().join("system.xml")).unwrap();
        let platform = tzmk_sdf::load_platform(None).unwrap();
        let partition = Partition::compute(&system, &platform).unwrap();
        let booted = boot(b"<system/>", &partition).unwrap();
        assert_eq!(attestation_pd::boot::check_linux(&booted.handoff), Ok(()));
        assert!(attestation_pd::read_handoff(booted.handoff.as_bytes()).is_some());
        let types: Vec<&str> = booted.refs.components.iter().map(|c| c.measurement_type.as_str()).collect();
        assert_eq!(types, ["BL", "PRoT", "kernel", "dtb", "initramfs"]);
        assert_eq!(booted.refs.device_public_key, booted.handoff.device_public_key);
        // A different system.xml is a different secure image, and so different CDIs.
        let other = boot(b"<system></system>", &partition).unwrap();
        assert_ne!(other.handoff.secure_image_sha256, booted.handoff.secure_image_sha256);
        assert_ne!(other.handoff.cdi_attest, booted.handoff.cdi_attest);
        assert_eq!(other.handoff.device_public_key, booted.handoff.device_public_key, "the same device");
    }

    fn tzmk_sdf_root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }
}
