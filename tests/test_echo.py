"""The `fastco echo` command: run in subprocesses (python -m fastco echo),
talked to with stdlib sockets on 127.0.0.1.

What it prints, SIGTERM/SIGINT with connections open, the second signal,
--workers supervision, running out of file descriptors, bad arguments.
"""

from __future__ import annotations

import os
import queue
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata

import pytest

from conftest import ROOT
from fastco import __main__ as cli
from fastco import echo as echo_cmd

LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


class Echo:
    """A `python -m fastco echo` subprocess, its output read line by line."""

    def __init__(self, *args: str, preexec_fn=None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastco", "echo", "--port", "0", *args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1, preexec_fn=preexec_fn)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []       # lines taken from the queue so far
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(f, keep), daemon=True)
                         for f, keep in ((self.proc.stdout, self.out),
                                         (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()
        self.port = int(self.expect(LISTEN_RE).group(1))

    def _read(self, f, keep: list[str]) -> None:
        for line in f:
            keep.append(line)
            self.lines.put(line)

    def expect(self, pattern: str | re.Pattern[str], timeout: float = 10) -> re.Match[str]:
        """The first output line (stdout or stderr, printed so far or within
        timeout) matching pattern."""
        for line in self.seen:
            m = re.search(pattern, line)
            if m:
                return m
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; "
                                     f"output: {self.out + self.err}") from None
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def connect(self, timeout: float = 5) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 15) -> tuple[int, str, str]:
        """Wait for the exit; (status, stdout, stderr)."""
        try:
            status = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._close_pipes()
        return status, "".join(self.out), "".join(self.err)

    def _close_pipes(self) -> None:
        """Once the process ended: let the readers reach the end of its
        output, then close the pipes (no ResourceWarning)."""
        for t in self._readers:
            t.join(5)
        if any(t.is_alive() for t in self._readers):
            return      # a child of it still holds the pipe: leave it to them
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None and not f.closed:
                f.close()

    def __enter__(self) -> Echo:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def test_prints_where_it_listens_echoes_and_sums_up_at_sigterm() -> None:
    with Echo("-v", "--backend", "ucontext") as e:
        e.expect("backend ucontext")
        with e.connect() as a, e.connect() as b:
            assert roundtrip(a, b"hello") == b"hello"
            assert roundtrip(b, b"x" * 100_000) == b"x" * 100_000
            b.shutdown(socket.SHUT_WR)            # half-close: then the server closes
            assert b.recv(10) == b""
        e.signal(signal.SIGTERM)
        status, out, err = e.finish()
    assert status == 0, err
    assert "SIGTERM: not accepting any more" in out
    assert re.search(r"stopped after [\d.]+ s: 2 connections served, 100,005 bytes", out)
    assert "0 errors" in out and "Traceback" not in err


def test_sigint_with_connections_open_ends_cleanly_after_the_grace_period() -> None:
    with Echo("--grace", "0.5") as e:
        idle = [e.connect() for _ in range(3)]
        busy = e.connect()
        assert roundtrip(busy, b"before") == b"before"
        e.signal(signal.SIGINT)
        e.expect(r"SIGINT: not accepting any more; waiting up to 0.5 s for 4 open")
        assert roundtrip(busy, b"during grace") == b"during grace"
        with pytest.raises(OSError):
            e.connect(timeout=1)                  # the port is closed
        start = time.monotonic()
        status, out, err = e.finish()
        assert time.monotonic() - start < 5
        for s in (*idle, busy):
            assert s.recv(10) == b""              # closed by the server
            s.close()
    assert status == 0, err
    assert "4 connections served" in out and "4 closed at shutdown" in out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_second_signal_closes_the_connections_at_once() -> None:
    with Echo("--grace", "60") as e:
        conns = [e.connect() for _ in range(2)]
        assert roundtrip(conns[0], b"x") == b"x"
        e.signal(signal.SIGTERM)
        e.expect("waiting up to 60 s")
        start = time.monotonic()
        e.signal(signal.SIGTERM)
        status, out, _ = e.finish()
        assert time.monotonic() - start < 5
        for c in conns:
            c.close()
    assert status == 0 and "SIGTERM again: closing 2 connection(s) now" in out


def test_stats_interval_prints_counters() -> None:
    with Echo("--stats-interval", "0.05") as e:
        with e.connect() as c:
            assert roundtrip(c, b"abc") == b"abc"
            e.expect(r"stats: 1 open, 1 accepted, 3 bytes echoed")
        e.signal(signal.SIGTERM)
        assert e.finish()[0] == 0


def test_out_of_file_descriptors_backs_off_and_recovers() -> None:
    limit = 40

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    with Echo("--backlog", "128", preexec_fn=low_fd_limit) as e:
        clients = [e.connect() for _ in range(2 * limit)]   # more than it can hold
        for i, c in enumerate(clients):
            c.sendall(b"%d;" % i)
        e.expect(r"accept failed \(Too many open files\): retrying")
        served: set[socket.socket] = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:       # until no more answers come
            ready = set(select.select(clients, [], [], 0.2)[0]) - served
            if not ready and served:
                break
            served |= ready
        waiting = [c for c in clients if c not in served]
        assert served and waiting, (len(served), len(waiting))
        for c in served:
            assert c.recv(100) == b"%d;" % clients.index(c)
        cpu0 = cpu_seconds(e.proc.pid)
        time.sleep(0.5)
        assert cpu_seconds(e.proc.pid) - cpu0 < 0.15, "the accept loop spins"
        for c in served:                          # free some descriptors
            c.close()
        e.expect("accepting again after")
        for c in waiting:                         # their messages were kept
            c.settimeout(10)
            assert c.recv(100) == b"%d;" % clients.index(c)
            c.close()
        e.signal(signal.SIGTERM)
        status, out, err = e.finish()
    assert status == 0, err
    assert f"{2 * limit} connections served" in out and "Traceback" not in err
    assert re.search(r"[1-9]\d* accept errors", out)


def test_workers_share_the_port_and_a_dead_worker_is_restarted() -> None:
    with Echo("--workers", "2", "-v") as e:
        e.expect(r"worker 2 started")
        deadline = time.monotonic() + 10
        while len(children(e.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = children(e.proc.pid)
        assert len(workers) == 2
        for i in range(8):
            with e.connect() as c:
                assert roundtrip(c, b"req %d" % i) == b"req %d" % i
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        e.expect(rf"worker \d \(pid {victim}\) was killed by SIGKILL: restarting it")
        while (len(children(e.proc.pid)) < 2 or victim in children(e.proc.pid)) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        now = children(e.proc.pid)
        assert len(now) == 2 and victim not in now
        for i in range(8):
            with e.connect() as c:
                assert roundtrip(c, b"again %d" % i) == b"again %d" % i
        e.signal(signal.SIGTERM)
        status, out, err = e.finish()
    assert status == 0, err
    assert "1 restart(s)" in out and "2 workers" in out
    # The killed worker's counts are gone; the other three reported theirs.
    assert "1 worker(s) ended without reporting their counts" in out
    for pid in now:                               # no worker left behind
        assert not _alive(pid)


def test_a_worker_stopped_as_it_starts_still_reports() -> None:
    """SIGTERM right after a restart reaches the new worker before it has
    set up its handlers: it must stop with its report, not die unreported
    (it did about half the time)."""
    with Echo("--workers", "2", "-v") as e:
        e.expect(r"worker 2 started")
        deadline = time.monotonic() + 10
        while len(children(e.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        first = children(e.proc.pid)
        victim = min(first)
        time.sleep(0.3)                           # both are serving
        os.kill(victim, signal.SIGKILL)
        old = "|".join(map(str, first))
        e.expect(rf"worker \d started \(pid (?!(?:{old})\))\d+\)")
        e.signal(signal.SIGTERM)                  # the new one is starting
        status, out, err = e.finish()
    assert status == 0, err
    assert "1 restart(s)" in out
    assert "1 worker(s) ended without reporting their counts" in out, out


def test_workers_stop_when_the_supervisor_is_killed() -> None:
    with Echo("--workers", "2") as e:
        deadline = time.monotonic() + 10
        while len(children(e.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = children(e.proc.pid)
        assert len(workers) == 2
        with e.connect() as c:
            assert roundtrip(c, b"x") == b"x"
        e.proc.kill()                             # no chance to stop its workers
        e.proc.wait()
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.02)
        assert not any(_alive(p) for p in workers), "a worker outlived its supervisor"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_port_in_use_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "fastco", "echo", "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "port must be in 0..65535"),
    (["--port", "x"], "invalid _port value"),
    (["--workers", "0"], "must be >= 1"),
    (["--max-conns", "-3"], "must be >= 1"),
    (["--idle-timeout", "-1"], "must be a number of seconds >= 0"),
    (["--grace", "inf"], "must be a number of seconds >= 0"),
    (["--backend", "bogus"], "invalid choice: 'bogus'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        echo_cmd.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("usage: fastco echo")


def test_the_fastco_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "fastco", "echo", "--workers", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--workers: must be >= 1" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "fastco"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "COMMAND" in proc.stderr
    with pytest.raises(SystemExit) as info:
        cli.main(["nope"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    try:
        scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    except Exception:  # noqa: BLE001 - not installed as a distribution
        scripts = {}
    if "fastco" in scripts:
        assert scripts["fastco"] == "fastco.__main__:main"
