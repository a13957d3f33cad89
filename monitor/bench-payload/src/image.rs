//! Checks of the two bare-metal images before QEMU boots them: where their segments lie and where they are entered.
//!
//! The runner checks every image it is given, and tests/images.rs checks the images the build
//! makes. A secure image the monitor would not find (nothing loaded at the secure entry) or would
//! enter somewhere else makes the bench measure the refusal path while claiming the real one.

use object::{Architecture, Object, ObjectKind, ObjectSection, ObjectSegment};

use crate::{SECURE_ENTRY, SECURE_FOOTPRINT};

/// `wfe` (Arm ARM C6.2.xx, `HINT #2`): under `-icount` a core looping on it runs as a spin and
/// moves every figure (docs/monitor-bench.md, "All cores count").
pub const WFE: u32 = 0xd503_205f;
/// `wfi` (`HINT #3`).
pub const WFI: u32 = 0xd503_207f;

/// The parts of an image the checks look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub entry: u64,
    /// Loaded segments: address, size in memory.
    pub segments: Vec<(u64, u64)>,
    /// The first word at the lowest loaded address, if that segment has file data there.
    pub first_word: Option<u32>,
    /// The code (every executable section's bytes), as words.
    pub code: Vec<u32>,
}

/// Reads an AArch64 executable's layout; `what` names it in the message.
pub fn layout(bytes: &[u8], what: &str) -> Result<Layout, String> {
    let file = object::File::parse(bytes).map_err(|e| format!("{what} is not an ELF: {e}"))?;
    if file.architecture() != Architecture::Aarch64 {
        return Err(format!("{what} is not an AArch64 ELF (built for the host?)"));
    }
    if file.kind() != ObjectKind::Executable {
        return Err(format!("{what} is not an executable ELF ({:?})", file.kind()));
    }
    let segments: Vec<(u64, u64)> =
        file.segments().map(|s| (s.address(), s.size())).filter(|&(_, size)| size > 0).collect();
    let lowest = segments.iter().map(|s| s.0).min().ok_or(format!("{what} loads nothing"))?;
    let first_word = file
        .segments()
        .find_map(|s| s.data_range(lowest, 4).ok().flatten())
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")));
    let mut code = Vec::new();
    for section in file.sections().filter(|s| s.kind() == object::SectionKind::Text) {
        let data = section.data().map_err(|e| format!("{what}: section {:?}: {e}", section.name()))?;
        code.extend(data.chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().expect("four bytes"))));
    }
    Ok(Layout { entry: file.entry(), segments, first_word, code })
}

/// Every way `layout` would not serve as the bench's secure image, as sentences (none: it serves).
pub fn secure_image_problems(layout: &Layout) -> Vec<String> {
    let mut problems = Vec::new();
    if layout.entry != SECURE_ENTRY {
        problems.push(format!(
            "its entry is {:#x}, but the monitor enters a secure image at {SECURE_ENTRY:#x}",
            layout.entry
        ));
    }
    match layout.segments.iter().map(|s| s.0).min() {
        Some(SECURE_ENTRY) => {}
        Some(lowest) => {
            problems.push(format!("its lowest loaded address is {lowest:#x}, not the secure entry {SECURE_ENTRY:#x}"))
        }
        None => problems.push("it loads nothing".into()),
    }
    match layout.first_word {
        Some(0) | None => problems.push(format!(
            "its first word (at {SECURE_ENTRY:#x}) is zero or not in the file: the monitor would take the secure world for absent"
        )),
        Some(_) => {}
    }
    for &(address, size) in &layout.segments {
        let inside = address >= SECURE_ENTRY
            && address.checked_add(size).is_some_and(|end| end <= SECURE_ENTRY + SECURE_FOOTPRINT);
        if !inside {
            problems.push(format!(
                "a segment at {address:#x} ({size:#x} bytes) leaves its footprint {SECURE_ENTRY:#x}..{:#x}",
                SECURE_ENTRY + SECURE_FOOTPRINT
            ));
        }
    }
    if layout.code.contains(&WFE) {
        problems.push(
            "its code has a `wfe`: a core waiting in a wfe loop spins under QEMU and counts in every figure".into(),
        );
    }
    if !layout.code.contains(&WFI) {
        problems.push("its code has no `wfi` to idle in".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Layout {
        Layout {
            entry: SECURE_ENTRY,
            segments: vec![(SECURE_ENTRY, 0x2000), (SECURE_ENTRY + 0x2000, 0x4000)],
            first_word: Some(0xd503_201f),
            code: vec![0xd503_201f, 0xd400_0003, WFI, 0x17ff_ffff],
        }
    }

    #[test]
    fn an_image_at_the_secure_entry_that_idles_in_wfi_serves() {
        assert_eq!(secure_image_problems(&good()), Vec::<String>::new());
    }

    /// Spoils a good layout in one way, and a word of what the problem must say.
    type Case = (fn(&mut Layout), &'static str);

    #[test]
    fn every_way_the_monitor_would_miss_or_misread_it_is_named() {
        let cases: [Case; 6] = [
            (|l| l.entry += 4, "its entry is 0x70000004"),
            (|l| l.segments[0].0 = 0x7000_1000, "lowest loaded address is 0x70001000"),
            (|l| l.first_word = Some(0), "first word"),
            (|l| l.segments.push((SECURE_ENTRY + SECURE_FOOTPRINT - 8, 16)), "leaves its footprint"),
            (|l| l.code.push(WFE), "`wfe`"),
            (|l| l.code.retain(|&w| w != WFI), "no `wfi`"),
        ];
        for (spoil, said) in cases {
            let mut layout = good();
            spoil(&mut layout);
            let problems = secure_image_problems(&layout);
            assert!(problems.iter().any(|p| p.contains(said)), "{said}: {problems:?}");
        }
    }

    #[test]
    fn what_is_not_an_aarch64_executable_is_refused() {
        assert!(layout(b"not an elf", "SECURE=x").unwrap_err().starts_with("SECURE=x is not an ELF"));
        let host = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let refused = layout(&host, "SECURE=host").unwrap_err();
        assert!(refused.contains("not an AArch64 ELF") || refused.contains("not an ELF"), "{refused}");
    }
}
