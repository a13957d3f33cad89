//! Boots tzmk's EL3 monitor on QEMU `virt,secure=on` with Debian's arm64 kernel on cores 1-3.
//!
//! - `standalone`: no secure image (CI: `make -f build.mk qemu-linux`). The monitor initialises the
//!   GIC for Linux itself; Linux brings cores 2 and 3 up by PSCI CPU_ON, tests/linux's /init checks
//!   three CPUs, the tzmk SiP discovery and `notify_secure` = NO_SECURE_WORLD through the
//!   tzmk_probe module (which also requests the `tzmk,ports` doorbell and must take none), then
//!   powers off by PSCI SYSTEM_OFF.
//! - `full_system`: the Microkit image of system.xml on core 0 as well (`make -f build.mk qemu`,
//!   with the SDK): every PD's ready line, `go` from attestation-pd, then the same Linux checks
//!   with `notify_secure` = SUCCESS answered by a doorbell (comm-pd publishes its status page and
//!   calls `notify_normal`), while seL4's PDs keep running.
//!
//! The monitor verifies the signed manifest of each run's images first (trusted boot stage 1);
//! tests/qemu_boot.rs boots what it must refuse.
//!
//! Ignored by plain `cargo test`: they need the images build.mk makes (TZMK_MONITOR_BIN, the
//! secure flash image `tzmk flash` composes,
//! TZMK_LINUX_DIR with Image, initramfs.cpio and the DTB named by TZMK_DTB, TZMK_LOADER_IMG).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(240);

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("{name} is not set: run this through build.mk")))
}

/// QEMU as `tzmk run` starts it (tzmk_sdf::qemu): the flash image `flash` (the run's own copy:
/// QEMU writes it) as secure flash, the images where the platform description says, the secure
/// UART (second serial) to a file.
fn qemu_with(flash: PathBuf, secure_log: &std::path::Path, loader: Option<PathBuf>) -> Command {
    let linux = env_path("TZMK_LINUX_DIR");
    let images = tzmk_sdf::qemu::Images {
        monitor: flash,
        kernel: linux.join("Image"),
        dtb: linux.join(std::env::var("TZMK_DTB").unwrap_or_else(|_| "tzmk.dtb".into())),
        initramfs: linux.join("initramfs.cpio"),
        loader,
        secure_log: secure_log.to_owned(),
    };
    let mut qemu = Command::new("qemu-system-aarch64");
    qemu.args(tzmk_sdf::qemu::arguments(&tzmk_sdf::Platform::qemu_virt(), &images, "stdio"));
    qemu
}

/// [`qemu_with`] a fresh copy of the build's flash image (TZMK_MONITOR_BIN) beside `secure_log`.
fn qemu(secure_log: &std::path::Path, loader: Option<PathBuf>) -> Command {
    let copy = secure_log.with_extension("flash.bin");
    let flash = tzmk_sdf::qemu::private_flash(&env_path("TZMK_MONITOR_BIN"), &copy).unwrap();
    qemu_with(flash, secure_log, loader)
}

/// The doorbell's GIC INTID, from the partition the DTB was generated from.
fn doorbell_intid() -> u32 {
    let text = std::fs::read_to_string(tzmk_tests::workspace_root().join("system.xml")).unwrap();
    let system = tzmk_sdf::parse_system("system.xml", &text).expect("system.xml parses");
    let partition = tzmk_sdf::partition::Partition::compute(&system, &tzmk_sdf::Platform::qemu_virt())
        .expect("the partition of system.xml");
    partition.doorbell_intid
}

/// The `tzmk-init: doorbell irq N (gic INTID)` line: tzmk_probe requested the tzmk,ports interrupt.
fn check_doorbell_irq(console: &str) {
    let want = format!(" (gic {})", doorbell_intid());
    assert!(
        console.lines().any(|l| l.trim_end().starts_with("tzmk-init: doorbell irq ") && l.trim_end().ends_with(&want)),
        "no \"tzmk-init: doorbell irq N{want}\" line on Linux's console"
    );
}

fn secure_log(name: &str) -> PathBuf {
    let dir = env_path("TZMK_LINUX_DIR");
    let path = dir.join(format!("{name}-monitor.log"));
    let _ = std::fs::remove_file(&path);
    path
}

fn check_linux(console: &str, monitor_log: &str) {
    let results: Vec<&str> =
        console.lines().filter(|l| l.starts_with("tzmk-init: PASS") || l.starts_with("tzmk-init: FAIL")).collect();
    assert_eq!(results, ["tzmk-init: PASS"], "tzmk-init's verdict");
    for want in [
        "psci: PSCIv1.1 detected in firmware.",
        "psci: SMC Calling Convention v1.2",
        "SMP: Total of 3 processors activated.",
        "tzmk-init: cpus online 0-2 (3)",
        "tzmk-init: sip uid tzmk revision 0.1",
        "tzmk-init: timer: slept",
        "tzmk-init: refusals: cpu_on(secure core)=-3, cpu_on(entry outside Linux's RAM)=-9",
        "tzmk-init: cpu 2 offline (online 0-1) and back (online 0-2)",
    ] {
        assert!(console.contains(want), "no {want:?} on Linux's console");
    }
    for want in ["MMU and caches on", "trusted boot: manifest verified with the platform key", "entering Linux at"] {
        assert!(monitor_log.contains(want), "no {want:?} in the monitor's log:\n{monitor_log}");
    }
    assert!(!monitor_log.contains("ERROR"), "the monitor reported an error:\n{monitor_log}");
    assert!(monitor_log.contains("PSCI SYSTEM_OFF from core"), "Linux's power-off never reached the monitor");
}

#[test]
#[ignore = "needs the monitor and Linux images: run `make -f build.mk qemu-linux`"]
fn standalone() {
    let log = secure_log("standalone");
    let run = tzmk_tests::run_qemu(qemu(&log, None), TIMEOUT, |_| false);
    let monitor_log = std::fs::read_to_string(&log).unwrap_or_default();
    println!("---- Linux console ----\n{}\n---- secure UART (monitor) ----\n{monitor_log}---- end ----", run.console);
    assert!(!run.timed_out, "QEMU still ran after {TIMEOUT:?}: Linux never powered off");
    assert!(run.exit.is_some_and(|s| s.success()), "QEMU exited with {:?}", run.exit);
    check_linux(&run.console, &monitor_log);
    assert!(run.console.contains("tzmk-init: notify_secure(0) = -256 (no secure world)"));
    assert!(monitor_log.contains("no secure image at 0x70000000"));
    assert!(
        monitor_log.contains("trusted boot: no secure image in the manifest: Linux's images checked by the monitor")
    );
    check_doorbell_irq(&run.console);
    assert!(run.console.contains("tzmk-init: doorbells: 0 (notify_secure did not succeed: none awaited)"));
    // tzmk.ko loads and its probe refuses with one line, making no port.
    for want in [
        "tzmk: the secure world answers \"no secure world\": no ports",
        "tzmk-init: tzmk.ko loaded: ports []",
        "tzmk-init: tzmk.ko probe refused: no secure world, no ports",
    ] {
        assert!(run.console.contains(want), "no {want:?} on Linux's console");
    }
}

#[test]
#[ignore = "needs the Microkit SDK's image as well: run `make -f build.mk qemu`"]
fn full_system() {
    let log = secure_log("full");
    let text = std::fs::read_to_string(tzmk_tests::workspace_root().join("system.xml")).unwrap();
    let system = tzmk_sdf::parse_system("system.xml", &text).expect("system.xml parses");
    let mut wanted: Vec<String> =
        system.protection_domains.iter().map(|pd| format!("{}: INFO: ready", pd.name)).collect();
    wanted.push("attestation-pd: INFO: go: the monitor starts the normal world".into());
    // Trusted boot stage 1 left the v2 handoff (CDIs, certificate, event log) in secure RAM.
    wanted.push("attestation-pd: INFO: ready: boot handoff from the monitor is valid".into());
    // Stage 2: attestation-pd checked Linux's measured images against the verified manifest.
    wanted.push("attestation-pd: INFO: Linux's kernel, DTB and initramfs are the signed ones".into());
    let loader = env_path("TZMK_LOADER_IMG");
    // The run's own flash F (manifest v1, counter 0): this boot updates it to v2, the next boots
    // of the same F must keep v2 and refuse v1 (docs/trusted-boot.md, "Signed updates").
    let flash = tzmk_sdf::qemu::private_flash(&env_path("TZMK_MONITOR_BIN"), &log.with_extension("flash.bin")).unwrap();
    let v1 = manifest_in(&flash);
    let v2 = std::fs::read(env_path("TZMK_UPDATE_MANIFEST")).unwrap();
    let answer = answer_updates(vec![v2.clone(), v1.clone()]);
    let run = tzmk_tests::run_qemu_answering(
        qemu_with(flash.clone(), &log, Some(loader.clone())),
        TIMEOUT,
        |_| false,
        answer,
    );
    let monitor_log = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "---- UART0 (seL4 and Linux) ----\n{}\n---- secure UART (monitor) ----\n{monitor_log}---- end ----",
        run.console
    );
    assert!(!run.timed_out, "QEMU still ran after {TIMEOUT:?}: Linux never powered off");
    assert!(!run.console.contains("MON|ERROR"), "a PD faulted");
    let missing: Vec<_> = wanted.iter().filter(|w| !tzmk_tests::printed(&run.console, w)).collect();
    assert!(missing.is_empty(), "missing on the console: {missing:?}");
    check_linux(&run.console, &monitor_log);
    assert!(run.console.contains("tzmk-init: notify_secure(0) = 0 (success)"));
    check_doorbell_irq(&run.console);
    let answered = run.console.lines().find(|l| l.starts_with("tzmk-init: doorbell after notify_secure: "));
    assert!(
        answered.is_some_and(|l| l.trim_end().ends_with("(the secure world answered)")),
        "the secure world did not answer notify_secure with a doorbell: {answered:?}"
    );
    // tzmk.ko makes the ports and tzmk-check passes on /dev/tzmk/echo.
    let loaded = run.console.lines().find(|l| l.starts_with("tzmk-init: tzmk.ko loaded: ports ["));
    assert!(
        loaded.is_some_and(|l| l.trim_end().trim_end_matches(']').split(['[', ' ']).any(|p| p == "echo")),
        "tzmk.ko made no echo port: {loaded:?}"
    );
    for want in ["tzmk-check: 1000 round trips", "tzmk-check: PASS", "tzmk-init: tzmk-check passed"] {
        assert!(run.console.contains(want), "no {want:?} on Linux's console");
    }
    for want in [
        "trusted boot: secure image 'loader.img' at 0x70000000",
        "trusted boot: boot handoff v2 at 0xe801000",
        "entering the secure world at 0x70000000",
        "go: the secure world initialised the GIC",
    ] {
        assert!(monitor_log.contains(want), "no {want:?} in the monitor's log");
    }
    // The update from inside Linux, and the replay of v1 refused at once.
    let updates = update_answers(&run.console);
    assert_eq!(updates.len(), 2, "two tzctl update answers: {updates:?}");
    assert!(updates[0].starts_with("accepted: security version 2 stored (was 1)"), "{updates:?}");
    assert!(updates[1].starts_with("refused: security version 1 is below the stored 2"), "{updates:?}");
    assert!(monitor_log.contains("update: accepted: security version 2 stored (was 1)"), "{monitor_log}");
    assert_eq!(manifest_in(&flash), v2, "F holds the update");
    // The token reports what booted (v1's versions and digests) and v2 as the pending update.
    check_evidence(&run.console, &flash, &v1, Some(&v2));
    check_hostile_gic(&run.console);
    check_hostile_driver(&run.console);
    check_update_storm(&run.console);

    // Boot again with the same F: stage 1 verifies v2 against the counter 2; v1 is refused again.
    let log2 = secure_log("full-again");
    let refused = "tzmk-init: tzctl update: refused: security version 1 is below the stored 2";
    let answer = answer_updates(vec![v1.clone()]);
    let again = tzmk_tests::run_qemu_answering(
        qemu_with(flash.clone(), &log2, Some(loader)),
        TIMEOUT,
        |console| console.contains("tzmk-init: update: done"),
        answer,
    );
    let monitor_log = std::fs::read_to_string(&log2).unwrap_or_default();
    println!("---- UART0, second boot ----\n{}\n---- secure UART ----\n{monitor_log}---- end ----", again.console);
    assert!(!again.timed_out, "the second boot never finished its updates");
    assert!(monitor_log.contains("manifest verified with the platform key, security version 2"), "{monitor_log}");
    assert!(monitor_log.contains("trusted boot: security-version counter 2"), "{monitor_log}");
    let updates = update_answers(&again.console);
    assert!(updates.len() == 1 && again.console.contains(refused), "{updates:?}");
    assert_eq!(manifest_in(&flash), v2, "a refused update changes nothing");

    // v1 written into F's manifest sector offline: stage 1 refuses it with the stored counter.
    // Into both slots, committed (docs/trusted-boot.md, "Atomic updates"): stage 1 would boot the
    // other slot's v2 otherwise.
    let mut bytes = std::fs::read(&flash).unwrap();
    let platform = tzmk_sdf::Platform::qemu_virt();
    let sector = platform.trust.sector as usize;
    for (at, sequence) in platform.manifest_slots().into_iter().zip([7, 8]) {
        let at = at as usize;
        bytes[at..at + sector].fill(0xff);
        bytes[at..at + v1.len()].copy_from_slice(&v1);
        let record = at + tzmk_trust::slot::RECORD_OFFSET;
        bytes[record..record + tzmk_trust::slot::RECORD_SIZE]
            .copy_from_slice(&tzmk_trust::slot::record_bytes(sequence));
    }
    std::fs::write(&flash, bytes).unwrap();
    let log3 = secure_log("full-rollback");
    let stop = "tzmk-monitor: trusted boot: manifest: security version 1 is below the stored 2: the machine stops";
    let stopped =
        tzmk_tests::run_qemu(qemu_with(flash.clone(), &log3, Some(env_path("TZMK_LOADER_IMG"))), TIMEOUT, |_| {
            std::fs::read_to_string(&log3).is_ok_and(|log| log.contains("the machine stops"))
        });
    let monitor_log = std::fs::read_to_string(&log3).unwrap_or_default();
    println!("---- secure UART, v1 written offline ----\n{monitor_log}---- end ----");
    assert!(!stopped.timed_out && monitor_log.lines().any(|l| l == stop), "{monitor_log}");
    assert_eq!(stopped.console.trim(), "", "nothing ran on UART0");
}

/// Where the reset-during-update sweep resets the machine: ms after `tzctl update` started, over
/// an update's duration from Linux (on QEMU about 380 ms, the monitor's flash work in its last
/// ~100-130 ms; two runs put it at 150 ms and after 200 ms): denser where the flash work falls.
const RESET_DELAYS_MS: [u64; 8] = [0, 100, 150, 200, 250, 300, 350, 500];

/// The number right after `prefix` on the first line of `log` that has it.
fn number_after(log: &str, prefix: &str) -> Option<u32> {
    let line = log.lines().find_map(|l| l.split_once(prefix))?.1.trim_start();
    line[..line.find(|c: char| !c.is_ascii_digit()).unwrap_or(line.len())].parse().ok()
}

/// The last number on the first line of `log` that contains `prefix`.
fn logged_number(log: &str, prefix: &str) -> Option<u32> {
    let line = log.lines().find(|l| l.contains(prefix))?;
    line.rsplit(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty())?.parse().ok()
}

/// A power cut during an update never bricks the device (docs/trusted-boot.md, "Signed
/// updates"): for each point of [`RESET_DELAYS_MS`], a fresh copy F of the full system's flash
/// (manifest v1) boots, /init starts `tzctl update` of v2 on one CPU and resets the machine from
/// another (PSCI SYSTEM_RESET) that many ms later; then F boots again: stage 1 verifies v1 or v2,
/// the counter is not above it, attestation-pd lets Linux run and /init reaches its update
/// prompt. A table says, per point, whether the update had been accepted before the reset.
#[test]
#[ignore = "needs the full system's images: make -f build.mk qemu"]
fn reset_during_update() {
    let loader = env_path("TZMK_LOADER_IMG");
    let v2 = std::fs::read(env_path("TZMK_UPDATE_MANIFEST")).unwrap();
    let hex: String = v2.iter().map(|b| format!("{b:02x}")).collect();
    let prompt = format!("tzmk-init: {}", tzmk_linux_guest::UPDATE_PROMPT);
    let mut table =
        vec!["| reset after | update before the reset | the reset waited for flash | boots again with | counter |"
            .to_owned()];
    table.push("| --- | --- | --- | --- | --- |".into());
    for delay in RESET_DELAYS_MS {
        let log = secure_log(&format!("reset-{delay}"));
        let flash =
            tzmk_sdf::qemu::private_flash(&env_path("TZMK_MONITOR_BIN"), &log.with_extension("flash.bin")).unwrap();
        let mut typed = false;
        let line = format!("{}{delay}\n{hex}\n", tzmk_linux_guest::RESET_AFTER);
        let run = tzmk_tests::run_qemu_answering(
            qemu_with(flash.clone(), &log, Some(loader.clone())),
            TIMEOUT,
            |_| false,
            |console| {
                if typed || !console.contains(&prompt) {
                    return None;
                }
                typed = true;
                Some(line.clone().into_bytes())
            },
        );
        let first = std::fs::read_to_string(&log).unwrap_or_default();
        println!(
            "---- UART0, reset after {delay} ms ----\n{}\n---- secure UART ----\n{first}---- end ----",
            run.console
        );
        assert!(typed && run.exit.is_some(), "reset after {delay} ms: QEMU did not stop on the reset");
        assert!(run.console.contains("tzmk-init: reset "), "reset after {delay} ms: /init never reset the machine");
        let before = if first.contains("update: accepted") { "accepted" } else { "not finished" };
        let waited = first
            .lines()
            .find_map(|l| {
                l.split_once("PSCI SYSTEM_RESET from core ").and_then(|(_, rest)| rest.split_once(": waited "))
            })
            .map_or("no".to_owned(), |(_, rest)| rest.split(" for").next().unwrap_or(rest).to_owned());

        let log2 = secure_log(&format!("reset-{delay}-again"));
        let again = tzmk_tests::run_qemu_answering(
            qemu_with(flash.clone(), &log2, Some(loader.clone())),
            TIMEOUT,
            |console| console.contains("tzmk-init: update: done"),
            answer_updates(vec![]),
        );
        let monitor_log = std::fs::read_to_string(&log2).unwrap_or_default();
        let booted = number_after(&monitor_log, "manifest verified with the platform key, security version");
        let counter = logged_number(&monitor_log, "trusted boot: security-version counter");
        if again.timed_out || booted.is_none() {
            println!("---- UART0, boot after the reset at {delay} ms ----\n{}\n---- secure UART ----\n{monitor_log}---- end ----", again.console);
        }
        assert!(!again.timed_out, "after a reset {delay} ms into an update the device no longer boots to Linux");
        let (booted, counter) = (booted.expect("a verified manifest"), counter.expect("the counter's line"));
        assert!(booted == 1 || booted == 2, "after a reset at {delay} ms it booted security version {booted}");
        assert!(
            counter <= booted,
            "after a reset at {delay} ms the counter {counter} is above the manifest's {booted}"
        );
        table.push(format!("| {delay} ms | {before} | {waited} | v{booted} | {counter} |"));
    }
    println!("{}", table.join("\n"));
}

/// The manifest of a flash image's newest committed slot (the one stage 1 boots).
fn manifest_in(flash: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(flash).unwrap();
    let slots = tzmk_sdf::Platform::qemu_virt().manifest_slots().map(|at| at as usize);
    tzmk_trust::slot::committed_manifest(&bytes, slots).expect("a committed manifest slot").1.to_vec()
}

/// Types `manifests` (hex, a line each, then an empty line) once /init asks for updates.
fn answer_updates(manifests: Vec<Vec<u8>>) -> impl FnMut(&str) -> Option<Vec<u8>> {
    let mut sent = false;
    move |console: &str| {
        if sent || !console.contains(&format!("tzmk-init: {}", tzmk_linux_guest::UPDATE_PROMPT)) {
            return None;
        }
        sent = true;
        let mut text = String::new();
        for manifest in &manifests {
            text.extend(manifest.iter().map(|b| format!("{b:02x}")));
            text.push('\n');
        }
        text.push('\n');
        Some(text.into_bytes())
    }
}

/// What /init printed for each `tzctl update`.
fn update_answers(console: &str) -> Vec<String> {
    console.lines().filter_map(|l| l.strip_prefix("tzmk-init: tzctl update: ")).map(str::to_owned).collect()
}

/// The update storm (tests/linux's `tzmk-hostile update-storm`): it ran to its end, which means
/// every request got the answer it must (the stored manifest accepted again, every flipped
/// signature refused), rt-task published new releases after it, and the second uid's every open,
/// status, echo and close completed within the tool's stated bound (it fails otherwise).
fn check_update_storm(console: &str) {
    let lines: Vec<&str> = console.lines().filter(|l| l.starts_with("tzmk-hostile: update-storm: ")).collect();
    for line in &lines {
        println!("{line}");
    }
    assert!(lines.iter().any(|l| l.contains(" rounds of open, status, echo and close on ")), "{lines:#?}");
    let storm =
        lines.iter().find(|l| l.contains(" requests in ")).unwrap_or_else(|| panic!("no storm summary: {lines:#?}"));
    assert!(storm.contains(" flipped signatures refused)") && storm.contains("; rt-task: "), "{storm}");
}

/// The hostile normal world against rt-task (tests/linux's `tzmk-hostile gic`). What QEMU can
/// decide is asserted: every case ran; every Group 0 register of the kick read back unchanged
/// (the tool fails a case otherwise, and says "unchanged" for each); after each case rt-task
/// published new releases and the echo port answered. rt-task's misses and overruns during a
/// case are printed, not asserted: under TCG they measure QEMU's scheduling of the secure vCPU
/// (docs/realtime.md, "What QEMU cannot show").
fn check_hostile_gic(console: &str) {
    let cases: Vec<&str> = console.lines().filter(|l| l.starts_with("tzmk-hostile: gic: ")).collect();
    for line in &cases {
        println!("{line}");
    }
    assert!(
        cases.iter().any(|l| l.contains("every case held; the echo port answered after each")),
        "the hostile GIC cases did not all hold: {cases:#?}"
    );
    // The kick's bit registers, priority and configuration: a non-secure write is ignored.
    let unchanged = cases.iter().filter(|l| l.contains("unchanged (") && l.contains("): ignored")).count();
    assert_eq!(unchanged, 6, "each Group 0 register case of the kick reads back unchanged: {cases:#?}");
    // QEMU's deviation from GIC-400 (docs/realtime.md, "Linux cannot disturb them"): the SGIs
    // Linux aims at the secure core reach seL4, whose debug kernel logs each.
    let sgis = console.lines().filter(|l| l.starts_with("Received disabled IRQ: ")).count();
    println!("seL4 logged {sgis} interrupts it had not enabled: the normal world's SGIs (a QEMU deviation)");
    let counted = cases
        .iter()
        .filter(|l| l.contains(" releases, ") && l.contains(" misses, ") && l.trim_end().ends_with("; echo answered"))
        .count();
    assert_eq!(counted, 14, "after every hostile case rt-task released again and echo answered: {cases:#?}");
}

/// The hostile normal world against tzmk.ko (tests/linux's `tzmk-hostile calls`, `stress` and
/// `flood`, issue 20): a child confirmed it held its ports before it was killed and they were
/// closed; the driver stress left no oops, WARN, BUG or hung task and its port reopened; another
/// process's opens, ioctls and closes completed while a control-call flood ran.
fn check_hostile_driver(console: &str) {
    let lines: Vec<&str> = console
        .lines()
        .map(|l| l.trim_start_matches("tzmk-init: "))
        .filter(|l| {
            ["tzmk-hostile: calls: ", "tzmk-hostile: stress: ", "tzmk-hostile: flood: "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    for line in &lines {
        println!("{line}");
    }
    for want in [
        "the killed child's ports were closed (it held 1 before it was killed)",
        "tzmk-hostile: stress: no oops, WARN, BUG or hung task; echo-bulk reopened and echoes, echo echoes",
        "open/status/close cycles on echo completed",
    ] {
        assert!(lines.iter().any(|l| l.contains(want)), "no {want:?} from tzmk-hostile: {lines:#?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("tzmk-hostile: stress: echo-bulk: 3 rounds: ")),
        "the driver stress did not report its rounds: {lines:#?}"
    );
}

/// The evidence `tzctl attest --nonce` got inside Linux (hex on the console), checked on the host
/// against reference values computed from the flash image the run booted (its manifest, its
/// provisioning block): by `tzmk verify --chain` and by tools/verify-psa-token.py (pycose), a
/// verifier outside this project.
/// Checks the evidence /init printed against the reference values of a device booted from
/// `flash_image` with the manifest `booted`, with `pending` accepted as an update before the
/// evidence was taken.
fn check_evidence(console: &str, flash_image: &std::path::Path, booted: &[u8], pending: Option<&[u8]>) {
    use sha2::{Digest, Sha256};
    use tzmk_trust::manifest::Manifest;
    use tzmk_trust::provisioning::{Provisioning, PROVISIONING_SIZE};
    let hex_line = |what: &str| -> Vec<u8> {
        let prefix = format!("tzmk-init: evidence {what} ");
        let line = console
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix:?} line on the console"));
        (0..line.len()).step_by(2).map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex")).collect()
    };
    let (token, chain) = (hex_line("token"), hex_line("chain"));
    let dir = env_path("TZMK_LINUX_DIR").join("evidence");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token.cbor"), &token).unwrap();
    std::fs::write(dir.join("token.cbor.chain"), &chain).unwrap();

    // The reference values, as a verifier would hold them from the build.
    let flash = std::fs::read(flash_image).unwrap();
    // The monitor measures its own image: monitor.bin's bytes, at the start of flash.
    let monitor = std::fs::read(env_path("TZMK_MONITOR_BIN").with_file_name("monitor.bin")).unwrap();
    assert_eq!(flash[..monitor.len()], monitor[..], "the flash image starts with monitor.bin");
    let layout = tzmk_sdf::Platform::qemu_virt();
    let provisioning_at = layout.trust.provisioning as usize;
    let provisioning = Provisioning::parse(&flash[provisioning_at..provisioning_at + PROVISIONING_SIZE]).unwrap();
    let manifest = Manifest::parse(booted).unwrap();
    let refs = tzmk_trust::refs::ReferenceValues::derive(
        &monitor,
        provisioning,
        manifest,
        attestation_pd::evidence::IMPLEMENTATION,
    );
    let mut refs = refs;
    if let Some(pending) = pending {
        refs.expect_pending_update(Manifest::parse(pending).unwrap());
    }
    // /init measured a workload before it asked for evidence.
    refs.expect_runtime(
        tzmk_linux_guest::RUNTIME_MEASUREMENT_NAME,
        Sha256::digest(tzmk_linux_guest::RUNTIME_MEASUREMENT_BYTES).into(),
    );
    let device = refs.device_public_key;
    std::fs::write(dir.join("refs.json"), refs.to_json()).unwrap();
    let nonce = tzmk_linux_guest::EVIDENCE_NONCE;
    let arg = |name: &str| dir.join(name).display().to_string();

    let verify = Command::new(env!("CARGO"))
        .current_dir(tzmk_tests::workspace_root())
        .args(["run", "-q", "--release", "--locked", "-p", "tzmk", "--", "verify"])
        .args([arg("token.cbor"), "--nonce".into(), nonce.into(), "--refs".into(), arg("refs.json")])
        .args(["--chain".into(), arg("token.cbor.chain")])
        .output()
        .expect("cargo runs tzmk");
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    println!("tzmk verify: {said}");
    assert!(verify.status.success() && said.contains("accepted"), "tzmk verify refused the evidence: {said}");

    // The outside verifier takes the key the chain certifies (tzmk verify checked the chain).
    let mut issuer = device;
    let items: ciborium::Value = ciborium::from_reader(&chain[..]).unwrap();
    let items = items.as_array().unwrap();
    let mut key = None;
    for item in &items[1..] {
        let certified = tzmk_trust::dice::verify_certificate(item.as_bytes().unwrap(), &issuer).unwrap();
        match certified.subject_key {
            tzmk_trust::dice::SubjectKey::Ed25519(next) => issuer = next,
            tzmk_trust::dice::SubjectKey::P256(point) => key = Some(point),
        }
    }
    std::fs::write(dir.join("attestation.key"), key.expect("the chain ends in a P-256 key")).unwrap();
    let import = Command::new("python3").args(["-c", "import pycose, cbor2"]).output();
    if !import.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: tools/verify-psa-token.py needs python3 with pycose and cbor2 (pip install pycose cbor2)");
        return;
    }
    let outside = Command::new("python3")
        .arg(tzmk_tests::workspace_root().join("tools/verify-psa-token.py"))
        .args(["--token".into(), arg("token.cbor"), "--key".into(), arg("attestation.key")])
        .args(["--nonce".into(), nonce.to_owned(), "--refs".into(), arg("refs.json")])
        .output()
        .expect("python3 runs");
    let said = format!("{}{}", String::from_utf8_lossy(&outside.stdout), String::from_utf8_lossy(&outside.stderr));
    println!("verify-psa-token.py: {said}");
    assert!(outside.status.success(), "the outside verifier refused the evidence: {said}");
}
