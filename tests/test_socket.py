"""Cooperative sockets, on every poller backend (the `any_hub` fixture)."""

from __future__ import annotations

import errno
import os
import socket as stdsocket
import time

import pytest

import fastco
from conftest import free_port
from fastco import ConcurrentUseError, GreenletExit, Timeout
from fastco import socket as cosocket

pytestmark = pytest.mark.usefixtures("any_hub")


def _echo_forever(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def test_is_a_drop_in_for_the_stdlib_module() -> None:
    assert issubclass(cosocket.socket, stdsocket.socket)
    assert cosocket.AF_INET == stdsocket.AF_INET and cosocket.timeout is TimeoutError
    assert cosocket.error is OSError and cosocket.gaierror is stdsocket.gaierror
    s = cosocket.socket()
    assert s.gettimeout() is None and s.getblocking()
    assert not os.get_blocking(s.fileno())  # the OS socket is always non-blocking
    s.close()


def test_socketpair_echo_between_tasks() -> None:
    a, b = cosocket.socketpair()
    server = fastco.spawn(_echo_forever, b)
    for msg in (b"x", b"hello" * 100, bytearray(b"abc"), memoryview(b"mv")):
        a.sendall(msg)
        got = b""
        while len(got) < len(msg):
            got += a.recv(65536)
        assert got == bytes(msg)
    a.close()
    server.join(2)
    assert server.successful()


def test_tcp_server_serves_many_clients_concurrently() -> None:
    listener = cosocket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    handlers = []

    def serve():
        while True:
            conn, _ = listener.accept()
            handlers.append(fastco.spawn(_echo_forever, conn))

    acceptor = fastco.spawn(serve)

    def client(i):
        with cosocket.create_connection(("127.0.0.1", port), timeout=5) as c:
            for k in range(5):
                msg = f"{i}:{k}".encode()
                c.sendall(msg)
                assert c.recv(100) == msg
                fastco.sleep(0.001)  # let the others interleave
            return i

    clients = [fastco.spawn(client, i) for i in range(20)]
    fastco.joinall(clients, timeout=10)
    assert [c.value for c in clients] == list(range(20))
    assert len(handlers) == 20
    acceptor.kill()
    listener.close()


def test_recv_timeout_and_settimeout_validation() -> None:
    a, b = cosocket.socketpair()
    with a, b:
        a.settimeout(0.02)
        assert a.gettimeout() == 0.02 and a.timeout == 0.02
        start = time.monotonic()
        with pytest.raises(stdsocket.timeout):
            a.recv(10)
        assert time.monotonic() - start >= 0.02
        with pytest.raises(ValueError):
            a.settimeout(-1)
        with pytest.raises(TypeError):
            a.settimeout("1")
        with pytest.raises(ValueError):
            a.settimeout(float("nan"))
        a.settimeout(3)      # kept as a float, as the stdlib's
        assert a.gettimeout() == 3.0 and type(a.gettimeout()) is float
        a.settimeout(0)  # non-blocking: the stdlib's behaviour
        with pytest.raises(BlockingIOError):
            a.recv(10)
        assert not a.getblocking()
        a.setblocking(True)
        assert a.gettimeout() is None


def test_accept_timeout() -> None:
    listener = cosocket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.01)
    with listener, pytest.raises(TimeoutError):
        listener.accept()


def test_sendall_handles_partial_sends() -> None:
    a, b = cosocket.socketpair()
    payload = os.urandom(4 * 1024 * 1024)  # far more than the socket buffers

    def slow_reader():
        chunks = []
        total = 0
        while total < len(payload):
            fastco.sleep(0)
            chunk = b.recv(256 * 1024)
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    reader = fastco.spawn(slow_reader)
    a.sendall(memoryview(payload))
    assert reader.get(timeout=10) == payload
    a.close()
    b.close()


def test_sendall_timeout_counts_for_the_whole_call() -> None:
    a, b = cosocket.socketpair()
    with a, b:
        a.settimeout(0.05)
        with pytest.raises(TimeoutError):
            a.sendall(b"x" * (16 * 1024 * 1024))  # nobody reads


def test_kill_a_task_blocked_in_recv() -> None:
    a, b = cosocket.socketpair()
    with a, b:
        t = fastco.spawn(b.recv, 10)
        fastco.sleep(0.01)
        assert not t.ready()
        t.kill()
        assert t.dead and isinstance(t.value, GreenletExit)
        # The socket is still usable, by another task.
        t2 = fastco.spawn(b.recv, 10)
        fastco.sleep(0)
        a.sendall(b"after")
        assert t2.get(timeout=2) == b"after"


def test_timeout_object_interrupts_a_recv() -> None:
    a, b = cosocket.socketpair()
    with a, b:
        with pytest.raises(Timeout), Timeout(0.02):
            b.recv(10)
        a.sendall(b"still works")
        assert b.recv(100) == b"still works"


def test_closing_a_socket_another_task_waits_on() -> None:
    a, b = cosocket.socketpair()
    t = fastco.spawn(b.recv, 10)
    fastco.sleep(0.01)
    b.close()
    t.join(2)
    assert isinstance(t.exception, OSError) and t.exception.errno == errno.EBADF
    # The loop goes on.
    assert fastco.spawn(lambda: 1).get() == 1
    a.close()


def test_using_a_closed_socket_raises() -> None:
    a, b = cosocket.socketpair()
    a.close()
    b.close()
    for call in (lambda: a.recv(1), lambda: a.send(b"x"), lambda: a.sendall(b"x"),
                 lambda: a.recv_into(bytearray(1))):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF
    listener = cosocket.socket()
    listener.close()
    with pytest.raises(OSError):
        listener.accept()


def test_two_tasks_reading_one_socket_is_an_error() -> None:
    a, b = cosocket.socketpair()
    with a, b:
        first = fastco.spawn(b.recv, 10)
        fastco.sleep(0)
        with pytest.raises(ConcurrentUseError):
            b.recv(10)
        a.sendall(b"ok")
        assert first.get(timeout=2) == b"ok"


def test_connect_refused() -> None:
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        cosocket.create_connection(("127.0.0.1", port), timeout=2)
    s = cosocket.socket()
    with s:
        assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def test_connect_by_host_name_resolves_off_the_loop() -> None:
    listener = cosocket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    acceptor = fastco.spawn(listener.accept)
    c = cosocket.socket()
    c.settimeout(5)
    c.connect(("localhost", port))
    conn, _addr = acceptor.get(timeout=5)
    assert conn.getpeername() == c.getsockname()
    for s in (c, conn, listener):
        s.close()
    infos = cosocket.getaddrinfo("localhost", 80, cosocket.AF_INET, cosocket.SOCK_STREAM)
    assert infos[0][4] == ("127.0.0.1", 80)
    assert cosocket.gethostbyname("localhost") == "127.0.0.1"
    numeric = cosocket.getaddrinfo("127.0.0.1", "80", cosocket.AF_INET, cosocket.SOCK_STREAM)
    assert numeric[0][4] == ("127.0.0.1", 80)


def test_makefile_lines() -> None:
    a, b = cosocket.socketpair()
    server = fastco.spawn(_echo_forever, b)
    with a:
        wf = a.makefile("wb")
        rf = a.makefile("rb")
        wf.write(b"line one\nline two\n")
        wf.flush()
        assert rf.readline() == b"line one\n"
        assert rf.readline() == b"line two\n"
        wf.close()
        rf.close()
    server.join(2)


def test_udp_sendto_recvfrom() -> None:
    r = cosocket.socket(cosocket.AF_INET, cosocket.SOCK_DGRAM)
    s = cosocket.socket(cosocket.AF_INET, cosocket.SOCK_DGRAM)
    with r, s:
        r.bind(("127.0.0.1", 0))
        t = fastco.spawn(r.recvfrom, 100)
        fastco.sleep(0)
        s.sendto(b"dgram", r.getsockname())
        data, addr = t.get(timeout=2)
        assert data == b"dgram" and addr[1] == s.getsockname()[1]



def test_datagram_calls_wait_cooperatively_and_time_out() -> None:
    """recvfrom_into, recvmsg, recvmsg_into and sendmsg block only their
    task, honour the timeout, and raise at once on a non-blocking socket."""
    a, b = cosocket.socketpair(cosocket.AF_UNIX, cosocket.SOCK_DGRAM)
    with a, b:
        buf = bytearray(16)
        cases = [
            (lambda: (b.recvfrom_into(buf)[0], bytes(buf[:5])), b"first", (5, b"first")),
            (lambda: b.recvmsg(100)[0], b"again", b"again"),
            (lambda: (b.recvmsg_into([buf])[0], bytes(buf[:5])), b"third", (5, b"third")),
        ]
        for call, payload, want in cases:
            reader = fastco.spawn(call)
            fastco.sleep(0.01)
            assert not reader.ready()   # waiting, and the loop goes on
            a.sendmsg([payload])
            assert reader.get(timeout=2) == want

        b.settimeout(0.02)
        with pytest.raises(TimeoutError):
            b.recvmsg(100)
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recvmsg_into([buf])
        with pytest.raises(BlockingIOError):
            b.recvfrom_into(buf)

        a.settimeout(0.02)   # nobody reads: the queue fills, then sendmsg times out
        with pytest.raises(TimeoutError):
            for _ in range(100_000):
                a.sendmsg([b"x" * 1000])

def test_dup_detach_and_sendfile(tmp_path) -> None:
    a, b = cosocket.socketpair()
    d = a.dup()
    assert isinstance(d, cosocket.socket)
    path = tmp_path / "f"
    path.write_bytes(b"0123456789" * 1000)
    with open(path, "rb") as f:
        reader = fastco.spawn(lambda: b"".join(iter(lambda: b.recv(65536), b"")))
        assert d.sendfile(f) == 10000
        d.close()
        fd = a.detach()
        os.close(fd)
        assert reader.get(timeout=2) == b"0123456789" * 1000
    b.close()


def test_fd_number_reused_after_a_close_behind_the_hubs_back() -> None:
    # A socket's fd closed without the hub knowing (os.close, or a socket
    # garbage collected without close()); a new socket that gets the same fd
    # number must still be woken: the hub re-arms the fd for a new owner.
    import _socket

    a, b = cosocket.socketpair()
    t = fastco.spawn(b.recv, 1)
    fastco.sleep(0)
    a.sendall(b"1")
    t.join(1)
    old_fd = b.fileno()
    os.close(old_fd)
    _socket.socket.detach(b)  # the C socket forgets its fd, the hub is not told
    c, d = cosocket.socketpair()
    reader = c if c.fileno() == old_fd else d
    assert reader.fileno() == old_fd  # the number was reused
    got = fastco.spawn(reader.recv, 10)
    fastco.sleep(0.01)
    (d if reader is c else c).sendall(b"wake")
    with Timeout(2):
        assert got.get() == b"wake"
    for s in (a, c, d):
        s.close()


# -- the C fast paths: readiness hints, arguments, accept ----------------------

def _tcp_pair() -> tuple[cosocket.socket, cosocket.socket]:
    with cosocket.create_server(("127.0.0.1", 0)) as listener:
        c = cosocket.create_connection(listener.getsockname(), timeout=5)
        s, _ = listener.accept()
    return c, s


def _pair(kind: str) -> tuple[cosocket.socket, cosocket.socket]:
    """A connected pair whose second socket has waited in the hub once (so
    that the hub watches its fd, and its readiness hints are in use)."""
    a, b = _tcp_pair() if kind == "tcp" else cosocket.socketpair()
    fastco.spawn_later(0.01, a.sendall, b"ping")
    with Timeout(2):
        assert b.recv(100) == b"ping"       # waited, then a short read
    return a, b


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_short_read_then_eof_is_seen(kind) -> None:
    # A short read drains the socket (the next recv waits for an edge), but a
    # FIN that came with the data must still end the next recv with b''.
    a, b = _pair(kind)
    with a, b:
        a.sendall(b"abc")
        a.shutdown(stdsocket.SHUT_WR)
        fastco.sleep(0.02)      # data and FIN are both there, their edge seen
        with Timeout(2):
            assert b.recv(65536) == b"abc"
            assert b.recv(65536) == b""
            assert b.recv(65536) == b""


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_data_that_arrives_while_nobody_waits_is_read(kind) -> None:
    # The edge of new data is consumed by the loop while the reader does
    # something else; its next recv must not wait for another edge.
    a, b = _pair(kind)
    with a, b:
        a.sendall(b"one")
        assert b.recv(100) == b"one"          # short: drained
        a.sendall(b"two")
        fastco.sleep(0.02)                    # the loop polls: the edge comes and goes
        with Timeout(2):
            assert b.recv(100) == b"two"
        a.sendall(b"three")
        buf = bytearray(100)
        fastco.sleep(0.02)
        with Timeout(2):
            assert b.recv_into(buf) == 5 and buf[:5] == b"three"


def test_many_short_reads_in_a_row() -> None:
    a, b = _pair("tcp")
    with a, b:
        def writer():
            for i in range(200):
                a.sendall(b"%d;" % i)
                if i % 7 == 0:
                    fastco.sleep(0)
            a.shutdown(stdsocket.SHUT_WR)

        w = fastco.spawn(writer)
        got = bytearray()
        with Timeout(5):
            while chunk := b.recv(65536):
                got += chunk
        w.get(timeout=5)
        assert got == b"".join(b"%d;" % i for i in range(200))


def test_recv_results_of_every_size_are_independent_objects() -> None:
    a, b = cosocket.socketpair()
    with a, b:
        results = []
        for size in (1, 100, 4096, 4097, 30000):
            payload = os.urandom(size)
            a.sendall(payload)
            got = b""
            while len(got) < size:
                got += b.recv(65536)
            results.append((payload, got))
        for payload, got in results:    # no result shares the spare buffer
            assert payload == got


def test_c_methods_check_their_arguments() -> None:
    a, b = cosocket.socketpair()
    with a, b:
        assert type(cosocket.socket.recv).__name__ == "method_descriptor"
        with pytest.raises(TypeError):
            a.recv()
        with pytest.raises(TypeError):
            a.recv(1, 0, 0)
        with pytest.raises(ValueError):
            a.recv(-1)
        with pytest.raises(TypeError):
            a.sendall("text")
        with pytest.raises(TypeError):
            a.send()
        with pytest.raises(TypeError):
            a.recv_into(bytearray(4), bogus=1)
        with pytest.raises(TypeError), stdsocket.socket() as plain:
            cosocket.socket.recv(plain, 1)
        b.sendall(b"xyz")
        buf = bytearray(10)
        assert a.recv_into(buffer=buf, nbytes=2) == 2 and buf[:2] == b"xy"
        assert a.recv_into(buf, flags=0) == 1 and buf[:1] == b"z"
        with pytest.raises(ValueError):
            a.recv_into(bytearray(2), 5)
        b.sendall(b"peek")
        assert a.recv(10, stdsocket.MSG_PEEK) == b"peek"
        assert a.recv(10) == b"peek"


@pytest.mark.parametrize("family", ["inet", "inet6", "unix"])
def test_accept_gives_the_stdlib_address_and_a_nonblocking_cloexec_socket(
        family, tmp_path) -> None:
    if family == "inet6" and not stdsocket.has_ipv6:
        pytest.skip("no IPv6")
    if family == "unix":
        path = str(tmp_path / "s")
        listener = cosocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        listener.bind(path)
        listener.listen()
        target: object = path
    else:
        host = "127.0.0.1" if family == "inet" else "::1"
        fam = stdsocket.AF_INET if family == "inet" else stdsocket.AF_INET6
        try:
            listener = cosocket.create_server((host, 0), family=fam)
        except OSError:
            pytest.skip(f"cannot listen on {host}")
        target = listener.getsockname()[:2]
    with listener:
        client = cosocket.socket(listener.family, stdsocket.SOCK_STREAM)
        with client:
            client.settimeout(5)
            client.connect(target)
            conn, addr = listener.accept()
            with conn:
                assert addr == client.getsockname()
                assert not os.get_blocking(conn.fileno())
                assert not os.get_inheritable(conn.fileno())
                assert isinstance(conn, cosocket.socket) and conn.family == listener.family
                client.sendall(b"hi")
                assert conn.recv(10) == b"hi"
