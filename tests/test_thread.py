"""fastco._thread: cooperative locks, get_ident and local per task, threads as tasks.

In-process, without monkey patching (fastco._thread is usable directly);
the patched stdlib is tested in tests/test_monkey_thread.py.
"""

from __future__ import annotations

import _thread as std_thread
import gc
import time
import weakref

import pytest

import fastco
from fastco import _thread
from fastco.threading import RealThread

pytestmark = pytest.mark.usefixtures("hub")


# -- LockType ----------------------------------------------------------------

def test_lock_basics_match_the_stdlib() -> None:
    lock = _thread.allocate_lock()
    assert isinstance(lock, _thread.LockType)
    assert not lock.locked() and "unlocked" in repr(lock)
    assert lock.acquire() is True
    assert lock.locked() and repr(lock).startswith("<locked fastco._thread.LockType")
    assert lock.acquire(False) is False
    lock.release()
    with lock as got:
        assert got is True and lock.locked()
    assert not lock.locked()
    real = std_thread.allocate_lock()
    for bad in [(False, 1), (True, -2), (True, 1e100), (True, "x")]:
        with pytest.raises(Exception) as ours:
            lock.acquire(*bad)
        with pytest.raises(Exception) as theirs:
            real.acquire(*bad)
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    assert not lock._waiters


def test_lock_excludes_between_tasks_and_any_task_may_release() -> None:
    lock = _thread.LockType()
    inside, log = [], []

    def worker(i: int) -> None:
        with lock:
            inside.append(i)
            assert len(inside) == 1
            fastco.sleep(0.001)
            inside.remove(i)
            log.append(i)

    fastco.joinall([fastco.spawn(worker, i) for i in range(5)], timeout=5)
    assert sorted(log) == list(range(5))
    # Taken in one task, released in another (threading.Lock allows it).
    lock.acquire()
    waiter = fastco.spawn(lock.acquire)
    fastco.spawn(lock.release).join()
    assert waiter.get(timeout=5) is True and lock.locked()
    lock.release()


def test_lock_timeouts_and_non_blocking_leave_no_waiter() -> None:
    lock = _thread.LockType()
    lock.acquire()
    assert fastco.spawn(lock.acquire, True, 0.01).get(timeout=5) is False
    assert fastco.spawn(lock.acquire, True, 0).get(timeout=5) is False
    assert fastco.spawn(lock.acquire, False).get(timeout=5) is False
    assert not lock._waiters
    later = fastco.spawn(lock.acquire, True, 5)
    fastco.sleep(0)
    lock.release()
    assert later.get(timeout=5) is True


def test_a_spin_on_acquire_false_lets_the_holder_run() -> None:
    lock = _thread.LockType()
    lock.acquire()
    fastco.spawn(lock.release)
    spins = 0
    while not lock.acquire(False):   # the failed try yields once
        spins += 1
        assert spins < 100
    assert lock.locked()


def test_a_killed_waiter_passes_the_wake_up_on() -> None:
    lock = _thread.LockType()
    lock.acquire()
    b = fastco.spawn(lock.acquire)
    c = fastco.spawn(lock.acquire)
    fastco.sleep(0)
    b.kill(block=False)      # the kill is queued first...
    lock.release()           # ...then b is woken: it dies, c gets the lock
    assert c.get(timeout=5) is True
    assert b.dead and not lock._waiters


def test_a_deadlock_in_the_main_greenlet_raises_loopexit_in_a_subprocess() -> None:
    from conftest import run_python
    proc = run_python(code=(
        "import fastco, fastco._thread as t\n"
        "lock = t.allocate_lock(); lock.acquire()\n"
        "try:\n    lock.acquire()\nexcept fastco.LoopExit as e:\n    print('LoopExit', e)\n"),
        timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("LoopExit"), proc.stdout + proc.stderr


def test_lock_arguments_by_keyword_and_bad_ones() -> None:
    # acquire/release run in C (csrc/pyglue/hublock.c) when nobody waits:
    # the keyword forms and the errors are those of the Python side's.
    lock = _thread.LockType()
    assert lock.acquire(blocking=True, timeout=-1) is True
    assert lock.acquire(timeout=-1.0, blocking=False) is False
    assert lock.acquire(False, -1) is False and lock.locked_lock()
    lock.release_lock()
    assert lock.acquire_lock(True, 5.0) is True
    lock.__exit__(None, None, None)
    for args, kwargs in [((True, -1, 3), {}), ((), {"wait": True}),
                         ((True,), {"blocking": True})]:
        with pytest.raises(TypeError):
            lock.acquire(*args, **kwargs)
    with pytest.raises(TypeError, match="takes no arguments"):
        _thread.LockType(1)
    assert not lock.locked() and not lock._waiters


def test_locks_in_reference_cycles_are_collected() -> None:
    # The C bases hold their waiters (records that hold tasks), an RLock its
    # LockType and owner: they take part in the cycle collection.
    import weakref
    refs = []
    for _ in range(50):
        lock, rlock = _thread.LockType(), _thread.RLock()
        lock._waiters.append([lock])          # lock -> its waiters -> lock
        rlock._owner = [rlock]                # rlock -> its owner -> rlock
        rlock._block._waiters.append([rlock])
        refs += [weakref.ref(lock), weakref.ref(rlock)]
        del lock, rlock
    gc.collect()
    assert not [r() for r in refs if r() is not None]


# -- RLock -------------------------------------------------------------------

def test_rlock_is_reentrant_and_owned_by_one_task() -> None:
    r = _thread.RLock()
    with r:
        with r:
            assert r._is_owned() and r._recursion_count() == 2
        other = fastco.spawn(r.release)
        other.join()
        assert isinstance(other.exception, RuntimeError)
        assert fastco.spawn(r.acquire, True, 0.01).get(timeout=5) is False
        state = r._release_save()
        assert not r.locked() and not r._is_owned()
        r._acquire_restore(state)
        assert r._recursion_count() == 1
    assert not r.locked() and "owner=0" in repr(r)
    with pytest.raises(RuntimeError, match="un-acquired"):
        r.release()
    t = fastco.spawn(lambda: (r.acquire(), fastco.sleep(0.01), r.release()))
    fastco.sleep(0)
    assert not r._is_owned() and r.locked()
    assert r.acquire(timeout=5) and r._is_owned()
    real = std_thread.RLock()
    real.acquire()
    for bad in [(False, 1), (True, -2), (True, "x")]:   # owned: checked all the same
        with pytest.raises(Exception) as ours:
            r.acquire(*bad)
        with pytest.raises(Exception) as theirs:
            real.acquire(*bad)
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))
    assert r._recursion_count() == 1
    r.release()
    t.join()


def test_rlock_arguments_subclasses_and_a_holder_in_another_task() -> None:
    class Named(_thread.RLock):
        def __init__(self, name: str) -> None:
            self.name = name

    r = Named("pool")
    assert r.name == "pool"
    assert r.acquire(blocking=True) and r.acquire(True, -1) and r.acquire(timeout=1)
    assert r._recursion_count() == 3
    for _ in range(3):
        r.__exit__(None, None, None)
    assert not r.locked() and r._owner is None
    with pytest.raises(TypeError):
        r.acquire(True, -1, 0)
    with pytest.raises(TypeError, match="takes no arguments"):
        _thread.RLock(1)
    holder = fastco.spawn(lambda: (r.acquire(), fastco.sleep(0.05), r.release()))
    fastco.sleep(0)
    assert r.acquire(blocking=False) is False and r.acquire(timeout=0.001) is False
    with pytest.raises(RuntimeError, match="un-acquired"):
        r.release()
    assert r.acquire() and r._is_owned()    # waits for the holder
    r.release()
    holder.join()
    assert not r._block._waiters


# -- OS threads --------------------------------------------------------------

def test_an_os_thread_waits_for_a_lock_a_task_holds() -> None:
    lock = _thread.LockType()
    lock.acquire()
    got = []
    worker = RealThread(target=lambda: got.append(
        (lock.acquire(), std_thread.get_ident())))
    worker.start()
    while not lock._waiters:     # the OS thread waits in its own hub
        fastco.sleep(0.001)
    assert got == []
    lock.release()
    worker.join(timeout=10)
    assert got and got[0][0] is True and got[0][1] != std_thread.get_ident()
    lock.release()


def test_a_task_waits_for_a_lock_an_os_thread_holds_while_the_hub_runs() -> None:
    lock = _thread.LockType()
    held = std_thread.allocate_lock()
    held.acquire()
    ticks = []

    def holder() -> None:
        lock.acquire()
        held.release()
        while len(ticks) < 3:        # released only once the hub went on ticking
            time.sleep(0.001)
        lock.release()

    def ticker() -> None:
        while True:
            ticks.append(1)
            fastco.sleep(0.001)

    worker = RealThread(target=holder)
    worker.start()
    held.acquire()                   # (the OS thread holds the lock now)
    tick = fastco.spawn(ticker)
    assert fastco.spawn(lock.acquire).get(timeout=10) is True
    assert len(ticks) >= 3
    tick.kill()
    worker.join(timeout=10)
    assert not worker.is_alive()


# -- identity ----------------------------------------------------------------

def test_get_ident_per_task_and_the_threads_own_in_the_main_greenlet() -> None:
    assert _thread.get_ident() == std_thread.get_ident()
    assert _thread.get_native_id() == std_thread.get_native_id()
    idents = [fastco.spawn(_thread.get_ident) for _ in range(3)]
    fastco.joinall(idents)
    values = [t.get() for t in idents]
    assert len(set(values)) == 3 and std_thread.get_ident() not in values
    assert values[0] == id(idents[0])


def test_start_new_thread_runs_a_task(capsys) -> None:
    seen = []
    ident = _thread.start_new_thread(lambda a, b=0: seen.append((a, b, _thread.get_ident())),
                                     (1,), {"b": 2})
    fastco.sleep(0)
    assert seen == [(1, 2, ident)]
    _thread.start_new_thread(lambda: (_ for _ in ()).throw(SystemExit(3)), ())
    _thread.start_new_thread(lambda: 1 / 0, ())
    fastco.sleep(0)
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "SystemExit" not in err
    with pytest.raises(TypeError):
        _thread.start_new_thread(print, [1])
    with pytest.raises(TypeError):
        _thread.start_new_thread(5, ())


# -- local -------------------------------------------------------------------

def test_local_attributes_are_per_task() -> None:
    loc = _thread._local()
    loc.x = "main"

    def task(i: int) -> tuple[object, object]:
        before = getattr(loc, "x", None)
        loc.x = i
        fastco.sleep(0.001)
        return before, loc.x

    tasks = [fastco.spawn(task, i) for i in range(3)]
    fastco.joinall(tasks)
    assert [t.get() for t in tasks] == [(None, 0), (None, 1), (None, 2)]
    assert loc.x == "main" and loc.__dict__ == {"x": "main"}
    del loc.x
    with pytest.raises(AttributeError):
        loc.x  # noqa: B018
    with pytest.raises(TypeError):
        _thread._local(1)


def test_local_subclass_init_descriptors_and_cleanup() -> None:
    class Counter(_thread._local):
        made = 0

        def __init__(self, start: int) -> None:
            type(self).made += 1
            self.value = start

        @property
        def double(self) -> int:
            return self.value * 2

        def bump(self) -> int:
            self.value += 1
            return self.value

    c = Counter(10)
    assert (c.value, c.double, c.bump()) == (10, 20, 11)
    t = fastco.spawn(lambda: (c.value, c.bump(), c.double))
    assert t.get(timeout=5) == (10, 11, 22)
    assert Counter.made == 2 and c.value == 11
    with pytest.raises(AttributeError):
        c.double = 3
    impl = object.__getattribute__(c, "_local__impl")
    del t
    gc.collect()
    assert len(impl.dicts) == 1      # the dead task's dict went with it

    # A task's attributes go when it ends, as a thread's do: also while its
    # Task object is kept, and when a value refers back to the task (which
    # kept the task, and all its attributes, alive for good).
    loc = _thread._local()
    impl = object.__getattribute__(loc, "_local__impl")

    def keeps_itself() -> None:
        loc.me = fastco.getcurrent()
        loc.payload = bytearray(1 << 16)

    kept, *others = [fastco.spawn(keeps_itself) for _ in range(4)]
    fastco.joinall([kept, *others], timeout=5)
    gone = [weakref.ref(t) for t in others]
    del others
    fastco.sleep(0)                                  # (the hub lets go of the last one)
    gc.collect()
    assert list(impl.dicts) == [id(fastco.getcurrent())]   # the main greenlet's only
    assert [r() for r in gone] == [None] * 3

    attempts = []

    class FailsFirst(_thread._local):
        def __init__(self) -> None:
            attempts.append(1)
            if len(attempts) == 2:   # the first run in a new task fails
                raise KeyError("init")
            self.ok = True

    f = FailsFirst()

    def use() -> object:
        with pytest.raises(KeyError):
            f.ok  # noqa: B018
        return f.ok                  # __init__ runs again, and succeeds

    assert fastco.spawn(use).get(timeout=5) is True and len(attempts) == 3
