"""Cooperative ``select.select``, ``select.poll`` and a ``selectors`` selector.

Each answers in two steps: a zero-timeout poll(2) of the fds tells what is
ready now; if nothing is (and the timeout is not zero), the current greenlet
waits in the hub for any of the fds (``Hub.wait_fds``), then asks again.  The
answers are therefore exactly the OS's, and only the waiting is cooperative.
These are what ``fastco.monkey.patch_select`` installs.
"""

from __future__ import annotations

import errno
import math
import select as _std_select
import selectors as _selectors
from time import monotonic
from typing import Any

from fastco._greenlet import getcurrent
from fastco._poller import ERR, HUP, NVAL, PRI, READ, WRITE
from fastco.hub import TIMEOUT, get_hub, sleep

__all__ = ["FastcoSelector", "error", "poll", "select"]

error = OSError
_std_poll = _std_select.poll  # captured before any patching
_READABLE = READ | HUP | ERR | NVAL
_WRITABLE = WRITE | HUP | ERR | NVAL

POLLIN = _std_select.POLLIN
POLLOUT = _std_select.POLLOUT
POLLPRI = _std_select.POLLPRI
POLLERR = _std_select.POLLERR
POLLHUP = _std_select.POLLHUP
POLLNVAL = _std_select.POLLNVAL


def _fd(obj: Any) -> int:
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            fd = obj.fileno()
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _poll_now(masks: dict[int, int]) -> list[tuple[int, int]]:
    p = _std_poll()
    for fd, mask in masks.items():
        p.register(fd, mask)
    return p.poll(0)


def _wait(masks: dict[int, int], deadline: float | None) -> bool:
    """Wait in the hub for any fd of ``masks``; False once the deadline passed."""
    remaining = None
    if deadline is not None:
        remaining = deadline - monotonic()
        if remaining <= 0:
            return False
    rfds = [fd for fd, m in masks.items() if m & (POLLIN | POLLPRI)]
    wfds = [fd for fd, m in masks.items() if m & POLLOUT]
    if not rfds and not wfds:  # nothing to wait for but the time (or forever)
        if remaining is None:
            get_hub().wait(getcurrent())  # only a kill or a Timeout ends this
        else:
            sleep(remaining)
        return False
    return get_hub().wait_fds(rfds, wfds, remaining) is not TIMEOUT


def _poll_until(masks: dict[int, int], timeout: float | None,
                now: Any = None) -> list[tuple[int, int]]:
    """The (fd, events) of ``masks`` that are ready, waiting in the hub for
    some up to ``timeout`` seconds (None: forever, 0: not at all).  ``now``
    is a stdlib poll object registered with ``masks``, if there is one."""
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        events = now.poll(0) if now is not None else _poll_now(masks)
        if events or timeout == 0:
            return events
        if not _wait(masks, deadline):
            return now.poll(0) if now is not None else _poll_now(masks)


def select(rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None,
           ) -> tuple[list[Any], list[Any], list[Any]]:
    """select.select that blocks only the current greenlet."""
    if timeout is not None:
        try:
            timeout = float(timeout)
        except (TypeError, ValueError):
            raise TypeError("timeout must be a float or None") from None
        if timeout < 0 or math.isnan(timeout):
            raise ValueError("timeout must be non-negative")
    rlist, wlist, xlist = list(rlist), list(wlist), list(xlist)
    masks: dict[int, int] = {}
    for objs, bit in ((rlist, POLLIN), (wlist, POLLOUT), (xlist, POLLPRI)):
        for obj in objs:
            fd = _fd(obj)
            masks[fd] = masks.get(fd, 0) | bit
    events = dict(_poll_until(masks, timeout))
    if any(ev & NVAL for ev in events.values()):
        raise OSError(errno.EBADF, "Bad file descriptor")
    r = [o for o in rlist if events.get(_fd(o), 0) & _READABLE]
    w = [o for o in wlist if events.get(_fd(o), 0) & _WRITABLE]
    x = [o for o in xlist if events.get(_fd(o), 0) & PRI]
    return r, w, x


class poll:  # noqa: N801 - the stdlib's name
    """select.poll that blocks only the current greenlet.

    It keeps a stdlib poll object with the same registrations, which checks
    the arguments as the stdlib's and answers a zero timeout by itself: the
    common use (urllib3 asks whether a pooled connection was dropped before
    each request) costs what the stdlib's does."""

    def __init__(self) -> None:
        self._poll = _std_poll()
        self._masks: dict[int, int] = {}

    # The stdlib object checks fd first (an int >= 0, or an object whose
    # fileno() gives one), so fileno() is safe to call after it.

    def register(self, fd: Any, eventmask: int = POLLIN | POLLPRI | POLLOUT) -> None:
        self._poll.register(fd, eventmask)
        self._masks[fd if isinstance(fd, int) else fd.fileno()] = eventmask

    def modify(self, fd: Any, eventmask: int) -> None:
        self._poll.modify(fd, eventmask)
        self._masks[fd if isinstance(fd, int) else fd.fileno()] = eventmask

    def unregister(self, fd: Any) -> None:
        self._poll.unregister(fd)
        del self._masks[fd if isinstance(fd, int) else fd.fileno()]

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """Like select.poll().poll: ``timeout`` in milliseconds, None or negative: forever."""
        if timeout == 0:
            return self._poll.poll(0)
        if timeout is not None:
            timeout = float(timeout)
            if timeout < 0:
                timeout = None
        return _poll_until(self._masks, None if timeout is None else timeout / 1000.0,
                           self._poll)


class FastcoSelector(_selectors._BaseSelectorImpl):  # type: ignore[name-defined]
    """A ``selectors`` selector whose select() blocks only the current greenlet."""

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        masks: dict[int, int] = {}
        for fd, key in self._fd_to_key.items():
            masks[fd] = ((POLLIN if key.events & _selectors.EVENT_READ else 0)
                         | (POLLOUT if key.events & _selectors.EVENT_WRITE else 0))
        if timeout is not None:
            timeout = max(float(timeout), 0.0)
        ready = []
        for fd, ev in _poll_until(masks, timeout):
            key = self._fd_to_key.get(fd)
            if key is None:
                continue
            got = ((_selectors.EVENT_READ if ev & _READABLE else 0)
                   | (_selectors.EVENT_WRITE if ev & _WRITABLE else 0))
            got &= key.events
            if got:
                ready.append((key, got))
        return ready
