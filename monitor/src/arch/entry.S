/*
 * tzmk monitor: reset, exception vectors and world entry (AArch64, EL3).
 * Arm ARM D1.10 (exception entry), D1.11 (ERET), D13 (VBAR_EL3 vector layout).
 */

.equ FRAME, 20 * 8            /* x0..x18, x30 */
.equ EC_SMC64, 0x17

/* Every core starts here at EL3, MMU off, in secure flash: the reset stub, linked and run at its
 * flash address. Core 0 copies the monitor's image (code, read-only data, .data) from flash to its
 * RAM and zeroes .bss; the other cores wait here until it has, then every core leaves flash for
 * good (the monitor writes flash at run time, and a CFI flash busy programming answers status,
 * not instructions: docs/monitor.md, "Boot order"). */
.section .text.reset, "ax"
.global _start
_start:
    mrs     x19, mpidr_el1
    ubfx    x20, x19, #8, #16           /* Aff1..Aff2 */
    and     x19, x19, #0xff             /* Aff0: the core number */
    cbnz    x20, reset_park
    cmp     x19, #{cores}
    b.hs    reset_park
    cbnz    x19, reset_wait

    /* Core 0: [__image_start, __data_end) from its load copy in flash, then .bss zeroed. */
    ldr     x0, =__image_start
    ldr     x1, =__data_end
    ldr     x2, =__image_load
1:  cmp     x0, x1
    b.hs    2f
    ldp     x3, x4, [x2], #16
    stp     x3, x4, [x0], #16
    b       1b
2:  ldr     x0, =__bss_start
    ldr     x1, =__bss_end
3:  cmp     x0, x1
    b.hs    4f
    stp     xzr, xzr, [x0], #16
    b       3b
    /* The copied code must be what every core fetches (Arm ARM D7.5.9: instruction cache
     * maintenance after writing instructions). */
4:  ic      iallu
    dsb     sy
    isb
    ldr     x1, =tzmk_image_copied
    ldr     x2, ={copied_magic}
    str     x2, [x1]
    dsb     sy
    sev
    ldr     x0, =ram_start
    br      x0

reset_wait:
    ldr     x1, =tzmk_image_copied
    ldr     x2, ={copied_magic}
5:  ldr     x3, [x1]
    cmp     x3, x2
    b.eq    6f
    wfe
    b       5b
6:  ic      iallu
    isb
    ldr     x0, =ram_start
    br      x0

reset_park:
    wfi
    b       reset_park
    .ltorg

/* The image, in RAM from here on. */
.section .text.boot, "ax"
ram_start:
    mrs     x19, mpidr_el1
    and     x19, x19, #0xff

    /* sp = top of this core's stack slot */
    ldr     x0, =__stacks_start
    add     x1, x19, #1
    mov     x2, #{stack_slot}
    madd    x0, x1, x2, x0
    mov     sp, x0

    ldr     x0, =vectors
    msr     vbar_el3, x0
    isb

    cbnz    x19, secondary
    mov     x0, x19
    bl      boot_core_main
    b       park_forever

    /* Other cores: wait until core 0 publishes the boot magic (page tables built, stage 1 done). */
secondary:
    ldr     x1, =tzmk_boot_magic
    ldr     x2, ={boot_magic}
7:  ldr     x3, [x1]
    cmp     x3, x2
    b.eq    8f
    wfe
    b       7b
8:  mov     x0, x19
    bl      secondary_core_main
park_forever:
    wfi
    b       park_forever

/* fn enter_world(entry, spsr, scr, x0, stack_top) -> !: leave EL3 for a world, for good. */
.section .text.enter_world, "ax"
.global enter_world
enter_world:
    mov     sp, x4
    msr     elr_el3, x0
    msr     spsr_el3, x1
    msr     scr_el3, x2
    isb
    mov     x0, x3
    /* Nothing of the monitor's leaks into the world. */
    mov x1, xzr
    mov x2, xzr
    mov x3, xzr
    mov x4, xzr
    mov x5, xzr
    mov x6, xzr
    mov x7, xzr
    mov x8, xzr
    mov x9, xzr
    mov x10, xzr
    mov x11, xzr
    mov x12, xzr
    mov x13, xzr
    mov x14, xzr
    mov x15, xzr
    mov x16, xzr
    mov x17, xzr
    mov x18, xzr
    mov x19, xzr
    mov x20, xzr
    mov x21, xzr
    mov x22, xzr
    mov x23, xzr
    mov x24, xzr
    mov x25, xzr
    mov x26, xzr
    mov x27, xzr
    mov x28, xzr
    mov x29, xzr
    mov x30, xzr
    eret

/* fn park_core(core, stack_top) -> !: CPU_OFF; a fresh stack, then wait for CPU_ON. */
.global park_core
park_core:
    mov     sp, x1
    bl      parked_core_main
    b       park_forever

/* The vector table (VBAR_EL3). Only synchronous exceptions from a lower EL (SMCs) are expected. */
/* A fresh stack first: the exception may be a stack overflow into the guard page. */
.macro unexpected kind
    .balign 0x80
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    add     x1, x1, #1
    ldr     x2, =__stacks_start
    mov     x3, #{stack_slot}
    madd    x2, x1, x3, x2
    mov     sp, x2
    mov     x0, #\kind
    b       unexpected_exception
.endm

.section .text.vectors, "ax"
.balign 2048
vectors:
    unexpected 0        /* current EL, SP_EL0: sync */
    unexpected 1        /* irq */
    unexpected 2        /* fiq */
    unexpected 3        /* serror */
    unexpected 4        /* current EL, SP_ELx: sync */
    unexpected 5
    unexpected 6
    unexpected 7
    .balign 0x80        /* lower EL, AArch64: sync */
    b       lower_sync
    unexpected 9
    unexpected 10
    unexpected 11
    unexpected 12       /* lower EL, AArch32 */
    unexpected 13
    unexpected 14
    unexpected 15

/* An SMC from S-EL1 or NS-EL1: save the caller-saved registers (SMCCC 1.2: x4..x17 are
 * preserved; Rust may clobber x0..x18 and x30), dispatch, restore, return. */
.section .text.smc, "ax"
lower_sync:
    sub     sp, sp, #FRAME
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x30, [sp, #144]
    mrs     x0, esr_el3
    lsr     x1, x0, #26
    cmp     x1, #EC_SMC64
    b.ne    not_an_smc
    mov     x0, sp
    bl      handle_smc
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x30, [sp, #144]
    add     sp, sp, #FRAME
    eret
not_an_smc:
    mov     x0, #8
    b       unexpected_exception
