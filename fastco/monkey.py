"""Monkey patching: make unmodified blocking stdlib code cooperate with the hub.

``patch_all()`` (or ``patch_socket``, ``patch_time``, ``patch_select``,
``patch_thread``, ``patch_queue``, ``patch_ssl``, ``patch_os``,
``patch_subprocess`` one by one) replaces, in the stdlib modules:

- ``socket``: ``socket``, ``socketpair``, ``fromfd``, ``create_connection``,
  ``create_server`` and the name resolution functions, by fastco.socket's;
  and, once ``multiprocessing.connection`` is imported, the reads and
  writes of its ``Connection`` (fastco._mp_connection);
- ``time.sleep`` by ``fastco.sleep``;
- ``select.select``/``select.poll`` by fastco.select's, removes
  ``select.epoll`` (and devpoll/kqueue), and makes every ``selectors``
  selector class (and ``DefaultSelector``) the cooperative
  ``FastcoSelector``; the selector classes already bound by ``socketserver``
  and ``subprocess`` are replaced too;
- ``ssl``: ``SSLContext.sslsocket_class`` (on the stdlib class, so that
  contexts made before patching are covered) by ``fastco.ssl.SSLSocket``, and
  ``ssl.create_connection``;
- ``os.waitpid`` and ``os.wait`` by fastco.os's;
- ``subprocess.Popen`` by fastco.subprocess's (``run``, ``call``,
  ``check_output``... of the stdlib then use it).

- ``_thread``, ``threading`` (``patch_thread``): cooperative locks,
  conditions, events, semaphores, barriers, ``local`` per task,
  ``get_ident()`` per task, and ``threading.Thread`` running as a task
  (fastco._thread, fastco.threading); with it ``queue``:
- ``queue`` (``patch_queue``): cooperative ``Queue``, ``LifoQueue``,
  ``PriorityQueue`` and ``SimpleQueue`` (fastco.queue).

Patch as early as possible, before other modules bind the originals
(``from socket import socket`` made before patching keeps the original).
The originals are kept:
``get_original("socket", "socket")``; ``get_original("threading", "Thread")``
gives ``fastco.threading.RealThread``, a Thread that runs in an OS thread
(the stdlib's class itself runs as a task once ``_thread`` is patched).
Each module's logic lives in its fastco module; this one only wires them.
Patching twice changes nothing.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = [
    "get_original",
    "is_patched",
    "patch_all",
    "patch_os",
    "patch_queue",
    "patch_select",
    "patch_socket",
    "patch_ssl",
    "patch_subprocess",
    "patch_thread",
    "patch_time",
]

_MISSING = object()
# module name (or "module.Class") -> {attribute: original value (or _MISSING if it had none)}
_saved: dict[str, dict[str, Any]] = {}


def _key(target: ModuleType | type) -> str:
    if isinstance(target, ModuleType):
        return target.__name__
    return f"{target.__module__}.{target.__qualname__}"


def _patch(module: ModuleType | type, name: str, value: Any) -> None:
    saved = _saved.setdefault(_key(module), {})
    if name not in saved:
        saved[name] = getattr(module, name, _MISSING)
    setattr(module, name, value)


def _remove(module: ModuleType, name: str) -> None:
    if hasattr(module, name):
        saved = _saved.setdefault(module.__name__, {})
        if name not in saved:
            saved[name] = getattr(module, name)
        delattr(module, name)


class _LoaderThenPatch:
    """A module's loader, then a patch on the module it made."""

    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.patch = patch

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader   # as if we were not there
        self.loader.exec_module(module)
        self.patch(module)


class _PatchOnImport:
    """A ``sys.meta_path`` finder that patches a module right after its
    first import: for modules too costly to import at patch time."""

    def __init__(self) -> None:
        self.patches: dict[str, Callable[[ModuleType], None]] = {}

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.patches:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _LoaderThenPatch(spec.loader, self.patches.pop(name))
                return spec
        return None


_on_import = _PatchOnImport()


def _when_imported(name: str, patch: Callable[[ModuleType], None]) -> None:
    """``patch(module)`` on module ``name``: now if it is imported, else right after it is."""
    module = sys.modules.get(name)
    if module is not None:
        patch(module)
        return
    _on_import.patches[name] = patch
    if _on_import not in sys.meta_path:
        sys.meta_path.insert(0, _on_import)


def get_original(module_name: str, name: str) -> Any:
    """The stdlib's own ``module_name.name``, whether patched or not
    (``module_name`` may name a class: ``get_original("ssl.SSLContext",
    "sslsocket_class")``)."""
    saved = _saved.get(module_name, {})
    if name in saved and saved[name] is not _MISSING:
        return saved[name]
    try:
        owner = importlib.import_module(module_name)
    except ImportError:
        parent, _, cls = module_name.rpartition(".")
        if not parent:
            raise   # no such module (and no class in one)
        owner = getattr(importlib.import_module(parent), cls)
    return getattr(owner, name)


def is_patched(module_name: str) -> bool:
    """True if fastco patched something in that module."""
    return bool(_saved.get(module_name))


def patch_socket() -> None:
    """Cooperative sockets and off-loop name resolution in the stdlib ``socket``."""
    import socket as std

    from fastco import socket as co
    for name in co.PATCHED:
        _patch(std, name, getattr(co, name))
    # multiprocessing's connections read and write sockets' fds as blocking
    # ones: they must wait in the hub now (see fastco._mp_connection).
    _when_imported("multiprocessing.connection", _patch_mp_connection)


def _patch_mp_connection(module: ModuleType) -> None:
    from fastco import _mp_connection as co
    for name in co.PATCHED:
        _patch(module.Connection, name, getattr(co, name))


def patch_time() -> None:
    """``time.sleep`` suspends only the current greenlet."""
    import time

    from fastco.hub import sleep
    _patch(time, "sleep", sleep)


def patch_select() -> None:
    """Cooperative ``select.select``, ``select.poll`` and ``selectors``."""
    import select
    import selectors

    from fastco import select as co
    _patch(select, "select", co.select)
    _patch(select, "poll", co.poll)
    for name in ("epoll", "devpoll", "kqueue"):
        _remove(select, name)
    for name in ("DefaultSelector", "SelectSelector", "PollSelector", "EpollSelector",
                 "DevpollSelector", "KqueueSelector"):
        if name == "DefaultSelector" or hasattr(selectors, name):
            _patch(selectors, name, co.FastcoSelector)
    # Modules that bound a selector class at import.
    for modname, attr in (("socketserver", "_ServerSelector"),
                          ("subprocess", "_PopenSelector")):
        mod = sys.modules.get(modname)
        if mod is not None and hasattr(mod, attr):
            _patch(mod, attr, co.FastcoSelector)


def patch_thread() -> None:
    """Tasks instead of threads: ``_thread``, ``threading`` and ``queue``
    (see fastco.threading).  Call it first thing, in the main thread; again,
    it does nothing.  Threads already running stay OS threads (their
    ``join`` becomes cooperative)."""
    import _thread as std_thread
    import _threading_local
    import threading as std_threading

    from fastco import _thread as co_thread
    from fastco import threading as co_threading
    if "_thread" in _saved:
        return
    if std_thread.get_ident() != std_threading.main_thread().ident:
        raise RuntimeError("patch_thread() must be called in the main thread "
                           "(first thing in the program)")
    for name in co_thread.PATCHED:
        _patch(std_thread, name, getattr(co_thread, name))
    for name in co_threading.PATCHED:
        _patch(std_threading, name, getattr(co_threading, name))
    _patch(_threading_local, "local", co_threading.local)
    if std_threading.excepthook is std_threading.__excepthook__:
        _patch(std_threading, "excepthook", co_threading.excepthook)
    for module, name, value in co_threading._existing_locks():
        _patch(module, name, value)
    co_threading._adopt_existing()
    # The stdlib's Thread runs as a task now: what keeps an OS thread is RealThread.
    _saved["threading"]["Thread"] = co_threading.RealThread
    patch_queue()


def patch_queue() -> None:
    """Cooperative ``queue.Queue``, ``LifoQueue``, ``PriorityQueue`` and ``SimpleQueue``."""
    import queue as std

    from fastco import queue as co
    for name in co.PATCHED:
        _patch(std, name, getattr(co, name))


def patch_ssl() -> None:
    """Cooperative TLS: every ``ssl.SSLContext`` (those made before too) wraps
    sockets as ``fastco.ssl.SSLSocket``, a subclass of ``ssl.SSLSocket``.
    Warns about SSL sockets that were already open, which stay blocking.

    The names ``ssl.SSLSocket`` and ``ssl.SSLContext`` stay the stdlib's
    classes: the stdlib's methods look them up by name (``super(SSLSocket,
    self)``), and a subclass bound there would recurse or fail."""
    imported_before = "ssl" in sys.modules   # else no SSL socket can be open yet
    import ssl
    import warnings

    from fastco import socket as cosocket
    from fastco import ssl as co
    _patch(ssl.SSLContext, "sslsocket_class", co.SSLSocket)
    _patch(ssl, "create_connection", cosocket.create_connection)
    left = co.blocking_sockets() if imported_before else []
    if left:
        warnings.warn(f"{len(left)} SSL socket(s) were opened before fastco.monkey.patch_ssl() "
                      f"and stay blocking (e.g. {left[0]!r}): patch first thing",
                      RuntimeWarning, stacklevel=2)


def patch_os() -> None:
    """``os.waitpid`` and ``os.wait`` suspend only the current greenlet."""
    import os

    from fastco import os as co
    for name in co.PATCHED:
        _patch(os, name, getattr(co, name))


def patch_subprocess() -> None:
    """``subprocess.Popen`` (and so ``run``, ``call``, ``check_output``...)
    is fastco.subprocess's: cooperative waits, pipes and ``communicate``."""
    import subprocess

    from fastco import subprocess as co
    _patch(subprocess, "Popen", co.Popen)


def patch_all(socket: bool = True, time: bool = True, select: bool = True,
              thread: bool = True, queue: bool = True, ssl: bool = True,
              os: bool = True, subprocess: bool = True) -> None:
    """Apply the patches chosen (all by default; ``thread`` includes ``queue``)."""
    if thread:
        patch_thread()
    if queue:
        patch_queue()
    if socket:
        patch_socket()
    if time:
        patch_time()
    if select:
        patch_select()
    if ssl:
        patch_ssl()
    if os:
        patch_os()
    if subprocess:
        patch_subprocess()
