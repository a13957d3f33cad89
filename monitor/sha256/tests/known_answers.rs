//! Known answers (FIPS 180-4's examples) and random messages against
//! the `sha2` crate, for every block function this target has: the software one everywhere, the
//! Armv8 one on aarch64 (`make -f build.mk monitor-sha256` runs this file for aarch64-unknown-linux-musl
//! under `qemu-aarch64 -cpu cortex-a53`).

use sha2::Digest as _;
use tzmk_sha256::{BlockFunction, Sha256};

fn hex(digest: [u8; 32]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The block functions to test, by name. On aarch64 the Armv8 one is always among them: a CPU
/// without the instructions fails the test rather than skipping it.
fn block_functions() -> Vec<(&'static str, BlockFunction)> {
    #[allow(unused_mut)]
    let mut functions: Vec<(&'static str, BlockFunction)> = vec![("software", tzmk_sha256::software)];
    #[cfg(target_arch = "aarch64")]
    {
        assert!(
            std::arch::is_aarch64_feature_detected!("sha2"),
            "this CPU has no SHA-256 instructions: run under `qemu-aarch64 -cpu cortex-a53` (or max)"
        );
        functions.push(("armv8", armv8));
    }
    functions
}

#[cfg(target_arch = "aarch64")]
fn armv8(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: block_functions() checked that the CPU has the SHA-256 instructions; Linux does not
    // trap FP/SIMD at EL0.
    unsafe { tzmk_sha256::armv8::compress(state, blocks) }
}

fn reference(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// FIPS 180-4's examples (NIST's "SHA256.pdf", "SHA2_Additional.pdf"): one block, two blocks, the
/// 896-bit message, the empty message, a million 'a's.
#[test]
fn fips_180_4_examples() {
    let million = vec![b'a'; 1_000_000];
    let vectors: [(&str, &[u8], &str); 5] = [
        ("abc", b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "448 bits",
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
        (
            "896 bits",
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
        ),
        ("empty", b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("a million 'a'", &million, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
    ];
    for (function, blocks) in block_functions() {
        for (name, message, expected) in vectors {
            assert_eq!(hex(Sha256::digest(blocks, message)), expected, "{function}: {name}");
        }
        // The million 'a's fed in odd pieces: blocks from the buffer and straight from the data.
        let mut hasher = Sha256::new(blocks);
        for piece in million.chunks(997) {
            hasher.update(piece);
        }
        assert_eq!(hex(hasher.finalize()), vectors[4].2, "{function}: a million 'a' in pieces of 997");
    }
}

/// A deterministic byte stream (xorshift64*).
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, length: usize) -> Vec<u8> {
        (0..length).map(|_| (self.next() >> 56) as u8).collect()
    }
}

/// Random messages of every length to 1,100 bytes and of random lengths to 300 KB, at random
/// offsets (unaligned data), against `sha2`.
#[test]
fn random_messages_match_sha2() {
    let mut stream = Stream(0x7a6d_6b5f_7368_6132);
    for (function, blocks) in block_functions() {
        for length in 0..=1100 {
            let data = stream.bytes(length + 16);
            let offset = length % 16;
            let message = &data[offset..offset + length];
            assert_eq!(Sha256::digest(blocks, message), reference(message), "{function}: length {length}");
        }
        for _ in 0..40 {
            let length = (stream.next() % 300_000) as usize;
            let offset = (stream.next() % 64) as usize;
            let data = stream.bytes(offset + length);
            let message = &data[offset..];
            let split = (stream.next() as usize) % (length + 1);
            let mut hasher = Sha256::new(blocks);
            hasher.update(&message[..split]);
            hasher.update(&message[split..]);
            assert_eq!(hasher.finalize(), reference(message), "{function}: length {length} split at {split}");
        }
    }
}

/// The Armv8 block function leaves every SIMD register zero: nothing of the message or the state
/// stays behind.
#[cfg(target_arch = "aarch64")]
#[test]
fn armv8_leaves_no_simd_state() {
    assert!(std::arch::is_aarch64_feature_detected!("sha2"), "no SHA-256 instructions on this CPU");
    let message = Stream(5).bytes(64 * 3);
    let (blocks, _) = message.as_chunks::<64>();
    let mut state = [0x0123_4567u32; 8];
    let mut registers = [[0xa5u8; 16]; 32];
    // SAFETY: the CPU has the instructions (asserted); the block function reads the three blocks
    // and writes `state`; then 32 stores of the q registers into `registers`, 512 bytes. Every
    // register the call and the stores touch is declared.
    unsafe {
        core::arch::asm!(
            "bl tzmk_sha256_armv8_blocks",
            "stp q0, q1, [x4, #0]", "stp q2, q3, [x4, #32]", "stp q4, q5, [x4, #64]", "stp q6, q7, [x4, #96]",
            "stp q8, q9, [x4, #128]", "stp q10, q11, [x4, #160]", "stp q12, q13, [x4, #192]", "stp q14, q15, [x4, #224]",
            "stp q16, q17, [x4, #256]", "stp q18, q19, [x4, #288]", "stp q20, q21, [x4, #320]", "stp q22, q23, [x4, #352]",
            "stp q24, q25, [x4, #384]", "stp q26, q27, [x4, #416]", "stp q28, q29, [x4, #448]", "stp q30, q31, [x4, #480]",
            inout("x0") state.as_mut_ptr() => _,
            inout("x1") blocks.as_ptr() => _,
            inout("x2") blocks.len() => _,
            out("x3") _,
            in("x4") registers.as_mut_ptr(),
            out("x30") _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _, out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack),
        );
    }
    assert_eq!(registers, [[0u8; 16]; 32], "SIMD registers after the block function");
    let mut expected = [0x0123_4567u32; 8];
    sha2::block_api::compress256(&mut expected, blocks);
    assert_eq!(state, expected, "the state the block function wrote");
}
