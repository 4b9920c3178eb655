"""Real clients against real servers under each library's patch_all, as
pytest-benchmark entries: redis-py SET/GET from 100 tasks against a
redis-server, and 100 tasks doing HTTPS GETs with requests (keep-alive) on an
HTTPS server.

    pytest bench/test_bench_net.py --benchmark-only
    python -m bench.report --run --pytest-args "bench/test_bench_net.py"   # ratios

Each library runs the same client code (bench/net_client.py) in its own
process, since each monkey-patches the stdlib; the servers are the same for
all (one redis-server, one HTTPS server: bench/https_server.py, on fastco,
in its own process).  What is timed is one ``run`` command: every task does
its share of requests and every answer is checked.  The client process and
the server each have a core of this 2-core machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.conftest import FASTCO_IMPLS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import realservers  # noqa: E402  (tests/realservers.py: the same servers the tests use)

ROOT = Path(__file__).resolve().parent.parent
IMPLS = [*FASTCO_IMPLS, "gevent"]
TASKS = 100
#: kind -> operations per task per measured call (a smoke run does 1/20)
OPS = {"redis": 200, "https": 20}


class Client:
    """A bench/net_client.py process for one library, driven line by line."""

    def __init__(self, impl: str) -> None:
        args = [sys.executable, "-m", "bench.net_client"]
        if impl == "gevent":
            args.append("gevent")
        else:
            args += ["fastco", "--backend", impl.split("-", 1)[1]]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def command(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer.startswith("ok"):
            self.close()
            raise AssertionError(f"client answered {answer!r} to {line!r} "
                                 f"(exit status {self.proc.returncode})")
        return answer

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(redis port, https port, CA file), the servers running for the module."""
    skip = realservers.RedisServer.missing()
    if skip:
        pytest.skip(skip)
    certs = realservers.make_tls_certs(tmp_path_factory.mktemp("tls"))
    port = realservers.free_port()
    https = subprocess.Popen([sys.executable, "-m", "bench.https_server", str(port),
                              str(certs.server)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert https.stdout is not None and https.stdout.readline().strip() == "listening"
        with realservers.RedisServer() as redis:
            yield redis.port, port, str(certs.ca)
    finally:
        https.kill()
        https.wait()


@pytest.fixture(params=IMPLS)
def impl(request) -> str:
    if request.param == "gevent":
        pytest.importorskip("gevent")
    return request.param


@pytest.mark.parametrize("kind", ["redis", "https"])
def test_net(benchmark, servers, impl: str, kind: str) -> None:
    redis_port, https_port, ca = servers
    per_task = OPS[kind] // (20 if benchmark.disabled else 1)
    ops = per_task * TASKS
    benchmark.group = f"{kind}-{TASKS}-tasks"
    benchmark.extra_info.update(impl=impl, ops=ops)
    client = Client(impl)
    try:
        if kind == "redis":
            client.command(f"redis {redis_port} {TASKS}")
        else:
            client.command(f"https {https_port} {ca} {TASKS}")
        answers = []
        benchmark.pedantic(lambda: answers.append(client.command(f"run {kind} {per_task}")),
                           rounds=1 if benchmark.disabled else 5, iterations=1,
                           warmup_rounds=0 if benchmark.disabled else 1)
        assert all(a.split() == ["ok", str(ops)] for a in answers), answers
    finally:
        client.close()
