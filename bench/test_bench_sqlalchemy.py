"""SQLAlchemy's asyncio extension on fastco against SQLAlchemy on greenlet.

    pytest bench/test_bench_sqlalchemy.py --benchmark-only
    python -m bench.report --run --pytest-args bench/test_bench_sqlalchemy.py

SQLAlchemy imports greenlet once per process, so each implementation runs
the same queries in a worker process of its own (bench/sqlalchemy_worker.py:
FASTCO_AS_GREENLET=1 for fastco, with each backend); the benchmark times a
round trip to the worker, which runs OPS operations on an in-memory SQLite
database and answers.  Both workers live through the whole session and are
timed in the same run, so the ratio of medians compares like with like.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.conftest import FASTCO_IMPLS

OPS = 200
WORKLOADS = ["core", "orm", "run-sync"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Worker:
    """A bench.sqlalchemy_worker process serving one workload."""

    def __init__(self, impl: str, workload: str) -> None:
        env = dict(os.environ)
        env.pop("FASTCO_AS_GREENLET", None)
        expected = "greenlet"
        if impl.startswith("fastco"):
            env.update(FASTCO_AS_GREENLET="1", FASTCO_BACKEND=impl.split("-", 1)[1])
            expected = "fastco"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sqlalchemy_worker", workload, str(OPS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, env=env, text=True)
        ready = self.proc.stdout.readline().split()
        if ready != ["ready", expected]:
            self.close()
            raise RuntimeError(f"worker for {impl}: {ready!r} (expected ready {expected})")

    def round(self) -> None:
        """One round: OPS operations in the worker."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline() != "done\n":
            raise RuntimeError("the worker failed")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module", params=WORKLOADS)
def workers(request) -> Iterator[dict[str, Worker]]:
    """A worker per implementation for one workload, alive for all of its
    benchmarks."""
    pytest.importorskip("sqlalchemy.ext.asyncio")
    pytest.importorskip("aiosqlite")
    pytest.importorskip("greenlet")
    started: dict[str, Worker] = {}
    try:
        for impl in ["greenlet", *FASTCO_IMPLS]:
            started[impl] = Worker(impl, request.param)
        yield started
    finally:
        for w in started.values():
            w.close()


@pytest.mark.parametrize("impl", ["greenlet", *FASTCO_IMPLS])
def test_sqlalchemy_asyncio(benchmark, workers, impl) -> None:
    """OPS queries (or run_sync calls) through SQLAlchemy's asyncio layer."""
    workload = next(k for k in WORKLOADS if workers[impl].proc.args[3] == k)
    benchmark.group = f"sqlalchemy-{workload}"
    benchmark.extra_info.update(impl=impl, ops=OPS)
    benchmark.pedantic(workers[impl].round, rounds=15, iterations=1, warmup_rounds=2)
