//! Bad system descriptions get an error, never a panic: random edits of the project's system.xml.

use proptest::prelude::*;

const SYSTEM: &str = include_str!("../../../system.xml");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_system_never_panics(at in 0..SYSTEM.len(), cut in 0usize..40, insert in "[ -~]{0,12}") {
        let at = (0..=at).rev().find(|&i| SYSTEM.is_char_boundary(i)).unwrap_or(0);
        let end = (at + cut..=SYSTEM.len()).find(|&i| SYSTEM.is_char_boundary(i)).unwrap_or(SYSTEM.len());
        let text = format!("{}{}{}", &SYSTEM[..at], insert, &SYSTEM[end..]);
        if let Ok(system) = tzmk_sdf::parse_system("m.xml", &text) {
            let platform = tzmk_sdf::Platform::qemu_virt();
            let _ = tzmk_sdf::audit(&system, &platform);
            let _ = tzmk_sdf::report::authority(&system, &platform).to_text();
            let _ = tzmk_sdf::report::to_dot(&system, &platform);
        }
    }

    #[test]
    fn numbers_never_panic(value in "[-0-9a-fx_]{0,24}") {
        let text = SYSTEM.replace("size=\"0x1000\" phys_addr=\"0xfe000000\"", &format!("size=\"{value}\" phys_addr=\"{value}\""));
        let _ = tzmk_sdf::parse_system("n.xml", &text);
    }
}
