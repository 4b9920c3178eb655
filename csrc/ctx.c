/*
 * ctx.c - choosing a context backend, and the public context calls.
 *
 * The default is the fastest backend compiled in.  A context can only be
 * resumed by the backend that made it, so the backend may change only while
 * no made context is alive.
 */
#include "ctx.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fastco_ctx_backend_ = FASTCO_HAVE_ASM ? FASTCO_BACKEND_ASM
                                          : FASTCO_BACKEND_UCONTEXT;

static atomic_long alive;

int fastco_backend_available(int backend)
{
    return backend == FASTCO_BACKEND_UCONTEXT
        || (backend == FASTCO_BACKEND_ASM && FASTCO_HAVE_ASM);
}

int fastco_backend_get(void)
{
    return fastco_ctx_backend_;
}

int fastco_backend_set(int backend)
{
    if (!fastco_backend_available(backend)) {
        errno = EINVAL;
        return -1;
    }
    if (backend != fastco_ctx_backend_ && atomic_load(&alive) != 0) {
        errno = EBUSY;
        return -1;
    }
    fastco_ctx_backend_ = backend;
    return 0;
}

const char *fastco_backend_name(int backend)
{
    switch (backend) {
    case FASTCO_BACKEND_UCONTEXT: return "ucontext";
    case FASTCO_BACKEND_ASM: return "asm";
    default: return NULL;
    }
}

int fastco_backend_lookup(const char *name)
{
    if (name != NULL) {
        if (strcmp(name, "ucontext") == 0)
            return FASTCO_BACKEND_UCONTEXT;
        if (strcmp(name, "asm") == 0)
            return FASTCO_BACKEND_ASM;
    }
    return -1;
}

void fastco_ctx_make(fastco_ctx *ctx, void *lo, size_t size,
                     fastco_entry entry, void *arg)
{
    atomic_fetch_add(&alive, 1);
#if FASTCO_HAVE_ASM
    if (fastco_ctx_backend_ == FASTCO_BACKEND_ASM) {
        ctx->sp = fastco_asm_make((char *)lo + size, entry, arg);
        return;
    }
#endif
    fastco_uc_make(ctx, lo, size, entry, arg);
}

void *fastco_ctx_switch(fastco_ctx *from, fastco_ctx *to, void *value)
{
    return fastco_ctx_switch_inline(from, to, value);
}

void fastco_ctx_retire(fastco_ctx *ctx)
{
    ctx->sp = NULL;
    atomic_fetch_sub(&alive, 1);
}

long fastco_ctx_alive(void)
{
    return atomic_load(&alive);
}

void fastco_ctx_entry_returned(void)
{
    static const char msg[] =
        "fastco: a context's entry function returned; it must end by "
        "switching away for good.  Aborting.\n";
    fputs(msg, stderr);
    abort();
}
