"""The OS readiness selector behind the hub: three backends.

- ``EpollPoller`` (Linux, the default) is *edge-triggered*: the hub registers an
  fd once, for both directions, and keeps that registration while the fd lives.
  A coroutine waits only after its syscall failed with EAGAIN, and a new edge is
  reported for every change after that, so a wait costs no system call at all.
  The hub's C core does all of it on the epoll fd (``epoll_ctl``/``epoll_wait``,
  csrc/pyglue/hubfd.c, which says what it relies on); this class only owns
  that fd.
- ``PollPoller`` and ``SelectPoller`` ("the select loop") are *level-triggered*:
  the hub registers exactly the directions somebody waits for, and drops them
  when the wait ends, or a readable fd that nobody reads would spin the loop.
  The core calls their ``register(fd, mask)``, ``modify(fd, mask)``,
  ``unregister(fd)`` and ``poll(timeout)``.  Masks use the ``select.POLL*``
  bits, and ``poll(timeout)`` takes seconds (``None``: wait forever) and
  returns a list of ``(fd, mask)``.

The backend is picked once per hub: the ``poller`` argument of the hub, else
the environment variable ``FASTCO_POLLER=epoll|poll|select``, else the best
available.  The module captures ``select.epoll``/``select.poll``/
``select.select`` at import, so monkey patching does not reach the hub.
"""

from __future__ import annotations

import errno
import os
import select as _select_mod

_epoll = getattr(_select_mod, "epoll", None)
_poll = getattr(_select_mod, "poll", None)
_select = _select_mod.select

READ = _select_mod.POLLIN
WRITE = _select_mod.POLLOUT
ERR = _select_mod.POLLERR
HUP = _select_mod.POLLHUP
NVAL = _select_mod.POLLNVAL
PRI = _select_mod.POLLPRI


class EpollPoller:
    """Edge-triggered epoll: the epoll fd, which the hub's C core drives."""

    name = "epoll"
    edge = True

    def __init__(self) -> None:
        self._ep = _epoll()

    def fileno(self) -> int:
        return self._ep.fileno()

    def close(self) -> None:
        self._ep.close()


class PollPoller:
    """Level-triggered poll(2): the interest set is passed on every call."""

    name = "poll"
    edge = False

    def __init__(self) -> None:
        p = _poll()
        self.register = p.register
        self.modify = p.modify
        self.unregister = p.unregister
        p_poll = p.poll

        def poll(timeout: float | None) -> list[tuple[int, int]]:
            if timeout is None:
                return p_poll()
            # Round up, so that a timer 0.3 ms away does not spin the loop.
            return p_poll(-(-timeout * 1000 // 1))

        self.poll = poll

    def close(self) -> None:
        pass


#: select(2) handles fds below this (glibc's fd_set size).
FD_SETSIZE = 1024


class SelectPoller:
    """Level-triggered select(2), the portable fallback (fds below FD_SETSIZE)."""

    name = "select"
    edge = False

    def __init__(self) -> None:
        self._masks: dict[int, int] = {}

    def register(self, fd: int, mask: int) -> None:
        if not isinstance(fd, int):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
        if fd >= FD_SETSIZE:
            # select() cannot watch it, and would fail for every other fd too.
            raise ValueError(f"file descriptor {fd} is out of range for select() "
                             f"(FD_SETSIZE is {FD_SETSIZE}); use the epoll or poll poller")
        os.fstat(fd)   # an fd that is not open fails here, not in the hub's select()
        self._masks[fd] = mask

    def modify(self, fd: int, mask: int) -> None:
        if fd not in self._masks:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        self._masks[fd] = mask

    def unregister(self, fd: int) -> None:
        del self._masks[fd]

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        masks = self._masks
        rlist = [fd for fd, m in masks.items() if m & READ]
        wlist = [fd for fd, m in masks.items() if m & WRITE]
        try:
            r, w, x = _select(rlist, wlist, rlist, timeout)
        except (OSError, ValueError):
            # Some fd was closed behind the hub's back: report it as invalid
            # (POLLNVAL) so that its waiter gets an error instead of a hang.
            return [(fd, NVAL) for fd in masks if not _fd_open(fd)]
        events: dict[int, int] = {}
        for fd in r:
            events[fd] = READ
        for fd in x:
            events[fd] = events.get(fd, 0) | PRI
        for fd in w:
            events[fd] = events.get(fd, 0) | WRITE
        return list(events.items())

    def close(self) -> None:
        self._masks.clear()


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


POLLERS = {"epoll": EpollPoller, "poll": PollPoller, "select": SelectPoller}


def available() -> list[str]:
    """The backends this platform has, best first."""
    names = []
    if _epoll is not None:
        names.append("epoll")
    if _poll is not None:
        names.append("poll")
    names.append("select")
    return names


def make_poller(name: str | None = None) -> EpollPoller | PollPoller | SelectPoller:
    """A new poller: ``name``, else ``$FASTCO_POLLER``, else the best available."""
    if name is None:
        name = os.environ.get("FASTCO_POLLER", "").strip() or available()[0]
    if name not in available():
        raise ValueError(f"unknown or unavailable poller {name!r}; "
                         f"available: {', '.join(available())}")
    return POLLERS[name]()
