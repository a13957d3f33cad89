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
