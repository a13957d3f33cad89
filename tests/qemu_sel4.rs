//! Boots the Microkit image of system.xml on QEMU and waits for every PD's ready line.
//!
//! Needs an image built with the Microkit SDK, so it is ignored by plain `cargo test`;
//! `make -f build.mk qemu-sel4` builds the image and runs it (or says SKIPPED without an SDK).
//! QEMU: `virt,virtualization=on` with a Cortex-A53, the loader at 0x70000000 started on core 0
//! (board qemu_virt_aarch64_el1: the loader drops from EL2 to EL1 for seL4). `-m 3G` puts RAM
//! under the shared window at 0xfe00_0000 (seL4 itself uses only its 2 GiB from 0x4000_0000).

use std::process::Command;
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "needs a Microkit SDK image: run `make -f build.mk qemu-sel4`"]
fn every_pd_prints_its_ready_line_on_sel4() {
    let image = std::env::var("TZMK_LOADER_IMG").expect("TZMK_LOADER_IMG names loader.img");
    let root = tzmk_tests::workspace_root();
    let text = std::fs::read_to_string(root.join("system.xml")).unwrap();
    let system = tzmk_sdf::parse_system("system.xml", &text).expect("system.xml parses");
    let wanted: Vec<String> = system.protection_domains.iter().map(|pd| format!("{}: INFO: ready", pd.name)).collect();
    // rt-task's timer fires, it acknowledges the IRQ, publishes in rt_shared and notifies comm-pd,
    // which reads the statistics: the runtime's IRQ, notification and shared-memory paths on seL4.
    // Its report is checked for what must hold, not for the figures a given run's timing gave.
    let reported = |serial: &str| tzmk_tests::RtReport::find(serial).is_some();

    let mut qemu = Command::new("qemu-system-aarch64");
    qemu.args(["-machine", "virt,virtualization=on", "-cpu", "cortex-a53", "-m", "3G", "-smp", "1"])
        .args(["-nographic", "-nic", "none", "-serial", "stdio", "-monitor", "none"])
        .arg("-device")
        .arg(format!("loader,file={image},addr=0x70000000,cpu-num=0"));
    // A PD fault (a stack overflow, say) is reported by the Microkit monitor as MON|ERROR: no need
    // to wait for the timeout then.
    let run = tzmk_tests::run_qemu(qemu, BOOT_TIMEOUT, |serial| {
        (wanted.iter().all(|w| tzmk_tests::printed(serial, w)) && reported(serial)) || serial.contains("MON|ERROR")
    });
    let serial = run.console;
    println!("---- serial ----\n{serial}\n---- end ----");
    assert!(!serial.contains("MON|ERROR"), "a PD faulted (the Microkit monitor's MON|ERROR lines above)");
    let missing: Vec<_> = wanted.iter().filter(|w| !tzmk_tests::printed(&serial, w)).collect();
    assert!(missing.is_empty(), "no ready line within {BOOT_TIMEOUT:?} for: {missing:?}");
    let report = tzmk_tests::RtReport::find(&serial)
        .unwrap_or_else(|| panic!("no \"{}\" line within {BOOT_TIMEOUT:?}", tzmk_tests::RT_REPORT));
    let problems = report.problems(tzmk_interface::rt::RT_REPORT_EVERY, rt_task::realtime::PARAMS.period_us);
    assert!(problems.is_empty(), "comm-pd's report of rt-task {report:?}: {problems:?}");
    assert!(!serial.contains("panic"), "a PD panicked");
}
