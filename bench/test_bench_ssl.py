"""The TLS layer alone: fastco.ssl against gevent.ssl in the same process,
over a socketpair (no monkey patching: each library's own ssl module).

    pytest bench/test_bench_ssl.py --benchmark-only
    python -m bench.report --run --pytest-args "bench/test_bench_ssl.py"   # ratios

``tls_pingpong_1B``: round trips of one byte through an echo task (one TLS
record each way); ``tls_stream_64KiB``: 64 KiB writes read by another task
(time per 64 KiB).  The implementations take turns round by round (each
entry is the median of a few runs); bench/report.py takes the median of
each one's entries.  Besides fastco (with each backend) and gevent, the entry
``fastco-memorybio`` is the design fastco.ssl did not take, measured for the
record: TLS in ``ssl.SSLObject`` over ``MemoryBIO``s, the bytes moved by the
cooperative socket's own recv/sendall (an extra copy each way, no failed
read on the fd before each wait).
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import fastco
import fastco.ssl
from bench.conftest import FASTCO_IMPLS, use_fastco_backend

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import realservers  # noqa: E402  (tests/realservers.py: the certificates the tests use)

IMPLS = [*FASTCO_IMPLS, "fastco-memorybio", "gevent"]
#: entries per implementation (a smoke run does one), and timed runs per entry
ROUNDS = 10
RUNS = 5


class _BioTLS:
    """TLS over a cooperative socket with SSLObject and MemoryBIOs (recv,
    sendall and the handshake only: what the benchmarks use)."""

    def __init__(self, sock, ctx: ssl.SSLContext, server_side: bool,
                 hostname: str | None = None) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                server_hostname=hostname)
        self._call(self.obj.do_handshake)

    def _call(self, fn, *args):
        while True:
            try:
                result = fn(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(262144)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        return self._call(self.obj.read, n)

    def sendall(self, data) -> None:
        self._call(self.obj.write, data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and localhost's certificate (made by tests/realservers.py)."""
    return realservers.make_tls_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def impl(request, certs) -> SimpleNamespace:
    """spawn, and pair(): a (client, server) TLS connection over a socketpair."""
    name = request.node.callspec.params["impl_name"]
    if name == "gevent":
        lib = pytest.importorskip("gevent")
        import gevent.socket as gsocket
        import gevent.ssl as gssl
        sslmod, socketpair = gssl, gsocket.socketpair
    else:
        use_fastco_backend("fastco-asm" if name == "fastco-memorybio" else name)
        lib, sslmod, socketpair = fastco, fastco.ssl, fastco.socket.socketpair
    server_ctx = sslmod.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs.server)
    # (Not create_default_context: gevent.ssl's returns a stdlib, blocking, context.)
    client_ctx = sslmod.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(certs.ca)

    def pair():
        a, b = socketpair()
        if name == "fastco-memorybio":
            server = lib.spawn(_BioTLS, b, server_ctx, True)
            client = _BioTLS(a, client_ctx, False, "localhost")
        else:
            server = lib.spawn(server_ctx.wrap_socket, b, server_side=True)
            client = client_ctx.wrap_socket(a, server_hostname="localhost")
        server.join()
        return client, server.value

    return SimpleNamespace(name=name, spawn=lib.spawn, pair=pair)


def measure(benchmark, rnd: int, run) -> None:
    """One entry: the median of RUNS timed runs (one in a smoke run)."""
    if benchmark.disabled and rnd > 0:
        pytest.skip("smoke run (--benchmark-disable): one round")
    benchmark.extra_info["round"] = rnd
    benchmark.pedantic(run, rounds=RUNS, iterations=1, warmup_rounds=1)


rounds_and_impls = pytest.mark.parametrize(
    ("rnd", "impl_name"), [(r, i) for r in range(ROUNDS) for i in IMPLS])


@rounds_and_impls
@pytest.mark.benchmark(group="tls_pingpong_1B")
def test_tls_pingpong_1b(benchmark, impl, rnd: int, impl_name: str) -> None:
    """500 round trips of 1 byte through an echo task, over TLS."""
    n = 500
    benchmark.extra_info.update(ops=n, impl=impl.name)
    client, server = impl.pair()

    def echo():
        for _ in range(n):
            server.sendall(server.recv(100))

    def run():
        t = impl.spawn(echo)
        for _ in range(n):
            client.sendall(b"x")
            assert client.recv(100) == b"x"
        t.join()

    measure(benchmark, rnd, run)
    client.close()
    server.close()


@rounds_and_impls
@pytest.mark.benchmark(group="tls_stream_64KiB")
def test_tls_stream_64kib(benchmark, impl, rnd: int, impl_name: str) -> None:
    """200 writes of 64 KiB, read by another task, over TLS."""
    n, chunk = 200, b"y" * 65536
    benchmark.extra_info.update(ops=n, impl=impl.name)
    client, server = impl.pair()

    def read_all():
        got = 0
        while got < n * len(chunk):
            got += len(server.recv(262144))

    def run():
        t = impl.spawn(read_all)
        for _ in range(n):
            client.sendall(chunk)
        t.join()

    measure(benchmark, rnd, run)
    client.close()
    server.close()
