"""Real clients against real servers under each library's patch_all, as
pytest-benchmark entries: redis-py SET/GET from 100 tasks against a
redis-server, and 100 tasks doing HTTPS GETs with keep-alive on an HTTPS
server, with requests and with urllib3 (the HTTP client under requests).

    pytest bench/test_bench_net.py --benchmark-only
    python -m bench.report --run --pytest-args "bench/test_bench_net.py"   # ratios

Each library runs the same client code (bench/net_client.py) in its own
process, since each monkey-patches the stdlib; the servers are the same for
all (one redis-server, one HTTPS server: bench/https_server.py, on fastco,
in its own process).  What is timed is one ``run`` command: every task does
its share of requests and every answer is checked.  The clients stay up
(connected, warmed up) for the module, and take turns round by round.  The
client process and the server each have a core of this 2-core machine.
Each entry also records the CPU time the client process spent per
operation (extra_info["cpu_ns"]), which the load of a shared machine
disturbs less than the wall time: bench/report.py tabulates both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import https_server
from bench.conftest import FASTCO_IMPLS, ClientProcess, clients_per_impl, record_cpu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import realservers  # noqa: E402  (tests/realservers.py: the same servers the tests use)

ROOT = Path(__file__).resolve().parent.parent
IMPLS = [*FASTCO_IMPLS, "gevent"]
TASKS = 100
#: kind -> operations per task per measured call (a smoke run does 1/20)
OPS = {"redis": 200, "requests": 20, "urllib3": 50}
#: measured rounds of each implementation (a smoke run does one)
ROUNDS = 15


class Client(ClientProcess):
    """A bench/net_client.py process for one library, driven line by line."""

    def __init__(self, impl: str) -> None:
        args = [sys.executable, "-m", "bench.net_client"]
        if impl == "gevent":
            args.append("gevent")
        else:
            args += ["fastco", "--backend", impl.split("-", 1)[1]]
        super().__init__(args, cwd=ROOT)

    def command(self, line: str) -> str:
        answer = self.exchange(line)
        if not answer.startswith("ok"):
            self.close()
            raise AssertionError(f"client answered {answer!r} to {line!r} "
                                 f"(exit status {self.proc.returncode})")
        return answer


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(redis port, https port, CA file), the servers running for the module."""
    skip = realservers.RedisServer.missing()
    if skip:
        pytest.skip(skip)
    with https_server.servers(tmp_path_factory.mktemp("tls")) as ports:
        yield ports


@pytest.fixture(scope="module")
def clients(servers):
    """The client process of each library, connected to the servers and
    warmed up (one untimed run of each kind), kept for the whole module."""
    redis_port, https_port, ca = servers

    def make(impl: str) -> Client:
        client = Client(impl)
        client.command(f"redis {redis_port} {TASKS}")
        client.command(f"https {https_port} {ca} {TASKS}")
        return client

    yield from clients_per_impl(make)


# The implementations take turns round by round (impl varies fastest), so
# that the load of this shared machine weighs on all of them alike;
# bench/report.py takes the median of each implementation's rounds.
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rnd", range(ROUNDS))
@pytest.mark.parametrize("kind", list(OPS))
def test_net(benchmark, clients, kind: str, rnd: int, impl: str) -> None:
    if benchmark.disabled and rnd > 0:
        pytest.skip("smoke run (--benchmark-disable): one round")
    per_task = OPS[kind] // (20 if benchmark.disabled else 1)
    ops = per_task * TASKS
    benchmark.group = {"redis": "redis-setget", "requests": "https-requests",
                       "urllib3": "https-urllib3"}[kind] + f"-{TASKS}-tasks"
    benchmark.extra_info.update(impl=impl, ops=ops, round=rnd)
    client = clients(impl)
    answers: list[str] = []
    benchmark.pedantic(lambda: answers.append(client.command(f"run {kind} {per_task}")),
                       rounds=1, iterations=1)
    assert len(answers) == 1 and answers[0].split()[:2] == ["ok", str(ops)], answers
    record_cpu(benchmark, float(answers[0].split()[2]), ops)
