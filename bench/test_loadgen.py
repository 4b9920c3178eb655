"""Tests of the echo benchmark's instrument: the C load generator, the C epoll
server, and the harness.

A benchmark is only worth its checks, so these tests feed the load generator
servers that echo correctly (the C server, a threaded Python server) at
every message size from 1 byte to 1 MiB, and servers that misbehave (one
flipped byte, stale replies, closed connections, silence, no server at all),
and demand that it notices, counts and exits in bounded time. Every run is a
fraction of a second; the whole file takes about ten seconds.

Run: ``python -m pytest bench/test_loadgen.py``.
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bench import echo_bench
from bench._build_loadgen import build_c_server

REPO_DIR = Path(__file__).resolve().parent.parent
RUN = ["-d", "0.25", "-w", "0.05"]  # a short measured window after a short warm-up


@pytest.fixture(scope="module")
def c_server_port() -> Iterator[int]:
    """Port of a running C epoll echo server (port chosen by the system)."""
    proc = subprocess.Popen(
        [str(build_c_server()), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 5)
        assert ready, "c_epoll_server did not announce itself"
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        yield int(line.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0, "c_epoll_server should exit 0 on SIGTERM"


Handler = Callable[[socket.socket], None]


@contextmanager
def python_server(handle: Handler) -> Iterator[int]:
    """Run ``handle(conn)`` for each connection in a thread; yield the port."""

    class _Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                handle(self.request)
            except OSError:
                pass  # the load generator closes its connections at the end

    class _Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with _Server(("127.0.0.1", 0), _Handler) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join(5)


def echo(conn: socket.socket) -> None:
    """A correct echo server: recv, send all of it back."""
    while data := conn.recv(65536):
        conn.sendall(data)


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    """Read exactly n bytes, or fewer if the peer closes."""
    buf = b""
    while len(buf) < n and (chunk := conn.recv(n - len(buf))):
        buf += chunk
    return buf


def run_loadgen(loadgen: Path, port: int, *args: str, timeout: float = 10) -> tuple[int, Any]:
    """Run the load generator; return its exit status and its JSON result."""
    proc = subprocess.run(
        [str(loadgen), "-p", str(port), *args], capture_output=True, text=True, timeout=timeout
    )
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return proc.returncode, result


# --------------------------------------------------------------------------
# Correct servers: every size comes back intact
# --------------------------------------------------------------------------

SIZES = [1, 64, 16 * 1024, 1024 * 1024]


@pytest.mark.parametrize("size", SIZES, ids=["1B", "64B", "16KiB", "1MiB"])
def test_c_server_all_sizes_no_mismatch(loadgen: Path, c_server_port: int, size: int) -> None:
    rc, r = run_loadgen(loadgen, c_server_port, "-c", "4", "-s", str(size), *RUN)
    assert rc == 0
    assert r["mismatches"] == 0 and r["errors"] == 0
    assert r["requests"] > 0 and r["connections"] == 4
    assert r["rx_bytes"] > 0 and r["latency_us"]["p50"] > 0


@pytest.mark.parametrize("size", SIZES, ids=["1B", "64B", "16KiB", "1MiB"])
def test_python_server_all_sizes_no_mismatch(loadgen: Path, size: int) -> None:
    with python_server(echo) as port:
        rc, r = run_loadgen(loadgen, port, "-c", "2", "-s", str(size), *RUN)
    assert rc == 0
    assert r["mismatches"] == 0 and r["errors"] == 0 and r["requests"] > 0


def test_message_larger_than_socket_buffers(loadgen: Path, c_server_port: int) -> None:
    """16 MiB messages cannot be written before reading starts: no deadlock."""
    rc, r = run_loadgen(loadgen, c_server_port, "-c", "2", "-s", "16m", "-d", "0.5", "-w", "0")
    assert rc == 0
    assert r["mismatches"] == 0 and r["requests"] > 0


def test_empty_message_is_refused(loadgen: Path) -> None:
    """A 0-byte message has no echo to wait for: a usage error, not a spin."""
    proc = subprocess.run([str(loadgen), "-p", "1", "-s", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "at least 1 byte" in proc.stderr


# --------------------------------------------------------------------------
# Misbehaving servers: noticed, counted, bounded
# --------------------------------------------------------------------------


def test_one_flipped_byte_is_caught(loadgen: Path) -> None:
    """The server flips a single byte (stream offset 100) per connection."""

    def corrupt(conn: socket.socket) -> None:
        offset = 0
        while data := conn.recv(65536):
            if offset <= 100 < offset + len(data):
                i = 100 - offset
                data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
            offset += len(data)
            conn.sendall(data)

    with python_server(corrupt) as port:
        rc, r = run_loadgen(loadgen, port, "-c", "2", "-s", "64", *RUN)
    assert rc == 1
    assert r["mismatches"] == 2 and r["mismatched_requests"] == 2


def test_stale_reply_is_caught(loadgen: Path) -> None:
    """The server answers every message with the connection's first one:
    the payload changes per request, so this is caught."""

    def stale(conn: socket.socket) -> None:
        first = recv_exactly(conn, 64)
        conn.sendall(first)
        while len(recv_exactly(conn, 64)) == 64:
            conn.sendall(first)

    with python_server(stale) as port:
        rc, r = run_loadgen(loadgen, port, "-c", "2", "-s", "64", *RUN)
    assert rc == 1
    assert r["mismatches"] > 0 and r["mismatched_requests"] > 0


def close_after_one(conn: socket.socket) -> None:
    """Echo one message, then close the connection."""
    conn.sendall(recv_exactly(conn, 64))


def test_closed_connections_are_counted_and_do_not_hang(loadgen: Path) -> None:
    with python_server(close_after_one) as port:
        rc, r = run_loadgen(loadgen, port, "-c", "3", "-s", "64", "-d", "5", "-w", "0", timeout=4)
    # Every connection gone: the run ends early (well before -d 5). Whether a
    # close shows as EOF or as a reset depends on whether the next message
    # reached the server before it closed (unread data makes close send RST).
    assert rc == 0
    assert r["peer_closed"] + r["io_errors"] == 3 and r["errors"] == 3
    assert r["mismatches"] == 0
    assert r["connections"] == 0 and r["duration_s"] < 2


def test_reconnect_after_close(loadgen: Path) -> None:
    with python_server(close_after_one) as port:
        rc, r = run_loadgen(loadgen, port, "-c", "2", "-s", "64", "-r", *RUN)
    assert rc == 0
    assert r["reconnects"] > 0 and r["errors"] > 0 and r["requests"] > 0


def test_silent_server_ends_at_the_deadline(loadgen: Path) -> None:
    """A server that never answers: the run still ends on time."""

    def silent(conn: socket.socket) -> None:
        while conn.recv(65536):
            pass

    with python_server(silent) as port:
        rc, r = run_loadgen(loadgen, port, "-c", "2", "-s", "64", *RUN, timeout=5)
    assert rc == 0
    assert r["requests"] == 0 and r["inflight_at_end"] == 2


def test_no_server_exits_3(loadgen: Path) -> None:
    port = echo_bench.free_port()  # nobody listens on it
    rc, r = run_loadgen(loadgen, port, "-c", "3", *RUN, timeout=5)
    assert rc == 3
    assert r["connect_errors"] == 3 and r["connections_opened"] == 0


# --------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------


def test_harness_dry_run_c_epoll(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "bench.echo_bench", "--servers", "c-epoll", "--rounds", "1"]
    cmd += ["--duration", "1", "--warmup", "0.1", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "| c-epoll |" in proc.stdout
    report = json.loads(out.read_text())
    median = report["servers"]["c-epoll"]["median"]
    assert median["100x64"]["rps"] > 0
    assert median["1x64"]["p50"] > 0
    assert median["50x16k"]["mb_s"] > 0


def test_harness_reports_a_server_that_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that exits at once is reported as failed, quickly."""
    monkeypatch.setitem(echo_bench.SERVERS, "dies", [sys.executable, "-c", "raise SystemExit(7)"])
    args = ["--servers", "dies", "--duration", "0.2", "--rounds", "1", "--warmup", "0"]
    assert echo_bench.main(args) == 1
