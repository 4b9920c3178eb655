"""Switching benchmarks: fastco (each backend) against greenlet.

Every benchmark runs a loop of OPS operations; per-operation times are the
reported time divided by `extra_info["ops"]`.  Run:

    pytest bench/ --benchmark-only
"""

from __future__ import annotations

import pytest

from fastco._core import lib

OPS = 10_000


def started_partner(glet):
    """A greenlet of `glet`, started, that switches back to the current one
    (the thread's main greenlet) each time it is switched to."""
    main = glet.getcurrent()

    def partner():
        while True:
            main.switch()

    g = glet.greenlet(partner)
    g.switch()
    return g


def bench_pingpong(benchmark, g) -> None:
    """Time OPS round trips into `g`, a started greenlet that switches back
    to its parent each time; then kill it."""
    sw = g.switch

    def loop():
        for _ in range(OPS):
            sw()

    benchmark(loop)
    g.throw()


def test_switch_pingpong(benchmark, glet) -> None:
    """Two coroutines switching back and forth: time per switch."""
    benchmark.group = "switch-pingpong"
    benchmark.extra_info["ops"] = 2 * OPS
    bench_pingpong(benchmark, started_partner(glet))


@pytest.mark.parametrize("depth", [1, 50, 200])
def test_switch_under_c_recursion(benchmark, glet, depth) -> None:
    """Ping-pong with the coroutine suspended under `depth` levels of C-level
    recursion (sorted() calling its key function): greenlet copies the stack
    it switches over, fastco does not."""
    benchmark.group = f"switch-depth-{depth}"
    benchmark.extra_info["ops"] = 2 * OPS
    main = glet.getcurrent()

    def descend(n):
        if n == 0:
            while True:
                main.switch()
        sorted([0, 1], key=lambda v: descend(n - 1) if v else 0)

    g = glet.greenlet(descend)
    g.switch(depth)
    bench_pingpong(benchmark, g)


def test_create_run_finish(benchmark, glet) -> None:
    """Create a coroutine, switch into it, run a no-op, finish."""
    benchmark.group = "create-run-finish"
    benchmark.extra_info["ops"] = OPS // 10
    make = glet.greenlet

    def noop():
        pass

    def loop():
        for _ in range(OPS // 10):
            make(noop).switch()

    benchmark(loop)


def bench_calls(benchmark, impl: str, fn) -> None:
    """Time OPS calls of fn() with no argument, as group call-cost."""
    benchmark.group = "call-cost"
    benchmark.extra_info["ops"] = OPS
    benchmark.extra_info["impl"] = impl

    def loop():
        for _ in range(OPS):
            fn()

    benchmark(loop)


def test_cffi_call_vs_native_call(benchmark) -> None:
    """The raw cost of a cffi call (it releases and retakes the GIL), for
    comparison with a switch: why the switch path is a native type."""
    bench_calls(benchmark, "cffi call", lib.fastco_backend_get)


def test_native_call(benchmark) -> None:
    """A native METH_NOARGS call (fastco.getcurrent), same loop."""
    import fastco

    bench_calls(benchmark, "native call", fastco.getcurrent)


def test_four_threads_pingpong(benchmark, glet) -> None:
    """Four threads ping-ponging at once: a switch must not hand the GIL
    away, or the threads would spend their time passing it around."""
    import threading

    benchmark.group = "threads-4-pingpong"
    benchmark.extra_info["ops"] = 4 * 2 * OPS

    def body():
        g = started_partner(glet)
        sw = g.switch
        for _ in range(OPS):
            sw()
        g.throw()

    def run_all():
        threads = [threading.Thread(target=body) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    benchmark(run_all)
