"""Monkey-patched stdlib code against gevent, in the same run.

    pytest bench/test_bench_monkey.py --benchmark-only
    python -m bench.report --run --pytest-args bench/test_bench_monkey.py

Each library patches a fresh interpreter of its own (patching is for the
whole process), which then runs the same client code (bench/monkey_client.py)
one round at a time on request: the benchmark times a round trip to that
process, so both sides pay the same few microseconds of pipe per round of
ROUNDTRIPS operations.  The client processes stay up for the module and the
libraries take turns round by round (fastco once per backend; gevent is
skipped when it is not installed), so that the load of this shared machine
weighs on all of them alike; bench/report.py takes the median of each one's
rounds, of the wall time and of the client's CPU time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.conftest import FASTCO_IMPLS, ClientProcess, clients_per_impl, record_cpu

CLIENT = Path(__file__).resolve().parent / "monkey_client.py"
IMPLS = [*FASTCO_IMPLS, "gevent"]
ROUNDTRIPS = 5000
#: measured rounds of each implementation (a smoke run does one)
ROUNDS = 50
#: rounds each client runs, untimed, before its first measured one
WARMUP = 5


class Client(ClientProcess):
    """A bench/monkey_client.py process patched by one library."""

    def __init__(self, impl: str) -> None:
        env = dict(os.environ)
        if impl == "gevent":
            lib = "gevent"
        else:
            lib = "fastco"
            env["FASTCO_BACKEND"] = impl.split("-", 1)[1]
        super().__init__([sys.executable, str(CLIENT), lib, str(ROUNDTRIPS)], env=env)

    def one_round(self) -> float:
        """One round; the CPU time (seconds) the client spent on it."""
        answer = self.exchange("go").split()
        assert answer[:1] == ["done"], "the client died"
        return float(answer[1])


@pytest.fixture(scope="module")
def clients(request):
    """The client process of each library, kept for the whole module; a
    timed run warms each up first."""
    warmup = 0 if request.config.getoption("benchmark_disable", False) else WARMUP

    def make(impl: str) -> Client:
        client = Client(impl)
        for _ in range(warmup):
            client.one_round()
        return client

    yield from clients_per_impl(make)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rnd", range(ROUNDS))
def test_monkey_queue_pingpong(benchmark, clients, rnd: int, impl: str) -> None:
    """A round trip main thread -> Thread -> main thread through two queue.Queues."""
    if benchmark.disabled and rnd > 0:
        pytest.skip("smoke run (--benchmark-disable): one round")
    benchmark.group = "monkey_queue_pingpong"
    benchmark.extra_info.update(impl=impl, ops=ROUNDTRIPS, round=rnd)
    client = clients(impl)
    cpu: list[float] = []
    benchmark.pedantic(lambda: cpu.append(client.one_round()), rounds=1, iterations=1)
    record_cpu(benchmark, cpu[0], ROUNDTRIPS)
