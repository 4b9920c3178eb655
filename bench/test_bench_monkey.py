"""Monkey-patched stdlib code against gevent, in the same run.

    pytest bench/test_bench_monkey.py --benchmark-only
    python -m bench.report --run --pytest-args bench/test_bench_monkey.py

Each library patches a fresh interpreter of its own (patching is for the
whole process), which then runs the same client code (bench/monkey_client.py)
one round at a time on request: the benchmark times a round trip to that
process, so both sides pay the same few microseconds of pipe per round of
ROUNDTRIPS operations.  fastco runs once per backend; gevent is skipped when
it is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.conftest import FASTCO_IMPLS

CLIENT = Path(__file__).resolve().parent / "monkey_client.py"
ROUNDTRIPS = 5000


@pytest.fixture(params=[*FASTCO_IMPLS, "gevent"])
def patched_client(request):
    """A running client patched by the library named (fastco-<backend> or gevent)."""
    env = dict(os.environ)
    if request.param == "gevent":
        pytest.importorskip("gevent")
        lib = "gevent"
    else:
        lib = "fastco"
        env["FASTCO_BACKEND"] = request.param.split("-", 1)[1]
    proc = subprocess.Popen([sys.executable, str(CLIENT), lib, str(ROUNDTRIPS)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.benchmark(group="monkey_queue_pingpong")
def test_monkey_queue_pingpong(benchmark, patched_client) -> None:
    """A round trip main thread -> Thread -> main thread through two queue.Queues."""
    benchmark.extra_info["ops"] = ROUNDTRIPS
    proc = patched_client

    def one_round() -> None:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "done\n", "the client died"

    benchmark.pedantic(one_round, rounds=50, warmup_rounds=5)
