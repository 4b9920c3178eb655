"""StreamServer, in process: the echo handler under many clients, half-close,
clients that never read or reset, limits, timeouts, errors and stopping.

Clients are fastco tasks in the same hub as the server (127.0.0.1, port 0).
"""

from __future__ import annotations

import errno
import os
import random
import resource
import socket as stdsocket
import struct
import time

import pytest

import fastco
from fastco import Timeout
from fastco import socket as cosocket
from fastco.echo import echo
from fastco.server import StreamServer

pytestmark = pytest.mark.usefixtures("hub")

MiB = 1024 * 1024


def _echo_server(**kwargs) -> tuple[StreamServer, fastco.Hub]:
    server = StreamServer(("127.0.0.1", 0), echo, **kwargs)
    server.start()
    return server, fastco.get_hub()


def _connect(server: StreamServer, timeout: float = 10) -> cosocket.socket:
    return cosocket.create_connection(server.address, timeout=timeout)


def _roundtrip(server: StreamServer, payload: bytes) -> bytes:
    """Send payload (concurrently with reading), half-close, read to EOF."""
    with _connect(server) as c:
        def send() -> None:
            c.sendall(payload)
            c.shutdown(stdsocket.SHUT_WR)

        sender = fastco.spawn(send)
        got = bytearray()
        while chunk := c.recv(MiB):
            got += chunk
        sender.get(timeout=10)
        return bytes(got)


def _rst(sock: cosocket.socket) -> None:
    """Close with an RST instead of a FIN."""
    sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_many_clients_echo_random_payloads_from_0_to_16_mib_exactly() -> None:
    server, stats = _echo_server()
    rng = random.Random(7788)
    sizes = [0, 1, 63, 64, 65, 4096, 65535, 65536, 65537, 16 * MiB]
    sizes += [int(2 ** rng.uniform(0, 22)) for _ in range(30)]   # up to 4 MiB
    blob = os.urandom(16 * MiB + 4096)
    payloads = []
    for size in sizes:
        start = rng.randrange(0, 4096)
        payloads.append(blob[start:start + size])
    sent0, received0 = stats.bytes_sent, stats.bytes_received
    clients = [fastco.spawn(_roundtrip, server, p) for p in payloads]
    fastco.joinall(clients, timeout=30, raise_error=True)
    for client, payload in zip(clients, payloads, strict=True):
        got = client.get()
        assert len(got) == len(payload) and got == payload
    server.stop(timeout=5)
    # Both ends are in this hub: each byte was sent twice and received twice.
    assert stats.bytes_sent - sent0 == stats.bytes_received - received0 == 2 * sum(sizes)
    s = server.stats
    assert (s.accepted, s.closed, s.active, s.errors) == (len(sizes), len(sizes), 0, 0)


def test_half_close_everything_is_echoed_then_the_server_closes() -> None:
    server, _ = _echo_server()
    with _connect(server) as c:
        c.sendall(b"first ")
        assert c.recv(100) == b"first "
        c.sendall(b"last words")
        c.shutdown(stdsocket.SHUT_WR)   # nothing more from us; still reading
        got = b""
        while chunk := c.recv(100):
            got += chunk
        assert got == b"last words"     # then EOF: the server closed its side
    server.stop(timeout=5)
    assert server.stats.closed == 1 and server.stats.errors == 0


def test_a_client_that_never_reads_is_bounded_and_does_not_block_others() -> None:
    server, stats = _echo_server(idle_timeout=0.5)
    stuck = _connect(server)
    sent = [0]
    chunk = memoryview(os.urandom(MiB))

    def flood() -> None:
        try:
            while True:
                sent[0] += stuck.send(chunk)
        except OSError:
            pass   # reset by the server's idle timeout

    flooder = fastco.spawn(flood)
    # The server echoes into a socket nobody reads: both directions fill up,
    # then the handler waits in sendall and stops reading.
    last, still = -1, 0
    with Timeout(5):
        while still < 3:
            fastco.sleep(0.03)
            still = still + 1 if sent[0] == last else 0
            last = sent[0]
    assert sent[0] < 64 * MiB, "the server kept reading from a client that never reads"
    # Meanwhile the others are served.
    for i in range(5):
        assert _roundtrip(server, b"other %d" % i) == b"other %d" % i
    # The stuck writer is caught by the idle timeout, like a silent client.
    with Timeout(5):
        flooder.join()
        while server.connections:
            fastco.sleep(0.02)
    stuck.close()
    assert server.stats.timeouts == 1 and server.stats.errors == 0
    server.stop(timeout=5)


def test_abrupt_resets_are_counted_quietly(capsys) -> None:
    server, _ = _echo_server()
    # Reset before sending, after sending, and while the server is stuck
    # writing to us (we never read).
    for mode in range(30):
        c = _connect(server)
        if mode % 3 == 1:
            c.sendall(b"x" * 1000)
        elif mode % 3 == 2:
            # More than the socket buffers may hold if we never read: bound
            # the wait, the point is only that the server is stuck writing.
            c.settimeout(0.2)
            try:
                c.sendall(b"y" * (8 * MiB))
            except OSError:
                pass
            fastco.sleep(0.01)
        _rst(c)
    with Timeout(5):
        while server.connections or server.stats.accepted < 30:
            fastco.sleep(0.01)
    assert _roundtrip(server, b"still fine") == b"still fine"
    server.stop(timeout=5)
    s = server.stats
    assert s.accepted == 31 and s.errors == 0 and s.disconnects >= 10
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Error" not in err


def test_two_thousand_concurrent_connections() -> None:
    n = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 200
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    server, stats = _echo_server(backlog=4096)
    opened = fastco.Event()
    peak = [0]

    def client(i: int, socks: list) -> bytes:
        c = _connect(server)
        socks.append(c)
        if len(socks) == n:
            opened.set()
        opened.wait()               # every connection is open at once
        peak[0] = max(peak[0], server.connections)
        msg = b"%d;" % i * 10
        c.sendall(msg)
        got = b""
        while len(got) < len(msg):
            got += c.recv(4096)
        c.close()
        return got

    socks: list = []
    try:
        clients = [fastco.spawn(client, i, socks) for i in range(n)]
        fastco.joinall(clients, timeout=20, raise_error=True)
        for i, t in enumerate(clients):
            assert t.get() == b"%d;" % i * 10
    finally:
        for c in socks:
            c.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert peak[0] == n
    server.stop(timeout=5)
    assert server.stats.accepted == n and server.stats.errors == 0


def test_max_conns_stops_accepting_until_one_closes() -> None:
    server, _ = _echo_server(max_conns=3)
    first = [_connect(server) for _ in range(3)]
    for i, c in enumerate(first):
        c.sendall(b"%d" % i)
        assert c.recv(10) == b"%d" % i
    late = _connect(server)            # queued by the kernel, not accepted
    late.sendall(b"late")
    late.settimeout(0.2)
    with pytest.raises(TimeoutError):
        late.recv(10)
    assert server.connections == 3 and server.stats.accepted == 3
    first[0].close()                   # room for one more
    late.settimeout(5)
    assert late.recv(10) == b"late"
    assert server.stats.accepted == 4
    for c in (*first[1:], late):
        c.close()
    server.stop(timeout=5)


def test_idle_timeout_closes_a_silent_connection() -> None:
    server, _ = _echo_server(idle_timeout=0.1)
    with _connect(server) as c:
        c.sendall(b"hi")
        assert c.recv(10) == b"hi"
        start = time.monotonic()
        try:
            assert c.recv(10) == b""   # then nothing: the server gives up on us
        except ConnectionResetError:
            pass
        assert 0.08 < time.monotonic() - start < 3
    server.stop(timeout=5)
    assert server.stats.timeouts == 1


def test_an_error_in_a_handler_is_reported_once_and_the_server_goes_on(capsys) -> None:
    def handle(sock, address):
        if sock.recv(10) == b"boom":
            raise ValueError("handler bug")
        sock.sendall(b"ok")

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    with _connect(server) as c:
        c.sendall(b"boom")
        assert c.recv(10) == b""       # the server closed the connection
    with _connect(server) as c:
        c.sendall(b"fine")
        assert c.recv(10) == b"ok"
    server.stop(timeout=5)
    assert server.stats.errors == 1 and server.stats.accepted == 2
    err = capsys.readouterr().err
    assert err.count("ValueError: handler bug") == 1 and "Traceback" in err


def test_stop_gives_connections_the_grace_period_then_kills_them() -> None:
    server, _ = _echo_server()
    idle = [_connect(server) for _ in range(3)]
    busy = _connect(server)
    busy.sendall(b"a")
    assert busy.recv(10) == b"a"
    stopper = fastco.spawn(server.stop, 0.3)
    fastco.sleep(0.05)
    assert server.closed
    with pytest.raises(OSError):       # not accepting any more
        _connect(server, timeout=1)
    busy.sendall(b"during grace")      # open connections are still served
    assert busy.recv(100) == b"during grace"
    start = time.monotonic()
    stopper.get(timeout=5)
    assert time.monotonic() - start < 2
    for c in (*idle, busy):
        assert c.recv(10) == b""       # closed by the server
        c.close()
    assert server.stats.killed == 4 and server.connections == 0


def test_serve_forever_returns_after_close_and_raises_a_fatal_accept_error(capsys) -> None:
    server, _ = _echo_server()
    fastco.spawn_later(0.05, server.close)
    with Timeout(5):
        server.serve_forever(stop_timeout=1)
    assert server.closed and server.error is None

    server, _ = _echo_server()
    listener = server._listener
    assert listener is not None
    # A listening socket shut down under the server: accept fails with EINVAL.
    fastco.spawn_later(0.05, listener.shutdown, stdsocket.SHUT_RDWR)
    with Timeout(5), pytest.raises(OSError) as info:
        server.serve_forever(stop_timeout=1)
    assert info.value.errno == errno.EINVAL
    assert "the server stops accepting" in capsys.readouterr().err


def test_takes_an_existing_listening_socket_and_checks_its_arguments() -> None:
    std = stdsocket.create_server(("127.0.0.1", 0))
    port = std.getsockname()[1]
    server = StreamServer(std, lambda s, a: echo(s, a))
    server.start()
    assert server.address[1] == port and server.started
    assert _roundtrip(server, b"via a stdlib listener") == b"via a stdlib listener"
    server.stop(timeout=5)
    assert not server.started and "closed" in repr(server)
    with pytest.raises(RuntimeError):
        server.start()
    for kwargs in ({"backlog": 0}, {"max_conns": 0}, {"idle_timeout": 0}):
        with pytest.raises(ValueError):
            StreamServer(("127.0.0.1", 0), echo, **kwargs)
    with pytest.raises(TypeError):
        StreamServer("127.0.0.1:80", echo)
    with pytest.raises(TypeError):
        StreamServer(("127.0.0.1", 0), None)


def test_nodelay_is_set_on_accepted_tcp_sockets() -> None:
    seen = []

    def handle(sock, address):
        seen.append((sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY), address))

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    with _connect(server) as c:
        assert c.recv(10) == b""
        assert seen[0][0] != 0 and seen[0][1] == c.getsockname()
    server.stop(timeout=5)
