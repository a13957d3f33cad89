//! SHA-256 for the EL3 monitor's trusted boot: a streaming hasher over a block function chosen at
//! run time, the `sha2` crate's portable one or the Armv8 SHA-256 instructions ([`armv8`]).
//!
//! Stage 1 (docs/trusted-boot.md) hashes ~36 MB of Linux's images before either world runs. The
//! `sha2` crate's portable code takes ~32 instructions a byte; the Armv8 instructions take ~1.6.
//! The hasher itself (buffering, padding, the length) is plain Rust tested on the host with
//! [`software`]; only the 64-byte block function differs.
#![cfg_attr(not(test), no_std)]

#[cfg(target_arch = "aarch64")]
pub mod armv8;

/// A SHA-256 block function (FIPS 180-4 6.2.2): folds each 64-byte block into `state` in order.
pub type BlockFunction = fn(state: &mut [u32; 8], blocks: &[[u8; 64]]);

/// The `sha2` crate's block function (its portable code on the monitor's soft-float target).
pub fn software(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    sha2::block_api::compress256(state, blocks);
}

/// Whether the CPU implements the SHA-256 instructions that `armv8::compress` uses, from the ID
/// registers' values (Arm ARM, the ID_AA64ISAR0_EL1 and ID_AA64PFR0_EL1 descriptions):
/// ID_AA64ISAR0_EL1.SHA2, bits [15:12], is 0b0001 (SHA-256) or 0b0010 (SHA-256 and SHA-512);
/// ID_AA64PFR0_EL1.FP [19:16] and .AdvSIMD [23:20] are not 0b1111 (not implemented). Plain values,
/// so that the decision is tested on the host; the monitor reads the registers at EL3.
pub fn armv8_implemented(id_aa64isar0: u64, id_aa64pfr0: u64) -> bool {
    let sha2 = (id_aa64isar0 >> 12) & 0xf;
    let fp = (id_aa64pfr0 >> 16) & 0xf;
    let advsimd = (id_aa64pfr0 >> 20) & 0xf;
    sha2 >= 1 && fp != 0xf && advsimd != 0xf
}

/// FIPS 180-4 5.3.3: the initial hash value.
const INITIAL: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// A SHA-256 computation in progress over one [`BlockFunction`].
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// The bytes of an unfinished block.
    buffer: [u8; 64],
    buffered: usize,
    /// Bytes hashed so far (FIPS 180-4 limits a message to 2^64 bits).
    length: u64,
    blocks: BlockFunction,
}

impl core::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sha256").field("length", &self.length).finish_non_exhaustive()
    }
}

impl Sha256 {
    /// A new computation whose blocks go through `blocks`.
    pub const fn new(blocks: BlockFunction) -> Self {
        Sha256 { state: INITIAL, buffer: [0; 64], buffered: 0, length: 0, blocks }
    }

    /// SHA-256 of `data` in one call.
    pub fn digest(blocks: BlockFunction, data: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new(blocks);
        hasher.update(data);
        hasher.finalize()
    }

    /// Hashes `data` after what came before. Whole blocks go to the block function straight from
    /// `data`, in one call, without a copy.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if self.buffered > 0 {
            let take = data.len().min(64 - self.buffered);
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < 64 {
                return;
            }
            (self.blocks)(&mut self.state, core::slice::from_ref(&self.buffer));
            self.buffered = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        if !blocks.is_empty() {
            (self.blocks)(&mut self.state, blocks);
        }
        self.buffer[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    /// FIPS 180-4 5.1.1's padding (a 1 bit, zeros, the length in bits, big-endian), then the
    /// digest.
    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        let mut padding = [0u8; 72];
        padding[0] = 0x80;
        // 0x80, then zeros up to the last 8 bytes of a block, then the length: 9..=72 bytes.
        let zeros = (64 + 56 - 1 - self.buffered) % 64;
        padding[1 + zeros..9 + zeros].copy_from_slice(&bits.to_be_bytes());
        self.update(&padding[..9 + zeros]);
        debug_assert!(self.buffered == 0);
        let mut digest = [0u8; 32];
        for (bytes, word) in digest.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn reference(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    /// A deterministic byte stream (xorshift64*): test data without a random-number crate.
    fn bytes(seed: u64, length: usize) -> ([u8; 4096], usize) {
        let mut state = seed | 1;
        let mut out = [0u8; 4096];
        for byte in &mut out[..length] {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            *byte = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
        (out, length)
    }

    #[test]
    fn every_length_around_the_block_and_padding_boundaries_matches_sha2() {
        for length in 0..=300 {
            let (data, length) = bytes(length as u64, length);
            assert_eq!(Sha256::digest(software, &data[..length]), reference(&data[..length]), "length {length}");
        }
    }

    #[test]
    fn any_split_of_a_message_gives_the_same_digest() {
        let (data, length) = bytes(7, 1000);
        let data = &data[..length];
        let whole = reference(data);
        for first in [0, 1, 55, 56, 63, 64, 65, 127, 128, 500, 999, 1000] {
            for second in [0, 1, 63, 64, 200] {
                let second = (first + second).min(length);
                let mut hasher = Sha256::new(software);
                hasher.update(&data[..first]);
                hasher.update(&data[first..second]);
                hasher.update(&[]);
                hasher.update(&data[second..]);
                assert_eq!(hasher.finalize(), whole, "split at {first} and {second}");
            }
        }
    }

    #[test]
    fn byte_by_byte_matches_sha2() {
        let (data, length) = bytes(99, 4096);
        let mut hasher = Sha256::new(software);
        for byte in &data[..length] {
            hasher.update(core::slice::from_ref(byte));
        }
        assert_eq!(hasher.finalize(), reference(&data[..length]));
    }

    thread_local! {
        static BLOCKS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    fn counting(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        BLOCKS.with(|count| count.set(count.get() + blocks.len()));
        software(state, blocks);
    }

    #[test]
    fn every_block_goes_through_the_block_function_given() {
        for (length, expected) in [(0, 1), (55, 1), (56, 2), (64, 2), (119, 2), (120, 3), (4096, 65)] {
            BLOCKS.with(|count| count.set(0));
            let (data, length) = bytes(3, length);
            assert_eq!(Sha256::digest(counting, &data[..length]), reference(&data[..length]));
            assert_eq!(BLOCKS.with(|count| count.get()), expected, "length {length}");
        }
    }
}

#[cfg(test)]
mod id_tests {
    use super::armv8_implemented as implemented;

    #[test]
    fn the_id_registers_decide() {
        // Cortex-A53 with the Cryptographic Extension (TRM 4.3.x): ISAR0 0x11120, PFR0 0x2222.
        assert!(implemented(0x1_1120, 0x2222));
        // SHA-512 as well (0b0010).
        assert!(implemented(0x2_2120, 0x2222));
        // No SHA-256 (a Cortex-A53 without the Cryptographic Extension: ISAR0 0).
        assert!(!implemented(0, 0x2222));
        assert!(!implemented(0x1_0120, 0x2222));
        // No Advanced SIMD, or no FP: the instructions cannot run.
        assert!(!implemented(0x1_1120, 0xf0_2222));
        assert!(!implemented(0x1_1120, 0x0f_2222));
    }
}
