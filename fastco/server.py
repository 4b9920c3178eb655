"""StreamServer: accept connections on a listening socket, serve each in its own task.

Like gevent's ``StreamServer``::

    def handle(sock, address):          # an ordinary blocking-style function
        while data := sock.recv(65536):
            sock.sendall(data)

    server = StreamServer(("127.0.0.1", 7788), handle)
    server.serve_forever()

One task accepts; every connection gets a task running ``handle(sock,
address)``, and its socket is closed when ``handle`` returns (or raises).
What ends a connection is counted in ``server.stats``:

- the client went away (``ConnectionError``: ECONNRESET, EPIPE, ...): a normal
  event, counted in ``disconnects``, nothing printed;
- the idle timeout passed (``TimeoutError``): ``timeouts``, nothing printed;
- any other exception: ``errors``, reported once with its traceback (the hub's
  ``handle_error``); the other connections and the accept loop go on.

Accept errors that mean "out of a resource" (EMFILE, ENFILE, ENOBUFS,
ENOMEM) make the accept loop back off (10 ms, doubling up to 1 s) and retry,
so a server out of file descriptors neither spins nor dies, and resumes as
soon as connections close (it says so on stderr, once when it starts failing
and once when it recovers); errors of one incoming connection (ECONNABORTED,
EPROTO, ...) are skipped; any other error is fatal: the server stops
accepting, says why on stderr, and ``serve_forever`` raises it.
"""

from __future__ import annotations

import errno
import struct
import sys
from collections.abc import Callable
from time import monotonic as _monotonic
from typing import Any

from fastco import socket as _cosocket
from fastco._greenlet import GreenletExit, getcurrent
from fastco.hub import get_hub, sleep
from fastco.sync import Event
from fastco.task import Task, joinall, killall, spawn

__all__ = ["ServerStats", "StreamServer"]

#: Accept errors that mean the process or system is out of a resource: back off.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Accept errors that concern one incoming connection only: skip it.
TRANSIENT_ERRNOS = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR, errno.ETIMEDOUT,
    errno.ENETDOWN, errno.ENOPROTOOPT, errno.EHOSTDOWN, errno.ENONET,
    errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH, errno.ECONNRESET,
})
BACKOFF_MIN = 0.01   # first wait after an accept failed for lack of a resource
BACKOFF_MAX = 1.0    # doubling up to this
DEFAULT_BACKLOG = 1024
_LINGER_ZERO = struct.pack("ii", 1, 0)   # struct linger {l_onoff = 1, l_linger = 0}

Handler = Callable[[_cosocket.socket, Any], Any]


class ServerStats:
    """Counters of a server (plain attributes, read them any time)."""

    __slots__ = ("accepted", "active", "closed", "disconnects", "timeouts", "errors",
                 "killed", "accept_errors", "accept_backoffs")

    def __init__(self) -> None:
        #: Connections accepted, open now, and ended.
        self.accepted = 0
        self.active = 0
        self.closed = 0
        #: How connections ended: the client went away (reset, broken pipe),
        #: the idle timeout passed, the handler raised something else, or
        #: the server killed it at stop().
        self.disconnects = 0
        self.timeouts = 0
        self.errors = 0
        self.killed = 0
        #: Accept errors (all kinds), and back-offs for lack of a resource.
        self.accept_errors = 0
        self.accept_backoffs = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        inner = " ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"<ServerStats {inner}>"


class StreamServer:
    """Accept on ``listener`` and run ``handle(sock, address)`` per connection.

    ``listener`` is a listening socket (fastco's or the stdlib's, which is
    taken over) or an address ``(host, port)`` to listen on.  Options:

    - ``backlog``: the listen queue, when the server makes or starts the
      listening socket (default 1024, capped by the kernel's somaxconn);
    - ``max_conns``: at most that many connections at once; beyond, the server
      stops accepting until one closes (waiting clients queue in the kernel);
    - ``idle_timeout``: seconds a connection may wait for one socket call
      (each ``recv``, each ``sendall``) before it is closed: a client that
      neither sends nor reads cannot hold a connection forever;
    - ``reuse_port``: set ``SO_REUSEPORT`` (several processes sharing a port);
    - ``nodelay``: set ``TCP_NODELAY`` on accepted TCP sockets (default True:
      a reply leaves at once, as uvloop and asyncio do).
    """

    def __init__(self, listener: Any, handle: Handler, *, backlog: int | None = None,
                 max_conns: int | None = None, idle_timeout: float | None = None,
                 reuse_port: bool = False, nodelay: bool = True) -> None:
        if not callable(handle):
            raise TypeError(f"handle must be callable, not {type(handle).__name__}")
        if backlog is not None and backlog < 1:
            raise ValueError(f"backlog must be >= 1, not {backlog!r}")
        if max_conns is not None and max_conns < 1:
            raise ValueError(f"max_conns must be None or >= 1, not {max_conns!r}")
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be None or > 0, not {idle_timeout!r}")
        self.handle = handle
        self.backlog = backlog
        self.max_conns = max_conns
        self.idle_timeout = idle_timeout
        self.reuse_port = reuse_port
        self.nodelay = nodelay
        self.stats = ServerStats()
        #: The exception that stopped the accept loop, if one did.
        self.error: BaseException | None = None
        self._address: Any = None
        self._listener: _cosocket.socket | None = None
        if isinstance(listener, tuple):
            self._address = listener
        elif isinstance(listener, _cosocket._ss):
            self._listener = _cosocket._adopt(listener)
        else:
            raise TypeError(f"listener must be a socket or a (host, port) tuple, "
                            f"not {type(listener).__name__}")
        self._acceptor: Task | None = None
        self._conns: set[Task] = set()
        self._room = Event()      # set when a connection ends (max_conns)
        self._closed = Event()    # set when the server stops accepting
        self._closing = False

    # -- state ---------------------------------------------------------

    @property
    def address(self) -> Any:
        """The address listened on (with the real port once started)."""
        if self._address is None and self._listener is not None:
            self._address = self._listener.getsockname()
        return self._address

    @property
    def started(self) -> bool:
        """True once start() ran and until close()."""
        return self._acceptor is not None and not self._closing

    @property
    def closed(self) -> bool:
        """True once the server stopped accepting."""
        return self._closing

    @property
    def connections(self) -> int:
        """The number of connections open now."""
        return len(self._conns)

    def __repr__(self) -> str:
        state = "closed" if self._closing else ("serving" if self._acceptor else "new")
        return f"<StreamServer {state} on {self.address!r} connections={len(self._conns)}>"

    # -- starting ------------------------------------------------------

    def start(self) -> None:
        """Listen (if the server was given an address) and start accepting.

        Errors of binding or listening (address in use, permission) are raised here.
        """
        if self._closing:
            raise RuntimeError("this server was closed: make a new one")
        if self._acceptor is not None:
            return
        if self._listener is None:
            self._listener = self._listen(self._address)
        elif not self._listener.getsockopt(_cosocket.SOL_SOCKET, _cosocket.SO_ACCEPTCONN):
            self._listener.listen(self.backlog or DEFAULT_BACKLOG)
        self._address = self._listener.getsockname()
        self._acceptor = spawn(self._accept_loop)

    def _listen(self, address: Any) -> _cosocket.socket:
        host, port = address[0], address[1]
        family = _cosocket.AF_INET6 if host and ":" in host else _cosocket.AF_INET
        return _cosocket.create_server((host, port), family=family,
                                       backlog=self.backlog or DEFAULT_BACKLOG,
                                       reuse_port=self.reuse_port)

    def serve_forever(self, stop_timeout: float | None = None) -> None:
        """Start, and serve until close() or stop() is called (from a signal
        handler, another task) or a fatal accept error, which is raised;
        then stop(stop_timeout): open connections get that long to end."""
        self.start()
        try:
            self._closed.wait()
        finally:
            self.stop(stop_timeout)
        if self.error is not None:
            raise self.error

    # -- the accept loop -----------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        accept = listener.accept
        stats = self.stats
        conns = self._conns
        max_conns = self.max_conns
        configure = self._configure
        serve = self._serve
        backoff = 0.0           # > 0 while accept fails for lack of a resource
        failing_since = 0.0
        while not self._closing:
            if max_conns is not None and len(conns) >= max_conns:
                self._room.clear()
                self._room.wait()
                continue
            try:
                sock, address = accept()
            except OSError as exc:
                if self._closing:
                    return
                stats.accept_errors += 1
                if exc.errno in RESOURCE_ERRNOS:
                    # Out of fds (or buffers): the connection waits in the
                    # queue while others close.  Retry later, never spin.
                    stats.accept_backoffs += 1
                    if not backoff:
                        failing_since = _monotonic()
                        self._warn(f"accept failed ({exc.strerror}): "
                                   f"retrying, {len(conns)} connections open")
                    backoff = min(backoff * 2, BACKOFF_MAX) if backoff else BACKOFF_MIN
                    sleep(backoff)
                    continue
                if exc.errno in TRANSIENT_ERRNOS:
                    continue
                self._fail(exc)
                return
            except Exception as exc:  # noqa: BLE001 - e.g. MemoryError: report, go on
                stats.accept_errors += 1
                get_hub().handle_error(getcurrent(), exc)
                sleep(BACKOFF_MIN)
                continue
            if backoff:
                self._warn(f"accepting again after {_monotonic() - failing_since:.1f} s")
                backoff = 0.0
            try:
                configure(sock)
                task = spawn(serve, sock, address)
            except BaseException:
                sock.close()
                raise
            stats.accepted += 1
            conns.add(task)

    def _configure(self, sock: _cosocket.socket) -> None:
        if self.nodelay and sock.family in (_cosocket.AF_INET, _cosocket.AF_INET6):
            try:
                sock.setsockopt(_cosocket.IPPROTO_TCP, _cosocket.TCP_NODELAY, 1)
            except OSError:
                pass  # the connection is already gone: the handler will see it
        if self.idle_timeout is not None:
            sock.settimeout(self.idle_timeout)

    def _warn(self, message: str) -> None:
        try:
            sys.stderr.write(f"StreamServer on {self.address!r}: {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def _fail(self, exc: BaseException) -> None:
        # A fatal accept error: stop accepting, let serve_forever raise it.
        self.error = exc
        self._warn(f"accept failed: {exc}: the server stops accepting")
        self.close()

    # -- one connection ------------------------------------------------

    def _serve(self, sock: _cosocket.socket, address: Any) -> None:
        stats = self.stats
        stats.active += 1
        try:
            self.handle(sock, address)
        except ConnectionError:
            stats.disconnects += 1
        except TimeoutError:
            # Idle: close abortively (RST), so that the kernel drops at once
            # what a client that stopped reading left in the buffers.
            stats.timeouts += 1
            _set_linger_zero(sock)
        except GreenletExit:
            stats.killed += 1
        except Exception as exc:  # noqa: BLE001 - reported, the server goes on
            stats.errors += 1
            get_hub().handle_error(getcurrent(), exc)
        finally:
            try:
                sock.close()
            except OSError:
                pass
            stats.active -= 1
            stats.closed += 1
            self._conns.discard(getcurrent())  # type: ignore[arg-type]
            if self.max_conns is not None:
                self._room.set()

    # -- stopping ------------------------------------------------------

    def close(self) -> None:
        """Stop accepting (the listening socket is closed); open connections
        go on.  Can be called from anywhere, a signal handler included."""
        if self._closing:
            return
        self._closing = True
        if self._listener is not None:
            self._listener.close()   # wakes the acceptor with EBADF
        self._room.set()
        self._closed.set()

    def stop(self, timeout: float | None = None) -> None:
        """close(), then wait up to ``timeout`` seconds (None: as long as it
        takes) for the open connections to end, and kill those left."""
        self.close()
        acceptor = self._acceptor
        if acceptor is not None and not acceptor.ready() and acceptor is not getcurrent():
            acceptor.kill(block=True, timeout=1.0)
        conns = list(self._conns)
        if conns:
            joinall(conns, timeout)
            self.kill_connections(block=True)

    def kill_connections(self, block: bool = False) -> None:
        """End every open connection now (GreenletExit in its handler)."""
        conns = [t for t in self._conns if not t.ready()]
        if conns:
            killall(conns, block=block, timeout=5.0 if block else None)


def _set_linger_zero(sock: _cosocket.socket) -> None:
    try:
        sock.setsockopt(_cosocket.SOL_SOCKET, _cosocket.SO_LINGER, _LINGER_ZERO)
    except OSError:
        pass


