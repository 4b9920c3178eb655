"""Tasks: spawn, join, get, kill, links, joinall, killall, error reporting."""

from __future__ import annotations

import re
import time

import pytest

import fastco
from fastco import GreenletExit, Task, Timeout, getcurrent

pytestmark = pytest.mark.usefixtures("hub")


def test_spawn_runs_with_args_and_records_value(hub) -> None:
    t = fastco.spawn(lambda a, b=0: (a, b, getcurrent()), 1, b=2)
    assert isinstance(t, Task) and isinstance(t, fastco.greenlet)
    assert t.parent is hub
    assert not t.ready() and not t.dead and t
    a, b, cur = t.get()
    assert (a, b, cur) == (1, 2, t)
    assert t.ready() and t.dead and t.successful() and not t
    assert t.value == (1, 2, t) and t.exception is None


def test_repr_like_gevent() -> None:
    def f(n):
        return repr(getcurrent())

    t = fastco.spawn(f, 5)
    assert re.fullmatch(r"<Task at 0x[0-9a-f]+: f\(5\)>",
                        t.get())
    assert repr(t) == t.value  # kept once made


def test_an_exception_is_reported_once_and_does_not_affect_others(capsys) -> None:
    done = []

    def bad():
        fastco.sleep(0.001)
        raise ZeroDivisionError("oops")

    def good(i):
        fastco.sleep(0.002)
        done.append(i)

    tasks = [fastco.spawn(good, 0), fastco.spawn(bad), fastco.spawn(good, 1)]
    fastco.joinall(tasks, timeout=5)
    assert done == [0, 1]
    assert not tasks[1].successful()
    assert isinstance(tasks[1].exception, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        tasks[1].get()
    err = capsys.readouterr().err
    assert err.count("ZeroDivisionError: oops") == 1
    assert "Traceback" in err and "in bad" in err and "failed with ZeroDivisionError" in err


def test_join_timeout_and_get_timeout() -> None:
    t = fastco.spawn(fastco.sleep, 5)
    start = time.monotonic()
    t.join(0.02)
    assert time.monotonic() - start >= 0.02 and not t.ready()
    with pytest.raises(Timeout):
        t.get(timeout=0.01)
    with pytest.raises(Timeout):
        t.get(block=False)
    assert not t._links  # the timed-out joins left nothing behind
    t.kill()


def test_kill_a_sleeping_task() -> None:
    cleaned = []

    def sleeper():
        try:
            fastco.sleep(5)
        finally:
            cleaned.append(1)

    t = fastco.spawn(sleeper)
    fastco.sleep(0)
    t.kill()
    assert t.dead and t.ready() and t.successful()
    assert isinstance(t.value, GreenletExit)
    assert cleaned == [1]
    t.kill()  # killing a finished task does nothing


def test_kill_before_start_never_runs() -> None:
    ran = []
    t = fastco.spawn(ran.append, 1)
    t.kill()
    assert t.dead and t.ready() and isinstance(t.value, GreenletExit)
    fastco.sleep(0.01)
    assert ran == []


def test_kill_with_an_exception_and_without_blocking() -> None:
    t = fastco.spawn(fastco.sleep, 5)
    fastco.sleep(0)
    t.kill(ValueError("stop"), block=False)
    assert not t.ready()
    t.join(1)
    assert isinstance(t.exception, ValueError)


def test_links() -> None:
    seen = []
    t = fastco.spawn(lambda: 3)
    t.rawlink(lambda task: seen.append(("raw", task.value, getcurrent() is task)))
    t.link(lambda task: seen.append(("link", task.value, getcurrent() is not task)))
    t.link_value(lambda task: seen.append("value"))
    t.link_exception(lambda task: seen.append("exception"))
    removed = seen.append
    t.rawlink(removed)
    t.unlink(removed)
    t.join()
    fastco.sleep(0.01)
    assert sorted(map(str, seen)) == sorted(map(str, [("raw", 3, True), ("link", 3, True),
                                                      "value"]))
    late = []
    t.rawlink(late.append)  # already finished: called soon
    fastco.sleep(0)
    assert late == [t]


def test_joinall_variants() -> None:
    tasks = [fastco.spawn(fastco.sleep, d) for d in (0.01, 0.02, 5)]
    done = fastco.joinall(tasks, timeout=0.1)
    assert done == tasks[:2]
    assert fastco.joinall(tasks, count=2) == tasks[:2]
    fastco.killall(tasks)
    assert all(t.dead for t in tasks)

    def fail():
        fastco.sleep(0.01)
        raise KeyError("first")

    tasks = [fastco.spawn(fastco.sleep, 5), fastco.spawn(fail)]
    start = time.monotonic()
    with pytest.raises(KeyError):
        fastco.joinall(tasks, raise_error=True)
    assert time.monotonic() - start < 2
    fastco.killall(tasks, timeout=1)


def test_joinall_of_many() -> None:
    tasks = [fastco.spawn(lambda i=i: i * 2) for i in range(2000)]
    assert fastco.joinall(tasks) == tasks
    assert [t.value for t in tasks] == [i * 2 for i in range(2000)]


def test_killall_before_and_after_start() -> None:
    started = [fastco.spawn(fastco.sleep, 5) for _ in range(3)]
    fastco.sleep(0)
    fresh = [fastco.spawn(fastco.sleep, 5) for _ in range(3)]
    fastco.killall(started + fresh, timeout=1)
    assert all(t.dead and isinstance(t.value, GreenletExit) for t in started + fresh)


def test_spawn_later_and_subclass_run() -> None:
    class Doubler(Task):
        def _run(self, x):
            return 2 * x

    d = Doubler(None, 21)
    d.start()
    assert d.get() == 42
    start = time.monotonic()
    t = fastco.spawn_later(0.02, lambda: time.monotonic())
    assert t.get() - start >= 0.02
    ran = []
    cancelled = fastco.spawn_later(0.01, ran.append, 1)
    cancelled.kill()
    fastco.sleep(0.02)
    assert ran == [] and cancelled.dead   # killed before its start: never ran


def test_join_self_is_an_error() -> None:
    def selfjoin():
        getcurrent().join()

    t = fastco.spawn(selfjoin)
    t.join()
    assert isinstance(t.exception, RuntimeError)


def test_seed_interleaving_with_and_without_sleep() -> None:
    def run(sleep):
        out = []

        def f(n):
            for i in range(n):
                out.append((getcurrent(), i))
                if sleep is not None:
                    fastco.sleep(sleep)

        tasks = [fastco.spawn(f, 5) for _ in range(3)]
        for t in tasks:
            t.join()
        return [(tasks.index(g), i) for g, i in out]

    round_robin = [(k, i) for i in range(5) for k in range(3)]
    one_after_another = [(k, i) for k in range(3) for i in range(5)]
    assert run(0.005) == round_robin
    assert run(0) == round_robin
    assert run(None) == one_after_another
