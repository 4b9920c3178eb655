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

import pytest

from bench import echo_bench
from bench.conftest import time_requests

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
    n = SCENARIOS[scenario] // (50 if benchmark.disabled else 1)
    benchmark.group = f"echo-{scenario}"
    benchmark.extra_info.update(impl=impl, ops=n)
    last = time_requests(benchmark, loadgen, srv.port, scenario, n, rounds=3)
    benchmark.extra_info.update(p50_us=last["latency_us"]["p50"],
                                p99_us=last["latency_us"]["p99"])
