//! Checkable traffic: the message patterns and checksum `tzctl echo`, the demo and the tests use.

/// Fills `out` with `size` bytes of message `index`: every message differs, so a lost, repeated,
/// reordered or corrupted reply fails its checksum.
pub fn pattern(index: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    // xorshift64; never zero because of the `| 1`.
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    out.extend((0..size).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
}

/// FNV-1a, 64 bits.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_differ_and_checksums_see_it() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        pattern(1, 64, &mut a);
        pattern(2, 64, &mut b);
        assert_ne!(a, b);
        assert_ne!(checksum(&a), checksum(&b));
        b.clone_from(&a);
        b[63] ^= 1;
        assert_ne!(checksum(&a), checksum(&b));
    }
}
