"""cffi builder of fastco._core: the C library of csrc/ plus its Python glue.

Used by setup.py (``cffi_modules``) in out-of-line API mode.  The cdef is
read from csrc/fastco.h, the only public C header, so the two cannot drift.
"""

from __future__ import annotations

import os
import platform
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(os.path.dirname(HERE), "csrc", "fastco.h")


def cdef_from_header(path: str) -> str:
    """The cffi cdef of csrc/fastco.h, the one public C header: its
    declarations, without comments, include guards and C++ wrappers, and
    with each #define's value left for the compiler to fill in ("...")."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    out = []
    in_cplusplus = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#ifdef __cplusplus"):
            in_cplusplus = True
        elif in_cplusplus:
            in_cplusplus = not stripped.startswith("#endif")
        elif stripped.startswith("#define "):
            name = stripped.split()[1]
            if name != "FASTCO_H":
                out.append(f"#define {name} ...")
        elif stripped and not stripped.startswith("#"):
            out.append(line)
    return "\n".join(out)


CDEF = cdef_from_header(HEADER) + """

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
    "csrc/pyglue/greenlet.c",  # the greenlet type (Python-facing)
    "csrc/pyglue/coro.c",      # the coroutine behind it: switch, start, end, kills
    "csrc/pyglue/capi.c",      # greenlet's C API: the capsule greenlet._C_API
    "csrc/pyglue/module.c",
    "csrc/pyglue/hub.c",       # the hub's native core: ring, timers, loop
    "csrc/pyglue/hubfd.c",     # its fd waits and polling
    "csrc/pyglue/hubtype.c",   # its Python types (fastco._native.HubCore)
    "csrc/pyglue/hubsock.c",   # its socket fast paths
    "csrc/pyglue/hublock.c",   # the cooperative locks' fast paths
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
