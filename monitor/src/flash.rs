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

/// A CFI 01 bank. The driver only touches the sectors in `writable` (the manifest's and the
/// counter's: `[trust]` of the platform description); everything else of the bank is refused.
#[derive(Debug)]
pub struct Cfi01<B> {
    bus: B,
    sector: u64,
    writable: [(u64, u64); 2],
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
    /// A driver over `bus` whose erase block is `sector` bytes, allowed to write the two ranges
    /// `[start, end)` of `writable` (each whole sectors).
    pub const fn new(bus: B, sector: u64, writable: [(u64, u64); 2]) -> Self {
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
        /// After this many programmed words, the power is cut: nothing more changes.
        pub power_cut_after: Option<usize>,
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
                fail_with: 0,
                reads_in_status_mode: 0,
            }
        }

        /// Power back after a cut: the part resets into read-array mode.
        pub fn power_on(&mut self) {
            self.power_cut_after = None;
            self.mode = Mode::ReadArray;
        }

        pub fn in_read_array_mode(&self) -> bool {
            self.mode == Mode::ReadArray
        }

        fn dead(&self) -> bool {
            self.power_cut_after.is_some_and(|n| self.programmed >= n)
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
                return;
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
            [(SECTOR, 2 * SECTOR), (3 * SECTOR, 4 * SECTOR)],
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
    fn bytes_round_trip() {
        let mut flash = driver();
        let bytes: Vec<u8> = (0..64).collect();
        flash.program_bytes(SECTOR, &bytes).unwrap();
        let mut back = [0u8; 64];
        flash.read_bytes(SECTOR, &mut back).unwrap();
        assert_eq!(back[..], bytes[..]);
    }
}
