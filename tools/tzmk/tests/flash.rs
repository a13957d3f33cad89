//! `tzmk flash` as build.mk runs it: the image's layout, and one precise error line with the right
//! exit code for every bad input.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tzmk_trust::manifest::{Manifest, MANIFEST_SIZE};
use tzmk_trust::provisioning::{Provisioning, PROVISIONING_SIZE};
use tzmk_trust::slot::{self, RECORD_OFFSET, SLOT_BYTES};

const PROVISIONING_AT: usize = 0x10_0000;
const MANIFEST_AT: usize = 0x14_0000;
const MANIFEST_B_AT: usize = 0x1c_0000;

fn tzmk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tzmk")).args(args).output().expect("tzmk runs")
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tzmk-flash-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn error_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "not one line: {text}");
    text.trim_end().to_string()
}

/// A key pair, a manifest of one kernel signed with it (security version 4), a monitor, a UDS.
struct Inputs {
    dir: PathBuf,
    key: String,
    manifest: String,
    monitor: String,
    uds: String,
}

fn inputs(test: &str) -> Inputs {
    let dir = scratch(test);
    let key = path(&dir, "platform.ed25519");
    assert_eq!(tzmk(&["sign", "--keygen", "--key", &key]).status.code(), Some(0));
    let kernel = path(&dir, "Image");
    std::fs::write(&kernel, b"kernel").unwrap();
    let manifest = path(&dir, "manifest.bin");
    let image = format!("kernel:image={kernel}@0xc0200000");
    let out = tzmk(&["sign", "--key", &key, "--security-version", "4", "--image", &image, "-o", &manifest]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let monitor = path(&dir, "monitor.bin");
    std::fs::write(&monitor, vec![0xaa; 5000]).unwrap();
    let uds = path(&dir, "uds.bin");
    std::fs::write(&uds, [0x11; 32]).unwrap();
    Inputs { dir, key, manifest, monitor, uds }
}

impl Inputs {
    fn flash(&self, replace: &[(&str, &str)], extra: &[&str]) -> (Output, String) {
        let output = path(&self.dir, "flash.bin");
        let public = format!("{}.pub", self.key);
        let mut args = vec![
            "flash".to_string(),
            "--monitor".into(),
            self.monitor.clone(),
            "--uds".into(),
            self.uds.clone(),
            "--platform-key".into(),
            public,
            "--manifest".into(),
            self.manifest.clone(),
            "-o".into(),
            output.clone(),
        ];
        for (flag, value) in replace {
            let at = args.iter().position(|a| a == flag).unwrap();
            args[at + 1] = value.to_string();
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (tzmk(&args), output)
    }
}

#[test]
fn the_image_holds_the_monitor_the_provisioning_block_and_the_manifest() {
    let inputs = inputs("layout");
    let (out, output) = inputs.flash(&[], &["--security-floor", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let image = std::fs::read(&output).unwrap();
    assert_eq!(image.len(), 64 << 20, "the whole flash: QEMU's pflash drive must be exactly its size");
    assert!(image[..5000].iter().all(|&b| b == 0xaa));
    assert!(image[5000..PROVISIONING_AT].iter().all(|&b| b == 0xff), "erased between");
    assert!(
        image[MANIFEST_AT + SLOT_BYTES..].iter().all(|&b| b == 0xff),
        "slot B and the counter's sector erased: uncommitted, counter 0"
    );
    assert_eq!(slot::committed_sequence(&image[MANIFEST_AT + RECORD_OFFSET..]), Some(slot::INITIAL_SEQUENCE));
    assert_eq!(slot::committed_sequence(&image[MANIFEST_B_AT + RECORD_OFFSET..]), None);
    let (committed, _) = slot::committed_manifest(&image, [MANIFEST_AT, MANIFEST_B_AT]).unwrap();
    assert_eq!(committed, 0, "slot A is the committed one");
    let block = Provisioning::parse(&image[PROVISIONING_AT..][..PROVISIONING_SIZE]).unwrap();
    let public = std::fs::read(format!("{}.pub", inputs.key)).unwrap();
    assert_eq!((block.uds, &block.platform_public_key[..]), ([0x11; 32], &public[..]));
    assert_eq!(block.security_version_floor.get(), 3);
    let manifest = Manifest::parse(&image[MANIFEST_AT..][..MANIFEST_SIZE]).unwrap();
    manifest.verify(&public.try_into().unwrap()).unwrap();
    assert_eq!(image[MANIFEST_AT..][..MANIFEST_SIZE], std::fs::read(&inputs.manifest).unwrap()[..]);
    let mode = std::fs::metadata(&output).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the image holds the UDS");
    // Made again over the old one.
    assert_eq!(inputs.flash(&[], &[]).0.status.code(), Some(0));
}

#[test]
fn bad_inputs_get_one_line_and_no_image() {
    let inputs = inputs("bad");
    let dir = &inputs.dir;
    let big = path(dir, "big-monitor.bin");
    std::fs::write(&big, vec![1u8; PROVISIONING_AT + 1]).unwrap();
    let empty = path(dir, "empty");
    std::fs::write(&empty, b"").unwrap();
    let short = path(dir, "short");
    std::fs::write(&short, [7u8; 31]).unwrap();
    let garbled = path(dir, "garbled.bin");
    let mut bytes = std::fs::read(&inputs.manifest).unwrap();
    bytes[0] = b'X';
    std::fs::write(&garbled, &bytes).unwrap();
    let tampered = path(dir, "tampered.bin");
    let mut bytes = std::fs::read(&inputs.manifest).unwrap();
    bytes[80] ^= 1; // entries[0].sha256
    std::fs::write(&tampered, &bytes).unwrap();
    let other = path(dir, "other.ed25519");
    assert_eq!(tzmk(&["sign", "--keygen", "--key", &other]).status.code(), Some(0));
    let other_public = format!("{other}.pub");
    let missing = path(dir, "missing");

    for (replace, extra, code, message) in [
        (
            vec![("--monitor", big.as_str())],
            vec![],
            1,
            format!("error: {big}: 1048577 bytes reach the trusted-boot block at 0x100000 ([trust] of qemu-virt)"),
        ),
        (vec![("--monitor", empty.as_str())], vec![], 1, format!("error: {empty}: empty monitor image")),
        (vec![("--uds", short.as_str())], vec![], 1, format!("error: {short}: 31 bytes, not a 32-byte UDS")),
        (
            vec![("--platform-key", short.as_str())],
            vec![],
            1,
            format!("error: {short}: 31 bytes, not a 32-byte Ed25519 public key"),
        ),
        (
            vec![("--manifest", garbled.as_str())],
            vec![],
            1,
            format!("error: {garbled}: manifest: header.magic [58, 5a, 4d, 46] is not \"TZMF\""),
        ),
        (
            vec![("--manifest", short.as_str())],
            vec![],
            1,
            format!("error: {short}: manifest: length 31 bytes, expected 672"),
        ),
        (
            vec![("--manifest", tampered.as_str())],
            vec![],
            1,
            format!("error: {tampered}: manifest: signature does not verify (with {}.pub)", inputs.key),
        ),
        (
            vec![("--platform-key", other_public.as_str())],
            vec![],
            1,
            format!(
                "error: {}: manifest: header.key_id is not the platform key's (with {other_public})",
                inputs.manifest
            ),
        ),
        (
            vec![],
            vec!["--security-floor", "5"],
            1,
            format!(
                "error: {}: manifest: security version 4 is below the stored 5 (--security-floor 5)",
                inputs.manifest
            ),
        ),
        (
            vec![("--uds", missing.as_str())],
            vec![],
            2,
            format!("error: {missing}: cannot read: No such file or directory (os error 2)"),
        ),
    ] {
        let (out, output) = inputs.flash(&replace, &extra);
        assert_eq!(out.status.code(), Some(code), "{replace:?} {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(error_line(&out), message);
        assert!(!Path::new(&output).exists(), "{replace:?}: no image written");
    }
}
