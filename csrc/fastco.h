/*
 * fastco.h - the public C API of fastco's context library.
 *
 * Three pieces, usable from C alone (no Python involved):
 *
 *   contexts  make an execution context on a stack, and switch between
 *             contexts, through one of two backends chosen at run time:
 *             "ucontext" (makecontext/swapcontext, the portable reference)
 *             and "asm" (a few instructions per switch, no system call);
 *   stacks    mmap'd coroutine stacks with a guard page below each one,
 *             carved from large arenas and recycled through a cache;
 *   guard     a SIGSEGV handler that names a coroutine stack overflow.
 *
 * The cffi cdef in fastco/_build.py mirrors this file; nothing else is
 * public.  All functions are thread-safe unless said otherwise; a context
 * must only ever be switched to from the thread that runs it.
 */
#ifndef FASTCO_H
#define FASTCO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Backends
 */

/* Backend identifiers. */
enum {
    FASTCO_BACKEND_UCONTEXT = 0,   /* makecontext/swapcontext (syscall per switch) */
    FASTCO_BACKEND_ASM = 1         /* hand-written switch for this CPU and ABI */
};

/* Returns 1 if `backend` is compiled in for this platform, else 0. */
int fastco_backend_available(int backend);

/* The backend used by fastco_ctx_make and fastco_ctx_switch. */
int fastco_backend_get(void);

/* Selects the backend.  Returns 0, or -1 with errno EINVAL (unknown or not
 * available here) or EBUSY (contexts made by the current backend are still
 * alive: they can only be resumed by the backend that made them). */
int fastco_backend_set(int backend);

/* "ucontext" or "asm" for a backend identifier, NULL if unknown. */
const char *fastco_backend_name(int backend);

/* The identifier for a backend name, or -1 if unknown. */
int fastco_backend_lookup(const char *name);

/* ------------------------------------------------------------------------
 * Contexts
 *
 * A context is a suspended flow of control.  A thread's own flow needs no
 * making: pass a zeroed fastco_ctx as `from` and it receives the thread's
 * state.  A new context is made on a stack with an entry function, which
 * starts at the first switch to it and must never return: its last act is a
 * switch away, after which its stack may be reused.
 */

/* Opaque to users: where a suspended context was left. */
typedef struct fastco_ctx {
    void *sp;
} fastco_ctx;

/* Entry function of a made context: `arg` is the one given to
 * fastco_ctx_make, `value` the one passed by the first switch to it. */
typedef void (*fastco_entry)(void *arg, void *value);

/* Makes `ctx` ready to run entry(arg, value) on the stack [lo, lo + size),
 * which must stay untouched by anyone else until the context is retired.
 * size must be at least FASTCO_CTX_MIN_STACK. */
#define FASTCO_CTX_MIN_STACK 4096
void fastco_ctx_make(fastco_ctx *ctx, void *lo, size_t size,
                     fastco_entry entry, void *arg);

/* Suspends the running flow into `from` and resumes `to`, handing it
 * `value`.  Returns, in the suspended flow, the value passed by whichever
 * switch resumes `from`. */
void *fastco_ctx_switch(fastco_ctx *from, fastco_ctx *to, void *value);

/* Declares that a made context will never run again (its entry function
 * switched away for the last time, or it never started): its stack may be
 * reused, and once no made context is alive the backend may be changed. */
void fastco_ctx_retire(fastco_ctx *ctx);

/* Number of made contexts not yet retired. */
long fastco_ctx_alive(void);

/* ------------------------------------------------------------------------
 * Stacks
 *
 * Memory of one stack slot, inside an arena (one large mmap):
 *
 *   high  +---------------------------+ <- lo + size: the stack starts here
 *         |  stack, grows down        |
 *         |  (when the slot is cached,|
 *         |   its top holds the cache |
 *         |   list node)              |
 *         |            ...            |
 *         +---------------------------+ <- lo
 *         |  guard page: no access    |
 *   low   +---------------------------+ <- start of the slot
 *
 * Only touched pages use memory.  A freed stack goes to a LIFO cache of
 * "hot" stacks (still resident: reusing one costs no page fault); past the
 * hot limit its pages are given back to the kernel (MADV_DONTNEED) and it
 * waits, "cold", for reuse.  Arenas are never unmapped.
 *
 * Guard pages are installed with MADV_GUARD_INSTALL where the kernel has it
 * (Linux 6.13+), which costs no memory map entry; otherwise with mprotect,
 * which splits the arena's mapping: two map entries per stack, counted
 * against vm.max_map_count.  Past a budget of a quarter of that limit,
 * mprotect guards are no longer installed (see fastco_stack_stats).
 */

/* A stack handed out by fastco_stack_get. */
typedef struct fastco_stack {
    void *lo;          /* lowest usable byte */
    size_t size;       /* usable bytes: the stack grows down from lo + size */
    void *slot;        /* private: start of the slot (the guard page) */
    void *pool;        /* private: the size class it returns to */
} fastco_stack;

/* Default usable size, in bytes, when 0 is asked for: 8 MiB, the size of a
 * thread's stack, so that code runs as deep in a coroutine as on a thread.
 * It is address space: only the pages a coroutine touches cost memory. */
#define FASTCO_STACK_DEFAULT_SIZE ((size_t)8 << 20)

/* Smallest usable size handed out, in bytes (smaller requests round up). */
#define FASTCO_STACK_MIN_SIZE ((size_t)16 << 10)

/* Largest usable size accepted, in bytes. */
#define FASTCO_STACK_MAX_SIZE ((size_t)4 << 30)

/* Gets a stack of at least `size` usable bytes (0: the default), rounded up
 * to whole pages.  Returns 0, or an errno value: EINVAL (size too large),
 * ENOMEM (no memory or address space). */
int fastco_stack_get(fastco_stack *st, size_t size);

/* Returns a stack to the cache.  `st` is cleared. */
void fastco_stack_put(fastco_stack *st);

/* Counters describing the stack allocator, for tests and tuning. */
typedef struct fastco_stack_stats {
    size_t arenas;        /* arenas mapped */
    size_t mapped_bytes;  /* bytes of address space in arenas */
    size_t slots;         /* slots carved from arenas so far */
    size_t in_use;        /* stacks handed out and not returned */
    size_t hot;           /* cached stacks still resident */
    size_t cold;          /* cached stacks whose memory was given back */
    size_t guarded;       /* carved slots with a guard page */
    size_t unguarded;     /* carved slots without one (mprotect budget spent) */
    size_t hot_limit;     /* the hot cache size, see fastco_stack_set_hot_limit */
    int guard_method;     /* FASTCO_GUARD_* */
} fastco_stack_stats;

enum {
    FASTCO_GUARD_NONE = 0,      /* not decided yet (no slot carved) */
    FASTCO_GUARD_MADVISE = 1,   /* MADV_GUARD_INSTALL */
    FASTCO_GUARD_MPROTECT = 2   /* mprotect(PROT_NONE) */
};

void fastco_stack_stats_get(fastco_stack_stats *out);

/* Gives the pages of [from, to) (clipped to the stack, rounded inwards to
 * whole pages) back to the kernel: they read as zeros when next touched.
 * For a stack about to be cached whose owner ran deep. */
void fastco_stack_discard(fastco_stack *st, void *from, void *to);

/* Sets how many freed stacks stay resident for fast reuse (default 256);
 * stacks cached beyond it are made cold.  Returns the previous limit. */
size_t fastco_stack_set_hot_limit(size_t n);

/* Gives the memory of every hot cached stack back to the kernel. */
void fastco_stack_trim(void);

/* If `addr` lies in the guard page of a fastco stack, returns 1 and stores
 * the usable size of that stack in *stack_size; else returns 0.
 * Async-signal-safe: meant for a SIGSEGV handler. */
int fastco_stack_guard_hit(const void *addr, size_t *stack_size);

/* The system page size. */
size_t fastco_page_size(void);

/* ------------------------------------------------------------------------
 * Guard page faults
 */

/* Installs, once per process, a SIGSEGV/SIGBUS handler that prints a clear
 * message when a fault hits a fastco guard page (a coroutine stack
 * overflow), then hands the signal to the disposition that was there before
 * (so the process still ends, with a core dump or Python's faulthandler
 * traceback as usual).  Returns 0, or -1 with errno set. */
int fastco_guard_handler_install(void);

/* Gives the calling thread an alternate signal stack if it has none: the
 * handler cannot run on the stack that overflowed.  Returns 0 or -1. */
int fastco_guard_thread_init(void);

/* Takes down the calling thread's alternate signal stack if
 * fastco_guard_thread_init made it; call before the thread exits. */
void fastco_guard_thread_fini(void);

#ifdef __cplusplus
}
#endif

#endif /* FASTCO_H */
