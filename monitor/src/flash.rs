//! A driver for CFI parallel NOR flash with the Intel/Sharp command set (CFI command set 0x0001,
//! "CFI 01"): word program and block erase with status polling, over a [`FlashBus`] that the
//! bare-metal half maps as device memory and that host tests fake.
//!
//! Hand-written: no maintained crate drives CFI 01 NOR flash in `no_std` (crates.io has
//! `embedded-storage`'s traits, and drivers for SPI NOR parts, none for a memory-mapped Intel
//! command-set bank); the part the monitor needs is a dozen commands.
//!
//! The bank is 32 bits wide. On QEMU virt (hw/arm/virt.c) it is two 16-bit devices side by side
//! (`width` 4, `device-width` 2), so every command is written to both halves (`0x00cc_00cc`) and the
//! status register of each half is checked; QEMU decodes the low byte. Commands (Intel StrataFlash
//! command set, as hw/block/pflash_cfi01.c implements it): 0xff read array, 0x70 read status, 0x50
//! clear status, 0x40 word program (then the data word), 0x20 block erase (then 0xd0 confirm).
//! Once a command is written the bank no longer reads as memory (it answers status) until 0xff
//! puts it back in read-array mode: no code may execute from the flash while a command runs
//! (the monitor runs from RAM: docs/monitor.md, "Boot order").

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

/// The flash as the driver sees it: 32-bit accesses at byte offsets into the bank.
pub trait FlashBus {
    /// Reads the word at `offset` (a multiple of 4 inside the bank).
    fn read(&mut self, offset: u64) -> u32;
    /// Writes `value` (a command or a data word) at `offset` (a multiple of 4 inside the bank).
    fn write(&mut self, offset: u64, value: u32);
}

/// Both 16-bit devices' copy of a command byte.
const fn command(byte: u8) -> u32 {
    (byte as u32) * 0x0001_0001
}

const READ_ARRAY: u32 = command(0xff);
const CLEAR_STATUS: u32 = command(0x50);
const WORD_PROGRAM: u32 = command(0x40);
const BLOCK_ERASE: u32 = command(0x20);
const ERASE_CONFIRM: u32 = command(0xd0);

/// Status register bits (per device): ready, erase error, program error, Vpp low, block locked.
pub const STATUS_READY: u32 = command(0x80);
const STATUS_ERASE_ERROR: u32 = command(0x20);
const STATUS_PROGRAM_ERROR: u32 = command(0x10);
const STATUS_VPP_LOW: u32 = command(0x08);
const STATUS_LOCKED: u32 = command(0x02);
const STATUS_ERRORS: u32 = STATUS_ERASE_ERROR | STATUS_PROGRAM_ERROR | STATUS_VPP_LOW | STATUS_LOCKED;

/// Polls of the status register before a command counts as hung. QEMU completes every command at
/// once; a real part takes ~10-200 us per word and up to a few seconds per block, so this bound
/// is generous for polls of ~100 ns each.
pub const POLL_LIMIT: u32 = 50_000_000;

/// The erased value of a word.
pub const ERASED: u32 = u32::MAX;

/// Why a flash operation failed. The bank is back in read-array mode whatever happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// An offset that is not word-aligned or lies outside the region the caller may write.
    OutOfRange {
        /// The offset.
        offset: u64,
    },
    /// The status register never showed ready.
    Timeout {
        /// Where the command was written.
        offset: u64,
    },
    /// The status register reported an error (program, erase, Vpp or lock bits of either device).
    Failed {
        /// `"program"` or `"erase"`.
        operation: &'static str,
        /// Where.
        offset: u64,
        /// The status register as read (both devices).
        status: u32,
    },
    /// The word reads back otherwise than programmed (or not erased after an erase).
    Verify {
        /// Where.
        offset: u64,
        /// What it reads.
        found: u32,
        /// What it should read.
        expected: u32,
    },
    /// A word that is not erased cannot take a value with bits it lacks (NOR programming only
    /// clears bits); the driver programs erased words only.
    NotErased {
        /// Where.
        offset: u64,
        /// What it holds.
        found: u32,
    },
}

impl FlashError {
    /// A stable number for the variant (an SMC register).
    pub fn code(&self) -> u32 {
        match self {
            FlashError::OutOfRange { .. } => 1,
            FlashError::Timeout { .. } => 2,
            FlashError::Failed { .. } => 3,
            FlashError::Verify { .. } => 4,
            FlashError::NotErased { .. } => 5,
        }
    }

    /// Where it failed.
    pub fn offset(&self) -> u64 {
        match *self {
            FlashError::OutOfRange { offset }
            | FlashError::Timeout { offset }
            | FlashError::Failed { offset, .. }
            | FlashError::Verify { offset, .. }
            | FlashError::NotErased { offset, .. } => offset,
        }
    }
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FlashError::OutOfRange { offset } => write!(f, "flash offset {offset:#x} is outside the writable sectors"),
            FlashError::Timeout { offset } => {
                write!(f, "flash at {offset:#x}: no ready status after {POLL_LIMIT} polls")
            }
            FlashError::Failed { operation, offset, status } => {
                write!(f, "flash {operation} at {offset:#x} failed: status {status:#010x}")
            }
            FlashError::Verify { offset, found, expected } => {
                write!(f, "flash at {offset:#x} reads {found:#010x} after writing {expected:#010x}")
            }
            FlashError::NotErased { offset, found } => {
                write!(f, "flash at {offset:#x} holds {found:#010x}: not erased, cannot be programmed")
            }
        }
    }
}

/// A CFI 01 bank. The driver only touches the sectors in `writable` (the manifest's two slots and
/// the counter's: `[trust]` of the platform description); everything else of the bank is refused.
#[derive(Debug)]
pub struct Cfi01<B> {
    bus: B,
    sector: u64,
    writable: [(u64, u64); 3],
    stats: Stats,
}

/// What a driver has done since it was made (for the monitor's log and the figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Words programmed.
    pub programmed: u32,
    /// Sectors erased.
    pub erased: u32,
}

impl<B: FlashBus> Cfi01<B> {
    /// A driver over `bus` whose erase block is `sector` bytes, allowed to write the ranges
    /// `[start, end)` of `writable` (each whole sectors; an empty range for none).
    pub const fn new(bus: B, sector: u64, writable: [(u64, u64); 3]) -> Self {
        Self { bus, sector, writable, stats: Stats { programmed: 0, erased: 0 } }
    }

    /// Words programmed and sectors erased so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The bus (tests look at it).
    pub fn bus(&self) -> &B {
        &self.bus
    }

    /// The bus, to change it (tests cut its power).
    pub fn bus_mut(&mut self) -> &mut B {
        &mut self.bus
    }

    /// The erase block's size.
    pub fn sector(&self) -> u64 {
        self.sector
    }

    fn check(&self, offset: u64) -> Result<(), FlashError> {
        let inside = self.writable.iter().any(|&(start, end)| offset >= start && offset < end);
        if !offset.is_multiple_of(4) || !inside {
            return Err(FlashError::OutOfRange { offset });
        }
        Ok(())
    }

    /// Reads a word of a writable sector (the bank is in read-array mode between operations).
    pub fn read(&mut self, offset: u64) -> Result<u32, FlashError> {
        self.check(offset)?;
        Ok(self.bus.read(offset))
    }

    /// Waits for ready, then returns the bank to read-array mode; an error bit clears the status
    /// register first.
    fn finish(&mut self, operation: &'static str, offset: u64) -> Result<(), FlashError> {
        let mut status = 0;
        let mut ready = false;
        for _ in 0..POLL_LIMIT {
            status = self.bus.read(offset);
            if status & STATUS_READY == STATUS_READY {
                ready = true;
                break;
            }
        }
        let result = if !ready {
            Err(FlashError::Timeout { offset })
        } else if status & STATUS_ERRORS != 0 {
            Err(FlashError::Failed { operation, offset, status })
        } else {
            Ok(())
        };
        if result.is_err() {
            self.bus.write(offset, CLEAR_STATUS);
        }
        self.bus.write(offset, READ_ARRAY);
        result
    }

    /// Programs the erased word at `offset` with `value`, then checks it reads back.
    pub fn program(&mut self, offset: u64, value: u32) -> Result<(), FlashError> {
        self.check(offset)?;
        let found = self.bus.read(offset);
        if found != ERASED {
            return Err(FlashError::NotErased { offset, found });
        }
        self.bus.write(offset, WORD_PROGRAM);
        self.bus.write(offset, value);
        self.stats.programmed += 1;
        self.finish("program", offset)?;
        let found = self.bus.read(offset);
        if found != value {
            return Err(FlashError::Verify { offset, found, expected: value });
        }
        Ok(())
    }

    /// Erases the sector that starts at `offset` and checks every word reads erased.
    pub fn erase(&mut self, offset: u64) -> Result<(), FlashError> {
        self.check(offset)?;
        if !offset.is_multiple_of(self.sector) {
            return Err(FlashError::OutOfRange { offset });
        }
        self.bus.write(offset, BLOCK_ERASE);
        self.bus.write(offset, ERASE_CONFIRM);
        self.stats.erased += 1;
        self.finish("erase", offset)?;
        for word in (offset..offset + self.sector).step_by(4) {
            let found = self.bus.read(word);
            if found != ERASED {
                return Err(FlashError::Verify { offset: word, found, expected: ERASED });
            }
        }
        Ok(())
    }

    /// Programs `bytes` (a multiple of 4 long) from `offset` on, word by word, in order.
    pub fn program_bytes(&mut self, offset: u64, bytes: &[u8]) -> Result<(), FlashError> {
        for (index, word) in bytes.chunks(4).enumerate() {
            let mut value = [0xff; 4];
            value[..word.len()].copy_from_slice(word);
            self.program(offset + 4 * index as u64, u32::from_le_bytes(value))?;
        }
        Ok(())
    }

    /// Reads `buffer.len()` bytes (a multiple of 4) from `offset` on.
    pub fn read_bytes(&mut self, offset: u64, buffer: &mut [u8]) -> Result<(), FlashError> {
        for (index, word) in buffer.chunks_mut(4).enumerate() {
            let value = self.read(offset + 4 * index as u64)?.to_le_bytes();
            word.copy_from_slice(&value[..word.len()]);
        }
        Ok(())
    }
}

/// Whether secure flash is being written, so that a PSCI `SYSTEM_RESET` or `SYSTEM_OFF` from
/// another core waits for the update in progress instead of cutting it (docs/trusted-boot.md,
/// "Atomic updates"). One word in secure RAM: idle, held by an update (the whole of its flash
/// work: erase, program, commit, counter), or closed for good by a core that powers the machine
/// down (no update starts after that).
#[derive(Debug)]
pub struct FlashLock(AtomicU32);

const IDLE: u32 = 0;
const HELD: u32 = 1;
const CLOSED: u32 = 2;

/// An update's hold on the flash; dropping it lets a waiting reset go on.
#[derive(Debug)]
pub struct FlashHold<'a>(&'a FlashLock);

impl Drop for FlashHold<'_> {
    fn drop(&mut self) {
        // Release: every flash access of the update (each finished: the driver polled its status
        // to ready) is ordered before a resetting core sees the lock idle. A lock a reset closed
        // after its bound stays closed.
        let _ = self.0 .0.compare_exchange(HELD, IDLE, Ordering::Release, Ordering::Relaxed);
    }
}

/// How [`FlashLock::close`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No update held the flash (or another core had closed it already).
    Idle,
    /// An update held it and let go after `waited` ticks of the caller's clock.
    AfterUpdate {
        /// Ticks waited.
        waited: u64,
    },
    /// An update still held it after the bound: closed anyway (the A/B slots keep a bootable
    /// manifest whatever the cut).
    GaveUp {
        /// Ticks waited.
        waited: u64,
    },
}

impl Default for FlashLock {
    fn default() -> Self {
        Self::new()
    }
}

impl FlashLock {
    /// An idle lock.
    pub const fn new() -> Self {
        Self(AtomicU32::new(IDLE))
    }

    /// Holds the flash for an update, or `None` when the machine is going down (closed) or
    /// another update holds it.
    pub fn try_hold(&self) -> Option<FlashHold<'_>> {
        self.0.compare_exchange(IDLE, HELD, Ordering::Acquire, Ordering::Relaxed).ok().map(|_| FlashHold(self))
    }

    /// Whether an update holds the flash.
    pub fn is_held(&self) -> bool {
        self.0.load(Ordering::Acquire) == HELD
    }

    /// Closes the flash to updates for good (before the power goes): at once when idle, else once
    /// the update holding it lets go, but for no longer than `limit` ticks of `now`; `relax`
    /// runs between polls.
    pub fn close(&self, limit: u64, mut now: impl FnMut() -> u64, mut relax: impl FnMut()) -> Closed {
        let start = now();
        let mut waited = false;
        loop {
            match self.0.compare_exchange(IDLE, CLOSED, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) | Err(CLOSED) if !waited => return Closed::Idle,
                Ok(_) | Err(CLOSED) => return Closed::AfterUpdate { waited: now().wrapping_sub(start) },
                Err(_) => {}
            }
            let elapsed = now().wrapping_sub(start);
            if elapsed >= limit {
                self.0.store(CLOSED, Ordering::Release);
                return Closed::GaveUp { waited: elapsed };
            }
            waited = true;
            relax();
        }
    }
}

/// A bank in memory that behaves as pflash_cfi01 does (commands, status, read-array mode) and as
/// NOR does (programming only clears bits), for host tests; it can be told to stop obeying after a
/// number of programmed words (a power cut) or to fail with a status.
#[cfg(test)]
pub mod fake {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        ReadArray,
        Status,
        ProgramNext,
        EraseNext,
    }

    /// What the bank saw of a command while its power was gone (for a torn operation).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Dying {
        Nothing,
        Program,
        Erase(u64),
    }

    #[derive(Debug)]
    pub struct FakeFlash {
        pub memory: Vec<u8>,
        pub sector: usize,
        mode: Mode,
        pub status: u32,
        /// Words programmed so far.
        pub programmed: usize,
        /// Sectors erased so far.
        pub erased: usize,
        /// After this many operations (programmed words and erased sectors), the power is cut:
        /// nothing more changes (but see `tear`).
        pub power_cut_after: Option<usize>,
        /// Whether the operation the cut falls on is torn instead of not done at all: an erase
        /// leaves the sector's first half erased and the rest as it was, a program sets only the
        /// word's low half.
        pub tear: bool,
        dying: Dying,
        torn: bool,
        /// A status error bit every program reports.
        pub fail_with: u32,
        /// Whether any read or data write came while not in read-array mode with nothing pending
        /// (tests check the driver always returns to read-array mode).
        pub reads_in_status_mode: usize,
    }

    impl FakeFlash {
        pub fn new(size: usize, sector: usize) -> Self {
            FakeFlash {
                memory: vec![0xff; size],
                sector,
                mode: Mode::ReadArray,
                status: 0,
                programmed: 0,
                erased: 0,
                power_cut_after: None,
                tear: false,
                dying: Dying::Nothing,
                torn: false,
                fail_with: 0,
                reads_in_status_mode: 0,
            }
        }

        /// Power back after a cut: the part resets into read-array mode.
        pub fn power_on(&mut self) {
            self.power_cut_after = None;
            self.mode = Mode::ReadArray;
            self.dying = Dying::Nothing;
            self.torn = false;
        }

        /// Programs and erases so far.
        pub fn operations(&self) -> usize {
            self.programmed + self.erased
        }

        /// What a write does once the power is gone: nothing, except the one torn operation.
        fn write_dead(&mut self, offset: u64, value: u32) {
            self.dying = match (self.dying, value) {
                (Dying::Program, data) => {
                    if self.tear && !self.torn {
                        self.torn = true;
                        let new = self.word(offset) & (data | 0xffff_0000);
                        self.memory[offset as usize..offset as usize + 4].copy_from_slice(&new.to_le_bytes());
                    }
                    Dying::Nothing
                }
                (Dying::Erase(at), ERASE_CONFIRM) if at == offset => {
                    if self.tear && !self.torn {
                        self.torn = true;
                        let start = offset as usize / self.sector * self.sector;
                        self.memory[start..start + self.sector / 2].fill(0xff);
                    }
                    Dying::Nothing
                }
                (Dying::Nothing, WORD_PROGRAM) => Dying::Program,
                (Dying::Nothing, BLOCK_ERASE) => Dying::Erase(offset),
                _ => Dying::Nothing,
            };
        }

        pub fn in_read_array_mode(&self) -> bool {
            self.mode == Mode::ReadArray
        }

        fn dead(&self) -> bool {
            self.power_cut_after.is_some_and(|n| self.operations() >= n)
        }

        pub fn word(&self, offset: u64) -> u32 {
            u32::from_le_bytes(self.memory[offset as usize..offset as usize + 4].try_into().unwrap())
        }
    }

    impl FlashBus for FakeFlash {
        fn read(&mut self, offset: u64) -> u32 {
            match self.mode {
                Mode::ReadArray => self.word(offset),
                _ => {
                    self.reads_in_status_mode += 1;
                    self.status
                }
            }
        }

        fn write(&mut self, offset: u64, value: u32) {
            if self.dead() {
                return self.write_dead(offset, value);
            }
            match self.mode {
                Mode::ProgramNext => {
                    let old = self.word(offset);
                    let new = if self.fail_with != 0 { old } else { old & value };
                    self.memory[offset as usize..offset as usize + 4].copy_from_slice(&new.to_le_bytes());
                    self.programmed += 1;
                    self.status = STATUS_READY | self.fail_with;
                    self.mode = Mode::Status;
                }
                Mode::EraseNext => {
                    if value == ERASE_CONFIRM {
                        let start = offset as usize / self.sector * self.sector;
                        self.memory[start..start + self.sector].fill(0xff);
                        self.erased += 1;
                        self.status = STATUS_READY;
                    } else {
                        self.status = STATUS_READY | STATUS_ERASE_ERROR;
                    }
                    self.mode = Mode::Status;
                }
                Mode::ReadArray | Mode::Status => match value & 0xff {
                    0xff => self.mode = Mode::ReadArray,
                    0x50 => self.status = 0,
                    0x40 | 0x10 => self.mode = Mode::ProgramNext,
                    0x20 => self.mode = Mode::EraseNext,
                    0x70 => self.mode = Mode::Status,
                    _ => panic!("unknown flash command {value:#x}"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeFlash;
    use super::*;

    const SECTOR: u64 = 0x1000;

    fn driver() -> Cfi01<FakeFlash> {
        Cfi01::new(
            FakeFlash::new(4 * SECTOR as usize, SECTOR as usize),
            SECTOR,
            [(SECTOR, 2 * SECTOR), (3 * SECTOR, 4 * SECTOR), (0, 0)],
        )
    }

    #[test]
    fn programs_an_erased_word_and_returns_to_read_array_mode() {
        let mut flash = driver();
        flash.program(SECTOR + 8, 0x1234_5678).unwrap();
        assert_eq!(flash.read(SECTOR + 8), Ok(0x1234_5678));
        assert!(flash.bus().in_read_array_mode());
        assert_eq!(flash.bus().programmed, 1);
    }

    #[test]
    fn refuses_words_outside_its_sectors_or_unaligned() {
        let mut flash = driver();
        for offset in [0, SECTOR - 4, 2 * SECTOR, SECTOR + 2, 4 * SECTOR] {
            assert_eq!(flash.program(offset, 0), Err(FlashError::OutOfRange { offset }));
        }
        assert_eq!(flash.erase(SECTOR + 4), Err(FlashError::OutOfRange { offset: SECTOR + 4 }));
        assert_eq!(flash.bus().programmed, 0);
    }

    #[test]
    fn never_programs_over_a_written_word() {
        let mut flash = driver();
        flash.program(SECTOR, 0xffff_0000).unwrap();
        assert_eq!(
            flash.program(SECTOR, 0x0000_ffff),
            Err(FlashError::NotErased { offset: SECTOR, found: 0xffff_0000 })
        );
        assert_eq!(flash.read(SECTOR), Ok(0xffff_0000));
    }

    #[test]
    fn erase_leaves_the_sector_erased() {
        let mut flash = driver();
        flash.program_bytes(3 * SECTOR, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        flash.erase(3 * SECTOR).unwrap();
        assert_eq!(flash.read(3 * SECTOR), Ok(ERASED));
        assert_eq!(flash.bus().erased, 1);
        assert!(flash.bus().in_read_array_mode());
    }

    #[test]
    fn a_status_error_is_reported_and_cleared() {
        let mut flash = driver();
        flash.bus_mut().fail_with = STATUS_PROGRAM_ERROR;
        let error = flash.program(SECTOR, 0).unwrap_err();
        assert_eq!(
            error,
            FlashError::Failed { operation: "program", offset: SECTOR, status: STATUS_READY | STATUS_PROGRAM_ERROR }
        );
        assert_eq!(error.to_string(), "flash program at 0x1000 failed: status 0x00900090");
        assert_eq!(flash.bus().status, 0, "cleared");
        assert!(flash.bus().in_read_array_mode());
    }

    #[test]
    fn a_word_that_does_not_take_its_value_fails_verification() {
        let mut flash = driver();
        // Power gone: the bank ignores commands and keeps reading as memory (all ones, which the
        // status check sees as every error bit).
        flash.bus_mut().power_cut_after = Some(0);
        assert!(matches!(flash.program(SECTOR, 0x55), Err(FlashError::Failed { operation: "program", .. })));
        assert_eq!(flash.bus().word(SECTOR), ERASED);
    }

    #[test]
    fn a_torn_cut_leaves_half_an_erase_or_half_a_word() {
        let mut flash = driver();
        flash.program_bytes(SECTOR, &[0u8; 0x1000]).unwrap();
        flash.bus_mut().power_cut_after = Some(flash.bus().operations());
        flash.bus_mut().tear = true;
        assert!(flash.erase(SECTOR).is_err());
        flash.program(3 * SECTOR, 0x1234_5678).unwrap_err();
        flash.bus_mut().power_on();
        assert_eq!((flash.read(SECTOR), flash.read(SECTOR + 0x7fc)), (Ok(ERASED), Ok(ERASED)));
        assert_eq!(flash.read(SECTOR + 0x800), Ok(0), "the second half kept its words");
        assert_eq!(flash.read(3 * SECTOR), Ok(ERASED), "one torn operation per cut");
        flash.bus_mut().power_cut_after = Some(flash.bus().operations());
        flash.bus_mut().tear = true;
        flash.program(3 * SECTOR, 0x1234_5678).unwrap_err();
        flash.bus_mut().power_on();
        assert_eq!(flash.read(3 * SECTOR), Ok(0xffff_5678));
    }

    #[test]
    fn a_reset_waits_for_the_update_holding_the_flash_within_its_bound() {
        use core::cell::Cell;
        // Idle: closed at once, and no update starts afterwards.
        let lock = FlashLock::new();
        assert_eq!(lock.close(10, || 0, || panic!("no wait")), Closed::Idle);
        assert!(lock.try_hold().is_none(), "closed for good");
        // Held: the reset waits until the update lets go (after 3 polls here).
        let lock = FlashLock::new();
        let hold = Cell::new(lock.try_hold());
        assert!(lock.is_held() && lock.try_hold().is_none(), "one update at a time");
        let (clock, polls) = (Cell::new(0u64), Cell::new(0));
        let relax = || {
            polls.set(polls.get() + 1);
            clock.set(clock.get() + 1);
            if polls.get() == 3 {
                drop(hold.take());
            }
        };
        assert_eq!(lock.close(100, || clock.get(), relax), Closed::AfterUpdate { waited: 3 });
        assert!(!lock.is_held() && lock.try_hold().is_none());
        // Never let go: the reset goes on after the bound, and the update's late release does not
        // reopen the flash.
        let lock = FlashLock::new();
        let hold = lock.try_hold();
        let clock = Cell::new(0u64);
        assert_eq!(lock.close(50, || clock.get(), || clock.set(clock.get() + 7)), Closed::GaveUp { waited: 56 });
        drop(hold);
        assert!(lock.try_hold().is_none(), "closed stays closed");
    }

    #[test]
    fn bytes_round_trip() {
        let mut flash = driver();
        let bytes: Vec<u8> = (0..64).collect();
        flash.program_bytes(SECTOR, &bytes).unwrap();
        let mut back = [0u8; 64];
        flash.read_bytes(SECTOR, &mut back).unwrap();
        assert_eq!(back[..], bytes[..]);
    }
}
