//! `make -f build.mk run` as a user uses it: the real system boots to a shell on the console, the
//! user types `tzctl list` and `tzctl echo --count 100`, reads the answers, and quits with
//! `poweroff`. With `TZMK_RUN_PORT` (make -f build.mk scaffold), also `tzctl echo PORT` on the
//! port a PD made by `tzmk new-pd` serves.
//!
//! Ignored by plain `cargo test`: `make -f build.mk run-test` builds the images and runs it, with
//! `TZMK_RUN` naming the command that boots them (the same `make ... run-qemu` that `make run`
//! ends in).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PROMPT: &str = "tzmk# ";
const BOOT: Duration = Duration::from_secs(240);
const ANSWER: Duration = Duration::from_secs(120);

/// The console so far, and a way to wait for text on it.
struct Console {
    text: String,
    chunks: mpsc::Receiver<Vec<u8>>,
}

impl Console {
    /// Waits until `want` appears after byte `from`, or `timeout` passes; the console after `from`.
    fn wait_for(&mut self, from: usize, want: &str, timeout: Duration) -> Result<String, String> {
        let started = Instant::now();
        loop {
            if let Some(at) = self.text[from..].find(want) {
                return Ok(self.text[from..from + at + want.len()].to_owned());
            }
            let left = timeout
                .checked_sub(started.elapsed())
                .ok_or_else(|| format!("no {want:?} within {timeout:?}; the console:\n{}", self.text))?;
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.text.push_str(&String::from_utf8_lossy(&chunk).replace('\r', "")),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("QEMU exited before {want:?}; the console:\n{}", self.text))
                }
            }
        }
    }
}

#[test]
#[ignore = "needs the images of make run: run `make -f build.mk run-test`"]
fn a_user_boots_to_a_shell_runs_tzctl_and_quits() {
    let command = std::env::var("TZMK_RUN").expect("TZMK_RUN names the command that boots the system");
    use std::os::unix::process::CommandExt;
    // A process group of its own: make, cargo and QEMU under it all end with it.
    let mut child = Command::new("sh")
        .args(["-c", &command])
        .process_group(0)
        .current_dir(tzmk_tests::workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the run command starts");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, chunks) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut console = Console { text: String::new(), chunks };
    let mut stdin = child.stdin.take().unwrap();
    let result = (|| -> Result<(), String> {
        console.wait_for(0, PROMPT, BOOT)?;
        let mut type_line = |console: &mut Console, line: &str| -> Result<String, String> {
            let from = console.text.len();
            stdin.write_all(format!("{line}\n").as_bytes()).map_err(|e| e.to_string())?;
            stdin.flush().map_err(|e| e.to_string())?;
            // The shell echoes the line, the command answers, the prompt comes back.
            let echoed = console.wait_for(from, line, ANSWER)?;
            let answer = console.wait_for(from + echoed.len(), PROMPT, ANSWER)?;
            Ok(answer)
        };
        let list = type_line(&mut console, "tzctl list")?;
        for port in ["echo", "echo-small", "echo-bulk", "sink", "attestation", "rt"] {
            if !list.lines().any(|l| l.split_whitespace().nth(1) == Some(port)) {
                return Err(format!("tzctl list shows no port {port}:\n{list}"));
            }
        }
        let echo = type_line(&mut console, "tzctl echo --count 100")?;
        if !echo.contains("100 messages of 64 B, 0 checksum mismatches") {
            return Err(format!("tzctl echo did not check out:\n{echo}"));
        }
        // A port a scaffolded PD serves (make -f build.mk scaffold boots that secure image).
        if let Ok(port) = std::env::var("TZMK_RUN_PORT") {
            if !list.lines().any(|l| l.split_whitespace().nth(1) == Some(&port) && l.contains("forward")) {
                return Err(format!("tzctl list shows no forwarded port {port}:\n{list}"));
            }
            let echo = type_line(&mut console, &format!("tzctl echo {port} --count 100 --size 1000"))?;
            let want = "100 messages of 1000 B, 0 checksum mismatches; the secure side counted 100 messages, 100000 B";
            if !echo.contains(want) {
                return Err(format!("tzctl echo {port} did not check out:\n{echo}"));
            }
        }
        let from = console.text.len();
        stdin.write_all(b"poweroff\n").map_err(|e| e.to_string())?;
        console.wait_for(from, "reboot: Power down", ANSWER)?;
        Ok(())
    })();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            kill_group(child.id());
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever happened, nothing of the run outlives the test (an orphaned QEMU would run on).
    kill_group(child.id());
    println!("---- console ----\n{}\n---- end ----", console.text);
    result.unwrap();
    assert!(status.is_some_and(|s| s.success()), "QEMU did not exit by itself after poweroff: {status:?}");
}

/// SIGKILL to the process group led by `leader`.
fn kill_group(leader: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{leader}")]).status();
}
