//! Shared helpers for tzmk's cross-crate tests.

use std::path::PathBuf;

/// The workspace root (where system.xml lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace root").to_path_buf()
}

/// What a QEMU run printed on its first serial port, and how it ended.
#[derive(Debug)]
pub struct QemuRun {
    /// The console with carriage returns removed.
    pub console: String,
    /// QEMU's exit status, if it exited by itself (a guest power-off exits 0).
    pub exit: Option<std::process::ExitStatus>,
    pub timed_out: bool,
}

/// Runs QEMU (stdout is its first serial port) until it exits, `done` says the console holds
/// everything wanted, or `timeout` passes; QEMU is killed if it is still running.
pub fn run_qemu(command: std::process::Command, timeout: std::time::Duration, done: impl Fn(&str) -> bool) -> QemuRun {
    run_qemu_answering(command, timeout, done, |_| None)
}

/// [`run_qemu`], typing on the console: after each chunk of output, `answer` sees the console so
/// far and may return bytes for QEMU's standard input (UART0's receive side).
pub fn run_qemu_answering(
    mut command: std::process::Command,
    timeout: std::time::Duration,
    done: impl Fn(&str) -> bool,
    mut answer: impl FnMut(&str) -> Option<Vec<u8>>,
) -> QemuRun {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-aarch64 runs (Debian package qemu-system-arm)");
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut raw = Vec::new();
    let mut exit = None;
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(chunk) => {
                raw.extend_from_slice(&chunk);
                if let Some(bytes) = answer(&String::from_utf8_lossy(&raw)) {
                    if let Some(input) = stdin.as_mut() {
                        // QEMU reads its standard input only as fast as the UART takes it.
                        let _ = input.write_all(&bytes).and_then(|()| input.flush());
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                exit = child.wait().ok();
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if done(&String::from_utf8_lossy(&raw)) || started.elapsed() > timeout {
            break;
        }
    }
    let timed_out = exit.is_none() && started.elapsed() > timeout;
    if exit.is_none() {
        // Let the last line finish, then stop QEMU.
        while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            raw.extend_from_slice(&chunk);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(stdin);
    QemuRun { console: String::from_utf8_lossy(&raw).replace('\r', ""), exit, timed_out }
}

/// Whether `line` was printed, even if another writer's characters got in between: the PDs on
/// seL4's core print one character per system call, and a PD whose budget runs out mid-line is
/// interleaved with the next, or a whole line of another PD lands inside it
/// (docs/qemu-and-sel4-facts.md). Matches `line`'s characters in order, within a stretch of the
/// console of twice `line`'s length plus room for two other lines.
pub fn printed(console: &str, line: &str) -> bool {
    const OTHER_LINE: usize = 120;
    let (console, line) = (console.as_bytes(), line.as_bytes());
    let Some(&first) = line.first() else { return true };
    let span = 2 * line.len() + 2 * OTHER_LINE;
    (0..console.len()).filter(|&start| console[start] == first).any(|start| {
        let window = &console[start..console.len().min(start + span)];
        let mut wanted = line.iter().peekable();
        for byte in window {
            if wanted.peek() == Some(&byte) {
                wanted.next();
            }
        }
        wanted.peek().is_none()
    })
}

/// Reads a line printed like [`printed`] finds it (other writers' characters may be in between)
/// whose `{}` holes are decimal numbers: the numbers of the first such line, in order. A hole
/// takes the run of digits that starts at the first digit after the text before it.
pub fn printed_numbers(console: &str, pattern: &str) -> Option<Vec<u64>> {
    const OTHER_LINE: usize = 120;
    let parts: Vec<&[u8]> = pattern.split("{}").map(str::as_bytes).collect();
    let console = console.as_bytes();
    let first = *parts.first()?.first()?;
    let span = 2 * (pattern.len() + 20 * (parts.len() - 1)) + 2 * OTHER_LINE;
    (0..console.len()).filter(|&start| console[start] == first).find_map(|start| {
        let window = &console[start..console.len().min(start + span)];
        let mut at = 0;
        let mut numbers = Vec::new();
        for (index, part) in parts.iter().enumerate() {
            for &wanted in part.iter() {
                at += window[at..].iter().position(|&b| b == wanted)? + 1;
            }
            if index + 1 < parts.len() {
                at += window[at..].iter().position(u8::is_ascii_digit)?;
                let digits = window[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                numbers.push(std::str::from_utf8(&window[at..at + digits]).ok()?.parse().ok()?);
                at += digits;
            }
        }
        Some(numbers)
    })
}

/// comm-pd's one report of rt-task's statistics on seL4's console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtReport {
    pub periods: u64,
    pub period_us: u64,
    pub overruns: u64,
    pub max_lateness_us: u64,
}

/// The line comm-pd logs once rt-task has completed `tzmk_interface::rt::RT_REPORT_EVERY` periods.
pub const RT_REPORT: &str =
    "comm-pd: INFO: rt-task reports {} periods of {} us, {} overruns, max release lateness {} us";

impl RtReport {
    /// The report on `console`, if comm-pd printed it.
    pub fn find(console: &str) -> Option<RtReport> {
        let n = printed_numbers(console, RT_REPORT)?;
        Some(RtReport { periods: n[0], period_us: n[1], overruns: n[2], max_lateness_us: n[3] })
    }

    /// What must hold of any report, however busy the machine was: comm-pd reports after at least
    /// `report_every` periods of `period_us`, and no more periods overran than ran. (The exact
    /// count and the overruns are timing: a loaded host delays the secure core's release.)
    pub fn problems(&self, report_every: u64, period_us: u64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.periods < report_every {
            problems.push(format!("{} periods reported, comm-pd reports after {report_every}", self.periods));
        }
        if self.period_us != period_us {
            problems.push(format!("a period of {} us, rt-task's is {period_us} us", self.period_us));
        }
        if self.overruns > self.periods {
            problems.push(format!("{} overruns in {} periods", self.overruns, self.periods));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::{printed, printed_numbers, RtReport};

    #[test]
    fn interleaved_lines_are_found() {
        let console = "rattestation-pd: INFO: ready: ok\nt-task: INFO: ready: period\n";
        assert!(printed(console, "rt-task: INFO: ready"));
        assert!(printed(console, "attestation-pd: INFO: ready"));
        assert!(printed("attestation-pd:rt-task: INFO: ready\n INFO: go: yes", "attestation-pd: INFO: go"));
        assert!(!printed(console, "comm-pd: INFO: ready"));
        let whole_line_inside = "rt-task: INFO: ready: period 1000 us (channcomm-pd: INFO: ready: 6 ports, attestation-pd interface v1, kick on channel 0\nel 1)";
        assert!(printed(whole_line_inside, "rt-task: INFO: ready: period 1000 us (channel 1)"));
        // Scattered far apart is not a line.
        let far = format!("rt-task{}: INFO: ready", "x".repeat(400));
        assert!(!printed(&far, "rt-task: INFO: ready"));
    }

    #[test]
    fn rt_reports_are_read_whatever_the_timing() {
        // The line a busy two-core host printed, which a test waiting for "1000 periods" missed.
        let busy = "comm-pd: INFO: rt-task reports 1001 periods of 1000 us, 48 overruns, max release lateness 870 us\n";
        let report = RtReport::find(busy).expect("the report is read");
        assert_eq!(report, RtReport { periods: 1001, period_us: 1000, overruns: 48, max_lateness_us: 870 });
        assert!(report.problems(1000, 1000).is_empty());
        // Interleaved with another PD's characters.
        let interleaved = "comm-pd: INFO: rt-task rerttt-task: INFO: ready\nports 1000 periods of 1000 us, 0 overruns, max release lateness 3 us";
        assert_eq!(RtReport::find(interleaved).map(|r| r.periods), Some(1000));
        // Insane figures are refused, each with its reason.
        let insane = RtReport { periods: 10, period_us: 5, overruns: 11, max_lateness_us: 0 };
        assert_eq!(insane.problems(1000, 1000).len(), 3);
        assert!(RtReport::find("comm-pd: INFO: rt-task reports periods").is_none());
        assert_eq!(printed_numbers("a 12 b 345 c", "a {} b {} c"), Some(vec![12, 345]));
    }
}
