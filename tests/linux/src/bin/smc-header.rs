//! Prints `tzmk_smc.h` (the SiP function ids, UID and status codes as C `#define`s) to stdout.

fn main() {
    print!("{}", tzmk_linux_guest::smc_header());
}
