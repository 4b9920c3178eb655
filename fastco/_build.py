"""cffi builder of fastco._core: the C library of csrc/ plus its Python glue.

Used by setup.py (``cffi_modules``) in out-of-line API mode.  The cdef below
mirrors csrc/fastco.h, which is the only public C header.
"""

from __future__ import annotations

import platform

from cffi import FFI

CDEF = """
enum { FASTCO_BACKEND_UCONTEXT = 0, FASTCO_BACKEND_ASM = 1 };
int fastco_backend_available(int backend);
int fastco_backend_get(void);
int fastco_backend_set(int backend);
const char *fastco_backend_name(int backend);
int fastco_backend_lookup(const char *name);

typedef struct fastco_ctx { void *sp; } fastco_ctx;
typedef void (*fastco_entry)(void *arg, void *value);
void fastco_ctx_make(fastco_ctx *ctx, void *lo, size_t size,
                     fastco_entry entry, void *arg);
void *fastco_ctx_switch(fastco_ctx *from, fastco_ctx *to, void *value);
void fastco_ctx_retire(fastco_ctx *ctx);
long fastco_ctx_alive(void);

typedef struct fastco_stack {
    void *lo;
    size_t size;
    void *slot;
    void *pool;
} fastco_stack;
#define FASTCO_STACK_DEFAULT_SIZE ...
#define FASTCO_STACK_MIN_SIZE ...
#define FASTCO_STACK_MAX_SIZE ...
int fastco_stack_get(fastco_stack *st, size_t size);
void fastco_stack_put(fastco_stack *st);
typedef struct fastco_stack_stats {
    size_t arenas;
    size_t mapped_bytes;
    size_t slots;
    size_t in_use;
    size_t hot;
    size_t cold;
    size_t guarded;
    size_t unguarded;
    size_t hot_limit;
    int guard_method;
} fastco_stack_stats;
enum { FASTCO_GUARD_NONE = 0, FASTCO_GUARD_MADVISE = 1, FASTCO_GUARD_MPROTECT = 2 };
void fastco_stack_stats_get(fastco_stack_stats *out);
size_t fastco_stack_set_hot_limit(size_t n);
void fastco_stack_trim(void);
int fastco_stack_guard_hit(const void *addr, size_t *stack_size);
size_t fastco_page_size(void);
void fastco_stack_discard(fastco_stack *st, void *from, void *to);

int fastco_guard_handler_install(void);
int fastco_guard_thread_init(void);
void fastco_guard_thread_fini(void);

/* The Python glue (csrc/pyglue/module.c). */
int fastco_py_install(char *errbuf, size_t errlen);
"""

_ARCH = {
    "x86_64": "csrc/arch/x86_64_sysv.S",
    "amd64": "csrc/arch/x86_64_sysv.S",
    "aarch64": "csrc/arch/aarch64_aapcs.S",
    "arm64": "csrc/arch/aarch64_aapcs.S",
}

SOURCES = [
    "csrc/ctx.c",
    "csrc/ctx_ucontext.c",
    "csrc/stack.c",
    "csrc/guard.c",
    "csrc/pyglue/pystate.c",
    "csrc/pyglue/thread.c",
    "csrc/pyglue/greenlet.c",
    "csrc/pyglue/module.c",
    "csrc/pyglue/hub.c",       # the hub's native core: ring, timers, loop
    "csrc/pyglue/hubfd.c",     # its fd waits and polling
    "csrc/pyglue/hubtype.c",   # its Python types (fastco._native.HubCore)
    "csrc/pyglue/hubsock.c",   # its socket fast paths
]
_arch = _ARCH.get(platform.machine().lower())
if _arch is not None:
    SOURCES.append(_arch)

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "fastco._core",
    '#include "fastco.h"\nint fastco_py_install(char *errbuf, size_t errlen);\n',
    sources=SOURCES,
    include_dirs=["csrc"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-fvisibility=hidden"],
    # The glue reads PyThreadState's fields: full API, per-version build.
    py_limited_api=False,
    define_macros=[("_CFFI_NO_LIMITED_API", None)],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
