"""Garbage collection, killing and threads: how greenlets end.

A suspended greenlet that loses its last reference gets GreenletExit thrown
in (its finally blocks run, its stack goes back to the pool); when a thread
exits, its suspended greenlets are killed on that thread before it goes.
"""

from __future__ import annotations

import gc
import threading

import pytest

import fastco
from conftest import run_python
from fastco import GreenletExit, getcurrent, greenlet


def in_use() -> int:
    return fastco.stack_stats()["in_use"]


def test_dropped_suspended_greenlet_runs_its_finally() -> None:
    log = []

    def run():
        try:
            getcurrent().parent.switch()
        except GreenletExit:
            log.append("exit")
            raise
        finally:
            log.append("finally")

    before = in_use()
    g = greenlet(run)
    g.switch()
    assert in_use() == before + 1
    del g
    assert log == ["exit", "finally"]
    assert in_use() == before


def test_kill_on_dealloc_comes_back_to_the_deleter() -> None:
    order = []

    def run():
        try:
            getcurrent().parent.switch()
        finally:
            order.append("child finally")

    def owner():
        g = greenlet(run)
        g.switch()
        del g
        order.append("owner continues")

    greenlet(owner).switch()
    assert order == ["child finally", "owner continues"]


def test_greenlet_that_swallows_exit_is_kept_alive(capfd) -> None:
    """As greenlet does: it complains and keeps the greenlet (no crash)."""
    state = {}

    def stubborn():
        while True:
            try:
                getcurrent().parent.switch()
            except GreenletExit:
                state["caught"] = state.get("caught", 0) + 1
                if state["caught"] > 1:
                    return

    g = greenlet(stubborn)
    g.switch()
    ref_holder = [g]
    del g
    ref_holder.pop()
    gc.collect()
    assert state["caught"] == 1
    assert "GreenletExit did not kill" in capfd.readouterr().err


def test_cycle_through_unstarted_and_dead_greenlets_is_collected() -> None:
    import weakref

    g = greenlet(lambda: None)
    g.cycle = g
    ref = weakref.ref(g)
    del g
    gc.collect()
    assert ref() is None

    g = greenlet(lambda: getcurrent())
    g.switch()
    g.cycle = g
    ref = weakref.ref(g)
    del g
    gc.collect()
    assert ref() is None


def test_greenlet_dropped_on_another_thread_is_killed_on_its_own() -> None:
    log = []
    holder = []

    def run():
        try:
            getcurrent().parent.switch()
        finally:
            log.append(threading.get_ident())

    g = greenlet(run)
    g.switch()
    holder.append(g)
    del g
    t = threading.Thread(target=holder.clear)   # last reference dies there
    t.start()
    t.join()
    assert log == []                              # not run on the wrong thread
    greenlet(lambda: None).switch()               # our next switch kills it
    assert log == [threading.get_ident()]


def test_thread_exit_kills_suspended_greenlets_on_that_thread() -> None:
    log = []
    kept = []
    before = in_use()

    def body(i):
        def run():
            try:
                getcurrent().parent.switch()
            finally:
                log.append((i, threading.get_ident() == tid))

        tid = threading.get_ident()
        g = greenlet(run)
        g.switch()
        kept.append(g)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(log) == [(i, True) for i in range(4)]
    assert all(g.dead and not g for g in kept)
    assert in_use() == before


def test_four_threads_ping_pong_concurrently() -> None:
    results = {}

    def body(i):
        main = getcurrent()
        count = 0

        def partner():
            while True:
                main.switch()

        p = greenlet(partner)
        for _ in range(20000):
            p.switch()
            count += 1
            assert getcurrent() is main
        results[i] = count

    threads = [threading.Thread(target=body, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: 20000 for i in range(4)}


def test_main_greenlet_of_finished_thread_is_dead() -> None:
    box = []
    t = threading.Thread(target=lambda: box.append(getcurrent()))
    t.start()
    t.join()
    (main,) = box
    assert main.dead and not main
    g = greenlet(lambda: None)
    g.parent = main                 # allowed, as in greenlet: g moves to that thread
    with pytest.raises(fastco.error, match="exited"):
        g.switch()


def test_thread_exit_with_a_hub_and_waiting_tasks() -> None:
    """A thread that leaves tasks asleep in its hub: they are killed as the
    thread exits (their finally blocks run there) and every stack returns."""
    log = []
    before = in_use()

    def body(i):
        def sleeper():
            try:
                fastco.sleep(100)
            finally:
                log.append(i)

        for _ in range(3):
            fastco.spawn(sleeper)
        fastco.sleep(0.01)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert sorted(log) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert in_use() == before


CHILD_OF_A_PARENT_MOVED_AWAY = """
import threading
import fastco
from fastco import greenlet

ready, done = threading.Event(), threading.Event()
other = {}

def t2():
    other["main"] = fastco.getcurrent()
    ready.set()
    done.wait(10)

th = threading.Thread(target=t2)
th.start()
ready.wait(10)
a = greenlet(lambda *args: "a ran")
def b_run():
    a.parent = other["main"]   # a has not started: it may move to thread 2
    return "b"
b = greenlet(b_run, parent=a)
try:
    print("result", b.switch())
except fastco.error as exc:
    print("error", str(exc).splitlines()[0])
print("b dead", b.dead, "a started", bool(a) or a.dead)
done.set()
th.join(10)
"""


def test_finishing_child_of_a_parent_moved_to_another_thread() -> None:
    """b finishes after its unstarted parent moved to another thread: the
    outcome cannot go there (it used to start it on the wrong thread and
    crash); this thread's main greenlet gets fastco.error instead."""
    proc = run_python(code=CHILD_OF_A_PARENT_MOVED_AWAY, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "error Cannot switch to a different thread",
        "b dead True a started False",
    ]
