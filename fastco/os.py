"""Cooperative process waits: a drop-in for the stdlib ``os`` module.

``waitpid`` and ``wait`` suspend only the calling task.  For one child and
no stop/continue reporting, ``waitpid`` opens a pidfd for it
(``os.pidfd_open``, Linux 5.3+), which becomes readable when the child
exits, and waits for that in the hub: the wake-up comes at once, with no
polling.  Otherwise (``pid <= 0``, ``WUNTRACED``/``WCONTINUED``, or no pidfd
on this kernel) it polls with ``WNOHANG``, sleeping 1 ms, then twice as long
each time, up to 50 ms.  ``WNOHANG`` calls go straight to the stdlib's.
Everything else of the stdlib module is re-exported unchanged.
"""

from __future__ import annotations

import errno as _errno
import os as _std
from os import *  # noqa: F403

from fastco.hub import current_hub as _current_hub
from fastco.hub import sleep as _sleep
from fastco.hub import wait_read as _wait_read

__all__ = list(_std.__all__)

_std_waitpid = _std.waitpid          # captured before any patching
_WNOHANG: int = _std.WNOHANG
_REPORTS_MORE = getattr(_std, "WUNTRACED", 0) | getattr(_std, "WCONTINUED", 0)
_POLL_FIRST = 0.001
_POLL_MAX = 0.05
#: False once pidfd_open turned out not to work here (old kernel, seccomp).
_pidfd_works = hasattr(_std, "pidfd_open")


def _open_pidfd(pid: int) -> int:
    """A pidfd for ``pid``, or -1 where pidfds cannot be had (then poll)."""
    global _pidfd_works
    if not _pidfd_works:
        return -1
    try:
        return _std.pidfd_open(pid)
    except ProcessLookupError:
        return -1   # gone (reaped by somebody else): waitpid will say so
    except OSError as exc:
        if exc.errno in (_errno.ENOSYS, _errno.EPERM, _errno.EACCES):
            _pidfd_works = False
        return -1


def _close_pidfd(fd: int) -> None:
    hub = _current_hub()
    if hub is not None:
        hub.close_fd(fd)
    _std.close(fd)


def waitpid(pid: int, options: int) -> tuple[int, int]:
    """os.waitpid, suspending only the current task until the child changes
    state (see the module docstring for how)."""
    if options & _WNOHANG:
        return _std_waitpid(pid, options)
    fd = -1 if pid <= 0 or options & _REPORTS_MORE else _open_pidfd(pid)
    if fd >= 0:
        try:
            while True:
                result = _std_waitpid(pid, options | _WNOHANG)
                if result[0] != 0:
                    return result
                _wait_read(fd)
        finally:
            _close_pidfd(fd)
    delay = _POLL_FIRST
    while True:
        result = _std_waitpid(pid, options | _WNOHANG)
        if result[0] != 0:
            return result
        _sleep(delay)
        delay = min(delay * 2, _POLL_MAX)


def wait() -> tuple[int, int]:
    """os.wait (any child), suspending only the current task (polls: no pidfd for 'any')."""
    return waitpid(-1, 0)


#: The names monkey.patch_os replaces in the stdlib module.
PATCHED = ["waitpid", "wait"]
