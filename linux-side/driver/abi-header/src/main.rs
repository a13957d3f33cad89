//! Prints `tzmk_abi.h` to standard output (build.mk writes it beside the driver's sources).

fn main() {
    print!("{}", tzmk_abi_header::header());
}
