"""fastco.ssl: TLS over cooperative sockets, client and server side, on the hub."""

from __future__ import annotations

import errno
import hashlib
import os
import ssl
import sys
import textwrap
import types

import pytest

import fastco
import fastco.ssl as cossl
from conftest import assert_cycles_leave_nothing, run_python
from fastco import socket

pytestmark = pytest.mark.usefixtures("hub")


@pytest.fixture
def ctx(tls_certs) -> types.SimpleNamespace:
    """A server context (localhost's certificate) and a client context that trusts its CA."""
    server = cossl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls_certs.server)
    client = cossl.create_default_context(cafile=str(tls_certs.ca))
    return types.SimpleNamespace(server=server, client=client)


def tls_pair(ctx, **client_kw) -> tuple[cossl.SSLSocket, cossl.SSLSocket]:
    """(client, server) TLS sockets over a socketpair, handshaken."""
    a, b = socket.socketpair()
    server = fastco.spawn(ctx.server.wrap_socket, b, server_side=True)
    client = ctx.client.wrap_socket(a, server_hostname="localhost", **client_kw)
    return client, server.get(timeout=10)


def tls_server(sctx, handle, *, handshake_timeout: float | None = 5.0):
    """A TCP listener on loopback whose connections are wrapped (handshake in
    the handler's own task) and passed to ``handle(sslsock)``; returns
    (port, outcomes, accept task), outcomes being what each handler returned
    or raised."""
    listener = socket.create_server(("127.0.0.1", 0))
    outcomes: list = []

    def one(conn):
        try:
            conn.settimeout(handshake_timeout)
            s = sctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            with s:
                s.do_handshake()
                s.settimeout(5)
                outcomes.append(handle(s))
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes.append(exc)
            conn.close()

    def accept_loop():
        with listener:
            while True:
                conn, _ = listener.accept()
                fastco.spawn(one, conn)

    return listener.getsockname()[1], outcomes, fastco.spawn(accept_loop)


def echo_once(s) -> str:
    data = s.recv(1024)
    s.sendall(data)
    return "served"


def test_types_and_handshake(ctx) -> None:
    client, server = tls_pair(ctx)
    with client, server:
        assert type(client) is cossl.SSLSocket and isinstance(client, ssl.SSLSocket)
        assert isinstance(client, socket.socket)
        assert client.version() == server.version() == "TLSv1.3"
        assert dict(x[0] for x in client.getpeercert()["subject"])["commonName"] == "localhost"
        assert server.getpeercert() is None          # no client certificate asked for
        assert client.cipher() == server.cipher()
        assert server.server_side and not client.server_side


def test_large_buffers_both_ways_at_once(ctx) -> None:
    client, server = tls_pair(ctx)
    up = os.urandom(6 * 1024 * 1024 + 17)
    down = os.urandom(5 * 1024 * 1024 + 3)

    def receive(sock, n: int, into: bool) -> bytes:
        got = bytearray()
        buf = bytearray(300_000)
        while len(got) < n:
            if into:
                k = sock.recv_into(buf)
                got += buf[:k]
            else:
                got += sock.recv(1 << 20)
        return bytes(got)

    with client, server:
        tasks = [fastco.spawn(client.sendall, up), fastco.spawn(server.sendall, down),
                 fastco.spawn(receive, server, len(up), True),
                 fastco.spawn(receive, client, len(down), False)]
        fastco.joinall(tasks, timeout=15, raise_error=True)
        assert hashlib.sha256(tasks[2].value).digest() == hashlib.sha256(up).digest()
        assert tasks[3].value == down
        assert client.send(b"abc") == 3 and server.read(10) == b"abc"
        assert client.write(memoryview(b"xyz")) == 3 and server.recv(2) == b"xy"
        assert server.pending() == 1 and server.recv(5) == b"z"


def test_explicit_do_handshake(ctx) -> None:
    a, b = socket.socketpair()
    c = ctx.client.wrap_socket(a, server_hostname="localhost", do_handshake_on_connect=False)
    s = ctx.server.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
    with c, s:
        assert c.version() is None                   # nothing happened yet
        t = fastco.spawn(s.do_handshake)
        c.do_handshake()
        t.get(timeout=5)
        assert c.version() == "TLSv1.3"
        c.sendall(b"ping")
        assert s.recv(4) == b"ping"


def test_blocking_handshake_on_a_non_blocking_socket_and_sendfile(ctx, tmp_path) -> None:
    a, b = socket.socketpair()
    c = ctx.client.wrap_socket(a, server_hostname="localhost", do_handshake_on_connect=False)
    s = ctx.server.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
    with c, s:
        c.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):
            c.do_handshake()
        t = fastco.spawn(s.do_handshake)
        c.do_handshake(block=True)                   # waits, with no timeout
        t.get(timeout=5)
        assert c.gettimeout() == 0.0 and c.version() == "TLSv1.3"
        c.setblocking(True)
        data = os.urandom(300_000)
        path = tmp_path / "data"
        path.write_bytes(data)

        def receive() -> bytes:
            got = bytearray()
            while len(got) < len(data):
                got += s.recv(65536)
            return bytes(got)

        r = fastco.spawn(receive)
        with open(path, "rb") as f:
            assert c.sendfile(f) == len(data)
        assert r.get(timeout=5) == data


def test_makefile(ctx) -> None:
    client, server = tls_pair(ctx)
    with client, server:
        w = server.makefile("wb")
        r = client.makefile("rb")

        def write_lines() -> None:
            for i in range(2000):
                w.write(b"line %d\n" % i)
            w.flush()

        t = fastco.spawn(write_lines)
        lines = [r.readline() for _ in range(2000)]
        t.get(timeout=5)
        assert lines == [b"line %d\n" % i for i in range(2000)]
        w.close()
        r.close()


def test_unwrap_returns_to_plain_text(ctx) -> None:
    client, server = tls_pair(ctx)
    client.sendall(b"secret")
    assert server.recv(6) == b"secret"
    t = fastco.spawn(server.unwrap)
    plain_client = client.unwrap()
    plain_server = t.get(timeout=5)
    assert plain_client is client                    # as the stdlib: the socket, now plain
    assert client.version() is None
    with plain_client, plain_server:
        plain_client.sendall(b"in clear")
        assert plain_server.recv(8) == b"in clear"
    with pytest.raises(ValueError, match="No SSL wrapper"):
        client.unwrap()
    with pytest.raises(ValueError, match="Read on closed or unwrapped"):
        client.read(1)


def test_read_timeout_is_socket_timeout_and_others_run(ctx) -> None:
    client, server = tls_pair(ctx)
    ticks = []

    def ticker() -> None:
        while True:
            ticks.append(1)
            fastco.sleep(0.01)

    t = fastco.spawn(ticker)
    with client, server:
        client.settimeout(0.2)
        assert client.gettimeout() == 0.2
        with pytest.raises(socket.timeout, match="The read operation timed out"):
            client.recv(10)
        assert len(ticks) >= 5                       # the loop ran meanwhile
        server.sendall(b"late")                      # the socket still works after a timeout
        assert client.recv(10) == b"late"
    t.kill()


def test_handshake_timeout_against_a_silent_server(ctx) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    acceptor = fastco.spawn(lambda: held.append(listener.accept()))
    raw = socket.create_connection(listener.getsockname(), timeout=0.3)
    with pytest.raises(socket.timeout, match="handshake operation timed out"):
        ctx.client.wrap_socket(raw, server_hostname="localhost")
    assert raw.fileno() == -1                        # detached into the SSL socket, which closed
    acceptor.join()
    held[0][0].close()
    listener.close()


def test_sni_and_hostname_checking(ctx, tls_certs) -> None:
    seen = []
    other = cossl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.load_cert_chain(tls_certs.other)

    def pick(sslobj, name, _context):
        seen.append(name)
        if name == "other.example":
            sslobj.context = other

    ctx.server.sni_callback = pick
    client, server = tls_pair(ctx)
    client.close()
    server.close()
    a, b = socket.socketpair()
    t = fastco.spawn(ctx.server.wrap_socket, b, server_side=True)
    with ctx.client.wrap_socket(a, server_hostname="other.example") as c:
        names = dict(x[0] for x in c.getpeercert()["subject"])
        assert names["commonName"] == "other.example"
    t.get(timeout=5).close()
    assert seen == ["localhost", "other.example"]
    # A certificate for another name fails verification, in the client's task only.
    ctx.server.sni_callback = None
    a, b = socket.socketpair()
    t = fastco.spawn(ctx.server.wrap_socket, b, server_side=True)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        ctx.client.wrap_socket(a, server_hostname="wrong.example")
    with pytest.raises(ssl.SSLError):
        t.get(timeout=5)


def test_close_wakes_a_reader_or_writer_with_an_error(ctx) -> None:
    client, server = tls_pair(ctx)
    reader = fastco.spawn(client.recv, 100)
    fastco.sleep(0.01)                               # the reader now waits in the hub
    assert not reader.ready()
    client.close()
    reader.join(timeout=5)
    assert isinstance(reader.exception, OSError)
    assert reader.exception.errno == errno.EBADF
    server.close()
    # A writer blocked on a peer that does not read: woken the same way.
    client, server = tls_pair(ctx)
    big = b"z" * (16 << 20)
    writer = fastco.spawn(lambda: server.sendall(big))
    fastco.sleep(0.02)
    assert not writer.ready()
    server.close()
    writer.join(timeout=5)
    assert isinstance(writer.exception, OSError)
    assert writer.exception.errno == errno.EBADF
    client.close()


def test_non_blocking_mode_raises_want_read(ctx) -> None:
    client, server = tls_pair(ctx)
    with client, server:
        client.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):
            client.recv(10)
        server.sendall(b"now")
        fastco.sleep(0.01)
        assert client.recv(10) == b"now"
    a, b = socket.socketpair()
    a.setblocking(False)
    with pytest.raises(ValueError, match="non-blocking"):
        ctx.client.wrap_socket(a, server_hostname="localhost")
    b.close()


def test_bad_clients_fail_in_their_own_task(ctx) -> None:
    port, outcomes, acceptor = tls_server(ctx.server, echo_once, handshake_timeout=0.3)
    garbage = socket.create_connection(("127.0.0.1", port), timeout=5)
    garbage.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)  # plain HTTP to a TLS port
    stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
    stalled.sendall(b"\x16\x03\x01")                 # the start of a record, then nothing

    def good(i: int) -> bytes:
        with ctx.client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                    server_hostname="localhost") as s:
            s.sendall(b"hello %d" % i)
            return s.recv(100)

    clients = [fastco.spawn(good, i) for i in range(5)]
    fastco.joinall(clients, timeout=10, raise_error=True)
    assert [c.value for c in clients] == [b"hello %d" % i for i in range(5)]
    while len(outcomes) < 7:
        fastco.sleep(0.02)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert outcomes.count("served") == 5
    assert len(errors) == 2, outcomes
    assert any(isinstance(e, ssl.SSLError) and not isinstance(e, TimeoutError) for e in errors)
    assert any(isinstance(e, TimeoutError) and "handshake" in str(e) for e in errors)
    garbage.close()
    stalled.close()
    acceptor.kill()


def test_connect_accept_and_connect_ex(ctx) -> None:
    listener = ctx.server.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
    port = listener.getsockname()[1]

    def serve_two() -> list[bytes]:
        got = []
        for _ in range(2):
            conn, _addr = listener.accept()          # handshake done on accept
            assert isinstance(conn, cossl.SSLSocket)
            with conn:
                got.append(conn.recv(10))
        return got

    server = fastco.spawn(serve_two)
    c1 = ctx.client.wrap_socket(socket.socket(), server_hostname="localhost")
    c1.connect(("127.0.0.1", port))
    c1.sendall(b"one")
    c2 = ctx.client.wrap_socket(socket.socket(), server_hostname="localhost")
    assert c2.connect_ex(("127.0.0.1", port)) == 0
    c2.sendall(b"two")
    assert server.get(timeout=5) == [b"one", b"two"]
    c1.close()
    c2.close()
    listener.close()


def test_get_server_certificate(ctx, tls_certs) -> None:
    port, _outcomes, acceptor = tls_server(ctx.server, lambda s: s.recv(1))
    pem = cossl.get_server_certificate(("127.0.0.1", port), ca_certs=str(tls_certs.ca))
    served = tls_certs.server.read_text().split("-----END CERTIFICATE-----")[0]
    assert ssl.PEM_cert_to_DER_cert(pem) == ssl.PEM_cert_to_DER_cert(
        served + "-----END CERTIFICATE-----\n")
    acceptor.kill()


def test_module_mirrors_the_stdlib() -> None:
    public = [n for n in dir(ssl) if not n.startswith("_")
              and not isinstance(getattr(ssl, n), types.ModuleType)]
    missing = [n for n in public if not hasattr(cossl, n)]
    assert not missing
    assert cossl.SSLError is ssl.SSLError and cossl.CERT_REQUIRED is ssl.CERT_REQUIRED
    assert cossl.socket is socket.socket and cossl.create_connection is socket.create_connection
    c = cossl.create_default_context()
    assert type(c) is cossl.SSLContext and c.check_hostname and c.verify_mode == ssl.CERT_REQUIRED
    assert type(cossl._create_unverified_context()) is cossl.SSLContext
    c.options |= ssl.OP_NO_COMPRESSION               # the stdlib's property setters still work
    c.verify_mode = ssl.CERT_REQUIRED
    c.minimum_version = ssl.TLSVersion.TLSv1_2


@pytest.mark.skipif(not hasattr(ssl, "wrap_socket"), reason="ssl.wrap_socket is gone in 3.12+")
def test_deprecated_wrap_socket(tls_certs) -> None:
    a, b = socket.socketpair()
    with pytest.warns(DeprecationWarning):
        t = fastco.spawn(cossl.wrap_socket, b, server_side=True, certfile=str(tls_certs.server))
        c = cossl.wrap_socket(a)
    with c, t.get(timeout=5) as s:
        assert isinstance(c, cossl.SSLSocket)
        c.sendall(b"ok")
        assert s.recv(2) == b"ok"


def test_no_fd_or_socket_left_after_many_connections(ctx) -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    for _ in range(5):                               # warm up (hub, caches)
        c, s = tls_pair(ctx)
        c.close()
        s.close()
    before = fds()
    for i in range(150):
        c, s = tls_pair(ctx)
        c.sendall(b"x%d" % i)
        assert s.recv(10) == b"x%d" % i
        if i % 2:
            c.close()
            s.close()
        else:
            with c, s:
                pass
    assert fds() <= before


def test_tls_connections_in_a_loop_leave_memory_and_fds_flat(tls_certs) -> None:
    # Each cycle: a handshake, a timed-out read, data both ways, a reader
    # woken by close, an unwrap on every other connection.
    assert_cycles_leave_nothing(f"""
        import ssl
        import fastco, fastco.ssl
        from fastco import socket
        server_ctx = fastco.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain({str(tls_certs.server)!r})
        client_ctx = fastco.ssl.create_default_context(cafile={str(tls_certs.ca)!r})

        def cycle(i):
            a, b = socket.socketpair()
            t = fastco.spawn(server_ctx.wrap_socket, b, server_side=True)
            c = client_ctx.wrap_socket(a, server_hostname="localhost")
            s = t.get()
            c.settimeout(0.0001)
            try:
                c.recv(1)
            except socket.timeout:
                pass
            c.settimeout(None)
            s.sendall(b"x" * 5000)
            assert len(c.recv(10000)) == 5000
            if i % 2:
                u = fastco.spawn(s.unwrap)
                c.unwrap()
                u.get()
            else:
                def read():
                    try:
                        s.recv(10)
                    except OSError as exc:       # EBADF: closed under it
                        return exc.errno
                reader = fastco.spawn(read)
                fastco.sleep(0)
                s.close()
                assert reader.get() == 9
            c.close()
            s.close()
    """, warm=100, rounds=1000)


def _run(code: str) -> str:
    proc = run_python(code=textwrap.dedent(code), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_patch_ssl_covers_contexts_made_before_and_twice_is_harmless(tls_certs) -> None:
    out = _run(f"""
        import ssl, warnings
        early = ssl.create_default_context(cafile={str(tls_certs.ca)!r})
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain({str(tls_certs.server)!r})
        from fastco import monkey
        warnings.simplefilter("error")
        monkey.patch_all()
        monkey.patch_ssl()                      # again: no change, no warning
        import socket
        import fastco, fastco.ssl
        assert ssl.SSLContext.sslsocket_class is fastco.ssl.SSLSocket
        assert ssl.SSLSocket is monkey.get_original("ssl.SSLContext", "sslsocket_class")
        a, b = socket.socketpair()
        t = fastco.spawn(server.wrap_socket, b, server_side=True)
        c = early.wrap_socket(a, server_hostname="localhost")
        s = t.get(timeout=5)
        assert type(c) is fastco.ssl.SSLSocket and type(s) is fastco.ssl.SSLSocket
        reader = fastco.spawn(s.recv, 10)
        fastco.sleep(0.01)
        assert not reader.ready()               # waits in the hub, the main task runs
        c.sendall(b"hi")
        assert reader.get(timeout=5) == b"hi"
        print("OK")
    """)
    assert "OK" in out


def test_patch_ssl_warns_about_ssl_sockets_opened_before(tls_certs) -> None:
    out = _run(f"""
        import socket, ssl, warnings
        ctx = ssl.create_default_context(cafile={str(tls_certs.ca)!r})
        a, b = socket.socketpair()
        early = ctx.wrap_socket(a, server_hostname="localhost", do_handshake_on_connect=False)
        from fastco import monkey
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monkey.patch_ssl()
        assert len(caught) == 1, caught
        assert issubclass(caught[0].category, RuntimeWarning)
        print(caught[0].message)
    """)
    assert "1 SSL socket(s) were opened before fastco.monkey.patch_ssl() and stay blocking" in out


@pytest.mark.skipif(sys.platform != "linux", reason="Linux only")
def test_ssl_over_tcp_with_many_clients_at_once(ctx) -> None:
    port, outcomes, acceptor = tls_server(ctx.server, echo_once)

    def client(i: int) -> bytes:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with ctx.client.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"%d" % i)
            return s.recv(10)

    tasks = [fastco.spawn(client, i) for i in range(40)]
    fastco.joinall(tasks, timeout=15, raise_error=True)
    assert [t.value for t in tasks] == [b"%d" % i for i in range(40)]
    acceptor.kill()
