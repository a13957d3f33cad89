//! The QEMU command line of a bench run: `virt` under `-icount shift=0,sleep=off`, one instruction per virtual nanosecond.

use std::path::PathBuf;

use crate::report::Firmware;
use crate::{UPDATE_BENCH_FLAG, UPDATE_BENCH_MAGIC};

/// What to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub firmware: FirmwareImage,
    /// The payload's ELF (its segments carry their load addresses).
    pub payload: PathBuf,
    /// The secure image's ELF (`bench-secure`, at the secure entry), or none: without one the
    /// monitor's `notify_secure` answers `NO_SECURE_WORLD`. Only with [`FirmwareImage::Monitor`].
    pub secure_image: Option<PathBuf>,
    /// QEMU's `-cpu`.
    pub cpu: String,
    /// Where the secure UART (the second `-serial`) goes: a file, or nowhere.
    pub secure_log: Option<PathBuf>,
    /// Whether the secure image runs its update bench before `go` (QEMU's loader writes
    /// [`UPDATE_BENCH_MAGIC`] at [`UPDATE_BENCH_FLAG`]). Only with a secure image.
    pub update_bench: bool,
}

/// Who answers the payload's SMCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareImage {
    /// The monitor's flash image: QEMU `virt,secure=on` starts it at EL3 (`-bios`) on every core;
    /// the payload is loaded beside it (`-device loader`), and the monitor enters it at NS-EL1.
    Monitor(PathBuf),
    /// No EL3 code: `virt,virtualization=on` starts the payload at EL2 (`-kernel`) and QEMU answers
    /// its SMCs itself (its PSCI conduit is SMC there).
    QemuPsci,
}

impl FirmwareImage {
    pub fn kind(&self) -> Firmware {
        match self {
            FirmwareImage::Monitor(_) => Firmware::Monitor,
            FirmwareImage::QemuPsci => Firmware::QemuPsci,
        }
    }
}

/// QEMU's program name (Debian package qemu-system-arm).
pub const PROGRAM: &str = "qemu-system-aarch64";

/// The arguments of `qemu-system-aarch64` for `setup`.
pub fn arguments(setup: &Setup) -> Vec<String> {
    let machine = match setup.firmware {
        FirmwareImage::Monitor(_) => "virt,secure=on",
        FirmwareImage::QemuPsci => "virt,virtualization=on",
    };
    let mut args: Vec<String> = [
        "-machine",
        machine,
        "-cpu",
        &setup.cpu,
        // Two cores: the secure core (idle in WFI when there is no secure image) and the first
        // normal core, which runs the payload. Linux's other cores would wait for CPU_ON in a WFE
        // loop, which QEMU runs as a spin, and under -icount every core's instructions move the
        // shared clock (docs/monitor-bench.md).
        "-smp",
        "2",
        "-m",
        "3G",
        // One instruction per nanosecond of virtual time, and no idle time skipped in real time:
        // the counter (and so the payload's clock) advances only with executed instructions.
        "-icount",
        "shift=0,sleep=off",
        "-nographic",
        // No network device: none is needed, and QEMU would look for its option ROM.
        "-nic",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match &setup.firmware {
        FirmwareImage::Monitor(image) => {
            let secure = match &setup.secure_log {
                Some(path) => format!("file:{}", path.display()),
                None => "null".to_string(),
            };
            args.extend(["-serial".to_string(), secure]);
            args.extend(["-bios".to_string(), image.display().to_string()]);
            // No cpu-num: the loader only places the segments; the monitor decides where cores start
            // (the secure image on the secure core at S-EL1, the payload after its `go`).
            args.extend(["-device".to_string(), format!("loader,file={}", setup.payload.display())]);
            if let Some(secure_image) = &setup.secure_image {
                args.extend(["-device".to_string(), format!("loader,file={}", secure_image.display())]);
                if setup.update_bench {
                    // One word in plain RAM past the secure image, which it reads at its start.
                    args.extend([
                        "-device".to_string(),
                        format!("loader,addr={UPDATE_BENCH_FLAG:#x},data={UPDATE_BENCH_MAGIC:#x},data-len=4"),
                    ]);
                }
            }
            assert!(setup.secure_image.is_some() || !setup.update_bench, "the update bench is the secure image's");
        }
        FirmwareImage::QemuPsci => {
            assert!(setup.secure_image.is_none(), "QEMU's own PSCI has no secure world to load an image into");
            args.extend(["-kernel".to_string(), setup.payload.display().to_string()]);
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(firmware: FirmwareImage) -> Setup {
        Setup {
            firmware,
            payload: "build/bench-payload.elf".into(),
            secure_image: None,
            cpu: "cortex-a53".into(),
            secure_log: Some("build/secure.log".into()),
            update_bench: false,
        }
    }

    #[test]
    fn the_monitor_runs_from_flash_with_the_payload_beside_it() {
        let args = arguments(&setup(FirmwareImage::Monitor("build/monitor.bin".into()))).join(" ");
        assert!(
            args.starts_with("-machine virt,secure=on -cpu cortex-a53 -smp 2 -m 3G -icount shift=0,sleep=off"),
            "{args}"
        );
        assert!(args.contains("-serial stdio -serial file:build/secure.log"), "{args}");
        assert!(args.contains("-bios build/monitor.bin -device loader,file=build/bench-payload.elf"), "{args}");
        assert!(!args.contains("-kernel"));
        assert_eq!(args.matches("-device loader").count(), 1, "{args}");
    }

    #[test]
    fn a_secure_image_is_loaded_beside_the_payload_for_the_monitor_to_enter() {
        let setup = Setup {
            secure_image: Some("build/bench-secure.elf".into()),
            ..setup(FirmwareImage::Monitor("build/monitor.bin".into()))
        };
        let args = arguments(&setup).join(" ");
        assert!(
            args.ends_with(
                "-bios build/monitor.bin -device loader,file=build/bench-payload.elf -device loader,file=build/bench-secure.elf"
            ),
            "{args}"
        );
        assert!(!args.contains("cpu-num"), "{args}");
        // The update bench's run adds the flag word, nothing else.
        let args = arguments(&Setup { update_bench: true, ..setup }).join(" ");
        assert!(
            args.ends_with(
                "-device loader,file=build/bench-secure.elf -device loader,addr=0x70010000,data=0x54445055,data-len=4"
            ),
            "{args}"
        );
    }

    #[test]
    fn without_a_monitor_qemu_starts_the_payload_at_el2() {
        let args = arguments(&setup(FirmwareImage::QemuPsci)).join(" ");
        assert!(
            args.starts_with("-machine virt,virtualization=on -cpu cortex-a53 -smp 2 -m 3G -icount shift=0,sleep=off"),
            "{args}"
        );
        assert!(args.ends_with("-serial stdio -kernel build/bench-payload.elf"), "{args}");
        assert!(!args.contains("-bios") && !args.contains("secure=on"));
    }
}
