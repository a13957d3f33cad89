//! Trusted boot stage 1 refusing to boot, on QEMU `virt,secure=on` (`make -f build.mk qemu-boot`):
//! each run boots a signed flash image with one thing wrong and expects the monitor's one line
//! `tzmk-monitor: trusted boot: <reason>: the machine stops` on the secure UART, nothing on
//! UART0 (no seL4, no Linux) and QEMU still running (the cores parked, nothing powered off); the
//! test kills QEMU once the line is there.
//!
//! - `garbled_manifest_stops`, `blank_manifest_stops`: the standalone flash image with a bit of
//!   the manifest's signature flipped, or the manifest's page zeroed.
//! - `tampered_kernel_stops_standalone`: no secure image, so the monitor checks Linux's images
//!   itself: one byte of a copy of Linux's Image flipped.
//! - `tampered_secure_image_stops` (needs the Microkit SDK's loader.img): the full system's flash
//!   image with one byte flipped in a copy of loader.img, the manifest unchanged.
//! - `tampered_kernel_with_a_secure_world_never_starts` (SDK): the full system with one byte of
//!   Linux's Image flipped: stage 1 only measures it; attestation-pd (stage 2) refuses `go` with
//!   the reason on UART0, seL4's PDs keep running, Linux never starts.
//!
//! Ignored by plain `cargo test`: build.mk passes TZMK_LINUX_DIR (Image, initramfs.cpio, the
//! DTBs), TZMK_FLASH_STANDALONE and, with the SDK, TZMK_FLASH_FULL and TZMK_LOADER_IMG.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The monitor stops within a second of guest time; hashing Linux's 33 MB Image under TCG takes a
/// few seconds of host time on a loaded machine. Beyond this, something else is wrong.
const TIMEOUT: Duration = Duration::from_secs(90);
const MANIFEST_AT: usize = 0x14_0000;
const MANIFEST_SIZE: usize = 672;

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("{name} is not set: run this through build.mk")))
}

/// A private scratch directory beside the flash images (the copies hold the development UDS).
fn scratch(test: &str) -> PathBuf {
    let dir = env_path("TZMK_FLASH_STANDALONE").parent().unwrap().join("qemu-boot").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.parent().unwrap(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// `source` copied to `dir/name` with `change` applied.
fn altered(source: &Path, dir: &Path, name: &str, change: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    change(&mut bytes);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

struct Stopped {
    console: String,
    monitor_log: String,
}

/// Boots and waits for the monitor's stop line; checks nothing else ran.
fn boot_expecting_stop(dir: &Path, flash: PathBuf, kernel: Option<PathBuf>, loader: Option<PathBuf>) -> Stopped {
    let linux = env_path("TZMK_LINUX_DIR");
    let secure_log = dir.join("secure-uart.log");
    let full = loader.is_some();
    let images = tzmk_sdf::qemu::Images {
        // The run's own copy: QEMU writes its flash drive.
        monitor: tzmk_sdf::qemu::private_flash(&flash, &dir.join("flash-run.bin")).unwrap(),
        kernel: kernel.unwrap_or_else(|| linux.join("Image")),
        dtb: linux.join(if full { "tzmk-full.dtb" } else { "tzmk-standalone.dtb" }),
        initramfs: linux.join("initramfs.cpio"),
        loader,
        secure_log: secure_log.clone(),
    };
    let mut qemu = Command::new("qemu-system-aarch64");
    qemu.args(tzmk_sdf::qemu::arguments(&tzmk_sdf::Platform::qemu_virt(), &images, "stdio"));
    let started = Instant::now();
    let stopped = |_: &str| std::fs::read_to_string(&secure_log).is_ok_and(|log| log.contains("the machine stops"));
    let run = tzmk_tests::run_qemu(qemu, TIMEOUT, stopped);
    let monitor_log = std::fs::read_to_string(&secure_log).unwrap_or_default();
    println!(
        "---- UART0 ----\n{}\n---- secure UART (monitor) ----\n{monitor_log}---- end ({:.1} s) ----",
        run.console,
        started.elapsed().as_secs_f64()
    );
    assert!(!run.timed_out, "no stop line on the secure UART after {TIMEOUT:?}");
    assert!(run.exit.is_none(), "QEMU exited ({:?}): the machine must stay stopped, not power off", run.exit);
    assert_eq!(run.console.trim(), "", "something ran on UART0 (seL4 or Linux)");
    let lines: Vec<&str> = monitor_log.lines().collect();
    let stop: Vec<&&str> = lines.iter().filter(|l| l.starts_with("tzmk-monitor: trusted boot: ")).collect();
    assert_eq!(stop.len(), 1, "one stop line: {lines:?}");
    assert!(stop[0].ends_with(": the machine stops"), "{}", stop[0]);
    assert_eq!(lines.last(), stop.first().copied(), "nothing after the stop line");
    for never in ["entering", "go:", "PSCI"] {
        assert!(!monitor_log.contains(never), "the monitor went on ({never:?}):\n{monitor_log}");
    }
    Stopped { console: run.console, monitor_log }
}

fn stop_line(stopped: &Stopped) -> &str {
    stopped.monitor_log.lines().find(|l| l.starts_with("tzmk-monitor: trusted boot: ")).unwrap()
}

#[test]
#[ignore = "needs the flash images: run `make -f build.mk qemu-boot`"]
fn garbled_manifest_stops() {
    let dir = scratch("garbled");
    let flash = altered(&env_path("TZMK_FLASH_STANDALONE"), &dir, "flash.bin", |bytes| {
        bytes[MANIFEST_AT + MANIFEST_SIZE - 1] ^= 0x01; // the signature's last byte
    });
    let stopped = boot_expecting_stop(&dir, flash, None, None);
    assert_eq!(
        stop_line(&stopped),
        "tzmk-monitor: trusted boot: manifest: signature does not verify: the machine stops"
    );
    assert!(stopped.console.is_empty());
}

#[test]
#[ignore = "needs the flash images: run `make -f build.mk qemu-boot`"]
fn blank_manifest_stops() {
    let dir = scratch("blank");
    let flash = altered(&env_path("TZMK_FLASH_STANDALONE"), &dir, "flash.bin", |bytes| {
        bytes[MANIFEST_AT..MANIFEST_AT + MANIFEST_SIZE].fill(0);
    });
    let stopped = boot_expecting_stop(&dir, flash, None, None);
    assert_eq!(
        stop_line(&stopped),
        "tzmk-monitor: trusted boot: no manifest in flash at 0x140000 (blank): the machine stops"
    );
}

#[test]
#[ignore = "needs the flash images: run `make -f build.mk qemu-boot`"]
fn tampered_kernel_stops_standalone() {
    let dir = scratch("kernel");
    let image = env_path("TZMK_LINUX_DIR").join("Image");
    let kernel = altered(&image, &dir, "Image", |bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
    });
    let stopped = boot_expecting_stop(&dir, env_path("TZMK_FLASH_STANDALONE"), Some(kernel), None);
    let line = stop_line(&stopped);
    assert!(line.starts_with("tzmk-monitor: trusted boot: Linux kernel 'image' at 0xc0200000: SHA-256 "), "{line}");
    assert!(line.contains(" does not match the manifest's "), "{line}");
}

#[test]
#[ignore = "needs the Microkit SDK's loader.img: run `make -f build.mk qemu-boot` with MICROKIT_SDK"]
fn tampered_secure_image_stops() {
    let dir = scratch("secure");
    let loader = altered(&env_path("TZMK_LOADER_IMG"), &dir, "loader.img", |bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
    });
    let stopped = boot_expecting_stop(&dir, env_path("TZMK_FLASH_FULL"), None, Some(loader));
    let line = stop_line(&stopped);
    assert!(
        line.starts_with("tzmk-monitor: trusted boot: secure image 'loader.img' at 0x70000000: SHA-256 "),
        "{line}"
    );
    assert!(line.contains(" does not match the manifest's "), "{line}");
}

/// Stage 2: with a secure world the monitor only measures Linux's images; attestation-pd finds
/// the tampered kernel's measurement differs from the manifest's digest, logs why and never
/// sends `go`: seL4 and its PDs run, Linux never starts.
#[test]
#[ignore = "needs the Microkit SDK's loader.img: run `make -f build.mk qemu-boot` with MICROKIT_SDK"]
fn tampered_kernel_with_a_secure_world_never_starts() {
    let dir = scratch("kernel-secure");
    let kernel = altered(&env_path("TZMK_LINUX_DIR").join("Image"), &dir, "Image", |bytes| {
        let end = bytes.len() - 1;
        bytes[end] ^= 0x80;
    });
    let linux = env_path("TZMK_LINUX_DIR");
    let secure_log = dir.join("secure-uart.log");
    let images = tzmk_sdf::qemu::Images {
        monitor: tzmk_sdf::qemu::private_flash(&env_path("TZMK_FLASH_FULL"), &dir.join("flash.bin")).unwrap(),
        kernel,
        dtb: linux.join("tzmk-full.dtb"),
        initramfs: linux.join("initramfs.cpio"),
        loader: Some(env_path("TZMK_LOADER_IMG")),
        secure_log: secure_log.clone(),
    };
    let mut qemu = Command::new("qemu-system-aarch64");
    qemu.args(tzmk_sdf::qemu::arguments(&tzmk_sdf::Platform::qemu_virt(), &images, "stdio"));
    const REFUSAL: &str = "attestation-pd: ERROR: Linux may not run: Linux's kernel in memory is not the signed one";
    // Every PD's ready line comes after attestation-pd's verdict; rt-task's report a second later
    // shows the secure world kept running.
    let run =
        tzmk_tests::run_qemu(qemu, TIMEOUT, |console| console.contains(REFUSAL) && console.contains("rt-task reports"));
    let monitor_log = std::fs::read_to_string(&secure_log).unwrap_or_default();
    println!("---- UART0 ----\n{}\n---- secure UART (monitor) ----\n{monitor_log}---- end ----", run.console);
    assert!(!run.timed_out, "no stage-2 refusal and rt-task report on UART0 after {TIMEOUT:?}");
    assert!(tzmk_tests::printed(&run.console, REFUSAL), "no refusal line");
    assert!(run.console.contains("its cores stay parked"));
    assert!(!run.console.contains("go: the monitor starts the normal world"), "go was sent");
    assert!(!run.console.contains("Booting Linux"), "Linux started");
    assert!(monitor_log.contains("trusted boot: manifest verified with the platform key"), "{monitor_log}");
    assert!(!monitor_log.contains("entering Linux at"), "the monitor entered Linux:\n{monitor_log}");
}
