"""Resources come back: loops of coroutine lifecycles leave RSS and the
stack pool flat.  Each runs in a fresh process so that other tests'
garbage does not blur the measurement."""

from __future__ import annotations

import json

from conftest import PROC_STATS, run_python

MEASURE = PROC_STATS + r"""
import gc, json, os, sys, threading
import fastco
from fastco import greenlet, getcurrent

def noop():
    pass

def suspend_deep(n=5):
    if n:
        return suspend_deep(n - 1)
    getcurrent().parent.switch()

def cycle_finish():
    greenlet(noop).switch()

def cycle_killed():
    g = greenlet(suspend_deep)
    g.switch()
    del g

def cycle_thrown():
    g = greenlet(suspend_deep)
    g.switch()
    try:
        g.throw(ValueError)
    except ValueError:
        pass

def cycle_thread():
    kept = []
    def body():
        g = greenlet(suspend_deep)
        g.switch()
        kept.append(g)
    t = threading.Thread(target=body)
    t.start()
    t.join()

cycle = globals()["cycle_" + sys.argv[1]]
n = int(sys.argv[2])
for _ in range(n // 10):
    cycle()
gc.collect()
r0, f0 = rss(), fds()
for _ in range(n):
    cycle()
gc.collect()
print(json.dumps({"rss0": r0, "rss1": rss(), "fds0": f0, "fds1": fds(),
                  "stats": fastco.stack_stats()}))
"""


def measure(kind: str, n: int) -> dict:
    proc = run_python(kind, str(n), code=MEASURE)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def check_flat(m: dict) -> None:
    assert m["rss1"] <= m["rss0"] * 1.10, m
    assert m["fds1"] == m["fds0"], m
    stats = m["stats"]
    assert stats["in_use"] == 0, stats
    assert stats["hot"] <= stats["hot_limit"], stats
    assert stats["slots"] <= 2 * stats["hot_limit"], stats    # reused, not carved anew


def test_100k_create_run_finish_cycles_leave_rss_flat() -> None:
    check_flat(measure("finish", 100_000))


def test_killed_suspended_coroutines_leave_rss_flat() -> None:
    check_flat(measure("killed", 50_000))


def test_thrown_into_coroutines_leave_rss_flat() -> None:
    check_flat(measure("thrown", 50_000))


def test_threads_with_suspended_coroutines_leave_rss_flat() -> None:
    check_flat(measure("thread", 2_000))


GARBAGE = PROC_STATS + r"""
import gc, json, sys
from fastco import greenlet

def make_garbage(i):
    # Containers in a cycle, dropped on this coroutine's stack: the
    # collector frees them here, each through the deallocation trashcan.
    junk = [[i, [i]] for _ in range(40)]
    junk.append(junk)
    del junk
    if i % 100 == 0:
        gc.collect()

def driver(n):
    # Everything, the measurement too, on coroutine stacks: nothing runs on
    # the thread's own stack meanwhile (where the trashcan would drain).
    for i in range(n // 10):
        greenlet(make_garbage).switch(i)
    gc.collect()
    r0, b0 = rss(), sys.getallocatedblocks()
    for i in range(n):
        greenlet(make_garbage).switch(i)
    gc.collect()
    return {"rss0": r0, "rss1": rss(), "blocks0": b0, "blocks1": sys.getallocatedblocks()}

print(json.dumps(greenlet(driver).switch(int(sys.argv[1]))))
"""


def test_cyclic_garbage_of_10k_coroutines_is_freed() -> None:
    """10,000 coroutines each drop a reference cycle of 80 containers (about
    6 KB): RSS and the allocator's block count stay flat.  On 3.14+ this
    needs each coroutine stack announced to CPython: otherwise the trashcan
    takes every coroutine stack for an exhausted one and parks all those
    containers on its deferred list for good (CPython gh-157519)."""
    proc = run_python("10000", code=GARBAGE)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout.splitlines()[-1])
    assert m["blocks1"] - m["blocks0"] < 10_000, m       # a leak would be 800,000
    assert m["rss1"] - m["rss0"] < 8 << 20, m            # and about 60 MB
