/*
 * ctx_ucontext.c - the portable reference backend: makecontext/swapcontext.
 *
 * glibc's swapcontext saves and restores the signal mask, which costs a
 * rt_sigprocmask system call per switch: this backend is the yardstick for
 * correctness, not for speed.
 *
 * Like the asm backend, a suspended flow keeps its saved registers on its
 * own stack: fastco_uc_switch declares the ucontext_t as a local, and the
 * context's `sp` field points at it.  A made context's first ucontext_t
 * lives at the top of its stack, above the part handed to makecontext.
 */
#define _GNU_SOURCE
#include "ctx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

/* The value in flight between the two halves of a switch (per thread:
 * contexts never move between threads). */
static _Thread_local void *uc_value;

/* What a made context runs, stored next to its first ucontext_t. */
struct uc_start {
    fastco_entry entry;
    void *arg;
};

/* makecontext passes int arguments only: the uc_start pointer comes in two
 * 32-bit halves. */
static void uc_trampoline(unsigned int lo, unsigned int hi)
{
    struct uc_start *s = (struct uc_start *)(((uintptr_t)hi << 16 << 16) | lo);
    s->entry(s->arg, uc_value);
    fastco_ctx_entry_returned();
}

void fastco_uc_make(fastco_ctx *ctx, void *lo, size_t size,
                    fastco_entry entry, void *arg)
{
    uintptr_t top = (uintptr_t)lo + size;
    uintptr_t rec = (top - sizeof(ucontext_t) - sizeof(struct uc_start)) & ~(uintptr_t)15;
    ucontext_t *uc = (ucontext_t *)rec;
    struct uc_start *s = (struct uc_start *)(uc + 1);

    s->entry = entry;
    s->arg = arg;
    if (getcontext(uc) != 0) {
        perror("fastco: getcontext");
        abort();
    }
    uc->uc_stack.ss_sp = lo;
    uc->uc_stack.ss_size = rec - (uintptr_t)lo;   /* rec is 16-byte aligned */
    uc->uc_link = NULL;
    makecontext(uc, (void (*)(void))uc_trampoline, 2,
                (unsigned int)(uintptr_t)s,
                (unsigned int)((uintptr_t)s >> 16 >> 16));
    ctx->sp = uc;
}

void *fastco_uc_switch(fastco_ctx *from, fastco_ctx *to, void *value)
{
    ucontext_t here;

    from->sp = &here;
    uc_value = value;
    if (swapcontext(&here, (ucontext_t *)to->sp) != 0) {
        perror("fastco: swapcontext");
        abort();
    }
    return uc_value;
}
