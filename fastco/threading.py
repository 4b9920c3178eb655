"""The stdlib ``threading`` module, cooperative: what fastco.monkey.patch_thread installs.

Usable directly (``from fastco.threading import Lock, Condition, Event``):
``Lock``, ``RLock``, ``Condition``, ``Event``, ``Semaphore``,
``BoundedSemaphore``, ``Barrier`` and ``local`` whose waits suspend only the
calling task (and which work across OS threads: see fastco._thread), and
``RealThread``, a ``threading.Thread`` that always runs in an OS thread.

Once patched, the stdlib's own ``threading.Thread`` runs as a task: its start
goes through ``_thread`` (a task instead of an OS thread), and everything
else of the stdlib module -- ``current_thread()``, ``enumerate()``,
``main_thread()``, ``Timer``, ``excepthook``, join at interpreter exit --
works unchanged on top.  Each task has its own ``get_ident()`` and
``threading.local`` attributes; ``current_thread()`` in a task not started
as a Thread is a dummy thread, forgotten when the task ends.  Event,
Semaphore, BoundedSemaphore and Barrier are the stdlib's classes over
fastco's Condition; Condition is the stdlib's with waits that cost no lock.

What stays an OS thread: fastco's DNS workers, ``RealThread``s, threads made
by C code, and threads started before patching (their ``join`` is made
cooperative).
"""

from __future__ import annotations

import os as _os
import sys as _sys
import threading as _std
import weakref as _weakref
from collections.abc import Callable
from threading import *  # noqa: F403
from time import monotonic as _monotonic
from typing import Any

from fastco import _thread
from fastco._greenlet import GreenletExit as _GreenletExit
from fastco._greenlet import getcurrent as _getcurrent
from fastco._thread import LockType as Lock
from fastco._thread import (
    RLock,
    _cancel,
    _check_acquire_args,
    _enlist,
    _wait,
    _wake_first,
    get_ident,
)
from fastco._thread import _local as local  # noqa: F401 - threading.local
from fastco._thread import get_native_id as get_native_id
from fastco.hub import LoopExit as _LoopExit
from fastco.hub import current_hub as _current_hub
from fastco.hub import get_hub as _get_hub
from fastco.hub import sleep as _sleep

__all__ = list(_std.__all__) + ["RealThread"]

_HAVE_HANDLES = hasattr(_std, "_ThreadHandle")   # CPython 3.13+
# The Thread attribute that holds its _ThreadHandle: ``_handle`` in 3.13,
# renamed ``_os_thread_handle`` in 3.14 (None before 3.13: no handles).
_HANDLE = ("_os_thread_handle" if hasattr(_std.main_thread(), "_os_thread_handle")
           else "_handle" if _HAVE_HANDLES else None)
# Originals, captured before any monkey patching.
_std_Thread = _std.Thread
_std_Condition = _std.Condition
_std_Event = _std.Event
_std_Semaphore = _std.Semaphore
_std_BoundedSemaphore = _std.BoundedSemaphore
_std_Barrier = _std.Barrier
_std_DummyThread = _std._DummyThread
_std_start_new_thread = _thread._real_start_new_thread
_std_start_joinable_thread = _thread._real_start_joinable_thread
_std_ThreadHandle = _thread._real_ThreadHandle
_std_thread_shutdown = getattr(_std, "_thread_shutdown", None)
_std_excepthook = _std.__excepthook__
# 3.14+: a Thread names its OS thread (threading._set_name, None where the
# platform cannot) when it starts and when it is renamed.
_std_set_name = getattr(_std, "_set_name", None)


class Condition(_std_Condition):
    """threading.Condition whose ``wait`` suspends only the calling task:
    a waiter is a record of the task, not a lock made per wait.  The default
    lock is a cooperative RLock."""

    def __init__(self, lock: Any = None) -> None:
        super().__init__(RLock() if lock is None else lock)

    def _is_owned(self) -> bool:
        # A Lock has no owner: "owned" means locked, as in the stdlib's
        # default, which tests it with acquire(False).
        lock = self._lock
        if isinstance(lock, Lock):
            return lock.locked()
        if lock.acquire(False):
            lock.release()
            return False
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait until notified (True) or ``timeout``
        seconds passed (False), and take the lock again."""
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        rec = _enlist(self._waiters, self._pass_on)
        try:
            saved = self._release_save()
        except BaseException:
            _cancel(rec)
            raise
        try:
            if timeout is None or timeout > 0:
                notified = _wait(rec, timeout)
            else:
                _cancel(rec)
                if timeout != timeout:
                    # NaN: refused with the lock's ValueError, as the stdlib's
                    # from 3.14 on (3.13's returned False, and a Semaphore,
                    # Barrier, wait_for or Queue waiting with it then retried
                    # forever).
                    _check_acquire_args(True, timeout)
                notified = False
        except BaseException as exc:
            stop = _take_back(self, saved, exc)
            if stop is exc:
                raise
            raise stop from exc   # a kill that came while the lock was taken back
        stop = _take_back(self, saved, None)
        if stop is not None:
            raise stop
        return notified

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiting tasks."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._waiters
        while waiters and n > 0:
            _wake_first(waiters)
            n -= 1

    def _at_fork_reinit(self) -> None:
        # In a child after fork: the lock as its own method says; the waiting
        # tasks of the forking thread live on in the child and stay.
        self._lock._at_fork_reinit()
        _thread._keep_this_threads_waiters(self._waiters)

    def _pass_on(self, _value: object) -> None:
        # A notified waiter ended its wait otherwise (killed, timed out as
        # the notification came from another thread): notify the next one.
        _wake_first(self._waiters)


def _take_back(cond: Condition, saved: Any, stop: BaseException | None) -> BaseException | None:
    """Take ``cond``'s lock back after a wait, however the wait ended
    (``stop``: the exception that ended it, if one did), and return what
    the task must raise then: ``stop``, or what stopped it meanwhile.

    The caller's ``with`` block releases the lock, so it must find it held:
    a task stopped while it waits for the lock keeps waiting for it (as
    asyncio's Condition does), else it would release a Lock that another
    task holds, or fail an RLock's release.  Of two stops the first is
    raised (an outer Timeout's block must end too), unless the later one is
    a kill and the first is not: the task must die all the same.  Only for
    fastco's locks, whose acquire raises nothing but what is thrown in; a
    deadlock (LoopExit) or a Ctrl-C still ends the wait at once."""
    while True:
        try:
            cond._acquire_restore(saved)
            return stop
        except (_LoopExit, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            if not isinstance(cond._lock, (Lock, RLock)):
                raise
            if stop is None or (isinstance(exc, _GreenletExit)
                                and not isinstance(stop, _GreenletExit)):
                stop = exc


# The stdlib's Event, Semaphore, BoundedSemaphore and Barrier keep their
# state in ``self._cond``, made by __init__ from threading's globals: these
# subclasses make sure it is a cooperative one (it is already, once patched).


class Event(_std_Event):
    """threading.Event over a cooperative Condition."""

    def __init__(self) -> None:
        _std_Event.__init__(self)
        if type(self._cond) is not Condition:
            self._cond = Condition(Lock())


class Semaphore(_std_Semaphore):
    """threading.Semaphore over a cooperative Condition."""

    def __init__(self, value: int = 1) -> None:
        _std_Semaphore.__init__(self, value)
        if type(self._cond) is not Condition:
            self._cond = Condition(Lock())


class BoundedSemaphore(Semaphore, _std_BoundedSemaphore):
    """threading.BoundedSemaphore over a cooperative Condition."""

    def __init__(self, value: int = 1) -> None:
        Semaphore.__init__(self, value)
        self._initial_value = value


class Barrier(_std_Barrier):
    """threading.Barrier over a cooperative Condition."""

    def __init__(self, parties: int, action: Callable[[], Any] | None = None,
                 timeout: float | None = None) -> None:
        _std_Barrier.__init__(self, parties, action, timeout)
        if type(self._cond) is not Condition:
            self._cond = Condition(Lock())


# ----------------------------------------------------------------------
# OS threads


def _join_os_thread(thread: _std_Thread, timeout: float | None) -> None:
    """Join a thread that runs in an OS thread without blocking the hub:
    wait while it is alive, sleeping cooperatively (0.5 ms, doubling up to
    20 ms), then let the stdlib record its end."""
    if not thread._started.is_set():
        raise RuntimeError("cannot join thread before it is started")
    if thread is _std.current_thread():
        raise RuntimeError("cannot join current thread")
    if timeout is not None and timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")   # the stdlib's lock says so
    deadline = None if timeout is None else _monotonic() + max(timeout, 0)
    delay = 0.0005
    while thread.is_alive():
        if deadline is not None:
            left = deadline - _monotonic()
            if left <= 0:
                return
            delay = min(delay, left)
        _sleep(delay)
        delay = min(delay * 2, 0.02)
    _std_Thread.join(thread, 0)


class RealThread(_std_Thread):
    """A ``threading.Thread`` that runs in an OS thread, also once
    ``threading`` is patched (where ``threading.Thread`` runs as a task).

    For blocking work that has no cooperative form (a C library call, CPU
    work that should not hold up the hub for long; the GIL still applies).
    Its ``join`` waits cooperatively.  Inside it, fastco's primitives work
    as in any thread: the thread gets its own hub when it first waits.
    ``fastco.monkey.get_original("threading", "Thread")`` returns this class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if _HANDLE is not None and not isinstance(getattr(self, _HANDLE), _std_ThreadHandle):
            setattr(self, _HANDLE, _std_ThreadHandle())

    def start(self) -> None:
        """Start the OS thread (see threading.Thread.start)."""
        # While it runs, the starter's hub may be woken by it: it must not
        # take a wait for a deadlock (LoopExit).  Counted from now on, as the
        # starter may wait for it at once (fastco._thread._others_may_wake).
        hub = _get_hub()
        hub.start_thread_job()
        self._fastco_hub = hub
        _thread._os_threads.add(self)
        try:
            _std_Thread.start(self)
        except BaseException:
            _thread._os_threads.discard(self)
            hub.end_thread_job()
            raise

    def _bootstrap(self) -> None:
        try:
            _std_Thread._bootstrap(self)  # type: ignore[attr-defined]
        finally:
            _thread._os_threads.discard(self)
            hub, self._fastco_hub = self._fastco_hub, None
            hub.run_callback_threadsafe(hub.end_thread_job)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ended (or ``timeout`` seconds passed),
        suspending only the calling task."""
        _join_os_thread(self, timeout)


def _thread_of(function: Any) -> Any:
    # The Thread whose _bootstrap threading asks _thread to run, if any.
    thread = getattr(function, "__self__", None)
    return thread if isinstance(thread, _std_Thread) else None


def _adopt(thread: Any) -> None:
    # A Thread made before patching and started after: its start waits on
    # an Event of the stdlib's, which would block the hub.
    if not isinstance(thread._started, Event):
        thread._started = Event()


def _start_new_thread(function: Callable[..., Any], args: tuple[Any, ...],
                      kwargs: dict[str, Any] | None = None) -> int:
    """threading's start (before 3.13): a task, or an OS thread for a RealThread."""
    thread = _thread_of(function)
    if isinstance(thread, RealThread):
        return _std_start_new_thread(function, args, *((kwargs,) if kwargs else ()))
    if thread is not None:
        _adopt(thread)
    return _thread.start_new_thread(function, args, kwargs)


def _start_joinable_thread(function: Callable[..., Any], handle: Any = None,
                           daemon: bool = True) -> Any:
    """threading's start (3.13+): a task, or an OS thread for a RealThread."""
    thread = _thread_of(function)
    if isinstance(thread, RealThread):
        return _std_start_joinable_thread(function, handle=handle, daemon=daemon)
    if thread is not None:
        _adopt(thread)
        if not isinstance(handle, _thread._ThreadHandle):
            handle = _thread._ThreadHandle()
            setattr(thread, _HANDLE, handle)
    return _thread.start_joinable_thread(function, handle=handle, daemon=daemon)


def _thread_shutdown() -> None:
    """At interpreter exit (3.13+): wait for the non-daemon thread tasks,
    then for the non-daemon OS threads."""
    _thread._join_nondaemon_tasks()
    _std_thread_shutdown()


def excepthook(args: Any) -> None:
    """threading.excepthook: the stdlib's, except that a KeyboardInterrupt
    that a signal raised in a thread task of the main thread (the task that
    happened to run) goes to the main greenlet, as it would go to the main
    thread, instead of ending that "thread"."""
    hub = _current_hub()
    if (args.exc_type is KeyboardInterrupt and hub is not None
            and _thread._real_get_ident() == _thread._main_ident
            and _getcurrent() is not hub.parent):
        hub.run_callback(hub._throw_main, args.exc_value)
        return
    _std_excepthook(args)


def _set_name_of_os_thread(name: str) -> None:
    """threading._set_name (3.14+): name the OS thread, but only from its
    own main greenlet.  A thread task runs in another thread's OS thread:
    naming that after the task would rename it (the main thread's name is
    the process's, in ps and top)."""
    if _getcurrent().parent is None:
        _std_set_name(name)


_set_name = None if _std_set_name is None else _set_name_of_os_thread


class _DummyThread(_std_DummyThread):
    """current_thread() of a task not started as a Thread: the stdlib's
    dummy, dropped from ``threading._active`` when the task ends."""

    def __init__(self) -> None:
        super().__init__()
        g = _getcurrent()
        if g.parent is not None:
            ident = self._ident
            wself = _weakref.ref(self)

            def gone(_ref: object) -> None:
                if _std._active.get(ident) is wself():
                    _std._active.pop(ident, None)

            self._fastco_task = _thread._on_end(g, gone)


if _HAVE_HANDLES:
    _std_delete_dummy = _std._DeleteDummyThreadOnDel

    def _DeleteDummyThreadOnDel(dummy: Any) -> None:  # (threading's name)
        """3.13's dummy of an OS thread parks a helper in a per-thread local,
        whose deletion at the thread's end forgets the dummy; a task's dummy
        is forgotten by _DummyThread (a helper kept in a task-local dict
        would be deleted at any time, as late as interpreter shutdown)."""
        if _getcurrent().parent is None:
            _std_delete_dummy(dummy)

    _ThreadHandle = _thread._ThreadHandle
    _make_thread_handle = _thread._make_thread_handle
    _LockType = Lock
else:
    _set_sentinel = _thread._set_sentinel

_allocate_lock = Lock
_CRLock = RLock

#: The names monkey.patch_thread replaces in the stdlib ``threading`` module
#: (those this interpreter's has).
PATCHED = [name for name in (
    "Lock", "_allocate_lock", "_LockType", "RLock", "_CRLock", "Condition", "Event",
    "Semaphore", "BoundedSemaphore", "Barrier", "local", "get_ident", "get_native_id",
    "_DummyThread", "_start_new_thread", "_set_sentinel", "_start_joinable_thread",
    "_ThreadHandle", "_make_thread_handle", "_thread_shutdown", "_DeleteDummyThreadOnDel",
    "_set_name",
) if hasattr(_std, name)]
# (and "excepthook", unless the program set its own before patching: see
# fastco.monkey.patch_thread)


# ----------------------------------------------------------------------
# Patching: what exists already


def _existing_locks() -> list[tuple[Any, str, Any]]:
    """Module-level locks made before patching that a task may hold across
    a switch: (module, name, cooperative replacement) for those not held."""
    out: list[tuple[Any, str, Any]] = []
    logging = _sys.modules.get("logging")
    if logging is not None and _free(getattr(logging, "_lock", None)):
        out.append((logging, "_lock", RLock()))
    futures = _sys.modules.get("concurrent.futures.thread")
    if futures is not None and _free(getattr(futures, "_global_shutdown_lock", None)):
        out.append((futures, "_global_shutdown_lock", Lock()))
    return out


def _free(lock: Any) -> bool:
    """True for a stdlib lock that nobody holds (its replacement is then safe)."""
    if isinstance(lock, (Lock, RLock)) or lock is None:
        return False
    if hasattr(lock, "_is_owned") and lock._is_owned():
        return False
    if not lock.acquire(False):
        return False
    lock.release()
    return True


def _adopt_existing() -> None:
    """After patching: make what the stdlib made before fit (see _existing_locks).

    - logging handlers' locks become cooperative RLocks (if free);
    - the main thread's join lock (3.13: its handle) becomes cooperative, so
      a task can join or watch it; threading._shutdown releases it as before;
    - threads already running stay OS threads; their ``join`` becomes
      cooperative (a task waiting for one does not stop the hub);
    - at fork, threading's bookkeeping sees the forking OS thread, and the
      thread tasks, which go on in the child (they are greenlets), are
      registered again there.
    """
    logging = _sys.modules.get("logging")
    if logging is not None:
        for ref in list(getattr(logging, "_handlerList", ())):
            handler = ref()
            if handler is not None and _free(getattr(handler, "lock", None)):
                handler.lock = RLock()
    main = _std.main_thread()
    if _HAVE_HANDLES:
        real = getattr(main, _HANDLE)
        if not isinstance(real, _thread._ThreadHandle) and not real.is_done():
            handle = _thread._ThreadHandle()
            handle._ident = main.ident
            setattr(main, _HANDLE, handle)
    else:
        real = main._tstate_lock
        if real is not None and not isinstance(real, Lock) and real.locked():
            coop = _thread._Sentinel()
            coop.acquire()
            with _std._shutdown_locks_lock:
                if real in _std._shutdown_locks:
                    _std._shutdown_locks.discard(real)
                    _std._shutdown_locks.add(coop)
                main._tstate_lock = coop
    for thread in list(_std._active.values()):
        if (thread is not main and not isinstance(thread, _std_DummyThread)
                and thread.ident not in _thread._thread_tasks and thread.is_alive()):
            thread.join = _bound_join(thread)
    _os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child,
                         after_in_parent=_after_fork_in_parent)


def _bound_join(thread: _std_Thread) -> Callable[..., None]:
    wthread = _weakref.ref(thread)

    def join(timeout: float | None = None) -> None:
        t = wthread()
        if t is not None:
            _join_os_thread(t, timeout)

    return join


# At fork: threading's after-fork code keeps "the current thread" alive and
# marks every other stopped.  It must see the forking OS thread (get_ident
# per task would make the forking task the child's main thread); the thread
# tasks then go on in the child and are put back.
_fork_tasks: list[tuple[Any, Any]] = []


def _before_fork() -> None:
    _fork_tasks[:] = [(t, _thread._thread_tasks.get(t.ident)) for t in _std._active.values()]
    _fork_tasks[:] = [(t, task) for t, task in _fork_tasks if task is not None and not task.dead]
    _std.get_ident = _thread._real_get_ident
    # 3.14+ also gives the forking thread its new native id in the child.
    _std.get_native_id = _thread._real_get_native_id


def _after_fork_in_parent() -> None:
    _std.get_ident = get_ident
    _std.get_native_id = get_native_id
    _fork_tasks.clear()


def _after_fork_in_child() -> None:
    _std.get_ident = get_ident
    _std.get_native_id = get_native_id
    for thread, task in _fork_tasks:
        thread._started.set()
        if not _HAVE_HANDLES:
            thread._is_stopped = False
            thread._tstate_lock = task.sentinel
            if task.sentinel is not None and not thread.daemon:
                _std._shutdown_locks.add(task.sentinel)
        _std._active[thread.ident] = thread
    _fork_tasks.clear()
