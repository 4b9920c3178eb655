"""The HTTPS server of the network benchmarks (the same one for every client
library): HTTP/1.1 with keep-alive over TLS, on fastco, answering
``GET /path`` with ``hello /path``.

    python -m bench.https_server PORT CERTFILE

It prints "listening" once it accepts connections, and runs until killed.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fastco
from fastco import socket
from fastco import ssl as cossl


def handle(conn: socket.socket, ctx: ssl.SSLContext) -> None:
    """Serve one keep-alive connection until the client closes it."""
    with ctx.wrap_socket(conn, server_side=True) as s, s.makefile("rb") as f:
        while True:
            request = f.readline()
            if not request:
                return
            while f.readline() not in (b"\r\n", b""):
                pass
            body = b"hello " + request.split()[1]
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


@contextlib.contextmanager
def servers(directory: Path) -> Iterator[tuple[int, int, str]]:
    """The benchmarks' servers, running for the block: a redis-server and
    this HTTPS server (in a process of its own, with a certificate made in
    ``directory``).  Yields (redis port, https port, CA file)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import realservers  # tests/realservers.py: the servers and certificates the tests use

    certs = realservers.make_tls_certs(directory)
    port = realservers.free_port()
    https = subprocess.Popen([sys.executable, "-m", "bench.https_server", str(port),
                              str(certs.server)], cwd=Path(__file__).resolve().parent.parent,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert https.stdout is not None and https.stdout.readline().strip() == "listening"
        with realservers.RedisServer() as redis:
            yield redis.port, port, str(certs.ca)
    finally:
        https.kill()
        https.wait()


def main(argv: list[str]) -> int:
    port, certfile = int(argv[0]), argv[1]
    ctx = cossl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile)
    listener = socket.create_server(("127.0.0.1", port), backlog=512)
    print("listening", flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fastco.spawn(handle, conn, ctx)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
