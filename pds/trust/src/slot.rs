//! The A/B manifest slots' commit record (docs/trusted-boot.md, "Atomic updates"): what makes a
//! manifest slot in secure flash count, and which of two slots is the newer.
//!
//! Each slot is an erase sector of its own (`[trust] manifest` and `manifest_b`): the signed
//! manifest's 672 bytes at its start, then, at [`RECORD_OFFSET`], a 16-byte commit record of four
//! words programmed in this order: magic "TZMC", the slot's sequence number, its complement, and
//! a commit word (0). An update erases the slot it does not boot from, programs the manifest, then
//! the record; the record's last word is the commit. A slot counts only when all four words are
//! right, so a power cut anywhere before that last word leaves the slot uncommitted and the other
//! slot (untouched) in charge. The newer of two committed slots is the one whose sequence is
//! ahead in serial-number arithmetic (RFC 1982 with 32 bits): every update writes the other
//! slot's sequence plus one, so the two never differ by more than one and never tie after an
//! update, and the count may wrap.

use crate::manifest::MANIFEST_SIZE;

/// Where the commit record starts in a slot (right after the manifest, word-aligned).
pub const RECORD_OFFSET: usize = MANIFEST_SIZE;
/// The record's size.
pub const RECORD_SIZE: usize = 16;
/// The bytes of a slot stage 1 reads: the manifest and its record.
pub const SLOT_BYTES: usize = RECORD_OFFSET + RECORD_SIZE;
/// The record's first word ("TZMC", little-endian).
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"TZMC");
/// The record's last word once committed.
pub const COMMITTED: u32 = 0;
/// The sequence `tzmk flash` gives the first manifest (slot A).
pub const INITIAL_SEQUENCE: u32 = 1;

const _: () = assert!(RECORD_OFFSET.is_multiple_of(RECORD_SIZE));

/// The record's four words for `sequence`, in programming order (the commit word last).
pub const fn record_words(sequence: u32) -> [u32; 4] {
    [RECORD_MAGIC, sequence, !sequence, COMMITTED]
}

/// The record's bytes for `sequence` (little-endian words).
pub fn record_bytes(sequence: u32) -> [u8; RECORD_SIZE] {
    let mut bytes = [0u8; RECORD_SIZE];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(record_words(sequence)) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// The sequence of a committed record, `None` for anything else (erased, torn, garbage).
pub fn committed_sequence(record: &[u8]) -> Option<u32> {
    let record: &[u8; RECORD_SIZE] = record.get(..RECORD_SIZE)?.try_into().ok()?;
    let mut words = [0u32; 4];
    for (word, chunk) in words.iter_mut().zip(record.chunks_exact(4)) {
        *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    (words[0] == RECORD_MAGIC && words[2] == !words[1] && words[3] == COMMITTED).then_some(words[1])
}

/// Whether sequence `a` is ahead of `b` (serial-number arithmetic: the difference as a signed
/// 32-bit number is positive).
pub const fn is_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The committed slots (by index, 0 = A, 1 = B), the newer first, from each slot's committed
/// sequence. A tie (never written by an update) puts A first.
pub fn newest_first(sequences: [Option<u32>; 2]) -> impl Iterator<Item = (usize, u32)> {
    let order = match sequences {
        [Some(a), Some(b)] if is_newer(b, a) => [1, 0],
        _ => [0, 1],
    };
    order.into_iter().filter_map(move |slot| sequences[slot].map(|sequence| (slot, sequence)))
}

/// The newest committed slot's manifest bytes in a whole flash image whose slots start at
/// `slots` (byte offsets), unverified: for host tools and tests that look into a flash file.
pub fn committed_manifest(flash: &[u8], slots: [usize; 2]) -> Option<(usize, &[u8])> {
    let sequences = slots.map(|at| flash.get(at + RECORD_OFFSET..at + SLOT_BYTES).and_then(committed_sequence));
    let (slot, _) = newest_first(sequences).next()?;
    Some((slot, &flash[slots[slot]..slots[slot] + MANIFEST_SIZE]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_record_commits() {
        let record = record_bytes(7);
        assert_eq!(committed_sequence(&record), Some(7));
        // Each prefix of the programming order (the rest still erased) does not count.
        for words in 0..4 {
            let mut torn = [0xffu8; RECORD_SIZE];
            torn[..4 * words].copy_from_slice(&record[..4 * words]);
            assert_eq!(committed_sequence(&torn), None, "{words} words programmed");
        }
        let mut wrong = record;
        wrong[8] ^= 1;
        assert_eq!(committed_sequence(&wrong), None, "complement wrong");
        assert_eq!(committed_sequence(&record[..8]), None, "too short");
    }

    #[test]
    fn the_newer_slot_comes_first_across_a_wrap() {
        let order = |s: [Option<u32>; 2]| newest_first(s).collect::<std::vec::Vec<_>>();
        assert_eq!(order([Some(1), Some(2)]), [(1, 2), (0, 1)]);
        assert_eq!(order([Some(3), Some(2)]), [(0, 3), (1, 2)]);
        assert_eq!(order([Some(u32::MAX), Some(0)]), [(1, 0), (0, u32::MAX)]);
        assert_eq!(order([None, Some(5)]), [(1, 5)]);
        assert_eq!(order([Some(5), None]), [(0, 5)]);
        assert_eq!(order([None, None]), []);
        assert_eq!(order([Some(4), Some(4)]), [(0, 4), (1, 4)]);
    }

    #[test]
    fn a_flash_image_names_its_committed_manifest() {
        let mut flash = std::vec![0xffu8; 0x3000];
        assert_eq!(committed_manifest(&flash, [0x1000, 0x2000]), None);
        flash[0x1000..0x1000 + MANIFEST_SIZE].fill(1);
        flash[0x1000 + RECORD_OFFSET..0x1000 + SLOT_BYTES].copy_from_slice(&record_bytes(1));
        flash[0x2000..0x2000 + MANIFEST_SIZE].fill(2);
        assert_eq!(committed_manifest(&flash, [0x1000, 0x2000]).map(|(s, m)| (s, m[0])), Some((0, 1)));
        flash[0x2000 + RECORD_OFFSET..0x2000 + SLOT_BYTES].copy_from_slice(&record_bytes(2));
        assert_eq!(committed_manifest(&flash, [0x1000, 0x2000]).map(|(s, m)| (s, m[0])), Some((1, 2)));
    }
}
