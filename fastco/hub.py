"""The hub: one event loop per thread, and the few primitives that suspend a task.

The hub is a greenlet, the parent of every task (so a finished task returns
to it).  Its loop, per iteration:

  1. runs the callbacks queued so far (``run_callback``);
  2. resumes the greenlets made ready so far (``schedule``), in FIFO order;
  3. fires the due timers (a heap);
  4. polls the OS selector (``fastco._poller``) -- not at all when nothing
     waits on an fd and something is ready, with a zero timeout when
     something is ready, else until the next timer -- and switches straight
     to each greenlet whose fd fired.

A blocking call registers the current greenlet somewhere (an fd slot, a
timer, a primitive's waiter list), switches to the hub, and cleans its
registrations up when it is resumed, whatever resumed it.  Every wake-up
checks that the wait it ends is still unresolved, so a greenlet is never
resumed twice for one wait:

- ``schedule(g, value)`` records ``pending[g] = value`` and queues ``g``; the
  loop resumes ``g`` only if its entry is still pending.  A wait that ends in
  an exception (kill, ``Timeout``) drops its entry.
- An fd slot is emptied by the loop before it resumes the waiter.
- A timer of a wait is cancelled by the wait when it ends, and fires only if
  the waiter has no pending wake-up.

The hot path of a server is "recv -> EAGAIN -> wait -> hub -> back": with the
epoll backend the socket's fd is registered once (edge-triggered), so the wait
is two dict/slot updates and two switches, no system call besides the
``epoll_wait`` the loop makes anyway.
"""

from __future__ import annotations

import errno
import heapq
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any

from fastco import _poller
from fastco._greenlet import GreenletExit, getcurrent, greenlet
from fastco._poller import READ, READ_WAKE, WRITE, WRITE_WAKE

__all__ = [
    "READ",
    "WRITE",
    "ConcurrentUseError",
    "Hub",
    "LoopExit",
    "get_hub",
    "sleep",
    "wait_read",
    "wait_write",
]


class LoopExit(Exception):
    """Raised in the thread's main greenlet when the operation it waits for
    could never finish: nothing is ready, no timer is set, no fd is waited on."""


class ConcurrentUseError(RuntimeError):
    """Two greenlets tried to wait on the same fd in the same direction."""


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The value a wait ends with when its timer fired.
TIMEOUT = _Marker("TIMEOUT")
#: The value an fd wait ends with when the fd was closed by another greenlet.
CLOSED = _Marker("CLOSED")
#: What unschedule returns when there was no pending wake-up.
MISSING = _Marker("MISSING")

#: Exceptions that a task does not swallow: they are re-raised in the main greenlet.
SYSTEM_ERRORS = (KeyboardInterrupt, SystemExit, SystemError)

_switch = greenlet.switch


class _Watch:
    """What the hub knows of one fd: who waits on it, what the poller has."""

    __slots__ = ("fd", "reader", "writer", "mask", "owner")

    def __init__(self, fd: int, mask: int) -> None:
        self.fd = fd
        # The socket (its serial) whose waits the registration is known to
        # be current for; 0: nobody's (re-arm before waiting).
        self.owner = 0
        self.reader: greenlet | None = None
        self.writer: greenlet | None = None
        # The interest registered with the poller (edge: FULL; level: the
        # directions somebody waits for, 0 if not registered).
        self.mask = mask


def _root(g: greenlet) -> greenlet:
    while g.parent is not None:
        g = g.parent
    return g


class Hub(greenlet):
    """The event loop of one thread (see the module docstring).

    Use ``get_hub()`` rather than making one: a thread has one hub, made on
    first use, whose parent is the thread's main greenlet.
    """

    __slots__ = (
        "_ready", "_pending", "_callbacks", "_timers", "_tseq", "_ncancelled",
        "_fds", "_nwait", "_poller", "_edge", "_poll", "_wake_fd", "_tsafe",
        "_thread_jobs", "_closed", "thread_ident",
    )

    def __init__(self, poller: str | None = None) -> None:
        greenlet.__init__(self, None, _root(getcurrent()))
        #: Greenlets to resume, in order; their values are in _pending.
        self._ready: deque[greenlet] = deque()
        self._pending: dict[greenlet, Any] = {}
        #: (callable, args) to call in the hub.
        self._callbacks: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        #: Heap of [deadline, seq, callback or None when cancelled, arg].
        self._timers: list[list[Any]] = []
        self._tseq = 0
        self._ncancelled = 0
        self._fds: dict[int, _Watch] = {}
        #: Greenlets waiting on an fd (the loop may block only if some do).
        self._nwait = 0
        self._poller = _poller.make_poller(poller)
        self._edge = self._poller.edge
        self._poll = self._poller.poll
        self._wake_fd = -1
        self._tsafe: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        #: Jobs running in other threads that will call back (run_callback_threadsafe).
        self._thread_jobs = 0
        self._closed = False
        self.thread_ident = threading.get_ident()

    def __repr__(self) -> str:
        return (f"<Hub at {id(self):#x} poller={self._poller.name} ready={len(self._ready)} "
                f"timers={len(self._timers) - self._ncancelled} fd_waiters={self._nwait}>")

    @property
    def poller(self) -> str:
        """The name of the OS selector this hub uses: epoll, poll or select."""
        return self._poller.name

    # ------------------------------------------------------------------
    # Scheduling

    def schedule(self, g: greenlet, value: Any = None) -> None:
        """Resume ``g`` (which waits in the hub) with ``value`` at the next turn."""
        self._pending[g] = value
        self._ready.append(g)

    def unschedule(self, g: greenlet) -> Any:
        """Drop ``g``'s pending wake-up; returns its value, or MISSING if it had none."""
        return self._pending.pop(g, MISSING)

    def run_callback(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` in the hub at the next turn (it must not block)."""
        self._callbacks.append((fn, args))

    def run_callback_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """``run_callback`` from another thread: also wakes the hub up."""
        self._tsafe.append((fn, args))
        fd = self._wake_fd
        if fd >= 0:
            try:
                os.write(fd, b"\1\0\0\0\0\0\0\0")
            except OSError:   # closed hub, or counter full: the hub is awake anyway
                pass

    def start_thread_job(self) -> None:
        """Count a job that another thread will end with run_callback_threadsafe."""
        if self._wake_fd < 0:
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            w = self._watch(self._wake_fd)
            w.reader = self  # the loop recognises its own wake-up fd
            if not self._edge:
                self._interest(w)
        self._thread_jobs += 1

    def end_thread_job(self) -> None:
        self._thread_jobs -= 1

    # ------------------------------------------------------------------
    # Timers

    def call_later(self, seconds: float, fn: Callable[[Any], Any], arg: Any = None) -> list[Any]:
        """Call ``fn(arg)`` in the hub in ``seconds``; returns a handle for cancel_timer."""
        self._tseq += 1
        entry = [monotonic() + seconds, self._tseq, fn, arg]
        heapq.heappush(self._timers, entry)
        return entry

    def cancel_timer(self, entry: list[Any]) -> None:
        """Cancel a timer of call_later (no effect if it fired or was cancelled)."""
        if entry[2] is not None:
            entry[2] = None
            entry[3] = None
            self._ncancelled += 1
            timers = self._timers
            # Cancelled timers stay in the heap until they are due; rebuild
            # it when they are most of it, so that it does not grow forever.
            if self._ncancelled > 256 and self._ncancelled * 2 > len(timers):
                timers[:] = [e for e in timers if e[2] is not None]
                heapq.heapify(timers)
                self._ncancelled = 0

    def _expire(self, g: greenlet) -> None:
        # A wait's timer fired: end the wait with TIMEOUT, unless it already
        # has a wake-up on the way.
        if g not in self._pending:
            g.switch(TIMEOUT)

    # ------------------------------------------------------------------
    # Waiting

    def wait(self, cur: greenlet, timeout: float | None = None,
             on_drop: Callable[[Any], Any] | None = None) -> Any:
        """Suspend ``cur`` (the current greenlet) until something resumes it.

        The caller has registered ``cur`` where a wake-up will come from.
        Returns the wake-up value, or ``TIMEOUT`` if ``timeout`` seconds passed
        first.  If an exception is thrown in instead (kill, Timeout), a pending
        wake-up is dropped, and its value passed to ``on_drop`` (a primitive
        that handed something over, a queue item or a lock, takes it back),
        then the exception propagates.
        """
        if cur is self:
            raise RuntimeError("cannot block in the hub (in a hub callback)")
        entry = None if timeout is None else self.call_later(timeout, self._expire, cur)
        try:
            value = self.switch()
        except BaseException:
            if entry is not None:
                self.cancel_timer(entry)
            value = self._pending.pop(cur, MISSING)
            if value is not MISSING and on_drop is not None:
                on_drop(value)
            raise
        if entry is not None and value is not TIMEOUT:
            self.cancel_timer(entry)
        return value

    def _watch(self, fd: int) -> _Watch:
        """The watch of ``fd``, made (and for epoll registered) on first use."""
        if not isinstance(fd, int):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        if self._closed:
            raise RuntimeError("the hub is closed")
        full = self._poller.FULL
        if full:
            self._poller.register(fd, full)
        elif not isinstance(self._poller, _poller.PollPoller):
            os.fstat(fd)  # the select loop cannot survive a bad fd: fail here
        w = self._fds[fd] = _Watch(fd, full)
        return w

    def _interest(self, w: _Watch) -> None:
        # Level-triggered pollers: register exactly the directions waited for.
        mask = (READ if w.reader is not None else 0) | (WRITE if w.writer is not None else 0)
        if mask == w.mask or self._fds.get(w.fd) is not w:
            return
        if mask == 0:
            self._poller.unregister(w.fd)
        elif w.mask == 0:
            self._poller.register(w.fd, mask)
        else:
            self._poller.modify(w.fd, mask)
        w.mask = mask

    def wait_fd(self, fd: int, event: int, timeout: float | None = None,
                owner: int = 0) -> int:
        """Suspend the current greenlet until ``fd`` is ready for ``event`` (READ or WRITE).

        Returns the poll mask that woke it.  Raises ``TimeoutError`` after
        ``timeout`` seconds, ``OSError(EBADF)`` if the fd is closed meanwhile
        (``close_fd``) or invalid, ``ConcurrentUseError`` if another greenlet
        already waits on it in that direction.

        ``owner`` is for the socket layer: a number unique to the socket
        object, which calls only after its syscall failed with EAGAIN.  With
        the edge-triggered epoll, the fd's registration is then trusted as
        long as the same owner waits on it (no system call); with ``owner=0``
        (readiness unknown, another object on that fd number) the hub
        re-arms it first, one ``epoll_ctl``, which reports current readiness.
        """
        cur = getcurrent()
        if cur is self:
            raise RuntimeError("cannot block in the hub (in a hub callback)")
        w = self._fds.get(fd)
        if w is None:
            w = self._watch(fd)
            w.owner = owner
        elif w.owner != owner or not owner:
            if self._edge:
                self._poller.modify(fd, w.mask)
            w.owner = owner
        if event == READ:
            if w.reader is not None:
                raise ConcurrentUseError(f"fd {fd} is already waited on for reading "
                                         f"by {w.reader!r}")
            w.reader = cur
        elif event == WRITE:
            if w.writer is not None:
                raise ConcurrentUseError(f"fd {fd} is already waited on for writing "
                                         f"by {w.writer!r}")
            w.writer = cur
        else:
            raise ValueError(f"event must be READ or WRITE, not {event!r}")
        if not self._edge:
            try:
                self._interest(w)
            except BaseException:
                w.reader = w.writer = None
                raise
        self._nwait += 1
        entry = None if timeout is None else self.call_later(timeout, self._expire, cur)
        try:
            value = self.switch()
        finally:
            self._nwait -= 1
            if w.reader is cur:
                w.reader = None
            if w.writer is cur:
                w.writer = None
            if not self._edge:
                self._interest(w)
            if entry is not None:
                self.cancel_timer(entry)
            self._pending.pop(cur, None)
        if type(value) is int:
            if value & _poller.NVAL:
                raise OSError(errno.EBADF, f"fd {fd} is not open")
            return value
        if value is TIMEOUT:
            raise TimeoutError("timed out")
        if value is CLOSED:
            raise OSError(errno.EBADF, "file descriptor was closed by another greenlet")
        raise RuntimeError(f"fd wait resumed with an unexpected value {value!r}")  # a bug

    def wait_fds(self, rfds: list[int], wfds: list[int], timeout: float | None = None) -> Any:
        """Suspend until any of ``rfds`` is readable or ``wfds`` writable.

        The readiness of each fd is (re-)checked when it is registered, so it
        may be called without trying a syscall first.  Returns the mask that
        woke it (then the caller checks which fds are ready), TIMEOUT, or
        CLOSED; raises like ``wait_fd``.
        """
        cur = getcurrent()
        if cur is self:
            raise RuntimeError("cannot block in the hub (in a hub callback)")
        watches: list[_Watch] = []
        try:
            for fds, attr in ((rfds, "reader"), (wfds, "writer")):
                for fd in fds:
                    w = self._fds.get(fd)
                    if w is None:
                        w = self._watch(fd)
                    elif self._edge:
                        self._poller.modify(fd, w.mask)
                        w.owner = 0
                    other = getattr(w, attr)
                    if other is not None and other is not cur:
                        raise ConcurrentUseError(
                            f"fd {fd} is already waited on for "
                            f"{'reading' if attr == 'reader' else 'writing'} by {other!r}")
                    setattr(w, attr, cur)
                    watches.append(w)
                    if not self._edge:
                        self._interest(w)
            self._nwait += 1
            entry = None if timeout is None else self.call_later(timeout, self._expire, cur)
            try:
                value = self.switch()
            finally:
                self._nwait -= 1
                if entry is not None:
                    self.cancel_timer(entry)
                self._pending.pop(cur, None)
        finally:
            for w in watches:
                if w.reader is cur:
                    w.reader = None
                if w.writer is cur:
                    w.writer = None
                if not self._edge:
                    self._interest(w)
        if type(value) is int and value & _poller.NVAL:
            raise OSError(errno.EBADF, "an fd is not open")
        if value is CLOSED:
            raise OSError(errno.EBADF, "file descriptor was closed by another greenlet")
        return value

    def close_fd(self, fd: int) -> None:
        """Forget ``fd`` (call it before closing the fd): its waiters get OSError(EBADF)."""
        w = self._fds.pop(fd, None)
        if w is None:
            return
        if w.mask:
            try:
                self._poller.unregister(fd)
            except (OSError, KeyError, ValueError):
                pass
        for g in (w.reader, w.writer):
            if g is not None and g is not self:
                self.schedule(g, CLOSED)
        w.reader = w.writer = None
        w.mask = 0

    # ------------------------------------------------------------------
    # Errors

    def handle_error(self, context: object, exc: BaseException) -> None:
        """Report an exception nobody caught (a task's, a callback's) once, to stderr.

        System errors (KeyboardInterrupt, SystemExit) are re-raised in the
        thread's main greenlet instead.
        """
        if isinstance(exc, SYSTEM_ERRORS):
            self.run_callback(self._throw_main, exc)
            return
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            sys.stderr.write(f"{context!r} failed with {type(exc).__name__}\n\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - stderr is gone: nothing left to report to
            pass

    def _throw_main(self, exc: BaseException) -> None:
        self.parent.throw(exc)

    # ------------------------------------------------------------------
    # The loop

    def run(self) -> None:
        """The loop; runs in the hub greenlet until the hub is destroyed."""
        while True:
            try:
                self._loop()
            except GreenletExit:
                self._close()
                return
            except Exception as exc:  # noqa: BLE001 - reported, the loop goes on
                self.handle_error(self, exc)
            except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt, SystemExit...
                # Not the loop's to handle: raise it in the main greenlet, and
                # go on if that ever switches back here.
                self.parent.throw(exc)

    def _loop(self) -> None:  # noqa: C901 - the loop, kept in one piece for speed
        ready = self._ready
        popleft = ready.popleft
        pending_pop = self._pending.pop
        callbacks = self._callbacks
        timers = self._timers
        fds_get = self._fds.get
        poll = self._poll
        heappop = heapq.heappop
        missing = MISSING
        while True:
            # 1. callbacks queued so far
            n = len(callbacks)
            while n:
                n -= 1
                fn, args = callbacks.popleft()
                try:
                    fn(*args)
                except Exception as exc:  # noqa: BLE001
                    self.handle_error(fn, exc)
            # 2. greenlets made ready so far
            n = len(ready)
            while n:
                n -= 1
                g = popleft()
                value = pending_pop(g, missing)
                if value is not missing:
                    try:
                        g.switch(value)
                    except Exception as exc:  # noqa: BLE001 - a greenlet under the hub failed
                        self.handle_error(g, exc)
            # 3. due timers
            if timers:
                now = monotonic()
                while timers and timers[0][0] <= now:
                    entry = heappop(timers)
                    fn = entry[2]
                    if fn is None:
                        self._ncancelled -= 1
                    else:
                        entry[2] = None
                        try:
                            fn(entry[3])
                        except Exception as exc:  # noqa: BLE001
                            self.handle_error(fn, exc)
            # 4. the OS selector
            if ready or callbacks:
                if not self._nwait and not self._thread_jobs:
                    continue
                timeout = 0.0
            elif len(timers) > self._ncancelled:
                timeout = timers[0][0] - monotonic()
                if timeout < 0.0:
                    timeout = 0.0
            elif self._nwait or self._thread_jobs:
                timeout = None
            elif timers:
                timers.clear()
                self._ncancelled = 0
                continue
            else:
                self.parent.throw(LoopExit(
                    "this operation would block forever: nothing is ready, "
                    "no timer is set and no fd is waited on"))
                continue
            for fd, ev in poll(timeout):
                w = fds_get(fd)
                if w is None:
                    continue
                if ev & READ_WAKE:
                    g = w.reader
                    if g is not None:
                        if g is self:   # the wake-up fd of run_callback_threadsafe
                            self._drain_wakeup(fd)
                        else:
                            w.reader = None
                            try:
                                g.switch(ev)
                            except Exception as exc:  # noqa: BLE001
                                self.handle_error(g, exc)
                if ev & WRITE_WAKE:
                    g = w.writer
                    if g is not None:
                        w.writer = None
                        try:
                            g.switch(ev)
                        except Exception as exc:  # noqa: BLE001
                            self.handle_error(g, exc)

    def _drain_wakeup(self, fd: int) -> None:
        try:
            os.read(fd, 8)
        except BlockingIOError:
            pass
        tsafe = self._tsafe
        while tsafe:
            self._callbacks.append(tsafe.popleft())

    def _close(self) -> None:
        self._closed = True
        self._fds.clear()
        self._poller.close()
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1

    def destroy(self) -> None:
        """Stop this hub (from the thread's main greenlet): it is forgotten by
        its thread, and its poller closed.

        Greenlets still waiting in it are not resumed (they are killed when
        they are garbage collected).  The next ``get_hub()`` makes a new hub.
        """
        if getattr(_tls, "hub", None) is self:
            del _tls.hub
        if self:  # started and suspended: end its loop
            if getcurrent() is not self.parent:
                raise RuntimeError("a hub can only be destroyed from its parent greenlet")
            self.throw(GreenletExit)
        elif not self._closed:
            self._close()


_tls = threading.local()


def get_hub() -> Hub:
    """The hub of the current thread, made on first use."""
    try:
        return _tls.hub
    except AttributeError:
        hub = _tls.hub = Hub()
        return hub


def set_hub(hub: Hub) -> None:
    """Install ``hub`` as the current thread's hub (tests use it to pick a poller)."""
    _tls.hub = hub


def sleep(seconds: float = 0) -> None:
    """Suspend the current greenlet for ``seconds``; 0 yields to the other ready ones."""
    try:
        hub = _tls.hub
    except AttributeError:
        hub = get_hub()
    cur = getcurrent()
    if cur is hub:
        raise RuntimeError("cannot sleep in the hub (in a hub callback)")
    if seconds == 0:
        hub._pending[cur] = None
        hub._ready.append(cur)
        try:
            hub.switch()
        except BaseException:
            hub._pending.pop(cur, None)
            raise
        return
    if not seconds > 0:
        if seconds != seconds or seconds < 0:
            raise ValueError(f"sleep length must be non-negative, not {seconds!r}")
        raise TypeError(f"sleep length must be a number, not {type(seconds).__name__}")
    entry = hub.call_later(seconds, _switch, cur)
    try:
        hub.switch()
    except BaseException:
        hub.cancel_timer(entry)
        raise


def _fileno(fd: Any) -> int:
    if isinstance(fd, int):
        return fd
    fileno = getattr(fd, "fileno", None)
    if fileno is None:
        raise TypeError(f"argument must be an int, or have a fileno() method, not "
                        f"{type(fd).__name__}")
    return fileno()


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be None or a non-negative number, not {timeout!r}")


def wait_read(fd: Any, timeout: float | None = None) -> None:
    """Suspend the current greenlet until ``fd`` (an int or an object with
    ``fileno()``) is readable; ``TimeoutError`` after ``timeout`` seconds."""
    _check_timeout(timeout)
    get_hub().wait_fd(_fileno(fd), READ, timeout)


def wait_write(fd: Any, timeout: float | None = None) -> None:
    """Suspend the current greenlet until ``fd`` is writable; ``TimeoutError``
    after ``timeout`` seconds."""
    _check_timeout(timeout)
    get_hub().wait_fd(_fileno(fd), WRITE, timeout)
