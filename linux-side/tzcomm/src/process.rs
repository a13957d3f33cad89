//! Process conventions every tzmk command-line program follows.

use nix::sys::signal::{signal, SigHandler, Signal};

/// Gives SIGPIPE back its default action, so that a program whose standard output is a closed
/// pipe (`tzctl list | head -1`) ends quietly, killed by SIGPIPE as `cat` or `ls` would be (the
/// shell reports status 141), instead of panicking with "failed printing to stdout: Broken
/// pipe". Rust's runtime ignores SIGPIPE before `main` (so that a write returns EPIPE); a program
/// that never writes to a pipe it cares to survive (no server here does) wants the default back.
/// Call it first thing in `main`.
///
/// The stable alternatives were considered: `-Zon-broken-pipe=kill` and `#[unix_sigpipe]` are
/// unstable, and checking every `println!` would put the same policy in hundreds of places.
pub fn default_sigpipe() {
    // SAFETY: SIG_DFL installs no handler, so no Rust code runs in signal context; called at the
    // start of `main`, before any thread that could race on the signal disposition exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
