"""Choosing the context-switch backend and inspecting coroutine stacks."""

from __future__ import annotations

import os

from fastco._core import ffi, lib

BACKENDS = ("asm", "ucontext")


def available_backends() -> list[str]:
    """The backends compiled in for this machine, fastest first."""
    return [name for name in BACKENDS
            if lib.fastco_backend_available(lib.fastco_backend_lookup(name.encode()))]


def backend() -> str:
    """The backend in use: ``"asm"`` or ``"ucontext"``."""
    return ffi.string(lib.fastco_backend_name(lib.fastco_backend_get())).decode()


def set_backend(name: str) -> None:
    """Select the backend by name.

    Only possible while no coroutine has been started (or all have ended):
    a context can only be resumed by the backend that made it.
    """
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, not {type(name).__name__}")
    ident = lib.fastco_backend_lookup(name.encode())
    if ident < 0 or not lib.fastco_backend_available(ident):
        raise ValueError(f"unknown or unavailable backend {name!r}; "
                         f"available: {', '.join(available_backends())}")
    if lib.fastco_backend_set(ident) != 0:
        from fastco._greenlet import error
        raise error(f"cannot switch to backend {name!r}: "
                    f"{lib.fastco_ctx_alive()} coroutine(s) of backend {backend()!r} are alive")


def stack_stats() -> dict[str, int | str]:
    """Counters of the coroutine stack allocator (see csrc/fastco.h)."""
    s = ffi.new("fastco_stack_stats *")
    lib.fastco_stack_stats_get(s)
    methods = {lib.FASTCO_GUARD_NONE: "none", lib.FASTCO_GUARD_MADVISE: "madvise",
               lib.FASTCO_GUARD_MPROTECT: "mprotect"}
    return {
        "arenas": s.arenas,
        "mapped_bytes": s.mapped_bytes,
        "slots": s.slots,
        "in_use": s.in_use,
        "hot": s.hot,
        "cold": s.cold,
        "guarded": s.guarded,
        "unguarded": s.unguarded,
        "hot_limit": s.hot_limit,
        "guard_method": methods.get(s.guard_method, "unknown"),
        "default_stack_size": lib.FASTCO_STACK_DEFAULT_SIZE,
    }


def _select_from_environment() -> None:
    """Apply FASTCO_BACKEND, if set, when fastco is first imported."""
    name = os.environ.get("FASTCO_BACKEND", "").strip()
    if name:
        try:
            set_backend(name)
        except ValueError as exc:
            raise ImportError(f"FASTCO_BACKEND={name!r}: {exc}") from None
