//! The picture of system.xml in README.md (docs/system.dot, rendered to docs/system.svg) is what
//! `tzmk audit --dot` draws today: regenerate it with `make -f build.mk picture` after editing
//! system.xml.

use std::fs;
use tzmk_sdf::Platform;

#[test]
fn committed_picture_matches_system_xml() {
    let root = tzmk_tests::workspace_root();
    let text = fs::read_to_string(root.join("system.xml")).expect("system.xml");
    let system = tzmk_sdf::parse_system("system.xml", &text).expect("system.xml parses");
    let drawn = tzmk_sdf::report::to_dot(&system, &Platform::qemu_virt());
    let committed = fs::read_to_string(root.join("docs/system.dot")).expect("docs/system.dot");
    assert!(drawn == committed, "docs/system.dot is stale: run `make -f build.mk picture` and commit the result");
    let svg = fs::read_to_string(root.join("docs/system.svg")).expect("docs/system.svg");
    assert!(svg.contains("<svg") && svg.contains("comm&#45;pd"), "docs/system.svg is not the rendered picture");
}
