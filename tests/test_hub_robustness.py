"""Misuse and odd timing must give clear exceptions, never a crash: each
case runs in its own process, so that a crash fails the test rather than
the suite.  (Found by review; see the commit that added this file.)"""

from __future__ import annotations

import pytest

from conftest import run_python


def run_ok(code: str) -> str:
    proc = run_python(code=code, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.parametrize("use", ["schedule", "unschedule", "wait", "call_later",
                                 "join", "kill", "tsafe"])
def test_a_destroyed_hub_raises_instead_of_crashing(use: str) -> None:
    out = run_ok(f"""
import fastco
from fastco.hub import get_hub
h = get_hub()
t = fastco.spawn(fastco.sleep, 10)
fastco.sleep(0)
h.destroy()
use = {use!r}
try:
    if use == "schedule":
        h.schedule(fastco.getcurrent())
    elif use == "unschedule":
        h.unschedule(fastco.getcurrent())
    elif use == "wait":
        h.wait(fastco.getcurrent(), 0.1)
    elif use == "call_later":
        h.call_later(0.1, print)
    elif use == "join":
        t.join(0.1)
    elif use == "kill":
        t.kill(block=False)
    elif use == "tsafe":
        h.run_callback_threadsafe(print, 1)   # dropped: nobody to call back
    print("no error")
except RuntimeError as exc:
    print("RuntimeError", exc)
fastco.sleep(0)                                # a new hub serves the thread
print("alive")
""")
    assert out.splitlines()[-1] == "alive"
    assert "RuntimeError the hub is closed" in out or "no error" in out


def test_thread_pool_job_ending_after_its_hub_is_destroyed() -> None:
    out = run_ok("""
import time, fastco
from fastco._threadpool import run_in_thread
from fastco.hub import get_hub
t = fastco.spawn(run_in_thread, time.sleep, 0.2)
fastco.sleep(0.05)
get_hub().destroy()
time.sleep(0.4)                  # the worker calls back into the closed hub
print(fastco.spawn(run_in_thread, lambda: 42).get(timeout=5))   # pool still works
""")
    assert out.split() == ["42"]


def test_timer_added_by_a_finalizer_during_timer_allocation() -> None:
    """A collection inside the timer allocation runs a finalizer that adds a
    timer: the heap must stay consistent (it overflowed once)."""
    out = run_ok("""
import gc, fastco
from fastco.hub import get_hub
h = get_hub()
noop = lambda arg: None
for _ in range(63):
    h.call_later(100, noop)
class Cyc:
    def __del__(self):
        h.call_later(100, noop)
gc.collect()
gc.disable()
c = Cyc(); c.me = c; del c
gc.set_threshold(1)
gc.enable()
h.call_later(100, noop)
gc.set_threshold(700)
for _ in range(2000):
    h.call_later(100, noop)
print(h._core.ntimers)
""")
    assert int(out.split()[-1]) >= 2064


def test_select_poller_refuses_fds_it_cannot_watch() -> None:
    out = run_ok("""
import os, fastco
from fastco import hub as hubmod
h = hubmod.Hub("select")
hubmod.set_hub(h)
r, w = os.pipe()
big = os.dup2(r, 1500)
try:
    fastco.wait_read(big, timeout=0.1)
except ValueError as exc:
    print("ValueError", "FD_SETSIZE" in str(exc))
os.write(w, b"x")
fastco.wait_read(r, timeout=1)        # the poller still serves small fds
print("small fd ok")
""")
    assert out.split() == ["ValueError", "True", "small", "fd", "ok"]


def test_huge_fd_number_fails_without_allocating_a_huge_table() -> None:
    out = run_ok("""
import resource, fastco
try:
    fastco.wait_read(100_000_000, timeout=0.1)
except OSError as exc:
    print("OSError", exc.errno)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")
    lines = out.split()
    assert lines[:2] == ["OSError", "9"]
    assert int(lines[2]) < 200          # MiB: the table did not grow to 4 GiB


def test_destroy_from_a_task_is_refused_and_leaves_the_hub_whole() -> None:
    out = run_ok("""
import fastco
from fastco.hub import get_hub
h1 = get_hub()
def task():
    try:
        h1.destroy()
    except RuntimeError:
        print("refused")
    fastco.sleep(0.01)
    print("same hub" if get_hub() is h1 else "second hub")
fastco.spawn(task).join(5)
""")
    assert out.split("\n")[:2] == ["refused", "same hub"]
