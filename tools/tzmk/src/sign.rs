//! `tzmk sign`: the platform key and the signed image manifest (docs/trusted-boot.md, "Tools").
//!
//! - `tzmk sign --keygen --key PATH`: a new Ed25519 key pair, the secret seed (32 bytes) in
//!   `PATH` (mode 0600) and the public key (32 bytes) in `PATH.pub`; never overwrites either.
//! - `tzmk sign --key PATH --security-version N --image KIND[:NAME]=FILE@ADDRESS ... -o OUT`:
//!   hashes each image and writes the signed manifest (tzmk_trust::manifest). KIND is `secure`,
//!   `kernel`, `dtb` or `initramfs`; NAME defaults to FILE's base name.
//!
//! Exit codes as `tzmk audit`'s: 0 done, 1 invalid input (a key file of the wrong size, images the
//! manifest refuses), 2 bad arguments or unreadable/unwritable files. One error line, no output
//! file, on any failure.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tzmk_trust::manifest::{key_id, ImageKind, ManifestBuilder};
use tzmk_trust::SigningKey;
use zerocopy::IntoBytes;

const INVALID: u8 = 1;
const UNREADABLE: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write a new key pair to --key (secret, mode 0600) and --key.pub (public) instead of signing.
    #[arg(long)]
    keygen: bool,
    /// The platform key's secret seed (32 bytes; `--keygen` writes it).
    #[arg(long, value_name = "PATH")]
    key: PathBuf,
    /// The platform security version (anti-rollback counter); also each image's.
    #[arg(long, value_name = "N", required_unless_present = "keygen")]
    security_version: Option<u32>,
    /// An image: KIND[:NAME]=FILE@ADDRESS, KIND one of secure, kernel, dtb, initramfs; ADDRESS
    /// decimal or 0x hex.
    #[arg(long = "image", value_name = "KIND[:NAME]=FILE@ADDRESS", value_parser = parse_image)]
    images: Vec<ImageArg>,
    /// Where to write the manifest.
    #[arg(short, long, value_name = "PATH", required_unless_present = "keygen")]
    output: Option<PathBuf>,
}

/// One `--image` argument.
#[derive(Debug, Clone)]
pub struct ImageArg {
    kind: ImageKind,
    name: Option<String>,
    file: PathBuf,
    address: u64,
}

fn parse_address(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
        None => text.replace('_', "").parse().ok(),
    }
}

fn parse_image(text: &str) -> Result<ImageArg, String> {
    let (kind_and_name, rest) =
        text.split_once('=').ok_or_else(|| format!("'{text}' is not KIND[:NAME]=FILE@ADDRESS (no '=')"))?;
    let (file, address) =
        rest.rsplit_once('@').ok_or_else(|| format!("'{text}' is not KIND[:NAME]=FILE@ADDRESS (no '@ADDRESS')"))?;
    let (kind, name) = match kind_and_name.split_once(':') {
        Some((kind, name)) => (kind, Some(name.to_string())),
        None => (kind_and_name, None),
    };
    let kind = ImageKind::from_label(kind)
        .ok_or_else(|| format!("unknown image kind '{kind}' (secure, kernel, dtb, initramfs)"))?;
    if file.is_empty() {
        return Err(format!("'{text}': empty FILE"));
    }
    let address = parse_address(address).ok_or_else(|| format!("'{address}' is not an address (decimal or 0x hex)"))?;
    Ok(ImageArg { kind, name, file: PathBuf::from(file), address })
}

/// A failure: its exit code and its one line.
struct Failure(u8, String);

pub fn run(args: Args) -> ExitCode {
    let result = if args.keygen { keygen(&args) } else { sign(&args) };
    match result {
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

fn public_path(key: &Path) -> PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push(".pub");
    PathBuf::from(path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Failure(UNREADABLE, format!("{}: cannot create: {e}", path.display())))?;
    file.write_all(bytes).map_err(|e| Failure(UNREADABLE, format!("{}: cannot write: {e}", path.display())))
}

fn keygen(args: &Args) -> Result<String, Failure> {
    if args.security_version.is_some() || !args.images.is_empty() || args.output.is_some() {
        return Err(Failure(UNREADABLE, "--keygen takes only --key".into()));
    }
    let public = public_path(&args.key);
    for path in [&args.key, &public] {
        if path.symlink_metadata().is_ok() {
            return Err(Failure(UNREADABLE, format!("{}: exists, not overwritten", path.display())));
        }
    }
    let key = tzmk_trust::generate_signing_key().map_err(|e| Failure(UNREADABLE, format!("a new key: {e}")))?;
    let public_key = key.verifying_key().to_bytes();
    write_new(&args.key, key.as_bytes(), 0o600)?;
    write_new(&public, &public_key, 0o644)?;
    Ok(format!(
        "key: {} (secret, 0600), {} (public, key id {})",
        args.key.display(),
        public.display(),
        hex(&key_id(&public_key))
    ))
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(UNREADABLE, format!("{}: cannot read: {e}", path.display())))
}

fn read_key(path: &Path) -> Result<SigningKey, Failure> {
    let bytes = read(path)?;
    let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        Failure(INVALID, format!("{}: {} bytes, not a 32-byte Ed25519 secret key", path.display(), bytes.len()))
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

fn sign(args: &Args) -> Result<String, Failure> {
    // clap requires both unless --keygen.
    let (Some(security_version), Some(output)) = (args.security_version, args.output.as_ref()) else {
        return Err(Failure(UNREADABLE, "--security-version and --output are required".into()));
    };
    if args.images.is_empty() {
        return Err(Failure(UNREADABLE, "no --image given".into()));
    }
    let key = read_key(&args.key)?;
    let mut builder = ManifestBuilder::new(security_version);
    for image in &args.images {
        let name = match &image.name {
            Some(name) => name.clone(),
            None => image.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let bytes = read(&image.file)?;
        builder
            .image(image.kind, &name, security_version, image.address, &bytes)
            .map_err(|e| Failure(INVALID, format!("--image {}={}: {e}", image.kind.label(), image.file.display())))?;
    }
    let manifest = builder.sign(&key).map_err(|e| {
        let hint = match e {
            tzmk_trust::manifest::ManifestError::BadName { .. } => {
                " (names are [a-z0-9._-]{1,16}; give one as KIND:NAME=FILE@ADDRESS)"
            }
            _ => "",
        };
        Failure(INVALID, format!("{e}{hint}"))
    })?;
    std::fs::write(output, manifest.as_bytes())
        .map_err(|e| Failure(UNREADABLE, format!("{}: cannot write: {e}", output.display())))?;
    Ok(format!(
        "manifest: {} ({} images, security version {security_version}, key id {})",
        output.display(),
        args.images.len(),
        hex(&manifest.header.key_id)
    ))
}
