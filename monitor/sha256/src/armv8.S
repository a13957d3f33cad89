/*
 * tzmk_sha256_armv8_blocks(state: *mut [u32; 8], blocks: *const [u8; 64], count: usize):
 * the SHA-256 block function (FIPS 180-4 6.2.2) with the Armv8 Cryptographic Extension's SHA-256
 * instructions (Arm ARM C7.2: SHA256H, SHA256H2, SHA256SU0, SHA256SU1; FEAT_SHA256).
 *
 * Hand-written because the monitor's target (aarch64-unknown-none-softfloat) has no FP/SIMD: the
 * compiler must never emit those instructions there (the SMC path keeps no world's FP state), and
 * enabling `neon` for a Rust function on a soft-float target is unsound (rustc warns: the ABI of
 * the function would change). Assembly is the only way to use the instructions, and keeping them in
 * this one symbol lets the build check that no other code of the monitor has any (build.mk).
 *
 * count >= 1. Uses x0..x3 and v0..v31 and no stack; every v register is zero on return, so nothing
 * derived from the data stays in the SIMD registers. Loads of 16 bytes and of 4-byte lanes only:
 * state must be 4-byte aligned, blocks may have any alignment (in Normal memory).
 *
 * Registers: v0 = ABCD, v1 = EFGH, v2 = ABCD before the four rounds (SHA256H2 needs it),
 * v4..v7 = the message schedule W[t..t+15] in four lanes of four, v8/v9 = the state before the
 * block, v10 = W + K of four rounds, v16..v31 = the 64 round constants K.
 */
    .arch_extension fp
    .arch_extension simd
    .arch_extension sha2

/* Four rounds with W[t..t+3] = \w0, then W[t+16..t+19] into \w0 from \w0..\w3. */
.macro tzmk_sha256_rounds_schedule w0, w1, w2, w3, k
    add         v10.4s, \w0\().4s, \k\().4s
    sha256su0   \w0\().4s, \w1\().4s
    mov         v2.16b, v0.16b
    sha256h     q0, q1, v10.4s
    sha256h2    q1, q2, v10.4s
    sha256su1   \w0\().4s, \w2\().4s, \w3\().4s
.endm

/* The last sixteen rounds: no schedule. */
.macro tzmk_sha256_rounds w0, k
    add         v10.4s, \w0\().4s, \k\().4s
    mov         v2.16b, v0.16b
    sha256h     q0, q1, v10.4s
    sha256h2    q1, q2, v10.4s
.endm

    .section .text.tzmk_sha256_armv8_blocks, "ax", %progbits
    .balign 16
    .global tzmk_sha256_armv8_blocks
    .type tzmk_sha256_armv8_blocks, %function
tzmk_sha256_armv8_blocks:
    adrp        x3, .Ltzmk_sha256_k
    add         x3, x3, :lo12:.Ltzmk_sha256_k
    ld1         {v16.4s, v17.4s, v18.4s, v19.4s}, [x3], #64
    ld1         {v20.4s, v21.4s, v22.4s, v23.4s}, [x3], #64
    ld1         {v24.4s, v25.4s, v26.4s, v27.4s}, [x3], #64
    ld1         {v28.4s, v29.4s, v30.4s, v31.4s}, [x3]
    ld1         {v0.4s, v1.4s}, [x0]
.Ltzmk_sha256_block:
    /* The block's sixteen big-endian words. */
    ld1         {v4.16b, v5.16b, v6.16b, v7.16b}, [x1], #64
    mov         v8.16b, v0.16b
    mov         v9.16b, v1.16b
    rev32       v4.16b, v4.16b
    rev32       v5.16b, v5.16b
    rev32       v6.16b, v6.16b
    rev32       v7.16b, v7.16b
    tzmk_sha256_rounds_schedule v4, v5, v6, v7, v16
    tzmk_sha256_rounds_schedule v5, v6, v7, v4, v17
    tzmk_sha256_rounds_schedule v6, v7, v4, v5, v18
    tzmk_sha256_rounds_schedule v7, v4, v5, v6, v19
    tzmk_sha256_rounds_schedule v4, v5, v6, v7, v20
    tzmk_sha256_rounds_schedule v5, v6, v7, v4, v21
    tzmk_sha256_rounds_schedule v6, v7, v4, v5, v22
    tzmk_sha256_rounds_schedule v7, v4, v5, v6, v23
    tzmk_sha256_rounds_schedule v4, v5, v6, v7, v24
    tzmk_sha256_rounds_schedule v5, v6, v7, v4, v25
    tzmk_sha256_rounds_schedule v6, v7, v4, v5, v26
    tzmk_sha256_rounds_schedule v7, v4, v5, v6, v27
    tzmk_sha256_rounds v4, v28
    tzmk_sha256_rounds v5, v29
    tzmk_sha256_rounds v6, v30
    tzmk_sha256_rounds v7, v31
    add         v0.4s, v0.4s, v8.4s
    add         v1.4s, v1.4s, v9.4s
    subs        x2, x2, #1
    b.ne        .Ltzmk_sha256_block
    st1         {v0.4s, v1.4s}, [x0]
    /* Nothing of the data or the state stays in a SIMD register. */
    movi        v0.16b, #0
    movi        v1.16b, #0
    movi        v2.16b, #0
    movi        v3.16b, #0
    movi        v4.16b, #0
    movi        v5.16b, #0
    movi        v6.16b, #0
    movi        v7.16b, #0
    movi        v8.16b, #0
    movi        v9.16b, #0
    movi        v10.16b, #0
    movi        v11.16b, #0
    movi        v12.16b, #0
    movi        v13.16b, #0
    movi        v14.16b, #0
    movi        v15.16b, #0
    movi        v16.16b, #0
    movi        v17.16b, #0
    movi        v18.16b, #0
    movi        v19.16b, #0
    movi        v20.16b, #0
    movi        v21.16b, #0
    movi        v22.16b, #0
    movi        v23.16b, #0
    movi        v24.16b, #0
    movi        v25.16b, #0
    movi        v26.16b, #0
    movi        v27.16b, #0
    movi        v28.16b, #0
    movi        v29.16b, #0
    movi        v30.16b, #0
    movi        v31.16b, #0
    ret
    .size tzmk_sha256_armv8_blocks, . - tzmk_sha256_armv8_blocks

/* FIPS 180-4 4.2.2: the round constants. Data, not code: the FP/SIMD check reads code only. */
    .section .rodata.tzmk_sha256_k, "a", %progbits
    .balign 16
.Ltzmk_sha256_k:
    .word 0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5
    .word 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174
    .word 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da
    .word 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967
    .word 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85
    .word 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070
    .word 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3
    .word 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
    .text
