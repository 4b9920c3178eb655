"""Cooperative TLS: a drop-in for the stdlib ``ssl`` module.

``fastco.ssl.SSLSocket`` is the stdlib's ``ssl.SSLSocket`` on top of a
``fastco.socket.socket``: the OS socket is non-blocking, so OpenSSL's reads
and writes (done by the stdlib's ``_ssl`` on the fd itself, no copy) raise
``SSLWantReadError``/``SSLWantWriteError`` instead of blocking; the methods
that do I/O (``do_handshake``, ``read``, ``write``, and through them
``recv``, ``recv_into``, ``send``, ``sendall``, ``makefile``, ``unwrap``,
``connect``, ``accept``) then wait in the hub for the fd and try again, so
only the calling task waits.  The timeout set with ``settimeout`` bounds each
call as with the stdlib (``socket.timeout`` "The read operation timed
out"...); a socket closed by another task wakes the task waiting on it with
``OSError(EBADF)``.

Everything else (certificates, contexts, verification, SNI, ALPN, sessions)
is the stdlib's: ``SSLContext`` here only makes ``wrap_socket`` return the
cooperative class, and ``fastco.monkey.patch_ssl`` does the same for every
stdlib ``SSLContext`` (those made before patching too).  The other names of
the stdlib module are re-exported unchanged.
"""

from __future__ import annotations

import gc as _gc
import ssl as _std
import warnings as _warnings
from ssl import (
    CERT_NONE,
    CERT_REQUIRED,
    PROTOCOL_TLS_CLIENT,
    SSL_ERROR_EOF,
    DER_cert_to_PEM_cert,
    Purpose,
    SSLError,
    SSLWantReadError,
    SSLWantWriteError,
)
from time import monotonic as _monotonic
from types import ModuleType as _ModuleType
from typing import Any

from fastco import socket as _cosocket
from fastco.hub import READ as _READ
from fastco.hub import WRITE as _WRITE
from fastco.hub import get_hub as _get_hub

# The stdlib module's public names (not the modules it imported), then ours
# on top: socket and create_connection are fastco.socket's.
__all__ = [name for name in dir(_std)
           if not name.startswith("_") and not isinstance(getattr(_std, name), _ModuleType)]
globals().update({name: getattr(_std, name) for name in __all__})
socket = _cosocket.socket
create_connection = _cosocket.create_connection

_fileno = _cosocket._cs.fileno
# One SSL write at most this long: _ssl refuses more than INT_MAX bytes.
_MAX_WRITE = 1 << 30
_GLOBAL_DEFAULT_TIMEOUT: Any = _cosocket._GLOBAL_DEFAULT_TIMEOUT


class SSLSocket(_std.SSLSocket, _cosocket.socket):
    """The stdlib's SSLSocket over a cooperative socket: its blocking calls
    suspend only the calling task.

    Made by ``SSLContext.wrap_socket`` (fastco's, or any context once
    ``fastco.monkey.patch_ssl()`` ran), never directly.  The class sits
    between the stdlib's SSLSocket (whose methods it keeps, and overrides
    where they do I/O) and ``fastco.socket.socket`` (the transport: ``connect``,
    ``accept`` and the plain ``recv``/``send`` before the handshake or after
    ``unwrap``)."""

    # -- waiting -------------------------------------------------------

    def _ssl_wait(self, event: int, deadline: float | None, what: str,
                  timeout: Any = _GLOBAL_DEFAULT_TIMEOUT) -> float | None:
        """Wait until the fd is ready for ``event`` after OpenSSL asked for
        it; returns the call's deadline (made on its first wait from the
        socket's timeout, or ``timeout`` if given) or raises
        ``socket.timeout`` naming the operation ``what``."""
        t = self._timeout if timeout is _GLOBAL_DEFAULT_TIMEOUT else timeout
        remaining = None
        if t is not None:
            now = _monotonic()
            if deadline is None:
                deadline = now + t
            remaining = deadline - now
            if remaining <= 0.0:
                raise _cosocket.timeout(f"The {what} operation timed out")
        try:
            _get_hub().wait_fd(_fileno(self), event, remaining, self._serial)
        except TimeoutError:
            raise _cosocket.timeout(f"The {what} operation timed out") from None
        return deadline

    def _sslobj_or_raise(self, what: str) -> Any:
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError(f"{what} on closed or unwrapped SSL socket.")
        return sslobj

    # -- the handshake -------------------------------------------------

    def do_handshake(self, block: bool = False) -> None:
        """Perform the TLS handshake, waiting cooperatively.  A non-blocking
        socket raises SSLWantReadError/SSLWantWriteError, unless ``block``
        (then it waits with no timeout, as the stdlib's)."""
        self._check_connected()
        timeout = self._timeout
        if timeout == 0.0:
            if not block:
                return self._sslobj_or_raise("Handshake").do_handshake()
            timeout = None
        deadline = None
        while True:
            try:
                return self._sslobj_or_raise("Handshake").do_handshake()
            except SSLWantReadError:
                event = _READ
            except SSLWantWriteError:
                event = _WRITE
            deadline = self._ssl_wait(event, deadline, "handshake", timeout)

    # -- reading and writing ---------------------------------------------

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """Read up to ``len`` bytes (into ``buffer`` if given: then the count);
        b'' (0) at the end of the stream."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        deadline = None
        while True:
            try:
                if buffer is not None:
                    return sslobj.read(len, buffer)
                return sslobj.read(len)
            except SSLWantReadError:
                if self._timeout == 0.0:
                    raise
                event = _READ
            except SSLWantWriteError:
                if self._timeout == 0.0:
                    raise
                event = _WRITE
            except SSLError as exc:
                if exc.args[0] == SSL_ERROR_EOF and self.suppress_ragged_eofs:
                    return b"" if buffer is None else 0
                raise
            deadline = self._ssl_wait(event, deadline, "read")
            sslobj = self._sslobj_or_raise("Read")

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        """As the stdlib's (what SocketIO.readinto, so makefile, calls), one
        frame shorter: a size of 0 makes _ssl fill what the buffer holds,
        which the stdlib's works out with a memoryview first."""
        if self._sslobj is None or flags or buffer is None:
            return _std.SSLSocket.recv_into(self, buffer, nbytes, flags)
        return self.read(nbytes or 0, buffer)

    def write(self, data: Any) -> int:
        """Write all of ``data`` (at most 1 GiB) to the TLS channel; returns its length."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        deadline = None
        while True:
            try:
                return sslobj.write(data)
            except SSLWantWriteError:
                if self._timeout == 0.0:
                    raise
                event = _WRITE
            except SSLWantReadError:
                if self._timeout == 0.0:
                    raise
                event = _READ
            deadline = self._ssl_wait(event, deadline, "write")
            sslobj = self._sslobj_or_raise("Write")

    def send(self, data: Any, flags: int = 0) -> int:
        if self._sslobj is None:
            return _cosocket.socket.send(self, data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {self.__class__}")
        return self.write(data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self._sslobj is None:
            return _cosocket.socket.sendall(self, data, flags)
        if flags != 0:
            raise ValueError(
                f"non-zero flags not allowed in calls to sendall() on {self.__class__}")
        if type(data) is bytes and len(data) <= _MAX_WRITE:
            self.write(data)     # the usual case: no views to make
            return None
        with memoryview(data) as view, view.cast("B") as bytes_view:
            if len(bytes_view) <= _MAX_WRITE:
                self.write(bytes_view)
                return None
            for start in range(0, len(bytes_view), _MAX_WRITE):
                self.write(bytes_view[start:start + _MAX_WRITE])
        return None

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a file: through ``send`` over TLS (as the stdlib's up to 3.14),
        with the plain socket's ``sendfile`` before the handshake or after
        ``unwrap``.  (3.15's stdlib hands the file to the kernel when kernel
        TLS is enabled, and that path fails mid-file with SSLWantWriteError
        on a non-blocking fd: not taken here.)"""
        if self._sslobj is None:
            return _cosocket.socket.sendfile(self, file, offset, count)
        return self._sendfile_use_send(file, offset, count)

    # -- ending --------------------------------------------------------

    def unwrap(self) -> Any:
        """Shut the TLS layer down (close_notify both ways); returns the
        plain socket, as the stdlib's."""
        if not self._sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        deadline = None
        while True:
            try:
                plain = self._sslobj.shutdown()
                break
            except SSLWantReadError:
                if self._timeout == 0.0:
                    raise
                event = _READ
            except SSLWantWriteError:
                if self._timeout == 0.0:
                    raise
                event = _WRITE
            deadline = self._ssl_wait(event, deadline, "shutdown")
            if not self._sslobj:
                raise ValueError("No SSL wrapper around " + str(self))
        self._sslobj = None
        return plain


class SSLContext(_std.SSLContext):
    """The stdlib's SSLContext, whose ``wrap_socket`` makes fastco SSLSockets.

    (Not installed as ``ssl.SSLContext`` by patching: the stdlib's property
    setters look ``SSLContext`` up by name; patching instead sets
    ``sslsocket_class`` on the stdlib class.)"""

    sslsocket_class = SSLSocket


def _ours(ctx: _std.SSLContext) -> SSLContext:
    # A context the stdlib made, as fastco's class (same layout, one more
    # class attribute), so that its settings are exactly the stdlib's.
    ctx.__class__ = SSLContext
    return ctx  # type: ignore[return-value]


def create_default_context(purpose: Purpose = Purpose.SERVER_AUTH, *, cafile: Any = None,
                           capath: Any = None, cadata: Any = None) -> SSLContext:
    """ssl.create_default_context, returning a fastco SSLContext."""
    return _ours(_std.create_default_context(purpose, cafile=cafile, capath=capath,
                                             cadata=cadata))


def _create_unverified_context(*args: Any, **kwargs: Any) -> SSLContext:
    """ssl._create_unverified_context (used by http.client and urllib), as fastco's."""
    return _ours(_std._create_unverified_context(*args, **kwargs))


_create_default_https_context = create_default_context
_create_stdlib_context = _create_unverified_context


def get_server_certificate(addr: tuple[str, int], ssl_version: int = PROTOCOL_TLS_CLIENT,
                           ca_certs: Any = None,
                           timeout: Any = _GLOBAL_DEFAULT_TIMEOUT) -> str:
    """The PEM certificate of the server at ``addr`` (verified against
    ``ca_certs`` if given), fetched cooperatively."""
    cert_reqs = CERT_REQUIRED if ca_certs is not None else CERT_NONE
    context = _create_stdlib_context(ssl_version, cert_reqs=cert_reqs, cafile=ca_certs)
    with create_connection(addr, timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=addr[0]) as sslsock:
            der = sslsock.getpeercert(True)
    return DER_cert_to_PEM_cert(der)


if hasattr(_std, "wrap_socket"):  # deprecated, gone in 3.12
    def wrap_socket(sock: Any, keyfile: Any = None, certfile: Any = None,
                    server_side: bool = False, cert_reqs: int = CERT_NONE,
                    ssl_version: int = _std.PROTOCOL_TLS, ca_certs: Any = None,
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    ciphers: str | None = None) -> SSLSocket:
        """ssl.wrap_socket (deprecated by the stdlib), making a fastco SSLSocket."""
        _warnings.warn("ssl.wrap_socket() is deprecated, use SSLContext.wrap_socket()",
                       category=DeprecationWarning, stacklevel=2)
        if server_side and not certfile:
            raise ValueError("certfile must be specified for server-side operations")
        if keyfile and not certfile:
            raise ValueError("certfile must be specified")
        context = SSLContext(ssl_version)
        context.verify_mode = cert_reqs
        if ca_certs:
            context.load_verify_locations(ca_certs)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
        if ciphers:
            context.set_ciphers(ciphers)
        return context.wrap_socket(sock=sock, server_side=server_side,
                                   do_handshake_on_connect=do_handshake_on_connect,
                                   suppress_ragged_eofs=suppress_ragged_eofs)


def blocking_sockets() -> list[_std.SSLSocket]:
    """Open stdlib (non-fastco) SSL sockets of this process: those wrapped
    before ``fastco.monkey.patch_ssl()``, which stay blocking."""
    found = []
    for obj in _gc.get_objects():
        if isinstance(obj, _std.SSLSocket) and not isinstance(obj, SSLSocket):
            try:
                if obj.fileno() >= 0:
                    found.append(obj)
            except Exception:  # noqa: BLE001 - half-made socket: not one to report
                pass
    return found


#: The SSLSocket class the stdlib contexts make before patching.
_std_sslsocket_class = _std.SSLContext.sslsocket_class
