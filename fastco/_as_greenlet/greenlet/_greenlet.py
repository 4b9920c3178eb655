"""``greenlet._greenlet`` served by fastco: what greenlet's extension module
holds, for code that imports it by that name.

Besides the public API, greenlet's extension has a few functions about its
own housekeeping, which its test suite and some tools call; here they report
fastco's, which differs: fastco needs no deferred cleanup of threads that
ended (a thread's greenlets are killed on that thread as it exits), so there
is never any cleanup pending and none costs any time.
"""

from __future__ import annotations

import sys

from fastco import GreenletExit, error, getcurrent, gettrace, greenlet, settrace
from fastco._native import _C_API, _name_as_greenlet, get_total_main_greenlets, set_thread_local

# Served as greenlet, the type bears greenlet's name (reprs, C-level messages).
_name_as_greenlet()

#: Switches are traced (settrace), greenlets are collected by the cyclic GC,
#: and each greenlet runs in its own contextvars context (greenback checks
#: this one: without it, it would drop a task's context variables).
GREENLET_USE_GC = True
GREENLET_USE_TRACING = True
GREENLET_USE_CONTEXT_VARS = True

#: Units of get_clocks_used_doing_optional_cleanup() (as time.clock's were).
CLOCKS_PER_SEC = 1_000_000

_optional_cleanup = True


def get_pending_cleanup_count() -> int:
    """Number of thread cleanups waiting to run: always 0 with fastco, which
    cleans a thread's greenlets up on that thread as it exits."""
    return 0


def enable_optional_cleanup(flag: object) -> None:
    """Enable or disable greenlet's optional cleanup of greenlets leaked by
    threads that exited.  fastco has nothing of the kind to do; the flag is
    kept so that get_clocks_used_doing_optional_cleanup() answers as greenlet's."""
    global _optional_cleanup
    _optional_cleanup = bool(flag)


def get_clocks_used_doing_optional_cleanup() -> int | None:
    """Processor time spent on that cleanup: 0, or None while it is disabled."""
    return 0 if _optional_cleanup else None


__all__ = [
    "_C_API",
    "CLOCKS_PER_SEC",
    "GREENLET_USE_CONTEXT_VARS",
    "GREENLET_USE_GC",
    "GREENLET_USE_TRACING",
    "GreenletExit",
    "enable_optional_cleanup",
    "error",
    "get_clocks_used_doing_optional_cleanup",
    "get_pending_cleanup_count",
    "get_total_main_greenlets",
    "getcurrent",
    "gettrace",
    "greenlet",
    "set_thread_local",
    "settrace",
]

if sys.version_info < (3, 13):
    # As in greenlet: CPython 3.13 dropped the per-thread trashcan counter.
    from fastco._native import get_tstate_trash_delete_nesting  # noqa: F401 - re-exported

    __all__.append("get_tstate_trash_delete_nesting")
