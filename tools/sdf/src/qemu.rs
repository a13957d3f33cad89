//! The QEMU command line of the real system: the EL3 monitor in secure flash (flash0 as a pflash drive), the
//! images where the platform description says, the secure UART to a file. One definition for
//! `tzmk run` and the whole-system tests.

use std::path::PathBuf;

use crate::Platform;

/// What one boot of the whole system loads.
#[derive(Debug, Clone)]
pub struct Images {
    /// The secure flash image: the monitor, the provisioning block, the signed manifest of exactly
    /// these images and the security-version counter (`tzmk flash`; build.mk's `flash-*.bin`).
    /// QEMU gets it as flash0's pflash drive and **writes it** (signed updates raise the counter and
    /// replace the manifest), so it must be exactly the flash's size, and a test boots its own copy
    /// ([`private_flash`]). A bare monitor.bin is refused by QEMU (wrong size).
    pub monitor: PathBuf,
    /// Linux's arm64 Image, DTB and initramfs.
    pub kernel: PathBuf,
    pub dtb: PathBuf,
    pub initramfs: PathBuf,
    /// The Microkit loader image; `None`: the monitor runs Linux alone (no secure world).
    pub loader: Option<PathBuf>,
    /// Where the secure UART (the monitor's log) goes.
    pub secure_log: PathBuf,
}

/// The arguments after `qemu-system-aarch64`. The console (UART0: seL4's and Linux's) is the
/// first serial port, `console` (`stdio`, or `mon:stdio` for an interactive run with QEMU's
/// Ctrl-A commands).
pub fn arguments(platform: &Platform, images: &Images, console: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "-machine",
        "virt,secure=on,gic-version=2",
        "-cpu",
        "cortex-a53",
        "-smp",
        "4",
        "-m",
        "3G",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
        "-monitor",
        "none",
        "-serial",
        console,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("-serial".into());
    args.push(format!("file:{}", images.secure_log.display()));
    // flash0 (secure-only with secure=on): a pflash drive, so that the monitor's CFI writes reach
    // the file. `-bios` would load the same bytes but keep every write in QEMU's memory.
    args.push("-drive".into());
    args.push(format!("if=pflash,unit=0,format=raw,file={}", images.monitor.display()));
    let mut load = |file: &PathBuf, addr: u64| {
        args.push("-device".into());
        // No cpu-num: the images are data; the monitor decides where each core goes.
        args.push(format!("loader,file={},addr={addr:#x},force-raw=on", file.display()));
    };
    load(&images.kernel, platform.boot.linux_kernel);
    load(&images.dtb, platform.boot.linux_dtb);
    load(&images.initramfs, platform.boot.linux_initrd);
    if let Some(loader) = &images.loader {
        load(loader, platform.boot.secure_entry);
    }
    args
}

/// Copies the flash image `source` to `copy` for one run to write (QEMU takes the file as flash0's
/// drive): the build's image stays as built. Returns `copy`.
pub fn private_flash(source: &std::path::Path, copy: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(copy);
    std::fs::copy(source, copy)?;
    // It holds the UDS.
    std::fs::set_permissions(copy, std::fs::Permissions::from_mode(0o600))?;
    Ok(copy.to_owned())
}
