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
pub fn run_qemu(
    mut command: std::process::Command,
    timeout: std::time::Duration,
    done: impl Fn(&str) -> bool,
) -> QemuRun {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-aarch64 runs (Debian package qemu-system-arm)");
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
            Ok(chunk) => raw.extend_from_slice(&chunk),
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

#[cfg(test)]
mod tests {
    use super::printed;

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
}
