"""fastco.threading: Condition, Event, Semaphore, Barrier between tasks and OS threads;
RealThread.  In-process, without monkey patching (the patched stdlib:
tests/test_monkey_thread.py)."""

from __future__ import annotations

import _thread as std_thread
import contextlib
import itertools
import random
import textwrap
import threading as std

import pytest

import fastco
from conftest import run_python, run_threads_and_tasks
from fastco import queue as coq
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


@pytest.mark.parametrize("make_lock", [co.Lock, co.RLock], ids=["Lock", "RLock"])
def test_a_kill_while_a_timed_out_waiter_takes_the_lock_back_is_not_lost(make_lock) -> None:
    # The waiter's Timeout ends its wait; while it waits to take the lock
    # back, it is killed: it must die, not go on as if only timed out.
    cond = co.Condition(make_lock())
    timeout = fastco.Timeout(0.01)
    rounds = []

    def waiter() -> None:
        while True:                  # a loop that survives its Timeouts
            rounds.append(1)
            with contextlib.suppress(fastco.Timeout), timeout, cond:
                cond.wait()

    w = fastco.spawn(waiter)
    fastco.sleep(0)                  # w waits for a notify
    with cond:                       # held while w's Timeout fires
        for _ in range(1000):        # (bounded) until it fired
            if not timeout.pending:
                break
            fastco.sleep(0.005)
        w.kill(block=False)          # while w waits for the lock
        fastco.sleep(0)
    w.join(timeout=5)
    assert w.dead and rounds == [1] and not cond._lock.locked()


@pytest.mark.parametrize("make_lock", [co.Lock, co.RLock], ids=["Lock", "RLock"])
@pytest.mark.parametrize("stop", ["kill", "Timeout"])
def test_a_waiter_stopped_while_taking_the_lock_back_leaves_with_it(make_lock, stop) -> None:
    # A notified waiter takes the lock back before wait() returns or raises:
    # its ``with`` block releases it.  One killed (or whose Timeout fires)
    # while the notifier still holds the lock must wait for it all the same,
    # else it would release the notifier's Lock under it, or fail its RLock's
    # release with "cannot release un-acquired lock" instead of stopping.
    cond = co.Condition(make_lock())
    timeout = fastco.Timeout(0.01)

    def waiter() -> object:
        try:
            with timeout if stop == "Timeout" else contextlib.nullcontext():
                with cond:
                    cond.wait()
        except fastco.Timeout as exc:
            return exc
        return "notified"

    w = fastco.spawn(waiter)
    fastco.sleep(0)                  # w waits for a notify
    with cond:
        cond.notify()
        fastco.sleep(0)              # w is woken, and waits for the lock
        if stop == "kill":
            w.kill(block=False)
            fastco.sleep(0)
        for _ in range(1000):        # (bounded) until the Timeout fired in w
            if not timeout.pending:
                break
            fastco.sleep(0.005)
        assert not w.dead            # still waiting for the lock
        assert cond._is_owned()      # which is still the notifier's
    w.join(timeout=5)
    assert w.dead and not cond._lock.locked()   # it released the lock it took back
    assert w.exception is None                  # stopped as asked, nothing else
    if stop == "kill":
        assert isinstance(w.value, fastco.GreenletExit)
    else:
        assert w.value is timeout


def test_a_nan_timeout_is_refused_instead_of_spinning_forever() -> None:
    # The stdlib's Semaphore, Barrier and wait_for loop until "remaining <= 0",
    # never true for NaN, over a Condition.wait(NaN) that returned at once:
    # a spin without a switch, holding up every task.  In a fresh
    # interpreter, so that a regression fails instead of hanging.
    proc = run_python(code=textwrap.dedent("""
        from fastco import threading as co
        nan = float("nan")
        cond = co.Condition()
        cond.acquire()
        for call in (lambda: co.Semaphore(0).acquire(timeout=nan),
                     lambda: co.Barrier(2).wait(nan),
                     lambda: cond.wait_for(lambda: False, nan),
                     lambda: co.Event().wait(nan),
                     lambda: cond.wait(nan)):
            try:
                call()
            except ValueError as exc:
                print(exc)
    """), timeout=10)
    # The message is the stdlib lock's, as 3.14's own Condition.wait(NaN) gives.
    assert proc.stdout.splitlines() == ["Invalid value NaN (not a number)"] * 5, proc


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
    with pytest.raises(ValueError):   # as the stdlib's join (it waited for good)
        worker2.join(float("nan"))
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


def test_tasks_killed_and_timed_out_at_random_while_sharing_primitives_with_os_threads() -> None:
    """Tasks and two OS threads take a Lock, an RLock, a Condition's lock and
    a Semaphore (switching while they hold them) and pass items through a
    Queue(3) and a SimpleQueue, with short timeouts; meanwhile a killer
    kills tasks and each task runs under Timeouts that fire anywhere.
    Exclusion holds, no item is lost or got twice, and nothing is left
    waiting or held.  (A fixed seed; the interleaving still varies.)"""
    rnd = random.Random(1313)
    killed = []
    lock, rlock, cond = co.Lock(), co.RLock(), co.Condition(co.Lock())
    q, sq, sem = coq.Queue(3), coq.SimpleQueue(), co.BoundedSemaphore(2)
    ids = itertools.count()
    inside: dict[object, int] = {}
    put: list[int] = []
    got: list[int] = []
    broken: list[str] = []
    stop = False

    def held(what: object, limit: int = 1) -> None:
        # Counts who is inside `what` across one switch.
        inside[what] = inside.get(what, 0) + 1
        try:
            if inside[what] > limit:
                broken.append(f"{inside[what]} inside {what!r}")
            fastco.sleep(0)
        finally:
            inside[what] -= 1

    def work(r: random.Random, timeouts: list) -> None:
        while not stop:
            op = r.randrange(7)
            if op < 2:
                with (lock, rlock)[op]:
                    held(op)
            elif op == 2:
                with cond:
                    cond.wait(r.choice([0.001, 0.005]))
                    cond.notify(r.randrange(3))
                    held(cond)
            elif op == 3:
                with sem:
                    held(sem, 2)
            elif op == 4:
                item = next(ids)
                try:
                    if item % 2:
                        q.put(item, timeout=r.choice(timeouts))
                    else:
                        sq.put(item)
                    put.append(item)
                except coq.Full:
                    pass
            else:
                try:
                    got.append(q.get(timeout=r.choice(timeouts)) if op == 5
                               else sq.get(timeout=0.002))
                except coq.Empty:
                    pass

    def task(seed: int) -> None:
        r = random.Random(seed)
        while not stop:
            with contextlib.suppress(fastco.Timeout), fastco.Timeout(r.choice([0.0005, 0.005])):
                work(r, [None, 0.001, 0.01])

    def drain(source: coq.Queue | coq.SimpleQueue) -> None:
        with contextlib.suppress(coq.Empty):
            while True:
                got.append(source.get_nowait())

    threads = [co.RealThread(target=work, args=(random.Random(i), [0.001, 0.01]))
               for i in range(2)]
    for t in threads:
        t.start()
    tasks = [fastco.spawn(task, i) for i in range(8)]
    for _ in range(300):
        fastco.sleep(rnd.choice([0.001, 0.003]))
        i = rnd.randrange(len(tasks))
        tasks[i].kill(block=False)
        killed.append(tasks[i])
        tasks[i] = fastco.spawn(task, rnd.randrange(10**6))
    stop = True
    for t in threads:
        while t.is_alive():                  # (a put may wait for room)
            drain(q)
            t.join(0.01)
    fastco.killall(tasks, timeout=10)        # (a get without timeout may wait for good)
    assert all(t.dead for t in tasks + killed)   # no kill was lost
    drain(q)
    drain(sq)
    assert not broken, broken[:5]
    assert len(got) == len(set(got)) and sorted(got) == sorted(put)
    assert not (lock.locked() or rlock.locked() or cond._lock.locked()) and sem._value == 2
    assert not (lock._waiters or cond._waiters or sq._waiters or q.mutex._waiters
                or q.not_empty._waiters or q.not_full._waiters)
