"""The hub: one event loop per thread, and the few primitives that suspend a task.

The hub is a greenlet, the parent of every task (so a finished task returns
to it).  Its loop runs in its native core (csrc/pyglue/hub.c); per turn it:

  1. runs what was made ready before the turn, in FIFO order: greenlets to
     resume (``schedule``) and callbacks (``run_callback``);
  2. fires the due timers (a heap);
  3. polls the OS selector (``fastco._poller``) -- not at all when something
     is ready and nothing waits on an fd, with a zero timeout when something
     is ready, else until the next timer -- and switches straight to each
     greenlet whose fd fired.

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
is two pointer stores and two switches, no system call besides the
``epoll_wait`` the loop makes anyway; fastco.socket's recv/send are C calls
that wait without raising (csrc/pyglue/hubsock.c).

The loop first was Python (see the git history): the C core halved the cost
of a ``sleep(0)`` round trip and of a socket wait (bench/test_bench_hub.py).
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from _thread import get_ident as _thread_ident
from collections.abc import Callable
from typing import Any

import fastco._native as _native
from fastco import _poller
from fastco._greenlet import GreenletExit, getcurrent, greenlet
from fastco._native import HubCore
from fastco._poller import READ, WRITE

__all__ = [
    "READ",
    "WRITE",
    "ConcurrentUseError",
    "Hub",
    "LoopExit",
    "current_hub",
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

#: Expected disconnects, not reported (the task still ends with them).
QUIET_ERRORS = (ConnectionResetError, BrokenPipeError)

#: Exceptions that a task does not swallow: they are re-raised in the main greenlet.
SYSTEM_ERRORS = (KeyboardInterrupt, SystemExit, SystemError)


def _root(g: greenlet) -> greenlet:
    while g.parent is not None:
        g = g.parent
    return g


class Hub(greenlet):
    """The event loop of one thread (see the module docstring).

    Use ``get_hub()`` rather than making one: a thread has one hub, made on
    first use, whose parent is the thread's main greenlet.  ``poller`` picks
    the OS selector (see fastco._poller).

    The loop and the primitives below are those of its native core
    (``fastco._native.HubCore``, csrc/pyglue/hub.c), bound as attributes:

    - ``schedule(g, value=None)``: resume ``g`` (waiting in the hub) with
      ``value`` at the next turn; ``unschedule(g)``: drop that, returning the
      value or MISSING;
    - ``run_callback(fn, *args)``: call ``fn(*args)`` in the hub at the next
      turn (it must not block); ``run_callback_threadsafe`` from other threads,
      between ``start_thread_job()`` and ``end_thread_job()``;
    - ``call_later(seconds, fn, arg=None)``: a timer calling ``fn(arg)`` in
      the hub; ``cancel_timer(timer)`` (or ``timer.cancel()``);
    - ``wait(cur, timeout=None, on_drop=None)``: suspend the current greenlet
      ``cur``, registered where a wake-up will come from, until resumed;
      returns the wake-up value or TIMEOUT.  If an exception is thrown in, a
      pending wake-up's value goes to ``on_drop`` (a primitive that handed
      something over takes it back);
    - ``wait_fd(fd, event, timeout=None, owner=0)``: suspend until ``fd`` is
      ready for ``event`` (READ or WRITE); ``TimeoutError``, ``OSError(EBADF)``
      if it is closed meanwhile, ``ConcurrentUseError`` if another greenlet
      waits on it in that direction.  ``owner`` is for the socket layer (a
      number unique to the socket object, which calls only after EAGAIN): the
      fd's registration is trusted while the same owner waits on it, else it
      is re-armed first (one ``epoll_ctl``, which reports current readiness);
    - ``wait_fds(rfds, wfds, timeout=None)``: any of them;
    - ``close_fd(fd)``: forget ``fd`` before it is closed; its waiters get
      ``OSError(EBADF)``.
    """

    __slots__ = (
        "_core", "_poller", "_closed", "thread_ident",
        "schedule", "unschedule", "run_callback", "run_callback_threadsafe",
        "start_thread_job", "end_thread_job", "call_later", "cancel_timer",
        "wait", "wait_fd", "wait_fds", "close_fd",
    )
    # The core's methods, bound in __init__ (see above).
    schedule: Callable[..., None]
    unschedule: Callable[[greenlet], Any]
    run_callback: Callable[..., None]
    run_callback_threadsafe: Callable[..., None]
    start_thread_job: Callable[[], None]
    end_thread_job: Callable[[], None]
    call_later: Callable[..., Any]
    cancel_timer: Callable[[Any], None]
    wait: Callable[..., Any]
    wait_fd: Callable[..., int]
    wait_fds: Callable[..., Any]
    close_fd: Callable[[int], None]

    def __init__(self, poller: str | None = None) -> None:
        greenlet.__init__(self, None, _root(getcurrent()))
        self._poller = p = _poller.make_poller(poller)
        self._closed = False
        self.thread_ident = _thread_ident()  # the OS thread's, even when patched
        core = self._core = HubCore(self, self.handle_error, self._loop_exit,
                                    p.fileno() if p.edge else -1, p)
        self.schedule = core.schedule
        self.unschedule = core.unschedule
        self.run_callback = core.run_callback
        self.run_callback_threadsafe = core.run_callback_threadsafe
        self.start_thread_job = core.start_thread_job
        self.end_thread_job = core.end_thread_job
        self.call_later = core.call_later
        self.cancel_timer = core.cancel_timer
        self.wait = core.wait
        self.wait_fd = core.wait_fd
        self.wait_fds = core.wait_fds
        self.close_fd = core.close_fd

    def __repr__(self) -> str:
        core = self._core
        return (f"<Hub at {id(self):#x} poller={self._poller.name} ready={core.nready} "
                f"timers={core.ntimers} fd_waiters={core.nwait}>")

    @property
    def poller(self) -> str:
        """The name of the OS selector this hub uses: epoll, poll or select."""
        return self._poller.name

    @property
    def bytes_received(self) -> int:
        """Bytes received so far by fastco sockets' recv/recv_into in this thread."""
        return self._core.bytes_received

    @property
    def bytes_sent(self) -> int:
        """Bytes sent so far by fastco sockets' send/sendall in this thread."""
        return self._core.bytes_sent

    # ------------------------------------------------------------------
    # Errors

    def handle_error(self, context: object, exc: BaseException) -> None:
        """Report an exception nobody caught (a task's, a callback's) once, to stderr.

        System errors (KeyboardInterrupt, SystemExit) are re-raised in the
        thread's main greenlet instead.  A peer that reset the connection or
        stopped reading (ECONNRESET, EPIPE) is a normal event for a server:
        quiet.
        """
        if isinstance(exc, SYSTEM_ERRORS):
            self.run_callback(self._throw_main, exc)
            return
        if isinstance(exc, QUIET_ERRORS):
            return
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            sys.stderr.write(f"{context!r} failed with {type(exc).__name__}\n\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - stderr is gone: nothing left to report to
            pass

    def _throw_main(self, exc: BaseException) -> None:
        self.parent.throw(exc)

    def _loop_exit(self) -> None:
        # The core found nothing ready, no timer and no fd waited on.
        self.parent.throw(LoopExit(
            "this operation would block forever: nothing is ready, "
            "no timer is set and no fd is waited on"))

    # ------------------------------------------------------------------
    # The loop

    def run(self) -> None:
        """The loop (the core's); runs in the hub greenlet until the hub is destroyed."""
        core_run = self._core.run
        while True:
            try:
                core_run()
            except GreenletExit:
                self._close()
                return
            except Exception as exc:  # noqa: BLE001 - reported, the loop goes on
                self.handle_error(self, exc)
            except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt, SystemExit...
                # Not the loop's to handle: raise it in the main greenlet, and
                # go on if that ever switches back here.
                self.parent.throw(exc)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            # A closed hub is forgotten by its thread: the next get_hub()
            # makes a new one (tasks of this one get RuntimeError).
            if getattr(_tls, "hub", None) is self:
                del _tls.hub
            self._core.close()
            self._poller.close()

    def destroy(self) -> None:
        """Stop this hub (from the thread's main greenlet): it is forgotten by
        its thread, and its poller closed.

        Greenlets still waiting in it are not resumed (they are killed when
        they are garbage collected).  The next ``get_hub()`` makes a new hub.
        """
        if self and getcurrent() is not self.parent:
            # Checked before anything changes: refusing must leave the hub whole.
            raise RuntimeError("a hub can only be destroyed from its parent greenlet")
        if getattr(_tls, "hub", None) is self:
            del _tls.hub
        self._core.uninstall()
        if self:  # started and suspended: end its loop
            self.throw(GreenletExit)
        self._close()

    def _after_fork(self) -> None:
        # The child shares the parent's epoll instance: take a new poller and
        # register the fds again.
        old = self._poller
        self._poller = p = _poller.make_poller(old.name)
        self._core.reinit(p.fileno() if p.edge else -1, p)
        old.close()


_tls = threading.local()


def get_hub() -> Hub:
    """The hub of the current thread, made on first use."""
    try:
        return _tls.hub
    except AttributeError:
        hub = Hub()
        set_hub(hub)
        return hub


def set_hub(hub: Hub) -> None:
    """Install ``hub`` as the current thread's hub (tests use it to pick a poller)."""
    _tls.hub = hub
    hub._core.install()


def current_hub() -> Hub | None:
    """The current thread's hub if it has one (never makes one)."""
    return getattr(_tls, "hub", None)


def _after_fork_in_child() -> None:
    hub = current_hub()
    if hub is not None and not hub._closed:
        hub._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

#: sleep(seconds=0): suspend the current greenlet for ``seconds``; 0 yields
#: to the other ready greenlets.  (Native: see csrc/pyglue/hub.c.)
sleep: Callable[..., None] = _native.sleep

_native.hub_setup(TIMEOUT, CLOSED, MISSING, ConcurrentUseError, get_hub)


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
