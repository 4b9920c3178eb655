"""fastco: coroutines for CPython whose context switch is done in C.

The greenlet API (``greenlet``, ``getcurrent``, ``GreenletExit``, ...) is a
drop-in for the greenlet package: ``from fastco import greenlet``.

The hub (an event loop per thread) and what runs on it: ``spawn``, ``sleep``,
``joinall``, ``killall``, ``wait_read``/``wait_write``, ``Timeout``, the sync
primitives (``Event``, ``AsyncResult``, ``Queue``, ``Lock``, ``Semaphore``,
``BoundedSemaphore``, ``Pool``), cooperative sockets (``fastco.socket``) and
monkey patching (``fastco.monkey``), which also installs the cooperative
``fastco._thread``, ``fastco.threading`` and ``fastco.queue``.
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
    install_as_greenlet,
    set_default_stack_size,
    settrace,
)

_select_from_environment()

# The hub and what runs on it (each layer imports only the ones below it).
from fastco import monkey, select, socket  # noqa: E402
from fastco.hub import (  # noqa: E402
    ConcurrentUseError,
    Hub,
    LoopExit,
    get_hub,
    sleep,
    wait_read,
    wait_write,
)
from fastco.sync import (  # noqa: E402
    AsyncResult,
    BoundedSemaphore,
    Empty,
    Event,
    Full,
    Lock,
    Pool,
    Queue,
    Semaphore,
)
from fastco.task import Task, joinall, killall, spawn, spawn_later  # noqa: E402
from fastco.timeout import Timeout, with_timeout  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "BoundedSemaphore",
    "ConcurrentUseError",
    "Empty",
    "Event",
    "Full",
    "GreenletExit",
    "Hub",
    "Lock",
    "LoopExit",
    "Pool",
    "Queue",
    "Semaphore",
    "Task",
    "Timeout",
    "available_backends",
    "backend",
    "error",
    "get_hub",
    "getcurrent",
    "gettrace",
    "greenlet",
    "install_as_greenlet",
    "joinall",
    "killall",
    "monkey",
    "select",
    "set_backend",
    "set_default_stack_size",
    "settrace",
    "sleep",
    "socket",
    "spawn",
    "spawn_later",
    "stack_stats",
    "wait_read",
    "wait_write",
    "with_timeout",
]
