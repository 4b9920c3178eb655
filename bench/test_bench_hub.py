"""Benchmarks of the hub against gevent, run in the same process and session.

    pytest bench/test_bench_hub.py --benchmark-only                  # measure
    python -m bench.report --run --pytest-args "bench/test_bench_hub.py"  # ratios
    pytest bench/test_bench_hub.py --benchmark-disable               # smoke run

Each benchmark does N operations per round (extra_info["ops"]), the same N
for every implementation, so the ratio of the medians is the ratio of the
per-operation costs.  fastco runs once per backend.  The gevent entries are
skipped when gevent is not installed (it is imported only here).
"""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest

import fastco
import fastco.socket
from bench.conftest import FASTCO_IMPLS, use_fastco_backend

IMPLS = [*FASTCO_IMPLS, "gevent"]


def _fastco() -> SimpleNamespace:
    return SimpleNamespace(spawn=fastco.spawn, sleep=fastco.sleep, joinall=fastco.joinall,
                           Queue=fastco.Queue, Event=fastco.Event,
                           socketpair=fastco.socket.socketpair)


def _gevent() -> SimpleNamespace:
    gevent = pytest.importorskip("gevent")
    from gevent.event import Event
    from gevent.queue import Queue
    from gevent.socket import socketpair
    return SimpleNamespace(spawn=gevent.spawn, sleep=gevent.sleep, joinall=gevent.joinall,
                           Queue=Queue, Event=Event, socketpair=socketpair)


@pytest.fixture(params=IMPLS)
def impl(request) -> SimpleNamespace:
    if request.param == "gevent":
        return _gevent()
    use_fastco_backend(request.param)
    return _fastco()


def _nop() -> None:
    pass


@pytest.mark.benchmark(group="sleep0")
def test_sleep0(benchmark, impl) -> None:
    """1000 sleep(0) round trips through the hub, from the main greenlet."""
    benchmark.extra_info["ops"] = 1000
    sleep = impl.sleep

    def run():
        for _ in range(1000):
            sleep(0)

    benchmark(run)


@pytest.mark.benchmark(group="spawn_join_10k")
def test_spawn_join_10k(benchmark, impl) -> None:
    """spawn 10,000 no-op tasks, then joinall them."""
    benchmark.extra_info["ops"] = 10_000
    spawn, joinall = impl.spawn, impl.joinall

    def run():
        tasks = [spawn(_nop) for _ in range(10_000)]
        joinall(tasks)
        assert tasks[-1].dead

    # Collect before each round: 10,000 new objects otherwise trigger a
    # collection of whatever the session left, for one side or the other.
    def setup():
        gc.collect()

    benchmark.pedantic(run, setup=setup, rounds=10, warmup_rounds=1)


@pytest.mark.benchmark(group="queue_pingpong")
def test_queue_pingpong(benchmark, impl) -> None:
    """1000 round trips: main puts in one queue, a task answers in another."""
    n = 1000
    benchmark.extra_info["ops"] = n

    def run():
        q1, q2 = impl.Queue(), impl.Queue()

        def partner():
            for _ in range(n):
                q2.put(q1.get())

        t = impl.spawn(partner)
        for i in range(n):
            q1.put(i)
            q2.get()
        t.join()

    benchmark(run)


@pytest.mark.benchmark(group="event_wakeup")
def test_event_wakeup(benchmark, impl) -> None:
    """1000 round trips: main sets an Event a task waits on, and waits on another."""
    n = 1000
    benchmark.extra_info["ops"] = n

    def run():
        e1, e2 = impl.Event(), impl.Event()

        def partner():
            for _ in range(n):
                e1.wait()
                e1.clear()
                e2.set()

        t = impl.spawn(partner)
        for _ in range(n):
            e1.set()
            e2.wait()
            e2.clear()
        t.join()

    benchmark(run)


def _socket_pingpong(benchmark, impl, size: int, n: int) -> None:
    benchmark.extra_info["ops"] = n
    msg = b"x" * size

    def run():
        a, b = impl.socketpair()

        def echo():
            while True:
                data = b.recv(65536)
                if not data:
                    return
                b.sendall(data)

        t = impl.spawn(echo)
        for _ in range(n):
            a.sendall(msg)
            got = 0
            while got < size:
                got += len(a.recv(65536))
        a.close()
        t.join()
        b.close()

    benchmark(run)


@pytest.mark.benchmark(group="socketpair_pingpong_1B")
def test_socketpair_pingpong_1b(benchmark, impl) -> None:
    """200 round trips of 1 byte through an echo task, over a socketpair."""
    _socket_pingpong(benchmark, impl, 1, 200)


@pytest.mark.benchmark(group="socketpair_pingpong_64KiB")
def test_socketpair_pingpong_64kib(benchmark, impl) -> None:
    """50 round trips of 64 KiB through an echo task, over a socketpair."""
    _socket_pingpong(benchmark, impl, 65536, 50)
