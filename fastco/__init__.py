"""fastco: coroutines for CPython whose context switch is done in C.

The greenlet API (``greenlet``, ``getcurrent``, ``GreenletExit``, ...) is a
drop-in for the greenlet package: ``from fastco import greenlet``.
"""

from __future__ import annotations

from fastco._backend import (
    _select_from_environment,
    available_backends,
    backend,
    set_backend,
    stack_stats,
)
from fastco._greenlet import (
    GreenletExit,
    error,
    getcurrent,
    gettrace,
    greenlet,
    set_default_stack_size,
    settrace,
)

__version__ = "0.1.0"

__all__ = [
    "GreenletExit",
    "available_backends",
    "backend",
    "error",
    "getcurrent",
    "gettrace",
    "greenlet",
    "set_backend",
    "set_default_stack_size",
    "settrace",
    "stack_stats",
]

_select_from_environment()
