"""Cooperative sockets: a drop-in for the stdlib ``socket`` module.

``fastco.socket.socket`` is a subclass of the stdlib ``socket.socket`` whose
blocking calls suspend only the calling greenlet.  Underneath, the OS socket
is always non-blocking; the timeout the user sets (``settimeout``) is kept in
Python:

- ``None`` (blocking): a call that would block waits in the hub until the
  fd is ready, then tries again;
- ``0.0`` (non-blocking): the call raises ``BlockingIOError`` as the stdlib's;
- ``t > 0``: as blocking, but ``socket.timeout`` (``TimeoutError``) after
  ``t`` seconds.

Each call tries the system call first and waits only on EAGAIN.  Closing a
socket wakes the greenlets waiting on it with ``OSError(EBADF)``.  Name
resolution (``getaddrinfo`` and friends) runs in a small thread pool, and so
do connects to host names.  Everything else of the stdlib module (constants,
exceptions, helpers) is re-exported unchanged.
"""

from __future__ import annotations

import _socket
import builtins as _builtins
import errno as _errno
import itertools as _itertools
import os as _os
import socket as _std
from collections.abc import Callable

# Everything the stdlib module exports, then ours on top.
from socket import *  # noqa: F403
from time import monotonic as _monotonic
from typing import Any, TypeVar

from fastco._native import sock_install as _sock_install
from fastco._threadpool import run_in_thread as _run_in_thread
from fastco.hub import READ as _READ
from fastco.hub import WRITE as _WRITE
from fastco.hub import current_hub as _current_hub
from fastco.hub import get_hub as _get_hub

__all__ = list(_std.__all__)

_ss = _std.socket        # the stdlib class (a Python subclass of the C type)
_cs = _socket.socket     # the C type
_T = TypeVar("_T")

# Originals, captured before any monkey patching.
_std_getaddrinfo = _std.getaddrinfo
_std_gethostbyname = _std.gethostbyname
_std_gethostbyname_ex = _std.gethostbyname_ex
_std_gethostbyaddr = _std.gethostbyaddr
_std_getnameinfo = _std.getnameinfo
_std_getfqdn = _std.getfqdn
_std_socketpair = _std.socketpair
_std_create_server = _std.create_server
_getdefaulttimeout = _std.getdefaulttimeout

_cs_recvfrom = _cs.recvfrom
_cs_recvfrom_into = _cs.recvfrom_into
_cs_sendto = _cs.sendto
_cs_accept = _cs._accept
_cs_connect = _cs.connect
_cs_connect_ex = _cs.connect_ex
_cs_settimeout = _cs.settimeout
_cs_close = _cs.close
_cs_fileno = _cs.fileno
_cs_family = _cs.family.__get__
_cs_type = _cs.type.__get__
_cs_proto = _cs.proto.__get__

timeout = _std.timeout
error = OSError
_serials = _itertools.count(1)
_CONNECTING = (_errno.EINPROGRESS, _errno.EALREADY, _errno.EWOULDBLOCK, _errno.EAGAIN)
_INET = (_std.AF_INET, getattr(_std, "AF_INET6", _std.AF_INET))
_C_ACCEPT = (*_INET, getattr(_std, "AF_UNIX", _std.AF_INET))
_GLOBAL_DEFAULT_TIMEOUT: Any = getattr(_std, "_GLOBAL_DEFAULT_TIMEOUT", object())


def _timed_out() -> TimeoutError:
    return timeout("timed out")


class socket(_ss):
    """A socket whose blocking calls suspend only the current greenlet."""

    __slots__ = ("_timeout", "_serial")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None) -> None:
        _ss.__init__(self, family, type, proto, fileno)
        self._timeout: float | None = _getdefaulttimeout()
        # Identifies this socket to the hub, which re-arms the fd's
        # registration when another socket object waits on the same fd number.
        self._serial = next(_serials)
        _cs_settimeout(self, 0.0)

    # -- timeouts ------------------------------------------------------

    # settimeout(value) (None: blocking, cooperatively; 0: non-blocking; t >
    # 0: a timeout in seconds) and gettimeout() are in C too, installed below:
    # clients set a timeout around each read (redis-py twice per command).

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    @property
    def timeout(self) -> float | None:  # type: ignore[override]
        return self._timeout

    # -- waiting -------------------------------------------------------

    def _wait(self, event: int, deadline: float | None) -> float | None:
        """Wait until the fd is ready for ``event`` (the socket is not
        non-blocking); returns the deadline, made from the timeout on the
        first wait of a call.  Called after the ``except`` of the failed
        call, so that a timeout does not chain to its BlockingIOError."""
        t = self._timeout
        if t is None:
            remaining = None
        else:
            now = _monotonic()
            if deadline is None:
                deadline = now + t
            remaining = deadline - now
            if remaining <= 0.0:
                raise _timed_out()
        _get_hub().wait_fd(_cs_fileno(self), event, remaining, self._serial)
        return deadline

    def _retry(self, event: int, call: Callable[..., _T], *args: Any) -> _T:
        """``call(self, *args)``, a non-blocking call of the C socket, made
        again each time the fd is ready for ``event`` until it does not raise
        BlockingIOError: a blocking call that blocks only this greenlet, up
        to the socket's timeout (a non-blocking socket raises at once)."""
        deadline = None
        while True:
            try:
                return call(self, *args)
            except BlockingIOError:
                if self._timeout == 0.0:
                    raise
            deadline = self._wait(event, deadline)

    # -- receiving -----------------------------------------------------

    # recv, recv_into, send and sendall are the hot calls: they are done in C
    # (csrc/pyglue/hubsock.c, installed on this class below), which waits on
    # EAGAIN without raising and runs no Python frame.

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._retry(_READ, _cs_recvfrom, bufsize, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        return self._retry(_READ, _cs_recvfrom_into, buffer, nbytes, flags)

    if hasattr(_cs, "recvmsg"):
        def recvmsg(self, *args: Any) -> Any:
            return self._retry(_READ, _cs.recvmsg, *args)

        def recvmsg_into(self, *args: Any) -> Any:
            return self._retry(_READ, _cs.recvmsg_into, *args)

    # -- sending -------------------------------------------------------

    def sendto(self, data: Any, *args: Any) -> int:
        # sendto(data, address) or sendto(data, flags, address)
        args = (*args[:-1], self._resolve(args[-1])) if args else args
        return self._retry(_WRITE, _cs_sendto, data, *args)

    if hasattr(_cs, "sendmsg"):
        def sendmsg(self, *args: Any) -> int:
            return self._retry(_WRITE, _cs.sendmsg, *args)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a file with send() (cooperatively); returns the bytes sent."""
        return self._sendfile_use_send(file, offset, count)

    # -- connections ---------------------------------------------------

    def accept(self) -> tuple[socket, Any]:
        """Wait for a connection; returns (a new cooperative socket, address)."""
        family = _cs_family(self)
        if family in _C_ACCEPT:
            # accept4 in C, non-blocking and close-on-exec at once.
            fd, addr = self._accept_nonblocking()
        else:
            fd, addr = self._retry(_READ, _cs_accept)
        sock = socket(family, _cs_type(self), _cs_proto(self), fileno=fd)
        return sock, addr

    def _resolve(self, address: Any) -> Any:
        # A host name would make the C connect() resolve it, blocking the
        # thread: resolve it in the thread pool instead.
        if (_cs_family(self) in _INET and isinstance(address, tuple) and len(address) >= 2
                and isinstance(address[0], str) and address[0]):
            host = address[0]
            try:
                _socket.inet_pton(_cs_family(self), host)
                return address   # numeric: the C call will not resolve anything
            except (OSError, ValueError):
                pass
            if host == "<broadcast>":
                return address
            infos = getaddrinfo(host, address[1], _cs_family(self), _cs_type(self),
                                _cs_proto(self))
            if not infos:
                raise gaierror(f"getaddrinfo returned no address for {host!r}")  # noqa: F405
            return infos[0][4][:1] + tuple(address[1:])
        return address

    def connect(self, address: Any) -> None:
        """Connect, waiting cooperatively; raises like the stdlib's."""
        if self._timeout == 0.0:
            return _cs_connect(self, address)
        err = self._connect(self._resolve(address))
        if err == _errno.EAGAIN and self._timeout is not None:
            raise _timed_out()
        if err:
            raise OSError(err, _os.strerror(err))
        return None

    def connect_ex(self, address: Any) -> int:
        """connect, returning an errno (0 on success) instead of raising."""
        if self._timeout == 0.0:
            return _cs_connect_ex(self, address)
        return self._connect(self._resolve(address))

    def _connect(self, address: Any) -> int:
        deadline = None
        while True:
            err = _cs_connect_ex(self, address)
            if err == 0 or err == _errno.EISCONN:
                return 0
            if err not in _CONNECTING:
                return err
            try:
                deadline = self._wait(_WRITE, deadline)
            except TimeoutError:
                return _errno.EAGAIN
            err = self.getsockopt(_std.SOL_SOCKET, _std.SO_ERROR)
            if err:
                return err

    # -- closing -------------------------------------------------------

    def _forget(self) -> None:
        # Before the fd is closed (or given away): the hub of this thread
        # unregisters it and wakes its waiters with EBADF.
        hub = _current_hub()
        if hub is not None:
            fd = _cs_fileno(self)
            if fd >= 0:
                hub.close_fd(fd)

    def _real_close(self, _ss: Any = _cs) -> None:
        self._forget()
        _cs_close(self)

    def detach(self) -> int:
        self._forget()
        return _ss.detach(self)


# recv(bufsize[, flags]), recv_into(buffer[, nbytes[, flags]]), send(data[,
# flags]), sendall(data[, flags]), settimeout(value), gettimeout() and
# _accept_nonblocking(), in C.
_sock_install(socket)

SocketType = _socket.socket


def _adopt(sock: _std.socket) -> socket:
    """A cooperative socket for ``sock``: itself if it is one, else its fd,
    detached from it."""
    if isinstance(sock, socket):
        return sock
    return socket(sock.family, sock.type, sock.proto, sock.detach())


def socketpair(family: int | None = None, type: int = _std.SOCK_STREAM,
               proto: int = 0) -> tuple[socket, socket]:
    """A pair of connected cooperative sockets (AF_UNIX by default)."""
    a, b = _std_socketpair(_std.AF_UNIX if family is None else family, type, proto)
    return _adopt(a), _adopt(b)


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:
    """A cooperative socket on a duplicate of ``fd``."""
    return socket(family, type, proto, _os.dup(fd))


def create_server(address: Any, **kwargs: Any) -> socket:
    """A listening cooperative socket (arguments as the stdlib's create_server)."""
    return _adopt(_std_create_server(address, **kwargs))


def create_connection(address: tuple[str, int], timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: Any = None, *, all_errors: bool = False) -> socket:
    """Connect to ``(host, port)`` (each address getaddrinfo gives, in turn)
    and return the cooperative socket; raises the last error (or, with
    ``all_errors`` on 3.11+, an ExceptionGroup of all)."""
    host, port = address
    errors: list[OSError] = []
    for af, socktype, proto, _canon, sa in getaddrinfo(host, port, 0, _std.SOCK_STREAM):
        sock = None
        try:
            sock = socket(af, socktype, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sa)
            errors.clear()
            return sock
        except OSError as exc:
            if not all_errors:
                errors.clear()
            errors.append(exc)
            if sock is not None:
                sock.close()
    if not errors:
        raise OSError("getaddrinfo returns an empty list")
    try:
        group = getattr(_builtins, "ExceptionGroup", None)
        if all_errors and group is not None:
            raise group("create_connection failed", errors)
        raise errors[-1]
    finally:
        errors = []


# -- name resolution, off the loop -----------------------------------------

def _is_numeric(host: Any, port: Any) -> bool:
    # A numeric address and port need no lookup (getaddrinfo answers at once).
    if port is not None and not isinstance(port, int) and not (
            isinstance(port, (str, bytes)) and port.isdigit()):
        return False
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    for af in _INET:
        try:
            _socket.inet_pton(af, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                flags: int = 0) -> list[tuple[Any, ...]]:
    """socket.getaddrinfo, run in the thread pool (numeric addresses: at once)."""
    if _is_numeric(host, port):
        return _std_getaddrinfo(host, port, family, type, proto, flags)
    return _run_in_thread(_std_getaddrinfo, host, port, family, type, proto, flags)


def gethostbyname(hostname: str) -> str:
    """socket.gethostbyname, run in the thread pool."""
    return _run_in_thread(_std_gethostbyname, hostname)


def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    """socket.gethostbyname_ex, run in the thread pool."""
    return _run_in_thread(_std_gethostbyname_ex, hostname)


def gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    """socket.gethostbyaddr, run in the thread pool."""
    return _run_in_thread(_std_gethostbyaddr, ip_address)


def getnameinfo(sockaddr: Any, flags: int) -> tuple[str, str]:
    """socket.getnameinfo, run in the thread pool."""
    return _run_in_thread(_std_getnameinfo, sockaddr, flags)


def getfqdn(name: str = "") -> str:
    """socket.getfqdn, run in the thread pool."""
    return _run_in_thread(_std_getfqdn, name)


#: The names monkey.patch_socket replaces in the stdlib module.
PATCHED = [
    "socket", "socketpair", "fromfd", "create_connection", "create_server",
    "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
    "getnameinfo", "getfqdn",
]
