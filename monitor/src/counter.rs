//! The security-version counter in secure flash (docs/trusted-boot.md, "The counter"): an
//! append-only log of 16-byte slots in a sector of its own (`[trust] counter`).
//!
//! A slot is four words, programmed in this order: magic "TZNC", the value, its complement, and a
//! commit word (0). A slot counts only when all four are right, so a power cut while one is
//! written leaves a slot that does not count: the value stays the old one, never less. Slots are
//! only ever programmed from erased; the log is never erased in normal use. The value is the
//! largest committed slot's (with values only ever appended in increasing order, the last
//! committed slot's); the first slot that reads all erased is the end of the log, and the next
//! append goes there (after any torn slot, which stays as it is). An erased sector is counter 0.
//!
//! Every accepted update appends a slot, even one that keeps the value ([`record`]): the log is
//! also the count of manifest writes, which bounds them (docs/trusted-boot.md, "Flash wear").

use crate::flash::{Cfi01, FlashBus, FlashError, ERASED};
use core::fmt;

/// Bytes per slot.
pub const SLOT_SIZE: u64 = 16;
/// A slot's first word ("TZNC", little-endian).
pub const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"TZNC");
/// A slot's last word once committed.
pub const COMMITTED: u32 = 0;

/// What the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The counter's value (0 for an empty log).
    pub value: u32,
    /// The offset of the first erased slot (the next append), or `None` when the log is full.
    pub next: Option<u64>,
    /// Slots that are neither committed nor erased (torn writes), for the log.
    pub torn: u32,
    /// Committed slots that hold `value` (the writes of a manifest at that security version).
    pub at_value: u32,
}

/// Why the counter could not be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterError {
    /// Every slot is used: the sector would have to be erased (not done in normal use; see
    /// docs/trusted-boot.md).
    Full,
    /// The flash refused.
    Flash(FlashError),
    /// After the append, the log does not read as the value written (a failing part).
    NotRaised {
        /// What the log reads.
        found: u32,
        /// What was appended.
        expected: u32,
    },
}

impl From<FlashError> for CounterError {
    fn from(e: FlashError) -> Self {
        CounterError::Flash(e)
    }
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CounterError::Full => write!(f, "security-version counter: every slot of its sector is used"),
            CounterError::Flash(e) => write!(f, "security-version counter: {e}"),
            CounterError::NotRaised { found, expected } => {
                write!(f, "security-version counter: reads {found} after appending {expected}")
            }
        }
    }
}

/// The four words of a slot holding `value`, in programming order.
pub const fn slot(value: u32) -> [u32; 4] {
    [SLOT_MAGIC, value, !value, COMMITTED]
}

/// Reads the log in the sector at `base`.
pub fn scan<B: FlashBus>(flash: &mut Cfi01<B>, base: u64) -> Result<Counter, FlashError> {
    let mut counter = Counter { value: 0, next: None, torn: 0, at_value: 0 };
    let mut offset = base;
    while offset < base + flash.sector() {
        let mut words = [0u32; 4];
        for (index, word) in words.iter_mut().enumerate() {
            *word = flash.read(offset + 4 * index as u64)?;
        }
        if words == [ERASED; 4] {
            counter.next = Some(offset);
            break;
        }
        if words[0] == SLOT_MAGIC && words[2] == !words[1] && words[3] == COMMITTED {
            if words[1] > counter.value || counter.at_value == 0 {
                counter.value = words[1];
                counter.at_value = 1;
            } else if words[1] == counter.value {
                counter.at_value += 1;
            }
        } else {
            counter.torn += 1;
        }
        offset += SLOT_SIZE;
    }
    Ok(counter)
}

/// Raises the counter in the sector at `base` to `value`: one slot appended (four words) when
/// `value` is above the current value, nothing written otherwise. Returns the log as it reads
/// afterwards.
pub fn raise<B: FlashBus>(flash: &mut Cfi01<B>, base: u64, value: u32) -> Result<Counter, CounterError> {
    let before = scan(flash, base)?;
    if value <= before.value {
        return Ok(before);
    }
    append(flash, base, &before, value)
}

/// Records a manifest write at security version `value` in the sector at `base`: one slot
/// appended when `value` is at least the current value (raising it when above), nothing written
/// otherwise. Returns the log as it reads afterwards.
pub fn record<B: FlashBus>(flash: &mut Cfi01<B>, base: u64, value: u32) -> Result<Counter, CounterError> {
    let before = scan(flash, base)?;
    if value < before.value {
        return Ok(before);
    }
    append(flash, base, &before, value)
}

fn append<B: FlashBus>(flash: &mut Cfi01<B>, base: u64, before: &Counter, value: u32) -> Result<Counter, CounterError> {
    let next = before.next.ok_or(CounterError::Full)?;
    for (index, word) in slot(value).into_iter().enumerate() {
        flash.program(next + 4 * index as u64, word)?;
    }
    let after = scan(flash, base)?;
    if after.value != value {
        return Err(CounterError::NotRaised { found: after.value, expected: value });
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::fake::FakeFlash;

    const SECTOR: u64 = 0x400;
    const BASE: u64 = 0x400;

    fn flash() -> Cfi01<FakeFlash> {
        Cfi01::new(
            FakeFlash::new(2 * SECTOR as usize, SECTOR as usize),
            SECTOR,
            [(BASE, BASE + SECTOR), (0, 0), (0, 0)],
        )
    }

    #[test]
    fn an_erased_sector_is_zero() {
        let mut flash = flash();
        assert_eq!(scan(&mut flash, BASE), Ok(Counter { value: 0, next: Some(BASE), torn: 0, at_value: 0 }));
    }

    #[test]
    fn raising_appends_one_slot_and_never_lowers() {
        let mut flash = flash();
        assert_eq!(raise(&mut flash, BASE, 2).unwrap().value, 2);
        assert_eq!(flash.bus().programmed, 4);
        assert_eq!(raise(&mut flash, BASE, 1).unwrap().value, 2, "lower: nothing written");
        assert_eq!(raise(&mut flash, BASE, 2).unwrap().value, 2, "equal: nothing written");
        assert_eq!(flash.bus().programmed, 4);
        let counter = raise(&mut flash, BASE, 7).unwrap();
        assert_eq!(counter, Counter { value: 7, next: Some(BASE + 2 * SLOT_SIZE), torn: 0, at_value: 1 });
        assert_eq!(flash.bus().erased, 0, "the log is never erased");
    }

    #[test]
    fn a_power_cut_at_any_word_leaves_the_old_or_the_new_value() {
        for cut in 0..=4 {
            let mut flash = flash();
            raise(&mut flash, BASE, 3).unwrap();
            flash.bus_mut().power_cut_after = Some(4 + cut);
            let _ = raise(&mut flash, BASE, 5);
            flash.bus_mut().power_on();
            let counter = scan(&mut flash, BASE).unwrap();
            let expected = if cut == 4 { 5 } else { 3 };
            assert_eq!(counter.value, expected, "cut after {cut} words of the new slot");
            assert_eq!(counter.torn, u32::from(cut != 0 && cut != 4));
            // The next append goes past a torn slot and counts.
            assert_eq!(raise(&mut flash, BASE, 9).unwrap().value, 9);
        }
    }

    #[test]
    fn garbage_slots_do_not_count() {
        let mut flash = flash();
        // A slot whose complement is wrong, then one with a value above the good one's.
        for (index, word) in [SLOT_MAGIC, 50, 50, COMMITTED].into_iter().enumerate() {
            flash.program(BASE + 4 * index as u64, word).unwrap();
        }
        for (index, word) in slot(4).into_iter().enumerate() {
            flash.program(BASE + SLOT_SIZE + 4 * index as u64, word).unwrap();
        }
        assert_eq!(
            scan(&mut flash, BASE).unwrap(),
            Counter { value: 4, next: Some(BASE + 2 * SLOT_SIZE), torn: 1, at_value: 1 }
        );
    }

    #[test]
    fn recording_counts_the_writes_at_each_value() {
        let mut flash = flash();
        assert_eq!(record(&mut flash, BASE, 3).unwrap().at_value, 1);
        assert_eq!(record(&mut flash, BASE, 3).unwrap().at_value, 2, "the same value: appended and counted");
        let counter = record(&mut flash, BASE, 3).unwrap();
        assert_eq!((counter.value, counter.at_value, counter.next), (3, 3, Some(BASE + 3 * SLOT_SIZE)));
        assert_eq!(record(&mut flash, BASE, 2).unwrap().at_value, 3, "below: nothing written");
        assert_eq!(flash.bus().programmed, 12);
        let counter = record(&mut flash, BASE, 5).unwrap();
        assert_eq!((counter.value, counter.at_value), (5, 1), "a higher value starts its own count");
        // `raise` never appends an equal value.
        assert_eq!(raise(&mut flash, BASE, 5).unwrap().at_value, 1);
    }

    #[test]
    fn a_full_log_refuses() {
        let mut flash = flash();
        for value in 1..=(SECTOR / SLOT_SIZE) as u32 {
            raise(&mut flash, BASE, value).unwrap();
        }
        let full = scan(&mut flash, BASE).unwrap();
        assert_eq!(full.next, None);
        assert_eq!(raise(&mut flash, BASE, 1000), Err(CounterError::Full));
        assert_eq!(scan(&mut flash, BASE).unwrap().value, (SECTOR / SLOT_SIZE) as u32);
    }
}
