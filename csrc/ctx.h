/*
 * ctx.h - internal: the context backends, and the one place a switch picks
 * its backend.
 *
 * The public entry points (fastco_ctx_make/switch in ctx.c) and the Python
 * glue both go through fastco_ctx_switch_inline, so that the hot path is a
 * predictable branch and a direct call, not an indirect one.
 */
#ifndef FASTCO_CTX_H
#define FASTCO_CTX_H

#include "fastco.h"

#if (defined(__x86_64__) || defined(__aarch64__)) && defined(__ELF__)
#define FASTCO_HAVE_ASM 1
#else
#define FASTCO_HAVE_ASM 0
#endif

#define FASTCO_HIDDEN __attribute__((visibility("hidden")))

/* The backend in use (FASTCO_BACKEND_*); written only by fastco_backend_set. */
extern FASTCO_HIDDEN int fastco_ctx_backend_;

/* asm backend: csrc/arch/<cpu>_<abi>.S */
FASTCO_HIDDEN void *fastco_asm_switch(void **from_sp, void *to_sp, void *value);
FASTCO_HIDDEN void *fastco_asm_make(void *top, fastco_entry entry, void *arg);

/* ucontext backend: csrc/ctx_ucontext.c */
FASTCO_HIDDEN void *fastco_uc_switch(fastco_ctx *from, fastco_ctx *to, void *value);
FASTCO_HIDDEN void fastco_uc_make(fastco_ctx *ctx, void *lo, size_t size,
                                  fastco_entry entry, void *arg);

/* Called if an entry function returns, which it must never do: aborts. */
FASTCO_HIDDEN __attribute__((noreturn)) void fastco_ctx_entry_returned(void);

static inline void *
fastco_ctx_switch_inline(fastco_ctx *from, fastco_ctx *to, void *value)
{
#if FASTCO_HAVE_ASM
    if (__builtin_expect(fastco_ctx_backend_ == FASTCO_BACKEND_ASM, 1))
        return fastco_asm_switch(&from->sp, to->sp, value);
#endif
    return fastco_uc_switch(from, to, value);
}

#endif /* FASTCO_CTX_H */
