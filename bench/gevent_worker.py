"""A process that runs gevent workloads on request, on whichever greenlet
``import greenlet`` gives it (fastco's when FASTCO_AS_GREENLET=1).

    python -m bench.gevent_worker WORKLOAD OPS
    python -m bench.gevent_worker probe     # only the ready line, then exit

gevent takes its greenlet once per process, and greenlet and fastco-as-
greenlet cannot share one, so bench/test_bench_gevent.py compares the two
through a worker each: it writes one line to stdin per round, the worker
runs OPS operations of WORKLOAD and answers ``done CPU``, CPU being the
CPU seconds the process spent on them.  The pipe round trip costs both the
same, and is small beside OPS operations.

The first line the worker prints is ``ready IMPL MODE``: IMPL is ``fastco``
or ``greenlet`` (what ``import greenlet`` gave), MODE ``compiled`` when
gevent's compiled modules run, ``pure`` when they do not (PURE_PYTHON=1).

Workloads (an operation each):
  sleep0       TASKS greenlets each loop on ``gevent.sleep(0)``: one round
               trip through the hub
  sleep0-deep  the same, each greenlet suspended under DEPTH calls of
               callable objects (``__call__`` written in Python, so each call
               goes through C: CPython's slot for calling an instance), as a
               stack of middleware or dispatchers makes
  spawn        ``gevent.spawn`` of a greenlet that returns at once, and its
               join (in batches of BATCH, ``gevent.joinall``)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import gevent
import greenlet

TASKS = 10
DEPTH = 100
BATCH = 100


class Layer:
    """One level of a call chain: calling it calls the next one."""

    __slots__ = ("inner",)

    def __init__(self, inner: Callable[[int], None]) -> None:
        self.inner = inner

    def __call__(self, n: int) -> None:
        self.inner(n)


def sleeper(n: int) -> None:
    for _ in range(n):
        gevent.sleep(0)


def chain(depth: int) -> Callable[[int], None]:
    """sleeper under `depth` Layer calls."""
    call: Callable[[int], None] = sleeper
    for _ in range(depth):
        call = Layer(call)
    return call


def nothing() -> None:
    pass


def workload(name: str, ops: int) -> Callable[[], None]:
    """A function that runs `ops` operations of workload `name`."""
    if name in ("sleep0", "sleep0-deep"):
        run = chain(DEPTH if name == "sleep0-deep" else 0)
        per_task = ops // TASKS

        def sleeps() -> None:
            gevent.joinall([gevent.spawn(run, per_task) for _ in range(TASKS)],
                           raise_error=True)
        return sleeps
    if name == "spawn":
        def spawns() -> None:
            for _ in range(ops // BATCH):
                gevent.joinall([gevent.spawn(nothing) for _ in range(BATCH)], raise_error=True)
        return spawns
    raise SystemExit(f"unknown workload {name!r}")


def compiled() -> bool:
    """Whether gevent's compiled modules run (not PURE_PYTHON)."""
    return any(name.startswith("gevent._gevent_c") for name in list(sys.modules))


def ready() -> None:
    impl = "fastco" if getattr(greenlet, "__fastco__", False) else "greenlet"
    print(f"ready {impl} {'compiled' if compiled() else 'pure'}", flush=True)


def main(name: str, ops: int) -> None:
    rounds = workload(name, ops)
    rounds()                                                    # warm up
    ready()
    for _ in sys.stdin:
        cpu = time.process_time()
        rounds()
        sys.stdout.write(f"done {time.process_time() - cpu:.9f}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1] == "probe":
        import gevent.server  # noqa: F401 - what bench/peers/gevent_server.py runs
        ready()
    else:
        main(sys.argv[1], int(sys.argv[2]))
