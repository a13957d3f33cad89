//! A host executable for negative tests of the PD image checker (tests/pd_images.rs).
fn main() {}
