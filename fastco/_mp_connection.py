"""Cooperative ``multiprocessing.connection.Connection`` reads and writes: what
fastco.monkey.patch_socket installs once ``multiprocessing.connection`` is imported.

A Connection reads and writes its fd with ``os.read``/``os.write`` and expects
it blocking.  Over a socket that fastco made (fastco's sockets keep their fd
non-blocking underneath, whatever their timeout), those calls fail with
``BlockingIOError``: ``multiprocessing.Manager`` and ``Listener``/``Client``
do so on every version, and from 3.14 on so does starting any process with
the default ``forkserver`` method (which now authenticates over a socket:
``ProcessPoolExecutor``, ``multiprocessing.Process``).  The replacements wait
in the hub where the fd would block, and only the calling task waits.  An fd
that is blocking (a pipe) blocks as before.
"""

from __future__ import annotations

import os as _os
from collections.abc import Callable
from multiprocessing.connection import Connection as _Connection
from typing import Any

from fastco.hub import wait_read as _wait_read
from fastco.hub import wait_write as _wait_write

# The stdlib's methods, captured before patching: they take the read and
# write functions as arguments (defaults os.read and os.write).
_std_recv = _Connection._recv
_std_send = _Connection._send


def _waiting(call: Callable[[int, Any], Any], wait: Callable[[int], None]
             ) -> Callable[[int, Any], Any]:
    """``call(fd, arg)`` (os.read or os.write), waiting in the hub with
    ``wait(fd)`` while the fd would block."""
    def waiting(fd: int, arg: Any) -> Any:
        while True:
            try:
                return call(fd, arg)
            except BlockingIOError:
                wait(fd)
    return waiting


_read = _waiting(_os.read, _wait_read)
_write = _waiting(_os.write, _wait_write)


def _recv(self: _Connection, size: int, read: Any = _read) -> Any:
    """Connection._recv over a cooperative read."""
    return _std_recv(self, size, read)


def _send(self: _Connection, buf: Any, write: Any = _write) -> None:
    """Connection._send over a cooperative write."""
    _std_send(self, buf, write)


#: The methods monkey.patch_socket replaces on multiprocessing.connection.Connection.
PATCHED = ["_recv", "_send"]
