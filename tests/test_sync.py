"""Event, AsyncResult, Queue, Lock, Semaphore, BoundedSemaphore, Pool."""

from __future__ import annotations

import time

import pytest

import fastco
from fastco import (
    AsyncResult,
    BoundedSemaphore,
    Empty,
    Event,
    Full,
    Lock,
    Pool,
    Queue,
    Semaphore,
    Timeout,
)

pytestmark = pytest.mark.usefixtures("hub")


# -- Event -------------------------------------------------------------------

def test_event_wakes_every_waiter() -> None:
    ev = Event()
    woke = []
    tasks = [fastco.spawn(lambda i=i: woke.append((i, ev.wait()))) for i in range(3)]
    fastco.sleep(0.01)
    assert woke == [] and not ev.is_set()
    ev.set()
    fastco.joinall(tasks, timeout=1)
    assert woke == [(0, True), (1, True), (2, True)]
    assert ev.wait() is True
    ev.clear()
    assert ev.wait(0.01) is False


def test_event_wait_timeout_leaves_no_waiter() -> None:
    ev = Event()
    start = time.monotonic()
    assert ev.wait(0.02) is False
    assert time.monotonic() - start >= 0.02
    assert not ev._waiters
    with pytest.raises(ValueError):
        ev.wait(-1)


# -- AsyncResult -------------------------------------------------------------

def test_async_result_value_exception_and_timeout() -> None:
    r = AsyncResult()
    fastco.spawn_later(0.01, r.set, 5)
    assert r.get(timeout=2) == 5 and r.successful() and r.ready()
    e = AsyncResult()
    fastco.spawn(e.set_exception, KeyError("k"))
    with pytest.raises(KeyError):
        e.get()
    assert isinstance(e.exception, KeyError) and not e.successful()
    pending = AsyncResult()
    with pytest.raises(Timeout):
        pending.get(timeout=0.01)
    with pytest.raises(Timeout):
        pending.get(block=False)
    assert pending.wait(0.01) is None


def test_async_result_as_a_task_link() -> None:
    r = AsyncResult()
    fastco.spawn(lambda: "done").rawlink(r)
    assert r.get(timeout=1) == "done"


# -- Queue -------------------------------------------------------------------

def test_queue_fifo_and_blocking_get() -> None:
    q = Queue()
    got = []
    t = fastco.spawn(lambda: got.extend([q.get(), q.get()]))
    fastco.sleep(0.01)
    assert got == []
    q.put(1)
    q.put(2)
    t.join(1)
    assert got == [1, 2]
    for i in range(5):
        q.put(i)
    assert [q.get() for _ in range(5)] == list(range(5))


def test_queue_empty_and_full() -> None:
    q = Queue(maxsize=1)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.01)
    q.put_nowait("a")
    assert q.full() and q.qsize() == 1
    with pytest.raises(Full):
        q.put_nowait("b")
    start = time.monotonic()
    with pytest.raises(Full):
        q.put("b", timeout=0.02)
    assert time.monotonic() - start >= 0.02
    assert not q._putters and not q._getters
    with pytest.raises(ValueError):
        Queue(-1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)


def test_queue_blocked_putter_resumes_when_room_is_made() -> None:
    q = Queue(maxsize=2)
    q.put(0)
    q.put(1)
    t = fastco.spawn(q.put, 2)
    fastco.sleep(0.01)
    assert not t.ready()
    assert q.get() == 0
    t.join(1)
    assert t.successful()
    assert [q.get(), q.get()] == [1, 2]


def test_queue_fairness_getters_and_putters_in_arrival_order() -> None:
    q = Queue(maxsize=1)
    got = []
    getters = [fastco.spawn(lambda i=i: got.append((i, q.get()))) for i in range(4)]
    fastco.sleep(0.01)
    for item in "abcd":
        q.put(item)
    fastco.joinall(getters, timeout=1)
    assert got == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]

    q.put("first")
    putters = [fastco.spawn(q.put, i) for i in range(4)]
    fastco.sleep(0.01)
    assert [q.get() for _ in range(5)] == ["first", 0, 1, 2, 3]
    fastco.joinall(putters, timeout=1)


def test_queue_item_handed_to_a_waiter_is_not_stolen() -> None:
    q = Queue()
    got = []
    t = fastco.spawn(lambda: got.append(q.get()))
    fastco.sleep(0)
    q.put("x")
    with pytest.raises(Empty):  # the item already belongs to the waiter
        q.get_nowait()
    t.join(1)
    assert got == ["x"]


def test_queue_item_given_back_when_its_getter_is_killed() -> None:
    q = Queue()
    first = fastco.spawn(q.get)
    second = fastco.spawn(q.get)
    fastco.sleep(0)
    first.kill(block=False)  # the kill is queued first...
    q.put("item")            # ...then the item is handed to `first`: it goes back
    second.join(1)
    assert second.value == "item" and isinstance(first.value, fastco.GreenletExit)
    third = fastco.spawn(q.get)
    fastco.sleep(0)
    third.kill(block=False)
    q.put("again")           # no other getter: back into the queue
    fastco.sleep(0.01)
    assert q.get_nowait() == "again"


def test_queue_handover_and_kill_in_fifo_order() -> None:
    # The other way round, the getter runs first: it got the item.
    q = Queue()
    first = fastco.spawn(q.get)
    fastco.sleep(0)
    q.put("item")
    first.kill(block=False)
    first.join(1)
    assert first.value == "item"


def test_queue_iteration_and_peek() -> None:
    q = Queue()
    for x in (1, 2, StopIteration):
        q.put(x)
    assert q.peek() == 1 and q.qsize() == 3
    assert list(q) == [1, 2]


# -- Lock and semaphores ------------------------------------------------------

def test_lock_excludes_and_is_fifo() -> None:
    lock = Lock()
    inside = []
    order = []

    def worker(i):
        with lock:
            inside.append(i)
            assert len(inside) == 1
            order.append(i)
            fastco.sleep(0.001)
            inside.remove(i)

    tasks = [fastco.spawn(worker, i) for i in range(5)]
    fastco.joinall(tasks, timeout=2)
    assert all(t.successful() for t in tasks)
    assert order == list(range(5))
    assert not lock.locked()


def test_lock_errors_and_timeouts() -> None:
    lock = Lock()
    with pytest.raises(RuntimeError):
        lock.release()
    assert lock.acquire()
    assert lock.acquire(blocking=False) is False
    start = time.monotonic()
    assert lock.acquire(timeout=0.02) is False
    assert time.monotonic() - start >= 0.02
    assert not lock._waiters
    lock.release()


def test_lock_handed_to_a_killed_waiter_is_passed_on() -> None:
    lock = Lock()
    lock.acquire()
    first = fastco.spawn(lock.acquire)
    second = fastco.spawn(lock.acquire)
    fastco.sleep(0)
    first.kill(block=False)   # queued before...
    lock.release()            # ...the hand-over to `first`: `second` gets it
    second.join(1)
    assert second.value is True and lock.locked()
    lock.release()
    assert not lock.locked()


def test_semaphores() -> None:
    sem = Semaphore(2)
    assert sem.acquire() and sem.acquire()
    assert not sem.acquire(blocking=False)
    t = fastco.spawn(sem.acquire)
    fastco.sleep(0)
    sem.release()
    t.join(1)
    assert t.value is True and sem.counter == 0
    sem.release()
    sem.release()
    sem.release()  # a plain Semaphore may go above its start value
    assert sem.counter == 3
    b = BoundedSemaphore(1)
    b.acquire()
    b.release()
    with pytest.raises(ValueError):
        b.release()
    with pytest.raises(ValueError):
        Semaphore(-1)


# -- Pool --------------------------------------------------------------------

def test_pool_limits_concurrency() -> None:
    pool = Pool(3)
    running = []
    peak = []

    def work(i):
        running.append(i)
        peak.append(len(running))
        fastco.sleep(0.002)
        running.remove(i)
        return i * i

    tasks = [pool.spawn(work, i) for i in range(10)]
    assert pool.join(timeout=2)
    assert max(peak) == 3
    assert [t.value for t in tasks] == [i * i for i in range(10)]
    assert len(pool) == 0 and pool.free_count() == 3


def test_pool_join_raise_error_timeout_covers_the_whole_call() -> None:
    pool = Pool(2)
    pool.spawn(fastco.sleep, 5)
    start = time.monotonic()
    assert pool.join(timeout=0.5, raise_error=True) is False
    # joinall used to wait the timeout, then the pool's Event waited it again.
    assert 0.5 <= time.monotonic() - start < 0.9
    with pytest.raises(ValueError):
        pool.join(timeout=-1, raise_error=True)
    pool.kill(timeout=1)


def test_pool_map_apply_imap_and_kill() -> None:
    pool = Pool(2)
    assert pool.map(lambda x: x + 1, range(5)) == [1, 2, 3, 4, 5]
    assert pool.apply(divmod, (7, 2)) == (3, 1)
    assert sorted(pool.imap_unordered(lambda x: -x, range(4))) == [-3, -2, -1, 0]
    sleepers = [pool.spawn(fastco.sleep, 5) for _ in range(2)]
    assert pool.full() and pool.free_count() == 0
    blocked = fastco.spawn(pool.spawn, fastco.sleep, 0)
    fastco.sleep(0.01)
    assert not blocked.ready()  # waits for a free slot
    pool.kill(timeout=1)
    blocked.join(1)
    assert all(t.dead for t in sleepers) and blocked.successful()
    assert pool.join(timeout=1)
    with pytest.raises(ValueError):
        Pool(0)
