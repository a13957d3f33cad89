//! The bare-metal images are what the bench needs of them (src/image.rs): the secure image at the
//! secure entry with a non-zero first word, inside its footprint, idling in `wfi` and with no
//! `wfe`; the payload entered at its link address.
//!
//! The images are those `make -f build.mk bench-secure` and `bench-payload` made when
//! `TZMK_BENCH_SECURE` (and `TZMK_BENCH_PAYLOAD`) name them; otherwise the test builds both for
//! aarch64-unknown-none-softfloat in a target directory of its own inside cargo's.

use std::path::PathBuf;
use std::process::Command;

use bench_payload::image::{self, WFE};
use bench_payload::SECURE_ENTRY;

const TARGET: &str = "aarch64-unknown-none-softfloat";
/// The payload's default link address (build.rs, TZMK_BENCH_PAYLOAD_BASE unset).
const PAYLOAD_BASE: u64 = 0xc020_0000;

/// The two images: (secure image, payload, whether the payload is at its default base).
fn images() -> (PathBuf, PathBuf, bool) {
    if let Some(secure) = std::env::var_os("TZMK_BENCH_SECURE") {
        let payload = std::env::var_os("TZMK_BENCH_PAYLOAD");
        let default_base = std::env::var_os("TZMK_BENCH_PAYLOAD_BASE").is_none();
        let payload = payload.map(PathBuf::from).unwrap_or_default();
        return (PathBuf::from(secure), payload, default_base);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-images");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--locked", "--target", TARGET, "-p", "tzmk-bench-payload"])
        .args(["--bin", "bench-secure", "--bin", "bench-payload"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("TZMK_BENCH_PAYLOAD_BASE")
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the bench images for {TARGET} failed");
    let dir = target_dir.join(TARGET).join("release");
    (dir.join("bench-secure"), dir.join("bench-payload"), true)
}

#[test]
fn the_images_are_where_the_monitor_looks_and_idle_in_wfi() {
    let (secure, payload, default_base) = images();
    let bytes = std::fs::read(&secure).unwrap_or_else(|e| panic!("{}: {e}", secure.display()));
    let layout = image::layout(&bytes, &secure.display().to_string()).unwrap();
    assert_eq!(image::secure_image_problems(&layout), Vec::<String>::new(), "{}", secure.display());
    assert_eq!(layout.entry, SECURE_ENTRY);
    // Ten instructions to the first wfi, on the happy path: the image is small.
    assert!(!layout.code.is_empty() && layout.code.len() < 4096, "{} words of code", layout.code.len());

    if payload.as_os_str().is_empty() {
        return;
    }
    let bytes = std::fs::read(&payload).unwrap_or_else(|e| panic!("{}: {e}", payload.display()));
    let layout = image::layout(&bytes, &payload.display().to_string()).unwrap();
    if default_base {
        assert_eq!(layout.entry, PAYLOAD_BASE, "{}", payload.display());
    }
    assert!(layout.segments.iter().all(|&(address, _)| address >= layout.entry));
    // Its parked core waits in wfi too.
    assert!(!layout.code.contains(&WFE), "{}: a wfe", payload.display());
}
