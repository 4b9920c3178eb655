"""gevent on fastco's switch against gevent on greenlet, the same run.

    pytest bench/test_bench_gevent.py --benchmark-only
    python -m bench.report --run --pytest-args bench/test_bench_gevent.py
    PURE_PYTHON=1 pytest bench/test_bench_gevent.py ...   # gevent without its C modules

gevent takes its greenlet once per process, so each implementation runs in
processes of its own: "gevent" is gevent on the real greenlet, "fastco-asm"
and "fastco-ucontext" the same gevent with FASTCO_AS_GREENLET=1 (fastco's
switch, each backend).  The switch workloads run in bench/gevent_worker.py
(its docstring says what each does); the benchmark times a round trip to
the worker, which runs OPS operations and answers.  The echo benchmark runs
gevent's StreamServer echo (bench/peers/gevent_server.py) under the C load
generator.  Each process checks it got the greenlet asked for, and both get
gevent in the same mode: its compiled modules (on fastco they need
greenlet's C API, issue 12; until then fastco's entries skip), or with
PURE_PYTHON=1 in the environment, its Python code on both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench import echo_bench
from bench.conftest import FASTCO_IMPLS, time_requests

IMPLS = ["gevent", *FASTCO_IMPLS]
OPS = 2000
WORKLOADS = ["sleep0", "sleep0-deep", "spawn"]
ECHO = {"100x64": 60_000}    # scenario -> requests per measured call
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODE = "pure" if os.environ.get("PURE_PYTHON") else "compiled"
#: Ends the benchmark groups of a PURE_PYTHON run, which never mix with the others.
SUFFIX = "-pure" if MODE == "pure" else ""


def impl_env(impl: str) -> dict[str, str]:
    """The environment of a process that runs gevent on `impl`."""
    env = dict(os.environ)
    env.pop("FASTCO_AS_GREENLET", None)
    if impl.startswith("fastco"):
        env.update(FASTCO_AS_GREENLET="1", FASTCO_BACKEND=impl.split("-", 1)[1])
    return env


def check_ready(impl: str, line: str, stderr: str = "") -> None:
    """Fail unless a worker's ready line says it runs gevent on `impl`, in
    MODE; skip fastco where gevent's compiled modules cannot run on it yet."""
    expected = ["ready", "fastco" if impl.startswith("fastco") else "greenlet", MODE]
    if line.split() == expected:
        return
    if impl.startswith("fastco") and MODE == "compiled" and "_C_API" in stderr:
        pytest.skip("gevent's compiled modules need greenlet's C API on fastco (issue 12); "
                    "PURE_PYTHON=1 compares gevent's Python code on both")
    raise RuntimeError(f"gevent on {impl}: {line!r} (expected {' '.join(expected)})\n"
                       f"{stderr[-3000:]}")


class Worker:
    """A bench.gevent_worker process serving one workload."""

    def __init__(self, impl: str, workload: str) -> None:
        self.workload = workload
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.gevent_worker", workload, str(OPS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=ROOT, env=impl_env(impl), text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.stdin.close()
            stderr = self.proc.stderr.read()
            self.proc.wait()
            check_ready(impl, line, stderr)
        try:
            check_ready(impl, line)
        except BaseException:
            self.close()
            raise

    def round(self) -> None:
        """One round: OPS operations in the worker."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline() != "done\n":
            raise RuntimeError(f"the worker failed: {self.proc.stderr.read()[-3000:]}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stderr.close()
        self.proc.stdout.close()


@pytest.fixture(scope="module", params=WORKLOADS)
def workers(request) -> Iterator[dict[str, Worker | str]]:
    """A worker per implementation for one workload, alive for all of its
    benchmarks (an implementation that cannot run: the reason it skips)."""
    pytest.importorskip("gevent")
    pytest.importorskip("greenlet")
    started: dict[str, Worker | str] = {}
    try:
        for impl in IMPLS:
            try:
                started[impl] = Worker(impl, request.param)
            except pytest.skip.Exception as exc:
                started[impl] = str(exc)
        yield started
    finally:
        for w in started.values():
            if isinstance(w, Worker):
                w.close()


@pytest.mark.parametrize("impl", IMPLS)
def test_gevent_switch(benchmark, workers, impl) -> None:
    """OPS operations of one workload of bench/gevent_worker.py."""
    worker = workers[impl]
    if isinstance(worker, str):
        pytest.skip(worker)
    benchmark.group = f"gevent-{worker.workload}{SUFFIX}"
    benchmark.extra_info.update(impl=impl, ops=OPS, mode=MODE)
    rounds = 1 if benchmark.disabled else 15
    benchmark.pedantic(worker.round, rounds=rounds, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("scenario", list(ECHO))
@pytest.mark.parametrize("impl", IMPLS)
def test_gevent_echo(benchmark, loadgen, impl: str, scenario: str) -> None:
    """gevent's StreamServer echo under the load generator: time per request
    (extra_info["rps"]: requests per second)."""
    pytest.importorskip("gevent")
    probe = subprocess.run([sys.executable, "-m", "bench.gevent_worker", "probe"],
                           capture_output=True, text=True, cwd=ROOT, env=impl_env(impl))
    check_ready(impl, probe.stdout, probe.stderr)
    env_args = [f"{k}={v}" for k, v in impl_env(impl).items()
                if k in ("FASTCO_AS_GREENLET", "FASTCO_BACKEND")]
    argv = ["env", "-u", "FASTCO_AS_GREENLET", *env_args, *echo_bench.SERVERS["gevent"]]
    n = ECHO[scenario] // (50 if benchmark.disabled else 1)
    benchmark.group = f"gevent-echo-{scenario}{SUFFIX}"
    benchmark.extra_info.update(impl=impl, ops=n, mode=MODE)
    with echo_bench.running_server(f"gevent on {impl}", argv, None) as srv:
        time_requests(benchmark, loadgen, srv.port, scenario, n, rounds=5)
    if not benchmark.disabled:
        benchmark.extra_info["rps"] = n / benchmark.stats.stats.median
