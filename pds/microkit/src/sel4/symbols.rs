//! The six symbols the microkit tool patches into every PD image (it panics if one is missing).
//!
//! Microkit 2.3.0 `tool/microkit/src/symbols.rs` writes `microkit_name` (the PD name, at most 64
//! bytes, no terminator added), `microkit_passive` (one byte, 0 or 1) and four little-endian u64
//! channel masks. libmicrokit declares them as `char[64]`, `bool` and `seL4_Word`. Here they live
//! in `.data` so they have file bytes in a loaded segment, are `#[used]` so they survive until the
//! linker (whose script keeps `.data`), and are only ever read volatile: the tool changes them after
//! the compiler has seen their initial values.

// The symbol names are libmicrokit's ABI.
#![allow(non_upper_case_globals)]

use core::cell::{OnceCell, UnsafeCell};
use core::ptr;

use super::PdLocal;

/// A value the microkit tool overwrites in the ELF image; the PD itself never writes it.
#[repr(transparent)]
pub(super) struct Patched<T>(UnsafeCell<T>);

// SAFETY: nothing in the PD writes a `Patched` value (there is no method that does), so shared
// references from any thread only ever read.
unsafe impl<T> Sync for Patched<T> {}

impl<T: Copy> Patched<T> {
    const fn new(initial: T) -> Self {
        Self(UnsafeCell::new(initial))
    }

    pub fn read(&self) -> T {
        // SAFETY: the pointer comes from a live static, is aligned for T, and is never written
        // while the PD runs (the tool writes the image before the PD starts).
        unsafe { ptr::read_volatile(self.0.get()) }
    }
}

/// `MICROKIT_PD_NAME_LENGTH`.
pub(super) const NAME_LENGTH: usize = 64;

#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
#[used]
static microkit_name: Patched<[u8; NAME_LENGTH]> = Patched::new([0; NAME_LENGTH]);

#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
#[used]
static microkit_passive: Patched<u8> = Patched::new(0);

#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
#[used]
static microkit_irqs: Patched<u64> = Patched::new(0);

#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
#[used]
static microkit_notifications: Patched<u64> = Patched::new(0);

#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
#[used]
static microkit_pps: Patched<u64> = Patched::new(0);

/// x86 I/O ports; never set on AArch64 but required by the tool all the same.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
#[used]
static microkit_ioports: Patched<u64> = Patched::new(0);

/// The PD name, copied once out of `microkit_name` so that `&'static str`s can point at it.
static NAME: PdLocal<OnceCell<[u8; NAME_LENGTH]>> = PdLocal::new(OnceCell::new());

/// This PD's name from system.xml, up to the first NUL (and to the last whole UTF-8 character,
/// should the tool's 64-byte truncation have split one).
pub(super) fn name() -> &'static str {
    let bytes = NAME.get().get_or_init(|| microkit_name.read());
    let length = bytes.iter().position(|&byte| byte == 0).unwrap_or(NAME_LENGTH);
    match core::str::from_utf8(&bytes[..length]) {
        Ok(name) => name,
        // `valid_up_to` is the length of the longest valid prefix, so this cannot fail.
        Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default(),
    }
}

/// Whether system.xml marks this PD `passive="true"`.
pub(super) fn is_passive() -> bool {
    microkit_passive.read() != 0
}

/// Channels that deliver an IRQ to this PD (bit n: channel n).
pub(super) fn irq_channels() -> u64 {
    microkit_irqs.read()
}

/// Channels this PD may notify.
pub(super) fn notification_channels() -> u64 {
    microkit_notifications.read()
}

/// Channels this PD may call protected procedures through.
pub(super) fn pp_channels() -> u64 {
    microkit_pps.read()
}
