//! The QEMU command line of the real system: the EL3 monitor in secure flash (`-bios`), the
//! images where the platform description says, the secure UART to a file. One definition for
//! `tzmk run` and the whole-system tests.

use std::path::PathBuf;

use crate::Platform;

/// What one boot of the whole system loads.
#[derive(Debug, Clone)]
pub struct Images {
    /// The secure flash image (`-bios`): the monitor, the provisioning block and the signed
    /// manifest of exactly these images (`tzmk flash`; build.mk's `flash-*.bin`). A bare
    /// monitor.bin stops at trusted boot: no manifest.
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
    args.push("-bios".into());
    args.push(images.monitor.display().to_string());
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
