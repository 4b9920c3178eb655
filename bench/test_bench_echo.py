"""Echo servers under the C load generator, as pytest-benchmark entries.

Each benchmark starts one server (fastco with each backend, and the peers
that are installed: gevent, asyncio streams, uvloop streams and protocol),
then times the load generator doing a fixed number of requests (loadgen
-n): time per request is the inverse of the rate at that concurrency, and
with one connection it is the round-trip latency.  Every echoed byte is
checked; a mismatch fails the benchmark.  The full table with p99 latency
and CPU use comes from ``python -m bench.echo_bench``.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from bench import echo_bench

SERVERS = {
    "fastco-asm": "fastco",
    "fastco-ucontext": "fastco-ucontext",
    "gevent": "gevent",
    "asyncio": "asyncio",
    "uvloop": "uvloop-protocol",
}

#: scenario -> requests per measured call (full run; a smoke run does 1/50)
SCENARIOS = {"100x64": 60_000, "1x64": 5_000, "50x16k": 20_000}


@pytest.fixture(params=list(SERVERS), scope="module")
def server(request):
    """A running echo server: (implementation name, echo_bench.Server)."""
    name = SERVERS[request.param]
    skip = echo_bench.probe(name)
    if skip:
        pytest.skip(skip)
    with echo_bench.running_server(name, echo_bench.SERVERS[name], None) as srv:
        yield request.param, srv


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_echo(benchmark, loadgen, server, scenario: str) -> None:
    impl, srv = server
    sc = echo_bench.parse_scenario(scenario)
    n = SCENARIOS[scenario] // (50 if benchmark.disabled else 1)
    benchmark.group = f"echo-{scenario}"
    benchmark.extra_info.update(impl=impl, ops=n)
    cmd = [str(loadgen), "-H", echo_bench.HOST, "-p", str(srv.port), "-c", str(sc.conns),
           "-s", str(sc.size), "-w", "0", "-d", "60", "-n", str(n)]
    results = []

    def run() -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, f"loadgen exit {proc.returncode}: {proc.stderr}"
        results.append(json.loads(proc.stdout.splitlines()[-1]))

    benchmark.pedantic(run, rounds=1 if benchmark.disabled else 3, iterations=1)
    last = results[-1]
    assert last["mismatches"] == 0 and last["errors"] == 0, last
    assert last["requests"] >= n, last
    benchmark.extra_info.update(p50_us=last["latency_us"]["p50"],
                                p99_us=last["latency_us"]["p99"])
