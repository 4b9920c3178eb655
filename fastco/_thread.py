"""The stdlib ``_thread`` module, cooperative: a drop-in that fastco.monkey installs.

- ``LockType`` / ``allocate_lock()`` and ``RLock``: locks whose waits
  suspend only the calling greenlet (task), with ``_thread``'s interface
  (``acquire(blocking=True, timeout=-1)``, ``release``, ``locked``, the
  context manager, ``_at_fork_reinit``).  A ``LockType`` may be released by
  any task, as a ``threading.Lock`` may; an ``RLock`` belongs to the task
  that took it.
- ``get_ident()`` / ``get_native_id()``: one number per task.  The main
  greenlet of an OS thread keeps the thread's own numbers, so that
  ``threading.main_thread().ident`` and the owners of locks taken before
  patching stay right.
- ``start_new_thread()`` (and 3.13's ``start_joinable_thread``) runs the
  function in a new task.
- ``_local``: attributes per task (``threading.local``).

The locks work across OS threads too: each thread waits in its own hub, and a
release from another thread wakes the waiter through its hub's thread-safe
callback.  The state of a lock is a flag of its C base (csrc/pyglue/hublock.c,
which also runs the uncontended acquire and release), changed with the GIL
held, so atomically for every thread; a waiter registers, then tries once
more before it sleeps, and a releaser releases, then wakes a registered
waiter: no wake-up can be lost between the two.  A waiter that wakes finds
the lock free or tries again (no hand-over: as with OS threads, a newcomer
may take the lock first).

A wait in the main thread that nothing could end raises ``fastco.LoopExit``
(as with fastco's own primitives) unless another Python thread runs, which
might end it.  Everything else of the stdlib module is re-exported unchanged.
"""

from __future__ import annotations

import _thread as _std
import os as _os
import weakref as _weakref
from _thread import *  # noqa: F403
from collections import deque as _deque
from collections.abc import Callable
from time import monotonic as _monotonic
from typing import Any

from fastco import _threadpool
from fastco._greenlet import getcurrent as _getcurrent
from fastco._native import LockBase as _LockBase
from fastco._native import RLockBase as _RLockBase
from fastco._native import lock_setup as _lock_setup
from fastco.hub import TIMEOUT as _TIMEOUT
from fastco.hub import _root
from fastco.hub import _tls as _hub_tls
from fastco.hub import current_hub as _current_hub
from fastco.hub import get_hub as _get_hub
from fastco.hub import sleep as _sleep
from fastco.task import Task as _Task

# Originals, captured before any monkey patching.
_real_allocate_lock = _std.allocate_lock
_real_get_ident = _std.get_ident
_real_get_native_id = _std.get_native_id
_real_count = _std._count
_real_local = _std._local
_real_start_new_thread = _std.start_new_thread
_real_start_joinable_thread = getattr(_std, "start_joinable_thread", None)
_real_ThreadHandle = getattr(_std, "_ThreadHandle", None)
_real_make_thread_handle = getattr(_std, "_make_thread_handle", None)
_real_set_sentinel = getattr(_std, "_set_sentinel", None)

error = _std.error
TIMEOUT_MAX = _std.TIMEOUT_MAX
_HAVE_HANDLES = hasattr(_std, "start_joinable_thread")   # CPython 3.13+


def _main_thread_ident() -> int:
    import threading
    return threading.main_thread().ident  # type: ignore[return-value]


_main_ident = _main_thread_ident()


# ----------------------------------------------------------------------
# Waiting and waking, across threads


# A waiter: one greenlet's wait on a primitive, a list (cheaper to make than
# an object, on the path of every blocking wait) of
#   [the greenlet, its hub, its OS thread's ident, whether it still waits,
#    lost, the primitive's deque of waiters it is in]
# where ``lost`` (or None) takes a wake-up that came after the wait had ended
# (a timeout, a kill), so that the primitive can pass it on.
#
# The protocol: a waiter enlists, checks once more what it waits for, then
# waits; a waker changes the state, then takes the first waiter off the deque
# and wakes it.  Either the waiter's check sees the change or the waker sees
# the waiter: no wake-up is lost between them, in one thread or across.  (A
# greenlet has at most one waiter in a deque at a time, so the deque's
# remove(), which compares lists by value, finds exactly that one; the
# comparison runs no Python code, so it is atomic under the GIL.)
_Waiter = list
_G, _HUB, _TID, _WAITING, _LOST, _IN = range(6)

#: What a try to take something (a lock, an item) gives when there is nothing.
_NOTHING: Any = object()


def _enlist(waiters: _deque[_Waiter], lost: Callable[[Any], None] | None) -> _Waiter:
    """Append a waiter for the current greenlet to ``waiters``; returns it."""
    try:
        hub = _hub_tls.hub
    except AttributeError:
        hub = _get_hub()
    rec = [_getcurrent(), hub, _real_get_ident(), True, lost, waiters]
    waiters.append(rec)
    return rec


def _cancel(rec: _Waiter) -> None:
    """The waiter found what it waited for without waiting: off the deque."""
    rec[_WAITING] = False
    _forget(rec)


def _forget(rec: _Waiter) -> None:
    try:
        rec[_IN].remove(rec)
    except ValueError:
        pass  # a waker took it: its wake-up goes to the waiter's ``lost``


#: OS threads fastco starts for users (fastco.threading.RealThread), from
#: before their start until their end: ``_thread._count()`` counts a thread
#: only once it runs, too late for a wait that its starter begins at once.
_os_threads: set[object] = set()
#: ``_thread._count()`` in a child after fork, where the threads it counts
#: are gone (CPython does not reset it).
_count_at_fork = 0


def _after_fork_in_child() -> None:
    # The child has one thread, the one that forked: it is the main one here.
    global _main_ident, _count_at_fork
    _main_ident = _real_get_ident()
    _count_at_fork = _real_count()
    _os_threads.clear()


_os.register_at_fork(after_in_child=_after_fork_in_child)


def _others_may_wake() -> bool:
    """Whether a wait here may be ended by another OS thread: true outside
    the main thread, and in it while Python threads other than fastco's DNS
    workers run.  If not, the hub may declare a wait that nothing else
    could end a deadlock (LoopExit) instead of sleeping forever."""
    return (_real_count() - _count_at_fork > _threadpool._pool.workers
            or bool(_os_threads) or _real_get_ident() != _main_ident)


def _wait(rec: _Waiter, timeout: float | None) -> bool:
    """Suspend the current greenlet (the waiter's) until woken: True, or
    False after ``timeout`` seconds.  Afterwards ``rec`` no longer waits, and
    unless it was woken it is off its deque, however the wait ended."""
    hub = rec[_HUB]
    # _others_may_wake(), inline (cheapest tests first): this is the path of
    # every blocking wait.
    job = (_os_threads or rec[_TID] != _main_ident
           or _real_count() - _count_at_fork > _threadpool._pool.workers)
    if job:
        hub.start_thread_job()   # keeps the hub waiting for other threads
    woken = False
    try:
        woken = hub.wait(rec[_G], timeout, rec[_LOST]) is not _TIMEOUT
        return woken
    finally:
        rec[_WAITING] = False
        if not woken:
            _forget(rec)
        if job:
            hub.end_thread_job()


def _wake_first(waiters: _deque[_Waiter]) -> None:
    """Take the first waiter off ``waiters`` (if any) and end its wait,
    from any thread."""
    try:
        rec = waiters.popleft()
    except IndexError:
        return
    if rec[_TID] == _real_get_ident():
        if rec[_WAITING]:
            rec[_HUB].schedule(rec[_G], True)
        elif rec[_LOST] is not None:
            rec[_LOST](True)
    else:
        rec[_HUB].run_callback_threadsafe(_wake_here, rec)


def _wake_here(rec: _Waiter) -> None:
    # In the waiter's hub: wake it if it still waits, else pass the wake-up on.
    if rec[_WAITING]:
        rec[_HUB].schedule(rec[_G], True)
    elif rec[_LOST] is not None:
        rec[_LOST](True)


def _wait_until(take: Callable[[], Any], waiters: _deque[_Waiter],
                lost: Callable[[Any], None], timeout: float | None) -> Any:
    """Wait (this task only) until ``take()`` gives something other than
    _NOTHING, and return it; _NOTHING after ``timeout`` seconds.  Woken
    waiters try again; a newcomer may have taken it first (as with OS
    threads, there is no hand-over)."""
    deadline = None if timeout is None else _monotonic() + timeout
    while True:
        rec = _enlist(waiters, lost)
        got = take()                      # given before we enlisted?
        if got is not _NOTHING:
            _cancel(rec)
            return got
        woken = _wait(rec, timeout)
        got = take()
        if got is not _NOTHING or not woken:
            return got
        if deadline is not None:
            timeout = deadline - _monotonic()
            if timeout <= 0:
                return _NOTHING


def _yield_after_failed_try() -> None:
    """A failed non-blocking acquire lets the other tasks run once (as
    gevent does), so that a loop spinning on ``acquire(False)`` or on
    ``is_alive()`` makes progress; not in the hub, which cannot wait."""
    hub = _current_hub()
    if hub is not None and _getcurrent() is not hub:
        _sleep(0)


# ----------------------------------------------------------------------
# Locks


def _keep_this_threads_waiters(waiters: _deque[_Waiter]) -> None:
    # After fork: the waiters of other OS threads are gone with their threads.
    me = _real_get_ident()
    mine = [rec for rec in waiters if rec[_TID] == me]
    waiters.clear()
    waiters.extend(mine)


def _check_acquire_args(blocking: bool, timeout: float) -> None:
    # The stdlib's own checks and messages: a fresh lock never blocks.
    lock = _real_allocate_lock()
    lock.acquire(blocking, timeout)


class LockType(_LockBase):
    """A lock (``threading.Lock``) whose ``acquire`` suspends only the calling task.

    ``acquire``, ``release``, ``__enter__``, ``__exit__`` and ``locked`` are
    the C base's (csrc/pyglue/hublock.c): they run no Python frame while the
    lock is free and nobody waits, and call the methods here otherwise."""

    __slots__ = ()
    _yields = True   # a failed non-blocking acquire lets the other tasks run once

    def _acquire_other(self, blocking: bool, timeout: float) -> bool:
        # acquire() with a timeout (the C base takes the default one).
        if timeout != -1:
            _check_acquire_args(blocking, timeout)
        if self._try():
            return True
        if not blocking or timeout == 0:
            return self._failed_try()
        return self._acquire_slow(None if timeout == -1 else timeout)

    def _failed_try(self) -> bool:
        # A non-blocking acquire found the lock taken.
        if self._yields:
            _yield_after_failed_try()
        return False

    def _acquire_slow(self, timeout: float | None) -> bool:
        return _wait_until(self._take, self._waiters, self._lost, timeout) is not _NOTHING

    def _take(self) -> Any:
        return True if self._try() else _NOTHING

    def _lost(self, _value: object) -> None:
        # A waiter that was woken ended its wait otherwise: wake another.
        if self._waiters and not self.locked():
            _wake_first(self._waiters)

    def _at_fork_reinit(self) -> None:
        """In a child after fork (threading, logging and concurrent.futures
        call it): unlocked, as the stdlib's.  Unlike OS threads, the tasks of
        the forking thread live on in the child: their waits stay, and one
        of them is woken to find the lock free."""
        self._reset()
        _keep_this_threads_waiters(self._waiters)
        if self._waiters:
            _wake_first(self._waiters)

    acquire_lock = _LockBase.acquire
    release_lock = _LockBase.release
    locked_lock = _LockBase.locked

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} {type(self).__module__}.{type(self).__qualname__} object " \
               f"at {id(self):#x}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__qualname__!r} object")


class _Sentinel(LockType):
    """The lock a thread holds while it runs (threading's join and
    ``is_alive`` before 3.13, our _ThreadHandle): asking whether a thread is
    alive never switches."""

    __slots__ = ()
    _yields = False


def allocate_lock() -> LockType:
    """A new cooperative lock (``threading.Lock()``)."""
    return LockType()


allocate = lock = allocate_lock
_lock_setup(_deque, _wake_first, LockType)


class RLock(_RLockBase):
    """A re-entrant lock (``threading.RLock``) owned by the task that took it.

    ``acquire``, ``release``, the context manager and ``_is_owned`` are the
    C base's (csrc/pyglue/hublock.c), over a LockType (``_block``) whose
    waits they use when another task holds it."""

    __slots__ = ()

    def locked(self) -> bool:
        """True while some task holds the lock."""
        return self._block.locked()

    def _check_args(self, blocking: bool, timeout: float) -> None:
        # acquire() with a timeout by the task that holds it (the C base
        # counts one more level): the stdlib checks the arguments all the same.
        _check_acquire_args(blocking, timeout)

    # For threading.Condition.
    def _release_save(self) -> tuple[int, Any]:
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._block.release()
        return state

    def _acquire_restore(self, state: tuple[int, Any]) -> None:
        self._block.acquire()
        self._count, self._owner = state

    def _recursion_count(self) -> int:
        return self._count if self._owner is _getcurrent() else 0

    def _at_fork_reinit(self) -> None:
        """In a child after fork: kept if a task of the forking thread holds
        it (it lives on and will release it), else free, as the stdlib's."""
        owner = self._owner
        if owner is not None and _root(owner) is _root(_getcurrent()):
            return
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__qualname__!r} object")

    def __repr__(self) -> str:
        owner = self._owner
        ident = 0 if owner is None else _ident_of(owner)
        state = "locked" if self._block.locked() else "unlocked"
        return (f"<{state} {type(self).__module__}.{type(self).__qualname__} object "
                f"owner={ident} count={self._count} at {id(self):#x}>")


# ----------------------------------------------------------------------
# Identity


def _on_end(g: Any, callback: Callable[[object], None]) -> Any:
    """Have ``callback(x)`` called once greenlet ``g`` is over: when it
    finishes if it is a Task (as a thread's data goes when the thread ends,
    even while its Task object is kept), at the latest when it is collected.
    Returns the weak reference that does the latter: keep it as long as the
    callback matters.  The callback may run twice."""
    if isinstance(g, _Task):
        g.rawlink(callback)
    return _weakref.ref(g, callback)


def _ident_of(g: Any) -> int:
    return _real_get_ident() if g.parent is None else id(g)


def get_ident() -> int:
    """A number identifying the current task (its OS thread's, in a main greenlet)."""
    g = _getcurrent()
    return _real_get_ident() if g.parent is None else id(g)


def get_native_id() -> int:
    """As get_ident (one number per task); the kernel's thread id in a main greenlet."""
    g = _getcurrent()
    return _real_get_native_id() if g.parent is None else id(g)


# ----------------------------------------------------------------------
# Threads as tasks


class _ThreadTask(_Task):
    """The task a "thread" runs in: ``function(*args, **kwargs)``, then the
    release of its sentinel lock (threading's join, before 3.13) or of its
    handle (3.13+)."""

    __slots__ = ("sentinel", "handle")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        _Task.__init__(self, None, function, args, kwargs)
        self.sentinel: _Sentinel | None = None
        self.handle: _ThreadHandle | None = None
        _thread_tasks[id(self)] = self

    def _run(self, function: Callable[..., Any], args: tuple[Any, ...],  # type: ignore[override]
             kwargs: dict[str, Any]) -> None:
        try:
            function(*args, **kwargs)
        except SystemExit:
            pass  # ends the thread quietly, as in an OS thread
        finally:
            lock, self.sentinel = self.sentinel, None
            if lock is not None and lock.locked():
                lock.release()
            if self.handle is not None:
                self.handle._set_done()


#: Live thread tasks by ident (threading's fork handling looks them up).
_thread_tasks: _weakref.WeakValueDictionary[int, _ThreadTask] = _weakref.WeakValueDictionary()


def _check_thread_args(function: Any, args: Any, kwargs: Any) -> None:
    if not callable(function):
        raise TypeError("first arg must be callable")
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")


def start_new_thread(function: Callable[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any] | None = None) -> int:
    """Run ``function(*args, **kwargs)`` in a new task; returns its ident.
    An exception it raises is reported (SystemExit ends it quietly)."""
    _check_thread_args(function, args, kwargs)
    task = _ThreadTask(function, args, kwargs or {})
    task.start()
    return id(task)


if hasattr(_std, "start_new"):
    start_new = start_new_thread


def _set_sentinel() -> Any:
    """threading's per-thread lock (before 3.13): unlocked here, taken by the
    thread, released when its task ends; a real one in a real thread."""
    g = _getcurrent()
    if isinstance(g, _ThreadTask):
        g.sentinel = _Sentinel()
        return g.sentinel
    if g.parent is None and _real_set_sentinel is not None:
        return _real_set_sentinel()
    return _Sentinel()


class _ThreadHandle:
    """A task's stand-in for 3.13's ``_thread._ThreadHandle``: ``ident``,
    ``join(timeout)``, ``is_done()``, ``_set_done()``."""

    __slots__ = ("_ident", "_done", "_finished", "_ref", "__weakref__")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ident: int | None = None
        self._done = _Sentinel()      # held until the thread ends
        self._done.acquire()
        self._finished = False
        self._ref: Any = None

    @property
    def ident(self) -> int | None:
        return self._ident

    def is_done(self) -> bool:
        return self._finished

    def _set_done(self) -> None:
        if not self._finished:
            self._finished = True
            _nondaemon.discard(self)
            self._done.release()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ended, or ``timeout`` seconds passed."""
        if self._finished:
            return
        if self._ident is not None and self._ident == get_ident():
            raise RuntimeError("Cannot join current thread")
        if timeout is None or timeout < 0:
            acquired = self._done.acquire()
        else:
            acquired = self._done.acquire(True, timeout)
        if acquired:
            self._done.release()

    def _after_fork(self) -> None:
        pass

    def __repr__(self) -> str:
        state = "done" if self._finished else "running"
        return f"<{type(self).__module__}._ThreadHandle object: ident={self._ident} {state}>"


#: Handles of non-daemon thread tasks, joined at interpreter shutdown.
_nondaemon: set[_ThreadHandle] = set()


def start_joinable_thread(function: Callable[..., Any], handle: Any = None,
                          daemon: bool = True) -> _ThreadHandle:
    """3.13's start: run ``function()`` in a new task; returns its handle."""
    _check_thread_args(function, (), None)
    if handle is None:
        handle = _ThreadHandle()
    elif not isinstance(handle, _ThreadHandle):
        raise TypeError(f"handle must be a fastco._thread._ThreadHandle, not "
                        f"{type(handle).__name__}")
    elif handle._ident is not None:
        raise RuntimeError("thread already started")
    task = _ThreadTask(function, (), {})
    task.handle = handle
    handle._ident = id(task)
    if not daemon:
        _nondaemon.add(handle)
    task.start()
    return handle


def _make_thread_handle(ident: int) -> Any:
    """3.13: the handle of a thread that exists already (the main thread, a
    dummy): a real one in a main greenlet, else one done when the task ends."""
    g = _getcurrent()
    if g.parent is None:
        return _real_make_thread_handle(ident)
    handle = _ThreadHandle()
    handle._ident = ident
    wself = _weakref.ref(handle)

    def ended(_ref: object) -> None:
        h = wself()
        if h is not None:
            h._set_done()

    handle._ref = _on_end(g, ended)
    return handle


def _join_nondaemon_tasks() -> None:
    """At shutdown (3.13+): wait for the non-daemon thread tasks."""
    while _nondaemon:
        for handle in list(_nondaemon):
            handle.join()


# ----------------------------------------------------------------------
# Task-local data


class _LocalDicts:
    """The attribute dicts of one ``_local`` object, one per greenlet."""

    __slots__ = ("dicts", "args", "__weakref__")

    def __init__(self, args: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        # id(greenlet) -> (weak reference to it, its dict)
        self.dicts: dict[int, tuple[Any, dict[str, Any]]] = {}
        self.args = args


def _new_entry(impl: _LocalDicts, g: Any) -> dict[str, Any]:
    """Make greenlet ``g``'s (empty) dict of ``impl``, dropped when ``g`` is over."""
    key = id(g)
    wimpl = _weakref.ref(impl)

    def gone(_ref: object) -> None:
        i = wimpl()
        if i is not None:
            i.dicts.pop(key, None)

    d: dict[str, Any] = {}
    impl.dicts[key] = (_on_end(g, gone), d)
    return d


def _local_dict(local: _local) -> dict[str, Any]:
    """The current greenlet's dict of ``local``, made (and ``__init__`` run) on first use."""
    impl = object.__getattribute__(local, "_local__impl")
    g = _getcurrent()
    entry = impl.dicts.get(id(g))
    if entry is not None:
        return entry[1]
    d = _new_entry(impl, g)
    cls = type(local)
    if cls.__init__ is not object.__init__:
        args, kwargs = impl.args
        try:
            cls.__init__(local, *args, **kwargs)
        except BaseException:
            impl.dicts.pop(id(g), None)   # the next access tries again
            raise
    return d


def _class_attr(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return _MISSING


_MISSING = object()


class _local:
    """Attributes per task (``threading.local``): each greenlet sees its own,
    made afresh (with the subclass's ``__init__``) on first use, dropped when
    the task ends (another greenlet's: when it is collected)."""

    __slots__ = ("_local__impl", "__weakref__")

    def __new__(cls, *args: Any, **kwargs: Any) -> _local:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        impl = _LocalDicts((args, kwargs))
        object.__setattr__(self, "_local__impl", impl)
        # The creating greenlet's dict exists at once; __init__ then runs on it
        # (type.__call__ calls it), as for the stdlib's.
        _new_entry(impl, _getcurrent())
        return self

    def __getattribute__(self, name: str) -> Any:
        if name in ("__dict__", "_local__impl"):
            return _local_dict(self) if name == "__dict__" else \
                object.__getattribute__(self, name)
        d = _local_dict(self)
        cls = type(self)
        attr = _class_attr(cls, name)
        if attr is not _MISSING:
            kind = type(attr)
            if hasattr(kind, "__get__") and (hasattr(kind, "__set__")
                                             or hasattr(kind, "__delete__")):
                return kind.__get__(attr, self, cls)   # data descriptor first
        if name in d:
            return d[name]
        if attr is not _MISSING:
            get = getattr(type(attr), "__get__", None)
            return attr if get is None else get(attr, self, cls)
        getattr_hook = _class_attr(cls, "__getattr__")
        if getattr_hook is not _MISSING:
            return getattr_hook(self, name)
        raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        d, attr, setter = _write_target(self, name, "__set__")
        if setter is not None:
            setter(attr, self, value)
        else:
            d[name] = value

    def __delattr__(self, name: str) -> None:
        d, attr, deleter = _write_target(self, name, "__delete__")
        if deleter is not None:
            deleter(attr, self)
            return
        try:
            del d[name]
        except KeyError:
            raise AttributeError(name) from None


def _write_target(local: _local, name: str, kind: str) -> tuple[dict[str, Any], Any, Any]:
    """For setting or deleting ``name``: the current greenlet's dict, the
    class attribute, and its ``kind`` method (``__set__``/``__delete__``) if
    it is a descriptor that takes the write."""
    if name in ("__dict__", "_local__impl"):
        raise AttributeError(f"{type(local).__name__!r} object attribute {name!r} "
                             "is read-only")
    d = _local_dict(local)
    attr = _class_attr(type(local), name)
    method = getattr(type(attr), kind, None) if attr is not _MISSING else None
    return d, attr, method


#: The names monkey.patch_thread replaces in the stdlib ``_thread`` module
#: (those this interpreter's ``_thread`` has).
PATCHED = [name for name in (
    "allocate_lock", "allocate", "lock", "LockType", "RLock", "get_ident", "get_native_id",
    "start_new_thread", "start_new", "start_joinable_thread", "_ThreadHandle",
    "_make_thread_handle", "_set_sentinel", "_local",
) if hasattr(_std, name)]

if not _HAVE_HANDLES:
    del start_joinable_thread, _make_thread_handle
