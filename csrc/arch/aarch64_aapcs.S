/*
 * AArch64 (AAPCS64) context switch for fastco's "asm" backend.
 *
 * As on x86-64, a suspended context is its stack pointer: the registers the
 * procedure call standard makes callee-saved are stored on the context's own
 * stack first.
 *
 * Frame of a suspended context, at its saved stack pointer:
 *
 *   offset  content
 *   0x00    d8,  d9    (low halves of v8-v15 are callee-saved)
 *   0x10    d10, d11
 *   0x20    d12, d13
 *   0x30    d14, d15
 *   0x40    x19, x20   (new context: x19 = entry, x20 = arg)
 *   0x50    x21, x22
 *   0x60    x23, x24
 *   0x70    x25, x26
 *   0x80    x27, x28
 *   0x90    x29, x30   (frame pointer; link register = where to resume.
 *                       New context: 0, fastco_asm_trampoline)
 *   0xa0    FPCR, 8 bytes of padding (sp stays 16-byte aligned)
 *   0xb0    (new context: 16 bytes of padding, top of the stack)
 *
 * Everything is saved below the caller's stack pointer: the word at the
 * caller's sp is its own (usually its saved x29).
 */

#if defined(__aarch64__) && defined(__ELF__)

#define FRAME_SIZE 0xb0

        .text

/*
 * void *fastco_asm_switch(void **from_sp, void *to_sp, void *value)
 * x0 = from_sp, x1 = to_sp, x2 = value.  See x86_64_sysv.S.
 */
        .globl  fastco_asm_switch
        .hidden fastco_asm_switch
        .type   fastco_asm_switch, %function
        .p2align 4
fastco_asm_switch:
        .cfi_startproc
        sub     sp, sp, #FRAME_SIZE     /* room for the callee-saved registers */
        .cfi_adjust_cfa_offset FRAME_SIZE
        stp     d8,  d9,  [sp, #0x00]   /* save them */
        stp     d10, d11, [sp, #0x10]
        stp     d12, d13, [sp, #0x20]
        stp     d14, d15, [sp, #0x30]
        stp     x19, x20, [sp, #0x40]
        stp     x21, x22, [sp, #0x50]
        stp     x23, x24, [sp, #0x60]
        stp     x25, x26, [sp, #0x70]
        stp     x27, x28, [sp, #0x80]
        stp     x29, x30, [sp, #0x90]   /* x30: our return address */
        mrs     x9, fpcr
        str     x9, [sp, #0xa0]         /* the FP control register */

        mov     x9, sp
        str     x9, [x0]                /* *from_sp = our stack pointer */
        mov     sp, x1                  /* adopt the other context's stack */

        ldp     d8,  d9,  [sp, #0x00]   /* restore its registers */
        ldp     d10, d11, [sp, #0x10]
        ldp     d12, d13, [sp, #0x20]
        ldp     d14, d15, [sp, #0x30]
        ldp     x19, x20, [sp, #0x40]
        ldp     x21, x22, [sp, #0x50]
        ldp     x23, x24, [sp, #0x60]
        ldp     x25, x26, [sp, #0x70]
        ldp     x27, x28, [sp, #0x80]
        ldp     x29, x30, [sp, #0x90]
        ldr     x9, [sp, #0xa0]
        mrs     x10, fpcr
        cmp     x9, x10
        b.eq    1f                      /* writing fpcr can be slow: only if it differs */
        msr     fpcr, x9
1:      add     sp, sp, #FRAME_SIZE
        mov     x0, x2                  /* hand it `value` as our return value */
        ret                             /* branch to x30: resume it */
        .cfi_endproc
        .size   fastco_asm_switch, .-fastco_asm_switch

/*
 * void *fastco_asm_make(void *top, void (*entry)(void *, void *), void *arg)
 * x0 = top, x1 = entry, x2 = arg; returns the new context's stack pointer.
 */
        .globl  fastco_asm_make
        .hidden fastco_asm_make
        .type   fastco_asm_make, %function
        .p2align 4
fastco_asm_make:
        .cfi_startproc
        and     x0, x0, #~15            /* 16-byte align the top */
        sub     x0, x0, #(FRAME_SIZE + 16) /* frame + padding */
        stp     xzr, xzr, [x0, #0x00]   /* d8-d15 = 0 */
        stp     xzr, xzr, [x0, #0x10]
        stp     xzr, xzr, [x0, #0x20]
        stp     xzr, xzr, [x0, #0x30]
        stp     x1,  x2,  [x0, #0x40]   /* x19 = entry, x20 = arg */
        stp     xzr, xzr, [x0, #0x50]
        stp     xzr, xzr, [x0, #0x60]
        stp     xzr, xzr, [x0, #0x70]
        stp     xzr, xzr, [x0, #0x80]
        adr     x9, fastco_asm_trampoline
        stp     xzr, x9,  [x0, #0x90]   /* x29 = 0, x30 = trampoline */
        mrs     x9, fpcr
        stp     x9, xzr,  [x0, #0xa0]   /* the new context inherits our FP modes */
        ret
        .cfi_endproc
        .size   fastco_asm_make, .-fastco_asm_make

/*
 * First code run by a new context: entry(arg, value of the first switch).
 * The entry function must never return.
 */
        .type   fastco_asm_trampoline, %function
        .p2align 4
fastco_asm_trampoline:
        .cfi_startproc
        .cfi_undefined x30              /* debuggers: the stack begins here */
        mov     x1, x0                  /* value passed by the first switch */
        mov     x0, x20                 /* arg */
        blr     x19                     /* entry(arg, value) */
        bl      fastco_ctx_entry_returned /* never returns: aborts */
        brk     #0
        .cfi_endproc
        .size   fastco_asm_trampoline, .-fastco_asm_trampoline

#endif

        .section .note.GNU-stack,"",%progbits
