//! `tzmk flash`: the secure flash image QEMU's `-bios` loads (docs/trusted-boot.md, "Flash
//! image"): the monitor at 0, the provisioning block and the signed manifest at the offsets the
//! platform description's `[trust]` table names (the manifest in slot A with its commit record,
//! sequence 1; slot B erased: "Atomic updates"), erased (0xff) everywhere else, the whole flash
//! (64 MiB on QEMU virt).
//!
//! `tzmk flash --monitor monitor.bin --uds UDS --platform-key KEY.pub --manifest manifest.bin
//! [--security-floor N] [--platform FILE] -o flash.bin`
//!
//! Refused, with one error line and no output file: a monitor image that is empty or reaches the
//! first trusted-boot block, a UDS or public key that is not 32 bytes, a key that is no Ed25519
//! point, a manifest that does not parse or is not signed by that key, a floor above the
//! manifest's security version (exit 1); bad arguments or unreadable files (exit 2). The output
//! holds the UDS: it is written mode 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tzmk_trust::manifest::{Manifest, MANIFEST_SIZE};
use tzmk_trust::provisioning::{Provisioning, PROVISIONING_SIZE};
use tzmk_trust::slot;
use zerocopy::IntoBytes;

const INVALID: u8 = 1;
const UNREADABLE: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The monitor's binary image (objcopy -O binary), placed at offset 0.
    #[arg(long, value_name = "PATH")]
    monitor: PathBuf,
    /// The device's unique secret: exactly 32 bytes.
    #[arg(long, value_name = "PATH")]
    uds: PathBuf,
    /// The platform's Ed25519 public key: 32 bytes (`tzmk sign --keygen` writes KEY.pub).
    #[arg(long, value_name = "PATH")]
    platform_key: PathBuf,
    /// The signed manifest (`tzmk sign`).
    #[arg(long, value_name = "PATH")]
    manifest: PathBuf,
    /// The lowest manifest security version the device boots (the provisioning block's floor).
    #[arg(long, value_name = "N", default_value_t = 0)]
    security_floor: u32,
    /// The platform description (default: the built-in QEMU virt one).
    #[arg(long, value_name = "FILE")]
    platform: Option<PathBuf>,
    /// Where to write the flash image.
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
}

/// A failure: its exit code and its one line.
struct Failure(u8, String);

pub fn run(args: &Args) -> ExitCode {
    match compose(args) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(Failure(code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(UNREADABLE, format!("{}: cannot read: {e}", path.display())))
}

fn read_32(path: &Path, what: &str) -> Result<[u8; 32], Failure> {
    let bytes = read(path)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| Failure(INVALID, format!("{}: {} bytes, not {what}", path.display(), bytes.len())))
}

fn compose(args: &Args) -> Result<String, Failure> {
    let platform = tzmk_sdf::load_platform(args.platform.as_deref()).map_err(|d| Failure(UNREADABLE, d.to_string()))?;
    let flash_size = platform.range_named("secure-flash").map_or(0, |flash| flash.size);
    let (provisioning_at, manifest_at) = (platform.trust.provisioning, platform.trust.manifest);
    let first_block = platform.trust_blocks().iter().map(|&(_, offset, _)| offset).min().unwrap_or(0);

    let monitor = read(&args.monitor)?;
    let uds = zeroize::Zeroizing::new(read_32(&args.uds, "a 32-byte UDS")?);
    let key = read_32(&args.platform_key, "a 32-byte Ed25519 public key")?;
    let manifest_bytes = read(&args.manifest)?;

    if monitor.is_empty() {
        return Err(Failure(INVALID, format!("{}: empty monitor image", args.monitor.display())));
    }
    if monitor.len() as u64 > first_block {
        return Err(Failure(
            INVALID,
            format!(
                "{}: {} bytes reach the trusted-boot block at {first_block:#x} ([trust] of {})",
                args.monitor.display(),
                monitor.len(),
                platform.name
            ),
        ));
    }
    tzmk_trust::VerifyingKey::from_bytes(&key)
        .map_err(|_| Failure(INVALID, format!("{}: not a valid Ed25519 public key", args.platform_key.display())))?;
    let manifest =
        Manifest::parse(&manifest_bytes).map_err(|e| Failure(INVALID, format!("{}: {e}", args.manifest.display())))?;
    manifest.verify(&key).map_err(|e| {
        Failure(INVALID, format!("{}: {e} (with {})", args.manifest.display(), args.platform_key.display()))
    })?;
    manifest.check_security_version(args.security_floor).map_err(|e| {
        Failure(INVALID, format!("{}: {e} (--security-floor {})", args.manifest.display(), args.security_floor))
    })?;

    let provisioning = Provisioning::new(*uds, key, args.security_floor);
    // The whole flash, erased (0xff) where nothing is written: QEMU's pflash drive must be exactly
    // the flash's size, and the counter's sector starts erased (counter 0: the floor rules).
    let mut image = zeroize::Zeroizing::new(vec![0xffu8; flash_size as usize]);
    image[..monitor.len()].copy_from_slice(&monitor);
    image[provisioning_at as usize..][..PROVISIONING_SIZE].copy_from_slice(provisioning.as_bytes());
    // Slot A: the manifest, then its commit record. Slot B stays erased (uncommitted) until the
    // first update writes it.
    let slot_a = &mut image[manifest_at as usize..][..slot::SLOT_BYTES];
    slot_a[..MANIFEST_SIZE].copy_from_slice(manifest.as_bytes());
    slot_a[slot::RECORD_OFFSET..].copy_from_slice(&slot::record_bytes(slot::INITIAL_SEQUENCE));

    // Replaces an older image (the build makes it again); the UDS inside keeps it private.
    let _ = std::fs::remove_file(&args.output);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.output)
        .map_err(|e| Failure(UNREADABLE, format!("{}: cannot create: {e}", args.output.display())))?;
    file.write_all(&image).map_err(|e| Failure(UNREADABLE, format!("{}: cannot write: {e}", args.output.display())))?;
    Ok(format!(
        "flash: {} ({} bytes: monitor {} bytes, provisioning at {provisioning_at:#x}, manifest at {manifest_at:#x} (slot A, committed; slot B at {:#x} erased), security version {} floor {})",
        args.output.display(),
        image.len(),
        monitor.len(),
        platform.trust.manifest_b,
        manifest.header.security_version.get(),
        args.security_floor
    ))
}
