//! Prints `tzmk_probe.h` (the test module's own two constants as C `#define`s) to stdout.

fn main() {
    tzcomm::process::default_sigpipe();
    print!("{}", tzmk_linux_guest::probe_header());
}
