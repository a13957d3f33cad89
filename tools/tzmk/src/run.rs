//! `tzmk run`: boots the real system on QEMU with this terminal as its console: seL4 and the PDs
//! of system.xml on core 0 under the EL3 monitor, Linux on cores 1-3 (`make -f build.mk run`
//! builds the images and calls this).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use tzmk_sdf::qemu::{arguments, Images};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The secure flash image (QEMU's flash0 drive, 64 MiB): the monitor with the provisioning
    /// block and the manifest signing these images (`tzmk flash`). The run writes it (signed
    /// updates, the security-version counter), as a device keeps its flash across boots.
    #[arg(long)]
    monitor: PathBuf,
    /// The Microkit loader image (without it the monitor runs Linux alone).
    #[arg(long)]
    loader: Option<PathBuf>,
    /// Linux's arm64 Image.
    #[arg(long)]
    kernel: PathBuf,
    /// Linux's DTB (`tzmk dtb`).
    #[arg(long)]
    dtb: PathBuf,
    /// Linux's initramfs.
    #[arg(long)]
    initramfs: PathBuf,
    /// Where the monitor's log (the secure UART) goes.
    #[arg(long, default_value = "build/secure-uart.log")]
    secure_log: PathBuf,
    /// The platform description (default: the built-in QEMU virt one).
    #[arg(long)]
    platform: Option<PathBuf>,
}

/// Exit code when an input is missing or unreadable (as `tzmk audit`).
const UNREADABLE: u8 = 2;

pub fn run(args: Args) -> ExitCode {
    let platform = match tzmk_sdf::load_platform(args.platform.as_deref()) {
        Ok(platform) => platform,
        Err(e) => {
            eprintln!("tzmk run: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let mut inputs = vec![("--monitor", &args.monitor), ("--kernel", &args.kernel), ("--dtb", &args.dtb)];
    inputs.push(("--initramfs", &args.initramfs));
    if let Some(loader) = &args.loader {
        inputs.push(("--loader", loader));
    }
    for (flag, path) in inputs {
        if !path.is_file() {
            eprintln!("tzmk run: {flag} {}: no such file (make -f build.mk run builds every image)", path.display());
            return ExitCode::from(UNREADABLE);
        }
    }
    let images = Images {
        monitor: args.monitor,
        kernel: args.kernel,
        dtb: args.dtb,
        initramfs: args.initramfs,
        loader: args.loader,
        secure_log: args.secure_log,
    };
    eprintln!(
        "tzmk run: booting; the monitor's log goes to {}. `poweroff` in the shell, or Ctrl-A x, quits.",
        images.secure_log.display()
    );
    let error = Command::new("qemu-system-aarch64").args(arguments(&platform, &images, "mon:stdio")).exec();
    eprintln!("tzmk run: qemu-system-aarch64: {error} (Debian package qemu-system-arm)");
    ExitCode::from(UNREADABLE)
}
