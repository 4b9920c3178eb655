/*
 * x86-64 System V context switch for fastco's "asm" backend.
 *
 * A suspended context is nothing but its stack pointer: everything the ABI
 * requires a callee to preserve is pushed on the context's own stack before
 * the stack pointer is saved, so a switch makes no system call and touches
 * one cache line of each stack.
 *
 * Frame of a suspended context, at its saved stack pointer:
 *
 *   offset  size  content
 *   0x00    4     MXCSR (control bits are callee-saved)
 *   0x04    2     x87 control word (callee-saved)
 *   0x06    2     padding
 *   0x08    8     r15
 *   0x10    8     r14
 *   0x18    8     r13   (new context: the entry function's `arg`)
 *   0x20    8     r12   (new context: the entry function)
 *   0x28    8     rbx
 *   0x30    8     rbp   (new context: 0, ends frame-pointer walks)
 *   0x38    8     return address (new context: fastco_asm_trampoline)
 *   0x40          (new context: 16 bytes of padding, top of the stack)
 */

#if defined(__x86_64__) && defined(__ELF__)

#define FRAME_SIZE 0x40

        .text

/*
 * void *fastco_asm_switch(void **from_sp, void *to_sp, void *value)
 *
 * Saves the running context, stores its stack pointer in *from_sp, resumes
 * the context whose stack pointer is to_sp, and returns `value` there.  The
 * call returns in the original context when something switches back to it,
 * with the value passed by that switch.
 */
        .globl  fastco_asm_switch
        .hidden fastco_asm_switch
        .type   fastco_asm_switch, @function
        .p2align 4
fastco_asm_switch:
        .cfi_startproc
        pushq   %rbp                    /* callee-saved registers ... */
        .cfi_adjust_cfa_offset 8
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        leaq    -8(%rsp), %rsp          /* ... and room for the FP control words */
        .cfi_adjust_cfa_offset 8
        stmxcsr (%rsp)                  /* save MXCSR */
        fnstcw  4(%rsp)                 /* save the x87 control word */

        movq    %rsp, (%rdi)            /* *from_sp = our stack pointer */
        movq    %rsi, %rsp              /* adopt the other context's stack */

        ldmxcsr (%rsp)                  /* restore its MXCSR */
        fldcw   4(%rsp)                 /* restore its x87 control word */
        leaq    8(%rsp), %rsp
        popq    %r15                    /* restore its callee-saved registers */
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        movq    %rdx, %rax              /* hand it `value` as our return value */
        ret                             /* resume it */
        .cfi_endproc
        .size   fastco_asm_switch, .-fastco_asm_switch

/*
 * void *fastco_asm_make(void *top, void (*entry)(void *, void *), void *arg)
 *
 * Lays out, below `top`, a frame that fastco_asm_switch can resume: it
 * "returns" into fastco_asm_trampoline with entry and arg in r12/r13.
 * Returns the stack pointer to store in the new context.
 */
        .globl  fastco_asm_make
        .hidden fastco_asm_make
        .type   fastco_asm_make, @function
        .p2align 4
fastco_asm_make:
        .cfi_startproc
        movq    %rdi, %rax
        andq    $-16, %rax              /* 16-byte align the top */
        subq    $(FRAME_SIZE + 16), %rax /* frame + padding; rax stays 16-aligned */
        stmxcsr (%rax)                  /* the new context inherits our FP modes */
        fnstcw  4(%rax)
        movw    $0, 6(%rax)
        movq    $0, 0x08(%rax)          /* r15 */
        movq    $0, 0x10(%rax)          /* r14 */
        movq    %rdx, 0x18(%rax)        /* r13 = arg */
        movq    %rsi, 0x20(%rax)        /* r12 = entry */
        movq    $0, 0x28(%rax)          /* rbx */
        movq    $0, 0x30(%rax)          /* rbp = 0 */
        leaq    fastco_asm_trampoline(%rip), %rcx
        movq    %rcx, 0x38(%rax)        /* return address */
        ret
        .cfi_endproc
        .size   fastco_asm_make, .-fastco_asm_make

/*
 * First code run by a new context.  After the `ret` of fastco_asm_switch the
 * stack pointer is 16-byte aligned, as a call requires.  The entry function
 * gets (arg, value of the first switch) and must never return.
 */
        .type   fastco_asm_trampoline, @function
        .p2align 4
fastco_asm_trampoline:
        .cfi_startproc
        .cfi_undefined rip              /* debuggers: the stack begins here */
        movq    %r13, %rdi              /* arg */
        movq    %rax, %rsi              /* value passed by the first switch */
        callq   *%r12                   /* entry(arg, value) */
        callq   fastco_ctx_entry_returned /* never returns: aborts */
        hlt
        .cfi_endproc
        .size   fastco_asm_trampoline, .-fastco_asm_trampoline

#endif

        .section .note.GNU-stack,"",@progbits
