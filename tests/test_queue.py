"""fastco.queue: the stdlib's queue classes between tasks and OS threads.
In-process, without monkey patching (the patched stdlib: tests/test_monkey_thread.py)."""

from __future__ import annotations

import queue as std
import textwrap

import pytest

import fastco
from conftest import run_python, run_threads_and_tasks
from fastco import queue as co

pytestmark = pytest.mark.usefixtures("hub")


def test_queue_classes_keep_the_stdlib_interface_and_order() -> None:
    for cls, order in [(co.Queue, [3, 1, 2]), (co.LifoQueue, [2, 1, 3]),
                       (co.PriorityQueue, [1, 2, 3])]:
        q = cls()
        assert isinstance(q, std.Queue)
        for item in (3, 1, 2):
            q.put(item)
        assert q.qsize() == 3 and not q.empty() and not q.full()
        assert [q.get(), q.get_nowait(), q.get(timeout=1)] == order
        with pytest.raises(std.Empty):
            q.get_nowait()
        with pytest.raises(std.Empty):
            q.get(timeout=0.01)
        with pytest.raises(ValueError):
            q.get(timeout=-1)
    assert co.Queue._plain and not co.LifoQueue._plain and not co.PriorityQueue._plain


def test_a_nan_timeout_is_refused_instead_of_spinning_forever() -> None:
    # The stdlib's timed get/put test "remaining <= 0" to stop: never true
    # for NaN, so they spin without a switch, holding up every task.  In a
    # fresh interpreter, so that a regression fails instead of hanging.
    proc = run_python(code=textwrap.dedent("""
        import fastco.queue as co
        nan = float("nan")
        full = co.Queue(1)
        full.put(0)
        def put_full(timeout):
            full.put(1, True, timeout)
        for call in (co.Queue().get, co.LifoQueue().get, put_full):
            try:
                call(timeout=nan)
            except ValueError as exc:
                print(exc)
    """), timeout=10)
    assert proc.stdout.splitlines() == ["'timeout' must be a non-negative number"] * 3, proc


def test_blocking_get_and_put_between_tasks() -> None:
    q = co.Queue(maxsize=2)
    got: list[int] = []
    consumer = fastco.spawn(lambda: [got.append(q.get()) for _ in range(5)])
    producer = fastco.spawn(lambda: [q.put(i) for i in range(5)])
    fastco.joinall([consumer, producer], timeout=5)
    assert got == [0, 1, 2, 3, 4]
    q.put(1)
    q.put(2)
    assert q.full()
    with pytest.raises(std.Full):
        q.put_nowait(3)
    with pytest.raises(std.Full):
        q.put(3, timeout=0.01)
    blocked = fastco.spawn(q.put, 3)
    fastco.sleep(0)
    assert not blocked.ready() and len(q.not_full._waiters) == 1
    assert q.get() == 1
    blocked.join(5)
    assert blocked.ready() and list(q.queue) == [2, 3]


def test_task_done_and_join() -> None:
    q = co.Queue()
    done: list[int] = []

    def worker() -> None:
        while True:
            item = q.get()
            fastco.sleep(0.001)
            done.append(item)
            q.task_done()

    workers = [fastco.spawn(worker) for _ in range(3)]
    for i in range(9):
        q.put(i)
    q.join()
    assert sorted(done) == list(range(9))
    with pytest.raises(ValueError):
        q.task_done()
    fastco.killall(workers)


def test_hooks_mutex_and_conditions_of_a_subclass() -> None:
    class Doubling(co.Queue):
        def _put(self, item: int) -> None:
            self.queue.append(item * 2)

    q = Doubling()
    assert not q._plain
    getter = fastco.spawn(q.get)
    fastco.sleep(0)
    q.put(21)
    assert getter.get(timeout=5) == 42
    # Code that uses the stdlib's attributes directly.
    q.put(1)
    with q.mutex:
        q.queue.clear()
    assert q.empty()

    def waits_on_the_condition() -> int:
        with q.not_empty:
            while not q._qsize():
                q.not_empty.wait()
            return q._get()

    custom = fastco.spawn(waits_on_the_condition)
    fastco.sleep(0)
    q.put(5)
    assert custom.get(timeout=5) == 10


@pytest.mark.skipif(not hasattr(std.Queue, "shutdown"), reason="Queue.shutdown is 3.13+")
def test_shutdown_wakes_getters_and_putters() -> None:
    q = co.Queue(1)
    getter = fastco.spawn(q.get)
    fastco.sleep(0)
    q.shutdown()
    getter.join(5)
    assert isinstance(getter.exception, std.ShutDown)
    with pytest.raises(std.ShutDown):
        q.put(1)


def test_simple_queue() -> None:
    q = co.SimpleQueue()
    getters = [fastco.spawn(q.get) for _ in range(3)]
    fastco.sleep(0)
    for i in range(3):
        q.put(i)
    fastco.joinall(getters, timeout=5)
    assert [g.get() for g in getters] == [0, 1, 2]
    q.put_nowait("x")
    assert q.qsize() == 1 and q.get_nowait() == "x" and q.empty()
    with pytest.raises(std.Empty):
        q.get(timeout=0.01)
    with pytest.raises(std.Empty):
        q.get(block=False)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    assert not q._waiters
    assert co.SimpleQueue[int] is not None


def test_a_killed_getter_passes_the_item_on() -> None:
    for q in (co.SimpleQueue(), co.Queue()):
        first, second = fastco.spawn(q.get), fastco.spawn(q.get)
        fastco.sleep(0)
        first.kill(block=False)
        q.put("item")
        assert second.get(timeout=5) == "item"
        assert isinstance(first.value, fastco.GreenletExit)


def test_os_threads_and_tasks_share_queues() -> None:
    for q in (co.Queue(maxsize=3), co.SimpleQueue()):
        results: list[int] = []

        def producer(q=q) -> None:
            for i in range(200):
                q.put(i)             # Queue(3) makes it wait in its own hub

        def consumer(q=q, results=results) -> None:
            for _ in range(200):
                results.append(q.get())

        run_threads_and_tasks([(producer,), (consumer,)], [(producer,), (consumer,)])
        assert sorted(results) == sorted(list(range(200)) * 2)
