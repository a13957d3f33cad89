//! `tzmk sign` as build.mk and a release engineer run it: key generation, signing, and one precise
//! error line with the right exit code for every bad input.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tzmk_trust::manifest::{ImageKind, Manifest, MANIFEST_SIZE};

fn tzmk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tzmk")).args(args).output().expect("tzmk runs")
}

/// A fresh directory per test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tzmk-sign-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one error line of a failed run, checked to be one line.
fn error_line(out: &Output) -> String {
    let text = stderr(out);
    assert_eq!(text.lines().count(), 1, "not one line: {text}");
    text.trim_end().to_string()
}

fn keygen(dir: &Path) -> String {
    let key = path(dir, "platform.ed25519");
    let out = tzmk(&["sign", "--keygen", "--key", &key]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    key
}

#[test]
fn keygen_writes_a_private_secret_and_never_overwrites() {
    let dir = scratch("keygen");
    let key = keygen(&dir);
    let secret = std::fs::read(&key).unwrap();
    let public = std::fs::read(format!("{key}.pub")).unwrap();
    assert_eq!((secret.len(), public.len()), (32, 32));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        tzmk_trust::SigningKey::from_bytes(&secret.try_into().unwrap()).verifying_key().to_bytes()[..],
        public[..]
    );

    let out = tzmk(&["sign", "--keygen", "--key", &key]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(error_line(&out), format!("error: {key}: exists, not overwritten"));
    assert_eq!(std::fs::read(format!("{key}.pub")).unwrap(), public, "public key untouched");

    // A leftover public key alone also stops it, before a secret is written.
    let other = path(&dir, "other.ed25519");
    std::fs::write(format!("{other}.pub"), b"x").unwrap();
    let out = tzmk(&["sign", "--keygen", "--key", &other]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!Path::new(&other).exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sign_writes_a_manifest_the_monitor_accepts() {
    let dir = scratch("sign");
    let key = keygen(&dir);
    std::fs::write(dir.join("loader.img"), b"the secure world").unwrap();
    std::fs::write(dir.join("Image"), vec![0xaa; 5000]).unwrap();
    std::fs::write(dir.join("linux.dtb"), b"dtb").unwrap();
    let manifest_path = path(&dir, "manifest.bin");
    let out = tzmk(&[
        "sign",
        "--key",
        &key,
        "--security-version",
        "7",
        "--image",
        &format!("secure={}@0x7000_0000", path(&dir, "loader.img")),
        "--image",
        &format!("kernel:image={}@0xc0000000", path(&dir, "Image")),
        "--image",
        &format!("dtb={}@3355443200", path(&dir, "linux.dtb")),
        "-o",
        &manifest_path,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 images, security version 7"));

    let bytes = std::fs::read(&manifest_path).unwrap();
    assert_eq!(bytes.len(), MANIFEST_SIZE);
    let manifest = Manifest::parse(&bytes).unwrap();
    let public: [u8; 32] = std::fs::read(format!("{key}.pub")).unwrap().try_into().unwrap();
    manifest.verify(&public).unwrap();
    assert_eq!(manifest.header.security_version.get(), 7);
    let secure = manifest.image(ImageKind::SecureImage).unwrap();
    assert_eq!((secure.name(), secure.load_address.get()), ("loader.img", 0x7000_0000));
    assert!(secure.matches(b"the secure world"));
    let kernel = manifest.image(ImageKind::LinuxKernel).unwrap();
    assert_eq!((kernel.name(), kernel.size.get()), ("image", 5000));
    assert_eq!(manifest.image(ImageKind::LinuxDtb).unwrap().load_address.get(), 0xc800_0000);
    assert!(manifest.image(ImageKind::LinuxInitramfs).is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_input_gives_one_line_and_the_right_exit_code() {
    let dir = scratch("errors");
    let key = keygen(&dir);
    std::fs::write(dir.join("a.img"), b"aaaa").unwrap();
    std::fs::write(dir.join("b.img"), b"bbbb").unwrap();
    std::fs::write(dir.join("empty.img"), b"").unwrap();
    std::fs::write(dir.join("short.key"), [1u8; 31]).unwrap();
    let output = path(&dir, "manifest.bin");
    let image = |spec: &str| {
        let (kind, rest) = spec.split_once('=').unwrap();
        let (file, address) = rest.split_once('@').unwrap();
        format!("{kind}={}@{address}", path(&dir, file))
    };
    let sign = |key: &str, images: &[String]| {
        let mut args = vec!["sign", "--key", key, "--security-version", "1", "-o", &output];
        for image in images {
            args.push("--image");
            args.push(image);
        }
        tzmk(&args)
    };

    // Unreadable files: exit 2.
    let out = sign(&key, &[image("secure=missing.img@0x1000")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).starts_with(&format!("error: {}: cannot read", path(&dir, "missing.img"))));
    let out = sign(&path(&dir, "no.key"), &[image("secure=a.img@0x1000")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("no.key: cannot read"));

    // Bad arguments: exit 2 (clap's usage error names the argument).
    let out = sign(&key, &[image("firmware=a.img@0x1000")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown image kind 'firmware'"), "{}", stderr(&out));
    let out = sign(&key, &[image("secure=a.img@0x10zz")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'0x10zz' is not an address"), "{}", stderr(&out));
    let out = sign(&key, &[format!("secure={}", path(&dir, "a.img"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no '@ADDRESS'"), "{}", stderr(&out));
    let out = tzmk(&["sign", "--key", &key, "-o", &output, "--image", &image("secure=a.img@0")]);
    assert_eq!(out.status.code(), Some(2), "--security-version missing");
    let out = sign(&key, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(error_line(&out), "error: no --image given");

    // Invalid input: exit 1, with the manifest's reason.
    let out = sign(&key, &[image("secure=a.img@0x1000"), image("kernel=b.img@0x1002")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(error_line(&out), "error: manifest: entries[0] and entries[1] overlap in memory");
    let out = sign(&key, &[image("secure=a.img@0x1000"), image("secure=b.img@0x2000")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("entries[1].kind 1 repeats"));
    let out = sign(&key, &[image("secure=empty.img@0x1000")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("entries[0].size is zero"));
    let out = sign(&key, &[image("kernel:Image=a.img@0x1000")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("entries[0].name"));
    let out = sign(&path(&dir, "short.key"), &[image("secure=a.img@0x1000")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("31 bytes, not a 32-byte Ed25519 secret key"));

    assert!(!Path::new(&output).exists(), "no manifest written on any failure");
    std::fs::remove_dir_all(dir).unwrap();
}
