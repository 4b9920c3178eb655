"""Fixtures for the benchmark suite: the implementations compared.

Each benchmark takes an `impl` fixture naming what it runs on: "greenlet"
or "gevent" (the peers) and "fastco-asm" / "fastco-ucontext" (fastco with
each backend).  Peers that are not installed are skipped.
"""

from __future__ import annotations

import gc
import json
import subprocess
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import fastco
import fastco.hub
from bench._build_loadgen import build_loadgen

FASTCO_IMPLS = [f"fastco-{b}" for b in fastco.available_backends()]


class ClientProcess:
    """A client program in a process of its own (each library patches a
    whole interpreter), driven by lines on its stdin, answering by lines."""

    def __init__(self, args: list[str], **popen: object) -> None:
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, **popen)  # type: ignore[call-overload]

    def exchange(self, line: str) -> str:
        """Send one line; the line it answers ('' if it died)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def record_cpu(benchmark, seconds: float, ops: int) -> None:
    """Record in the entry the CPU time a client process spent per
    operation (bench/report.py tabulates it beside the wall time)."""
    benchmark.extra_info["cpu_ns"] = seconds / ops * 1e9


def clients_per_impl(make: Callable[[str], ClientProcess]
                     ) -> Iterator[Callable[[str], ClientProcess]]:
    """The body of a module fixture: yields get(impl), which makes impl's
    client (``make(impl)``) on first use and then returns the same one, so
    that the implementations can take turns round by round; gevent is
    skipped where it is not installed.  Closes them all at the end."""
    made: dict[str, ClientProcess] = {}

    def get(impl: str) -> ClientProcess:
        if impl not in made:
            if impl == "gevent":
                pytest.importorskip("gevent")
            made[impl] = make(impl)
        return made[impl]

    try:
        yield get
    finally:
        for client in made.values():
            client.close()


def use_fastco_backend(name: str) -> types.ModuleType:
    """Switch fastco to the backend named in `name` ("fastco-asm", ...).

    A context is resumed only by the backend that made it, so the thread's
    hub (a suspended greenlet) and the coroutines of earlier benchmarks go
    first; the next get_hub() makes a new hub on the chosen backend."""
    backend = name.split("-", 1)[1]
    if fastco.backend() != backend:
        hub = fastco.hub.current_hub()
        if hub is not None:
            hub.destroy()
        gc.collect()
        fastco.set_backend(backend)
    return fastco


def greenlet_impl(name: str) -> types.SimpleNamespace:
    """The greenlet API of `name`: greenlet, getcurrent, GreenletExit."""
    if name == "greenlet":
        mod = pytest.importorskip("greenlet")
        return types.SimpleNamespace(name=name, greenlet=mod.greenlet,
                                     getcurrent=mod.getcurrent, GreenletExit=mod.GreenletExit)
    mod = use_fastco_backend(name)
    return types.SimpleNamespace(name=name, greenlet=mod.greenlet,
                                 getcurrent=mod.getcurrent, GreenletExit=mod.GreenletExit)


@pytest.fixture(params=["greenlet", *FASTCO_IMPLS])
def glet(request) -> types.SimpleNamespace:
    """A greenlet API: the greenlet package, or fastco with one backend."""
    return greenlet_impl(request.param)


@pytest.fixture(scope="session")
def loadgen() -> Path:
    """The load generator (bench/loadgen.c), compiled once, warnings as errors."""
    return build_loadgen()


def time_requests(benchmark, loadgen: Path, port: int, scenario: str, n: int,
                  rounds: int) -> dict:
    """Time the load generator making `n` requests of `scenario` (CONNSxSIZE)
    to the echo server on `port`, `rounds` times (once when timing is
    disabled); every echoed byte is checked.  The last round's result."""
    from bench import echo_bench

    sc = echo_bench.parse_scenario(scenario)
    cmd = [str(loadgen), "-H", echo_bench.HOST, "-p", str(port), "-c", str(sc.conns),
           "-s", str(sc.size), "-w", "0", "-d", "60", "-n", str(n)]
    results = []

    def run() -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, f"loadgen exit {proc.returncode}: {proc.stderr}"
        results.append(json.loads(proc.stdout.splitlines()[-1]))

    benchmark.pedantic(run, rounds=1 if benchmark.disabled else rounds, iterations=1)
    last = results[-1]
    assert last["mismatches"] == 0 and last["errors"] == 0, last
    assert last["requests"] >= n, last
    return last
