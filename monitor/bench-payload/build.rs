//! The two images' linker scripts and platform constants.
//!
//! The payload is linked from one address, `TZMK_BENCH_PAYLOAD_BASE` (default 0xc020_0000: 2 MiB
//! into the normal world's RAM, where Linux's Image would go). The secure image (`bench-secure`)
//! is linked at the platform's `secure_entry` (0x7000_0000), where the monitor looks for a secure
//! image and enters it: no setting moves it, since the monitor would not follow. The UARTs, the
//! GIC distributor and both worlds' RAM come from the platform description
//! (monitor/platform/qemu-virt.toml, through tzmk-sdf).
//!
//! Every build, host or bare metal, gets `layout.rs` (the secure image's addresses, which the
//! runner and the tests check too); bare-metal builds also get the linker scripts and the
//! payload's `platform.rs`.
use std::fmt::Write as _;
use std::path::Path;

use tzmk_sdf::platform::{Platform, RangeUse, World};

const DEFAULT_BASE: u64 = 0xc020_0000;
const ALIGNMENT: u64 = 2 << 20;
/// Room the payload may take from its base: its image, its stack and its .bss.
const FOOTPRINT: u64 = 1 << 20;
/// Room the secure image may take from the secure entry: its image and its stack.
const SECURE_FOOTPRINT: u64 = 64 << 10;
/// The secure image's stack, used only to report a failure.
const SECURE_STACK: u64 = 16 << 10;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TZMK_BENCH_PAYLOAD_BASE");
    let platform = Platform::qemu_virt();
    let system_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml");
    println!("cargo:rerun-if-changed={}", system_path.display());
    let system = tzmk_sdf::load_system(&system_path).unwrap_or_else(|e| panic!("{}: {e}", system_path.display()));
    let partition = tzmk_sdf::partition::Partition::compute(&system, &platform)
        .unwrap_or_else(|e| panic!("system.xml against the platform: {e}"));
    let manifest_update = partition.manifest_update.expect("system.xml names the manifest_update region");
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let secure_entry = secure_layout(&platform, (manifest_update.base, manifest_update.size), &out_dir);
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    secure_linker_script(secure_entry, &out_dir);
    let normal_ram = platform
        .ranges
        .iter()
        .find(|r| r.world == World::Normal && r.use_ == RangeUse::Linux)
        .expect("the platform names the normal world's own RAM");
    let normal_ram = normal_ram.base..normal_ram.end();
    let uart = platform.range_named("uart0").expect("the platform names uart0, the normal world's console");
    assert!(uart.world == World::Normal, "uart0 must be the normal world's");
    let base = match std::env::var("TZMK_BENCH_PAYLOAD_BASE") {
        Ok(text) => parse_address(&text)
            .unwrap_or_else(|| panic!("TZMK_BENCH_PAYLOAD_BASE={text:?} is not an address (0x... or decimal)")),
        Err(_) => DEFAULT_BASE,
    };
    assert!(base % ALIGNMENT == 0, "TZMK_BENCH_PAYLOAD_BASE={base:#x} is not 2 MiB aligned");
    assert!(
        normal_ram.contains(&base) && base + FOOTPRINT <= normal_ram.end,
        "TZMK_BENCH_PAYLOAD_BASE={base:#x}: the payload must lie in the normal world's RAM {:#x}..{:#x}",
        normal_ram.start,
        normal_ram.end
    );
    // The payload zeroes its .bss itself (boot.rs): it names the bounds.
    let bss =
        "__bss_start = .;\n        *(.bss .bss.*)\n        *(COMMON)\n        . = ALIGN(16);\n        __bss_end = .;";
    linker_script("bench-payload", base, 0x10000, FOOTPRINT, bss, "", out_dir.as_path());
    let constants = format!(
        "/// The normal world's PL011 UART0 (platform range `uart0`).\npub const UART0_BASE: usize = {:#x};\n",
        uart.base
    );
    std::fs::write(out_dir.join("platform.rs"), constants).expect("OUT_DIR is writable");
}

/// Writes `layout.rs` (for the library, on every target) and returns the secure entry.
fn secure_layout(platform: &Platform, manifest_update: (u64, u64), out_dir: &Path) -> u64 {
    let entry = platform.boot.secure_entry;
    let kernel_ram = platform
        .range_containing(entry, SECURE_FOOTPRINT)
        .filter(|r| r.world == World::Secure && r.use_ == RangeUse::Kernel)
        .expect("the secure entry and the secure image's footprint lie in the secure kernel's RAM");
    // The update bench's flag: the word just past the secure image's footprint, still in the
    // secure kernel's RAM, outside anything stage 1 hashes (only the image's own bytes).
    let flag = entry + SECURE_FOOTPRINT;
    assert!(flag + 4 <= kernel_ram.end(), "the update bench's flag lies in the secure kernel's RAM");
    let named = |name: &str| {
        let range = platform.range_named(name).unwrap_or_else(|| panic!("the platform names {name}"));
        assert!(range.world == World::Secure, "{name} must be the secure world's");
        range.base
    };
    let text = format!(
        "/// Where the monitor enters a secure image at S-EL1 (the platform's `secure_entry`), and where\n\
         /// `bench-secure` is linked.\n\
         pub const SECURE_ENTRY: u64 = {entry:#x};\n\
         /// Bytes from [`SECURE_ENTRY`] that `bench-secure` may take (image and stack), inside the\n\
         /// secure kernel's RAM {:#x}..{:#x}.\n\
         pub const SECURE_FOOTPRINT: u64 = {SECURE_FOOTPRINT:#x};\n\
         /// The GICv2 distributor (platform range `gic-distributor`); GICD_CTLR is its first word.\n\
         pub const GIC_DISTRIBUTOR_BASE: u64 = {:#x};\n\
         /// The secure PL011 UART (platform range `secure-uart`), the monitor's log.\n\
         pub const SECURE_UART_BASE: u64 = {:#x};\n\
         /// The word `bench-secure` reads to run the update bench ([`UPDATE_BENCH_MAGIC`]), just\n\
         /// past its footprint; the runner's loader writes it.\n\
         pub const UPDATE_BENCH_FLAG: u64 = {flag:#x};\n\
         /// system.xml's `manifest_update` region (secure RAM): where an `UPDATE_MANIFEST` candidate\n\
         /// lies, and its size.\n\
         pub const MANIFEST_UPDATE_BASE: u64 = {:#x};\n\
         pub const MANIFEST_UPDATE_SIZE: u64 = {:#x};\n\
         /// The manifest's slot A in secure flash (physical: the flash bank is at 0), where\n\
         /// `tzmk flash` puts the manifest the bench boots.\n\
         pub const MANIFEST_SLOT_A: u64 = {:#x};\n",
        kernel_ram.base,
        kernel_ram.end(),
        named("gic-distributor"),
        named("secure-uart"),
        manifest_update.0,
        manifest_update.1,
        platform.manifest_slots()[0],
    );
    std::fs::write(out_dir.join("layout.rs"), text).expect("OUT_DIR is writable");
    entry
}

/// A bare-metal binary's linker script, `OUT_DIR/<bin>.ld`, passed to that binary's link: `_start`
/// first at `base`, then .rodata, .data, .bss (its `bss` lines; `after_bss` follows the section),
/// a `stack`-byte stack with `__stack_top` above it, everything within `footprint` bytes.
fn linker_script(bin: &str, base: u64, stack: u64, footprint: u64, bss: &str, after_bss: &str, out_dir: &Path) {
    let mut script = String::new();
    writeln!(script, "/* Generated by monitor/bench-payload/build.rs. */").unwrap();
    write!(
        script,
        r#"ENTRY(_start)
SECTIONS
{{
    . = {base:#x};
    .text : {{
        KEEP(*(.text.entry))
        *(.text .text.*)
    }}
    .rodata : {{ *(.rodata .rodata.*) }}
    .data : {{ *(.data .data.*) *(.got .got.*) }}
    .bss (NOLOAD) : ALIGN(16) {{
        {bss}
    }}
    {after_bss}
    .stack (NOLOAD) : ALIGN(16) {{
        . += {stack:#x};
        __stack_top = .;
    }}
    __image_end = .;
    ASSERT(__image_end - {base:#x} <= {footprint:#x}, "{bin} outgrew its footprint")
    /DISCARD/ : {{ *(.comment) *(.note .note.*) *(.eh_frame .eh_frame_hdr) }}
}}
"#
    )
    .unwrap();
    let path = out_dir.join(format!("{bin}.ld"));
    std::fs::write(&path, script).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-arg-bin={bin}=-T{}", path.display());
}

/// The secure image's linker script: `_start` first, at the secure entry; no .bss (nothing
/// would zero it).
fn secure_linker_script(entry: u64, out_dir: &Path) {
    let no_bss = r#"ASSERT(SIZEOF(.bss) == 0, "bench-secure has no .bss: nothing would zero it")"#;
    linker_script(
        "bench-secure",
        entry,
        SECURE_STACK,
        SECURE_FOOTPRINT,
        "*(.bss .bss.*)\n        *(COMMON)",
        no_bss,
        out_dir,
    );
}

fn parse_address(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}
