"""Shared helpers for fastco's tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import FrameType

import pytest

import realservers

ROOT = Path(__file__).resolve().parent.parent


#: Functions for code run by run_python that measures its own resources.
PROC_STATS = r"""
import os

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def fds():
    return len(os.listdir("/proc/self/fd"))
"""


def assert_cycles_leave_nothing(code: str, warm: int, rounds: int) -> None:
    """Run ``code`` (Python source that defines ``cycle(i)``) in a fresh
    interpreter: ``warm`` cycles, then ``rounds`` more, which must leave the
    fd count as it was, RSS within 10% + 1 MiB, and the hub with no timer
    or fd waiter left."""
    measure = textwrap.dedent(f"""
        import gc, json
        import fastco
        for i in range({warm}):
            cycle(i)
        gc.collect()
        r0, f0 = rss(), fds()
        for i in range({rounds}):
            cycle(i)
        gc.collect()
        print(json.dumps({{"rss0": r0, "rss1": rss(), "fds0": f0, "fds1": fds(),
                          "hub": repr(fastco.get_hub())}}))
    """)
    proc = run_python(code=PROC_STATS + textwrap.dedent(code) + measure, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    m = json.loads(proc.stdout.splitlines()[-1])
    assert m["fds1"] == m["fds0"], m
    assert m["rss1"] <= m["rss0"] * 1.10 + 1024 * 1024, m
    assert "timers=0" in m["hub"] and "fd_waiters=0" in m["hub"], m


def build_c_extension(source: Path, out_dir: Path, name: str, strict: bool = True,
                      include: tuple[Path, ...] = ()) -> Path:
    """Compile the C extension module `name` from `source` into out_dir, for
    this interpreter, with its compiler settings, and warnings as errors if
    `strict` (not for generated code); returns the built file.  Skips the
    test where there is no C compiler."""
    import shlex
    import shutil
    import sysconfig

    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if shutil.which(cc[0]) is None:
        pytest.skip(f"no C compiler ({cc[0]})")
    out = out_dir / (name + sysconfig.get_config_var("EXT_SUFFIX"))
    warn = ["-Wall", "-Wextra", "-Werror"] if strict else ["-w"]
    cmd = [*cc, "-shared", "-fPIC", "-O1", *warn, "-I" + sysconfig.get_paths()["include"],
           *("-I" + str(d) for d in include), str(source), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def frame_chain(frame: FrameType | None) -> list[FrameType]:
    """`frame` and the frames under it (its f_back chain), innermost first."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


def run_python(*args: str, code: str | None = None, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run this interpreter on a script (or `code`) in a fresh process."""
    cmd = [sys.executable]
    cmd += ["-c", code] if code is not None else []
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=full_env, check=False)


@pytest.fixture
def pipe():
    """(read fd, write fd) of a pipe, closed after the test."""
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def run_threads_and_tasks(in_threads: list[tuple], in_tasks: list[tuple],
                          timeout: float = 60) -> None:
    """Run each ``(fn, *args)`` of ``in_threads`` in an OS thread (a
    fastco RealThread) and each of ``in_tasks`` in a task, all at once;
    wait for all of them and check that they succeeded."""
    import fastco
    from fastco.threading import RealThread
    threads = [RealThread(target=fn, args=args) for fn, *args in in_threads]
    for t in threads:
        t.start()
    tasks = [fastco.spawn(fn, *args) for fn, *args in in_tasks]
    fastco.joinall(tasks, timeout=timeout)
    for t in threads:
        t.join(timeout)
        assert not t.is_alive()
    for task in tasks:
        assert task.successful(), task.exception


def free_port() -> int:
    """A loopback port that was free a moment ago (a server binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_when_listening(port: int, deadline: float,
                           proc: subprocess.Popen | None = None) -> socket.socket:
    """A connection to 127.0.0.1:port, retried until a server listens there
    (or the monotonic ``deadline`` passes, or ``proc``, the server, exits)."""
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the server exited with status {proc.returncode}: "
                                     f"{proc.stderr.read() if proc.stderr else ''}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------------------
# The hub: a fresh one per test, and a guard against hangs.

POLLERS = ["epoll", "poll", "select"]


class HungTest(SystemExit):
    """Raised (in the main greenlet, by the hub) when a test runs too long."""


def _alarm(signum, frame):
    raise HungTest("test still running after its time limit: a hang?")


def _fresh_hub(poller):
    import signal

    from fastco import hub as hubmod

    h = hubmod.Hub(poller)
    hubmod.set_hub(h)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 20.0, 1.0)
    try:
        yield h
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        h.destroy()


@pytest.fixture
def hub():
    """A fresh hub for the test ($FASTCO_POLLER, else the default poller),
    destroyed afterwards.  A test that runs longer than 20 s gets HungTest
    raised in it (again every second), rather than hanging the suite."""
    yield from _fresh_hub(None)


@pytest.fixture(params=POLLERS)
def any_hub(request):
    """The `hub` fixture, once per poller backend (epoll, poll, select)."""
    yield from _fresh_hub(request.param)


# ---------------------------------------------------------------------------
# Real servers (tests/realservers.py): TLS certificates, redis-server, PostgreSQL.

@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory) -> realservers.TlsCerts:
    """A CA and server certificates made for this test session."""
    return realservers.make_tls_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def redis_server() -> realservers.RedisServer:
    """A redis-server on a free loopback port, for the session (skips if
    the redis-server program is not installed)."""
    skip = realservers.RedisServer.missing()
    if skip:
        pytest.skip(skip)
    with realservers.RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> realservers.PostgresServer:
    """A PostgreSQL server in a temporary directory, on a free loopback
    port, for the session (skips if PostgreSQL is not installed)."""
    skip = realservers.PostgresServer.missing()
    if skip:
        pytest.skip(skip)
    with realservers.PostgresServer() as server:
        yield server
