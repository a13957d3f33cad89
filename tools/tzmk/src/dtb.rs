//! `tzmk dtb`: Linux's device tree for the platform's partition (tzmk_sdf::dtb).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The system description.
    #[arg(default_value = "system.xml")]
    system: PathBuf,
    /// The platform description (default: the built-in QEMU virt one).
    #[arg(long)]
    platform: Option<PathBuf>,
    /// The initramfs the DTB announces (its size goes into linux,initrd-end).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Linux's command line.
    #[arg(long, default_value = "console=ttyAMA0")]
    bootargs: String,
    /// Where to write the DTB.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: &Args) -> ExitCode {
    match build(args) {
        Ok(size) => {
            println!("dtb: {} ({size} bytes)", args.output.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn build(args: &Args) -> Result<usize, String> {
    let platform = tzmk_sdf::load_platform(args.platform.as_deref()).map_err(|d| d.to_string())?;
    let system = tzmk_sdf::load_system(&args.system).map_err(|e| e.to_string())?;
    let partition = tzmk_sdf::partition::Partition::compute(&system, &platform)?;
    let initrd_size = match &args.initrd {
        Some(path) => std::fs::metadata(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?.len(),
        None => 0,
    };
    let room =
        partition.normal_ram.iter().find(|r| r.base <= partition.linux_initrd && partition.linux_initrd < r.end());
    if room.is_some_and(|r| partition.linux_initrd + initrd_size > r.end()) {
        return Err(format!(
            "the initramfs ({initrd_size} bytes) does not fit in normal RAM from {:#x}",
            partition.linux_initrd
        ));
    }
    let dtb =
        tzmk_sdf::dtb::linux_dtb(&partition, &tzmk_sdf::dtb::LinuxBoot { bootargs: &args.bootargs, initrd_size })?;
    std::fs::write(&args.output, &dtb).map_err(|e| format!("{}: cannot write: {e}", args.output.display()))?;
    Ok(dtb.len())
}
