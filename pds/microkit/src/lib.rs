//! tzmk's Microkit runtime: write a protection domain once, run it on seL4 or in `tzmk sim`.
//!
//! The API mirrors rust-sel4's `sel4-microkit` (which cannot be fetched by CI) so that PD code reads
//! the same: a [`Handler`] with `notified`/`protected`/`fault`, [`Channel`]s that `notify`, `irq_ack`
//! and `pp_call`, [`MessageInfo`] plus message registers, and symbols patched by the microkit tool.
//!
//! Two backends sit behind it, chosen by target:
//! - `target_os = "none"` (aarch64-unknown-none): binary compatible with libmicrokit 2.3.0 on seL4
//!   16.0.0 (entry, cap slots, event loop, the six mandatory symbols). See `src/sel4/`.
//! - any hosted target: the host backend driven by the simulator, one thread per PD. See `src/host/`.
//!
//! Every id, address and size a PD needs is bound through a `setvar_*` symbol named in system.xml
//! ([`var!`], [`channel!`], [`memory_region!`]): system.xml stays the one source of truth.
#![cfg_attr(target_os = "none", no_std)]

use core::fmt;

#[cfg(target_os = "none")]
#[path = "sel4/mod.rs"]
mod backend;

#[cfg(not(target_os = "none"))]
#[path = "host/mod.rs"]
mod backend;

#[cfg(not(target_os = "none"))]
pub use backend::sim;

pub mod logger;
pub mod port_server;

/// The counter and the EL1 physical timer (Arm ARM D11, "The Generic Timer"), which seL4 exports
/// to PDs on the qemu_virt boards. A PD that claims `<irq irq="30">` gets the timer's interrupt
/// on the channel system.xml gives it; in the simulator the timer is modelled by the kernel.
pub mod timer {
    /// The counter (`CNTPCT_EL0`), in ticks of [`frequency`].
    pub fn now() -> u64 {
        crate::backend::timer_now()
    }

    /// Ticks per second (`CNTFRQ_EL0`; 62.5 MHz on QEMU virt).
    pub fn frequency() -> u64 {
        crate::backend::timer_frequency()
    }

    /// Raises the timer interrupt once the counter reaches `deadline` (in ticks).
    pub fn set_deadline(deadline: u64) {
        crate::backend::timer_set(Some(deadline))
    }

    /// Disarms the timer.
    pub fn cancel() {
        crate::backend::timer_set(None)
    }

    /// Converts microseconds to ticks.
    pub fn ticks_from_micros(micros: u64) -> u64 {
        (u128::from(micros) * u128::from(frequency()) / 1_000_000) as u64
    }

    /// Converts ticks to nanoseconds.
    pub fn nanos_from_ticks(ticks: u64) -> u64 {
        (u128::from(ticks) * 1_000_000_000 / u128::from(frequency().max(1))) as u64
    }
}

/// Numbers of the seL4 ABI that differ between SDK configurations or boards, in one place so that
/// `make -f build.mk image` can check them against the SDK it uses (tests/sdk_constants.rs).
/// docs/sel4-abi.md explains each.
pub mod sel4_abi {
    /// Invocation labels the runtime sends.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Labels {
        /// `IRQAckIRQ`, for `irq_ack`.
        pub irq_ack_irq: u64,
        /// `ARMSMCCall`, for `smc_call`.
        pub arm_smc_call: u64,
    }

    /// The SDK's `release` configuration (MCS, non-SMP).
    pub const RELEASE: Labels = Labels { irq_ack_irq: 27, arm_smc_call: 43 };
    /// The SDK's `debug` configuration, which adds `CONFIG_HARDWARE_DEBUG_API`'s four TCB methods.
    pub const DEBUG: Labels = Labels { irq_ack_irq: 31, arm_smc_call: 47 };
    /// The labels this build uses (the `debug` feature selects the debug configuration).
    pub const LABELS: Labels = if cfg!(feature = "debug") { DEBUG } else { RELEASE };

    /// The last user address of seL4 16.0.0 on AArch64 without hypervisor support (board
    /// qemu_virt_aarch64_el1); the IPC buffer is the page that ends there.
    pub const USER_TOP: u64 = 0x7fff_ffff_ffff;
    pub const IPC_BUFFER: u64 = USER_TOP & !0xfff;
}

/// Channel and IRQ ids are 0..=61 (Microkit's `PD_MAX_ID`).
pub const MAX_CHANNEL_ID: usize = 61;
/// Message registers in an IPC buffer (`seL4_MsgMaxLength`).
pub const MAX_MESSAGE_REGISTERS: usize = 120;

/// A channel (or IRQ) end of this PD, as numbered by system.xml's `id` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Channel {
    index: usize,
}

impl Channel {
    /// The channel with this id. Ids come from system.xml through [`channel!`]; use this directly
    /// only in tests.
    pub const fn new(index: usize) -> Self {
        assert!(index <= MAX_CHANNEL_ID, "Microkit channel ids are 0..=61");
        Self { index }
    }

    pub const fn index(&self) -> usize {
        self.index
    }

    /// Signals the PD at the other end (`microkit_notify`).
    pub fn notify(self) {
        backend::notify(self.index)
    }

    /// Re-enables the IRQ delivered on this channel (`microkit_irq_ack`).
    pub fn irq_ack(self) -> Result<(), IrqAckError> {
        backend::irq_ack(self.index)
    }

    /// Calls the protected procedure at the other end and waits for its reply (`microkit_ppcall`).
    /// The message registers carry the arguments in and the results out.
    pub fn pp_call(self, msg_info: MessageInfo) -> MessageInfo {
        backend::pp_call(self.index, msg_info)
    }

    /// Notifies when this PD next waits for events, saving a system call
    /// (`microkit_deferred_notify`). Only one deferred action may be outstanding.
    pub fn defer_notify(self) -> Result<(), DeferredActionSlotFull> {
        backend::defer(DeferredAction::Notify(self.index))
    }

    /// Acknowledges the IRQ when this PD next waits for events (`microkit_deferred_irq_ack`).
    pub fn defer_irq_ack(self) -> Result<(), DeferredActionSlotFull> {
        backend::defer(DeferredAction::IrqAck(self.index))
    }
}

/// The channels that were signalled together in one wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelSet(u64);

impl ChannelSet {
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits & ((1 << (MAX_CHANNEL_ID + 1)) - 1))
    }

    pub const fn bits(&self) -> u64 {
        self.0
    }

    pub const fn contains(&self, channel: Channel) -> bool {
        self.0 & (1 << channel.index) != 0
    }

    pub const fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The channels in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = Channel> {
        let bits = self.0;
        (0..=MAX_CHANNEL_ID).filter(move |i| bits & (1 << i) != 0).map(Channel::new)
    }
}

/// A child PD, as numbered by the `id` of a nested `<protection_domain>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    index: usize,
}

impl Child {
    pub const fn new(index: usize) -> Self {
        Self { index }
    }

    pub const fn index(&self) -> usize {
        self.index
    }
}

/// seL4's message info word: a label and a count of message registers.
///
/// Layout (seL4 manual, "Message Info"): `label << 12 | caps_unwrapped << 9 | extra_caps << 7 | length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    word: u64,
}

impl MessageInfo {
    const LENGTH_BITS: u32 = 7;
    const LABEL_SHIFT: u32 = 12;
    /// Labels are 52 bits wide on 64-bit seL4.
    pub const MAX_LABEL: u64 = (1 << 52) - 1;

    /// `count` is clamped to [`MAX_MESSAGE_REGISTERS`] and `label` to 52 bits, as seL4 does.
    pub const fn new(label: u64, count: usize) -> Self {
        let count = if count > MAX_MESSAGE_REGISTERS { MAX_MESSAGE_REGISTERS } else { count };
        Self { word: ((label & Self::MAX_LABEL) << Self::LABEL_SHIFT) | count as u64 }
    }

    pub const fn label(&self) -> u64 {
        self.word >> Self::LABEL_SHIFT
    }

    pub const fn count(&self) -> usize {
        let count = (self.word & ((1 << Self::LENGTH_BITS) - 1)) as usize;
        if count > MAX_MESSAGE_REGISTERS {
            MAX_MESSAGE_REGISTERS
        } else {
            count
        }
    }

    /// The raw word as seL4 passes it in a register.
    pub const fn into_word(self) -> u64 {
        self.word
    }

    pub const fn from_word(word: u64) -> Self {
        Self { word }
    }
}

/// Reads the message registers of this PD's IPC buffer.
pub fn with_msg_regs<T>(f: impl FnOnce(&[u64; MAX_MESSAGE_REGISTERS]) -> T) -> T {
    backend::with_msg_regs(f)
}

/// Writes the message registers of this PD's IPC buffer.
pub fn with_msg_regs_mut<T>(f: impl FnOnce(&mut [u64; MAX_MESSAGE_REGISTERS]) -> T) -> T {
    backend::with_msg_regs_mut(f)
}

/// Message register `index` (`microkit_mr_get`). Panics if `index` is out of range.
pub fn get_mr(index: usize) -> u64 {
    with_msg_regs(|regs| regs[index])
}

/// Sets message register `index` (`microkit_mr_set`). Panics if `index` is out of range.
pub fn set_mr(index: usize, value: u64) {
    with_msg_regs_mut(|regs| regs[index] = value)
}

/// The PD's name as system.xml gives it (`microkit_name`).
pub fn pd_name() -> &'static str {
    backend::pd_name()
}

/// What a PD does when the kernel delivers an event. Mirrors `sel4_microkit::Handler`.
pub trait Handler {
    type Error: fmt::Display;

    /// Some channels were signalled (notifications and IRQs).
    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        panic!("unexpected notification on {channels:?}")
    }

    /// A protected procedure call arrived on `channel`; the return value is the reply.
    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        panic!("unexpected protected procedure call on {channel:?} with {msg_info:?}")
    }

    /// A child faulted. `Some(reply)` resumes it.
    fn fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<Option<MessageInfo>, Self::Error> {
        panic!("unexpected fault from {child:?} with {msg_info:?}")
    }
}

/// An IRQ acknowledgement the kernel refused (the channel holds no IRQ handler cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqAckError {
    pub channel: usize,
    /// The seL4 error code (`seL4_Error`).
    pub code: u64,
}

impl fmt::Display for IrqAckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acknowledging the IRQ on channel {} failed (seL4 error {})", self.channel, self.code)
    }
}

/// A second deferred action before the first was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredActionSlotFull;

impl fmt::Display for DeferredActionSlotFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a deferred notify or IRQ ack is already pending")
    }
}

/// What the event loop carries out on its next wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferredAction {
    Notify(usize),
    IrqAck(usize),
}

/// Registers x0..x7 of an SMC, in and out (SMCCC: function id in x0, results in x0..x3).
pub type SmcContext = [u64; 8];

/// Calls the EL3 monitor through seL4's SMC capability (`seL4_ARM_SMC_Call`). Only PDs with
/// `smc="true"` in system.xml hold it; for the others the call fails with seL4's error code.
pub fn smc_call(args: &SmcContext) -> Result<SmcContext, SmcError> {
    backend::smc_call(args)
}

/// An SMC the kernel refused to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmcError {
    /// The seL4 error code (`seL4_Error`).
    pub code: u64,
}

impl fmt::Display for SmcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the kernel refused the SMC (seL4 error {}): is smc=\"true\" set in system.xml?", self.code)
    }
}

/// A memory region mapped into this PD, bound by the `setvar_vaddr`/`setvar_size` symbols of its
/// `<map>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    base: core::ptr::NonNull<u8>,
    size: usize,
}

// SAFETY: a MemoryRegion is an address range, not a borrow: it may be handed between threads, and
// every access through it is a volatile or atomic access by its users.
unsafe impl Send for MemoryRegion {}
// SAFETY: as above; sharing the range itself is harmless.
unsafe impl Sync for MemoryRegion {}

impl MemoryRegion {
    /// # Safety
    /// `base..base + size` must be mapped into this PD for as long as the value is used.
    pub const unsafe fn new(base: core::ptr::NonNull<u8>, size: usize) -> Self {
        Self { base, size }
    }

    pub const fn base(&self) -> core::ptr::NonNull<u8> {
        self.base
    }

    pub const fn size(&self) -> usize {
        self.size
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    fn check(&self, offset: usize, len: usize, align: usize) -> Result<*mut u8, OutOfBounds> {
        let end = offset.checked_add(len).ok_or(OutOfBounds { offset, len, size: self.size })?;
        if end > self.size || !(self.base.as_ptr() as usize + offset).is_multiple_of(align) {
            return Err(OutOfBounds { offset, len, size: self.size });
        }
        Ok(self.base.as_ptr().wrapping_add(offset))
    }

    /// Copies `out.len()` bytes from `offset`, each read exactly once (volatile): the other side may
    /// change the memory at any time, so callers validate the private copy, never the region.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), OutOfBounds> {
        let src = self.check(offset, out.len(), 1)?;
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: `check` put src..src+len inside the mapped region; volatile because another
            // PD or world writes it concurrently.
            *byte = unsafe { src.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `data` to `offset` with volatile writes.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<(), OutOfBounds> {
        let dst = self.check(offset, data.len(), 1)?;
        for (i, byte) in data.iter().enumerate() {
            // SAFETY: as in `read_bytes`; the mapping is writable for PDs that call this (a write to
            // a read-only mapping is a fault of this PD, not undefined behaviour of the program).
            unsafe { dst.add(i).write_volatile(*byte) };
        }
        Ok(())
    }

    /// The 8-byte-aligned word at `offset`, as an atomic shared with the other side.
    pub fn atomic_u64(&self, offset: usize) -> Result<&core::sync::atomic::AtomicU64, OutOfBounds> {
        let ptr = self.check(offset, 8, 8)?;
        // SAFETY: `check` proved the word lies in the mapped region and is 8-byte aligned; the
        // mapping lives as long as the PD (so as long as `self`), and all accesses by either side
        // are atomic or volatile word accesses.
        Ok(unsafe { core::sync::atomic::AtomicU64::from_ptr(ptr.cast()) })
    }

    /// Publishes `data` at `offset` under the sequence lock whose word is at `sequence`: the word is
    /// odd while the bytes change, and one more than before once they are whole. One writer only.
    pub fn publish(&self, sequence: usize, offset: usize, data: &[u8]) -> Result<(), OutOfBounds> {
        use core::sync::atomic::{fence, Ordering};
        let word = self.atomic_u64(sequence)?;
        self.check(offset, data.len(), 1)?;
        let start = word.load(Ordering::Relaxed) | 1;
        word.store(start, Ordering::Relaxed);
        fence(Ordering::Release);
        self.write_bytes(offset, data)?;
        word.store(start.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Reads a block published with [`publish`](Self::publish) into `out`; `Ok(false)` when the
    /// writer was busy or changed it meanwhile (try again).
    pub fn snapshot(&self, sequence: usize, offset: usize, out: &mut [u8]) -> Result<bool, OutOfBounds> {
        use core::sync::atomic::{fence, Ordering};
        let word = self.atomic_u64(sequence)?;
        let before = word.load(Ordering::Acquire);
        self.read_bytes(offset, out)?;
        fence(Ordering::Acquire);
        Ok(before & 1 == 0 && word.load(Ordering::Relaxed) == before)
    }
}

/// An access outside a [`MemoryRegion`] (or misaligned for an atomic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    pub offset: usize,
    pub len: usize,
    pub size: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access of {} bytes at offset {:#x} is outside a region of {:#x} bytes (or misaligned)",
            self.len, self.offset, self.size
        )
    }
}

#[doc(hidden)]
pub mod _private {
    #[cfg(not(target_os = "none"))]
    pub use crate::backend::host_setvar;
    #[cfg(target_os = "none")]
    pub use crate::backend::panic;
    pub use crate::backend::run_main;
}

/// The value of an 8-byte `setvar_*` symbol from system.xml, patched by the microkit tool on seL4
/// and filled in by the simulator on the host. Mirrors `sel4_microkit::var!`.
///
/// `var!(port_rx_vaddr)` evaluates to a `u64`. On seL4 it declares the `#[no_mangle]` symbol in
/// `.data` (the tool requires exactly 8 bytes in a loaded segment); the default `u64::MAX` marks a
/// symbol that system.xml never set.
#[macro_export]
macro_rules! var {
    ($symbol:ident) => {{
        #[cfg(target_os = "none")]
        let value = {
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".data")]
            #[used]
            static mut $symbol: u64 = u64::MAX;
            // SAFETY: the symbol is written only by the microkit tool before the PD starts; a
            // volatile read keeps the compiler from folding the default value.
            unsafe { core::ptr::read_volatile(core::ptr::addr_of!($symbol)) }
        };
        #[cfg(not(target_os = "none"))]
        let value = $crate::_private::host_setvar(stringify!($symbol));
        value
    }};
}

/// A [`Channel`] whose id system.xml sets through `setvar_id` on a `<end>` or `<irq>`.
/// Panics (a fault of this PD) when system.xml does not set the symbol.
#[macro_export]
macro_rules! channel {
    ($symbol:ident) => {{
        let id = $crate::var!($symbol);
        assert!(
            id <= $crate::MAX_CHANNEL_ID as u64,
            concat!("setvar_id symbol `", stringify!($symbol), "` is not set by system.xml")
        );
        $crate::Channel::new(id as usize)
    }};
}

/// A [`MemoryRegion`] bound by its `setvar_vaddr` and `setvar_size` symbols.
/// Panics (a fault of this PD) when system.xml does not set them.
#[macro_export]
macro_rules! memory_region {
    ($vaddr:ident, $size:ident) => {{
        let vaddr = $crate::var!($vaddr);
        let size = $crate::var!($size);
        assert!(
            vaddr != u64::MAX && size != u64::MAX && size != 0,
            concat!("setvar symbols `", stringify!($vaddr), "`/`", stringify!($size), "` are not set by system.xml")
        );
        let base =
            core::ptr::NonNull::new(vaddr as usize as *mut u8).expect("a mapped region never starts at address 0");
        // SAFETY: the microkit tool (or the simulator) maps `size` bytes at `vaddr` into this PD
        // before it starts, for its whole life.
        unsafe { $crate::MemoryRegion::new(base, size as usize) }
    }};
}

/// Declares the PD's entry: `protection_domain!(init)` where `init: fn() -> impl Handler`.
///
/// On seL4 this provides the entry point that libmicrokit's `main` would; on the host, the binary
/// only says how to run the PD (in `tzmk sim`), because a PD is not a Linux program.
#[macro_export]
macro_rules! protection_domain {
    ($init:path) => {
        #[cfg(target_os = "none")]
        #[unsafe(no_mangle)]
        extern "C" fn tzmk_microkit_main() -> ! {
            $crate::_private::run_main($init)
        }

        #[cfg(target_os = "none")]
        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::_private::panic(info)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            eprintln!(
                "{} is a protection domain: build it for aarch64-unknown-none (make -f build.mk pds), \
                 or run the whole system on the host with `cargo run -p tzmk -- sim`",
                env!("CARGO_PKG_NAME")
            );
            std::process::exit(2);
        }
    };
}
