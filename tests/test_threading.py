"""fastco.threading: Condition, Event, Semaphore, Barrier between tasks and OS threads;
RealThread.  In-process, without monkey patching (the patched stdlib:
tests/test_monkey_thread.py)."""

from __future__ import annotations

import _thread as std_thread
import threading as std

import pytest

import fastco
from conftest import run_threads_and_tasks
from fastco import threading as co

pytestmark = pytest.mark.usefixtures("hub")


def test_condition_wait_notify_between_tasks() -> None:
    cond = co.Condition()
    items: list[int] = []
    got: list[int] = []

    def consumer() -> None:
        with cond:
            cond.wait_for(lambda: items)
            got.append(items.pop())

    tasks = [fastco.spawn(consumer) for _ in range(3)]
    fastco.sleep(0)
    assert len(cond._waiters) == 3
    with cond:
        items.extend([1, 2])
        cond.notify(2)
    fastco.sleep(0)
    assert sorted(got) == [1, 2] and len(cond._waiters) == 1
    with cond:
        items.append(3)
        cond.notify_all()
    fastco.joinall(tasks, timeout=5)
    assert sorted(got) == [1, 2, 3] and not cond._waiters
    with cond:
        assert cond.wait(0.01) is False and cond.wait(0) is False
    assert not cond._waiters
    with pytest.raises(RuntimeError):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.wait()


def test_condition_over_a_lock_and_a_killed_waiter_passes_the_notify_on() -> None:
    cond = co.Condition(co.Lock())
    woke: list[str] = []

    def waiter(name: str) -> None:
        with cond:
            cond.wait()
            woke.append(name)

    a, b = fastco.spawn(waiter, "a"), fastco.spawn(waiter, "b")
    fastco.sleep(0)
    a.kill(block=False)          # queued before the notify reaches a
    with cond:
        cond.notify()
    fastco.joinall([a, b], timeout=5)
    assert woke == ["b"]


def test_event_semaphores_barrier() -> None:
    ev = co.Event()
    assert isinstance(ev, std.Event)
    waiters = [fastco.spawn(ev.wait) for _ in range(3)]
    fastco.sleep(0)
    ev.set()
    fastco.joinall(waiters, timeout=5)
    assert [t.get() for t in waiters] == [True] * 3
    ev.clear()
    assert ev.wait(0.01) is False

    sem = co.Semaphore(2)
    inside: list[int] = []
    peak = [0]

    def limited() -> None:
        with sem:
            inside.append(1)
            peak[0] = max(peak[0], len(inside))
            fastco.sleep(0.001)
            inside.pop()

    fastco.joinall([fastco.spawn(limited) for _ in range(6)], timeout=5)
    assert peak[0] == 2
    bounded = co.BoundedSemaphore(1)
    with pytest.raises(ValueError):
        bounded.release()
    assert bounded.acquire() and not bounded.acquire(timeout=0.01)

    # Barrier(n): every task passes only once all n are inside: they overlap.
    barrier = co.Barrier(4)
    passed = fastco.joinall([fastco.spawn(barrier.wait) for _ in range(4)], timeout=5)
    assert sorted(t.get() for t in passed) == [0, 1, 2, 3]
    lonely = fastco.spawn(barrier.wait)
    fastco.sleep(0)
    barrier.abort()
    lonely.join()
    assert isinstance(lonely.exception, std.BrokenBarrierError)


def test_a_nan_timeout_is_refused() -> None:
    # As the stdlib from 3.14 on, on every version: on 3.13 Condition.wait(nan)
    # returned False at once, and a Semaphore, Barrier or Queue waiting with
    # it retried forever.
    from fastco import queue as coq
    nan = float("nan")
    cond = co.Condition()

    with cond:
        with pytest.raises(ValueError):
            cond.wait(nan)
        assert cond._is_owned()                  # the lock was taken again
    full = coq.Queue(1)
    full.put(1)
    for wait in (lambda: co.Event().wait(nan), lambda: co.Semaphore(0).acquire(True, nan),
                 lambda: co.Barrier(2).wait(nan), lambda: coq.Queue().get(True, nan),
                 lambda: full.put(2, True, nan), lambda: coq.SimpleQueue().get(True, nan)):
        with pytest.raises(ValueError):
            wait()


def test_event_set_by_an_os_thread_wakes_a_task_and_vice_versa() -> None:
    to_task, to_thread = co.Event(), co.Event()
    seen = []

    def in_thread() -> None:
        to_task.set()
        seen.append(to_thread.wait(10))   # waits in the OS thread's own hub

    worker = co.RealThread(target=in_thread)
    worker.start()
    assert fastco.spawn(to_task.wait, 10).get(timeout=10) is True
    to_thread.set()
    worker.join(10)
    assert seen == [True] and not worker.is_alive()


def test_realthread_runs_in_an_os_thread_and_joins_cooperatively() -> None:
    ticks: list[int] = []
    release = std_thread.allocate_lock()
    release.acquire()
    where = []

    def body() -> None:
        where.append(std_thread.get_ident())
        release.acquire()          # a blocking call in the OS thread

    def ticker() -> None:
        while True:
            ticks.append(1)
            if len(ticks) == 3:
                release.release()  # only once the hub went on while joining
            fastco.sleep(0.001)

    worker = co.RealThread(target=body)
    worker.start()
    tick = fastco.spawn(ticker)
    worker.join(timeout=10)
    tick.kill()
    assert not worker.is_alive() and len(ticks) >= 3
    assert where and where[0] != std_thread.get_ident()
    worker2 = co.RealThread(target=release.acquire)
    worker2.start()
    worker2.join(0.01)                # times out: still alive
    assert worker2.is_alive()
    release.release()
    worker2.join(10)
    assert not worker2.is_alive()
    with pytest.raises(RuntimeError):
        co.RealThread(target=print).join()


def test_lock_and_condition_under_contention_from_tasks_and_os_threads() -> None:
    """Tasks and OS threads hammer one Lock, and pass items through a
    Condition with short timeouts (so that timeouts race with notifies):
    every increment counts, every item arrives, nothing hangs."""
    lock = co.Lock()
    cond = co.Condition(co.Lock())
    counter = [0]
    items: list[int] = []
    got: list[int] = []
    per_worker = 300

    def hammer() -> None:
        for i in range(per_worker):
            with lock:
                value = counter[0]
                if i % 7 == 0:
                    fastco.sleep(0)        # a switch while holding it
                counter[0] = value + 1

    def produce(base: int) -> None:
        for i in range(per_worker):
            with cond:
                items.append(base + i)
                cond.notify()

    def consume(n: int) -> None:
        while n:
            with cond:
                while not items:
                    cond.wait(0.0005)      # mostly times out, sometimes notified
                got.append(items.pop())
                n -= 1

    run_threads_and_tasks(
        [(hammer,), (hammer,), (produce, 10_000), (consume, per_worker)],
        [(hammer,), (hammer,), (produce, 20_000), (consume, per_worker)])
    assert counter[0] == 4 * per_worker
    assert sorted(got) == sorted([10_000 + i for i in range(per_worker)]
                                 + [20_000 + i for i in range(per_worker)])
    assert not lock._waiters and not cond._waiters and not lock.locked()
