"""fastco's greenlet API: conventions, lifecycle and errors.

Behaviour shared with the greenlet package is also checked against it,
side by side, in test_differential.py; this file covers fastco alone.
"""

from __future__ import annotations

import contextvars
import gc
import mmap
import sys
import threading
import traceback
import weakref

import pytest

import fastco
from conftest import frame_chain
from fastco import GreenletExit, getcurrent, greenlet


def test_switch_return_conventions() -> None:
    def echo():
        value = getcurrent().parent.switch()
        while True:
            value = getcurrent().parent.switch(value)

    g = greenlet(echo)
    g.switch()
    assert g.switch() == ()
    assert g.switch(1) == 1
    assert g.switch((1,)) == (1,)
    assert g.switch(1, 2) == (1, 2)
    assert g.switch(a=1) == {"a": 1}
    assert g.switch(1, a=2) == ((1,), {"a": 2})
    assert g.switch(None) is None


def test_run_gets_args_and_kwargs_and_result_goes_to_parent() -> None:
    g = greenlet(lambda *a, **k: (a, k))
    assert g.switch(1, 2, b=3) == ((1, 2), {"b": 3})
    assert g.dead
    assert not g


def test_lifecycle_flags() -> None:
    g = greenlet(lambda: getcurrent().parent.switch())
    assert not g and not g.dead
    g.switch()
    assert g and not g.dead
    g.switch()
    assert not g and g.dead
    main = getcurrent()
    assert main and not main.dead and main.parent is None


def test_exception_propagates_to_parent_with_traceback_from_run() -> None:
    def run():
        inner()

    def inner():
        raise KeyError("boom")

    g = greenlet(run)
    with pytest.raises(KeyError) as info:
        g.switch()
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    # The caller's frame, then the coroutine's frames starting at run.
    assert names[-2:] == ["run", "inner"]
    assert g.dead


def test_stack_inside_coroutine_starts_at_run() -> None:
    seen = []

    def run():
        seen.append([f.name for f in traceback.extract_stack()])

    greenlet(run).switch()
    assert seen == [["run"]]


def test_switch_to_dead_goes_to_parent() -> None:
    g = greenlet(lambda: 1)
    assert g.switch() == 1
    assert g.switch(5) == 5            # back to us at once: we are its parent
    assert g.switch(5, 6) == (5, 6)


def test_throw_into_suspended_unstarted_and_dead() -> None:
    def catcher():
        try:
            getcurrent().parent.switch("ready")
        except ValueError as exc:
            return f"caught {exc}"

    g = greenlet(catcher)
    assert g.switch() == "ready"
    assert g.throw(ValueError("x")) == "caught x"

    g = greenlet(lambda: pytest.fail("must not run"))
    with pytest.raises(ValueError):
        g.throw(ValueError)
    assert g.dead

    g = greenlet(lambda: pytest.fail("must not run"))
    assert isinstance(g.throw(), GreenletExit)
    assert g.dead

    assert isinstance(g.throw(), GreenletExit)     # dead: a plain value
    with pytest.raises(KeyError):
        g.throw(KeyError)


def test_greenlet_exit_is_returned_not_raised() -> None:
    def run():
        raise GreenletExit("bye")

    result = greenlet(run).switch()
    assert isinstance(result, GreenletExit) and result.args == ("bye",)


@pytest.mark.parametrize(
    "args, exc",
    [
        ((5,), TypeError),
        ((ValueError("a"), 1), TypeError),
        ((ValueError, None, 5), TypeError),
        ((object(),), TypeError),
    ],
)
def test_throw_bad_arguments(args, exc) -> None:
    g = greenlet(lambda: getcurrent().parent.switch())
    g.switch()
    with pytest.raises(exc):
        g.throw(*args)
    assert g          # still suspended: nothing was thrown
    g.switch()


def test_throw_with_traceback() -> None:
    try:
        raise RuntimeError("original")
    except RuntimeError as exc:
        tb = exc.__traceback__

    def run():
        try:
            getcurrent().parent.switch()
        except RuntimeError as exc:
            return exc.__traceback__

    g = greenlet(run)
    g.switch()
    got = g.throw(RuntimeError, RuntimeError("again"), tb)
    assert got.tb_next is tb   # the given traceback, under the frame it was raised in


def test_parent_validation() -> None:
    g = greenlet(lambda: None)
    with pytest.raises(TypeError):
        g.parent = None
    with pytest.raises(TypeError):
        g.parent = 3
    with pytest.raises(AttributeError):
        del g.parent
    child = greenlet(lambda: None, parent=g)
    with pytest.raises(ValueError, match="cyclic"):
        g.parent = child
    with pytest.raises(ValueError, match="cyclic"):
        g.parent = g
    with pytest.raises(TypeError):
        greenlet(parent=3)


def test_run_attribute() -> None:
    def f():
        return 1

    g = greenlet(f)
    assert g.run is f
    g.run = len
    assert g.run is len
    g.run = f
    g.switch()
    with pytest.raises(AttributeError):
        _ = g.run
    with pytest.raises(AttributeError):
        g.run = f
    with pytest.raises(AttributeError):
        greenlet().switch()
    with pytest.raises(TypeError):
        greenlet(3).switch()


def test_subclass_run_method_and_attributes() -> None:
    class Worker(greenlet):
        def __init__(self, n):
            super().__init__()
            self.n = n

        def run(self, k):
            return self.n * k

    w = Worker(6)
    assert w.switch(7) == 42
    assert w.dead and w.n == 6


def test_switch_from_foreign_thread_raises_error() -> None:
    g = greenlet(lambda: getcurrent().parent.switch())
    g.switch()
    errors = []

    def other():
        try:
            g.switch()
        except fastco.error as exc:
            errors.append(exc)
        try:
            g.throw()
        except fastco.error as exc:
            errors.append(exc)
        started = greenlet(lambda: getcurrent().parent.switch())
        started.switch()
        try:
            started.parent = g          # a started greenlet cannot change thread
        except ValueError as exc:
            errors.append(exc)
        started.switch()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 3
    g.switch()
    assert g.dead


def test_each_thread_has_its_own_main() -> None:
    mains = []

    def body():
        main = getcurrent()
        g = greenlet(lambda: getcurrent().parent)
        mains.append((main, g.switch()))

    threads = [threading.Thread(target=body) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m, _ in mains}) == 3
    assert all(m is p for m, p in mains)
    assert all(m is not getcurrent() for m, _ in mains)


def test_exc_info_is_per_coroutine() -> None:
    seen = {}

    def run():
        seen["start"] = sys.exc_info()
        try:
            raise KeyError("in coroutine")
        except KeyError:
            getcurrent().parent.switch()
            seen["after"] = sys.exc_info()[0]

    g = greenlet(run)
    try:
        raise ValueError("in main")
    except ValueError:
        g.switch()
        assert sys.exc_info()[0] is ValueError     # not the coroutine's KeyError
        g.switch()
    assert seen["start"] == (None, None, None)     # not main's ValueError
    assert seen["after"] is KeyError
    assert sys.exc_info() == (None, None, None)


def test_new_coroutine_starts_with_empty_context() -> None:
    var = contextvars.ContextVar("var", default="unset")
    var.set("main")
    seen = []

    def run():
        seen.append(var.get())
        var.set("coroutine")
        getcurrent().parent.switch()
        seen.append(var.get())

    g = greenlet(run)
    assert g.gr_context is None
    g.switch()
    assert var.get() == "main"
    g.switch()
    assert seen == ["unset", "coroutine"]


def test_gr_context_get_and_set() -> None:
    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.Context()
    ctx.run(var.set, "given")
    g = greenlet(lambda: var.get())
    g.gr_context = ctx
    assert g.gr_context is ctx
    assert g.switch() == "given"
    with pytest.raises(TypeError):
        greenlet().gr_context = {}


def test_gr_frame_walks_to_run() -> None:
    def run():
        middle()

    def middle():
        getcurrent().parent.switch()

    g = greenlet(run)
    assert g.gr_frame is None
    g.switch()
    assert [f.f_code.co_name for f in frame_chain(g.gr_frame)] == ["middle", "run"]
    assert getcurrent().gr_frame is None
    g.switch()
    assert g.gr_frame is None


def test_recursion_in_coroutine_raises_recursion_error() -> None:
    def recurse(n):
        return recurse(n + 1)

    def run():
        try:
            recurse(0)
        except RecursionError:
            return "recursion error"

    assert greenlet(run).switch() == "recursion error"


def test_nested_greenlets_and_parents() -> None:
    trail = []

    def leaf():
        trail.append("leaf")
        return "leaf-done"

    def mid():
        trail.append("mid")
        g = greenlet(leaf)
        trail.append(g.switch())
        return "mid-done"

    assert greenlet(mid).switch() == "mid-done"
    assert trail == ["mid", "leaf", "leaf-done"]


def test_weakref_and_dict() -> None:
    g = greenlet(lambda: None)
    ref = weakref.ref(g)
    g.attr = 1
    assert g.__dict__ == {"attr": 1}
    del g
    gc.collect()
    assert ref() is None


def smallest_stack() -> int:
    """The smallest coroutine stack: requests below it are rounded up (16 KiB;
    on 3.14+ CPython's minimum, 48 KiB, or 96 KiB in debug builds)."""
    return greenlet(stack_size=1).stack_size


def test_stack_size_option() -> None:
    size = max(64 * 1024, smallest_stack())
    g = greenlet(lambda: getcurrent().stack_size, stack_size=size)
    assert g.switch() == size
    with pytest.raises(ValueError):
        greenlet(lambda: None, stack_size=-1)
    with pytest.raises(ValueError):
        greenlet(lambda: None, stack_size=1 << 40)
    assert getcurrent().stack_size is None


def test_not_picklable() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(greenlet(lambda: None))


def test_repr_shows_state() -> None:
    g = greenlet(lambda: getcurrent().parent.switch())
    assert "pending" in repr(g)
    g.switch()
    assert "suspended active started" in repr(g)
    assert "current active started main" in repr(getcurrent())
    g.switch()
    assert repr(g).endswith("dead>")


def test_settrace_events() -> None:
    events = []

    def tracer(event, args):
        origin, target = args
        events.append((event, origin is getcurrent() or target is getcurrent()))

    assert fastco.settrace(tracer) is None
    try:
        g = greenlet(lambda: getcurrent().parent.switch())
        g.switch()
        g.throw()
    finally:
        assert fastco.settrace(None) is tracer
    assert [e for e, _ in events] == ["switch", "switch", "throw", "switch"]
    assert fastco.gettrace() is None


def test_failing_trace_function_is_removed() -> None:
    def bad(event, args):
        raise RuntimeError("trace failed")

    fastco.settrace(bad)
    with pytest.raises(RuntimeError, match="trace failed"):
        greenlet(lambda: None).switch()
    assert fastco.gettrace() is None


def test_class_attributes_like_greenlet() -> None:
    assert greenlet.getcurrent() is getcurrent()
    assert greenlet.GreenletExit is GreenletExit
    assert greenlet.error is fastco.error
    assert issubclass(GreenletExit, BaseException)
    assert not issubclass(GreenletExit, Exception)


def test_small_stack_sizes_are_rounded_up_to_the_smallest() -> None:
    low = smallest_stack()
    expected = 48 * 1024 if sys.version_info >= (3, 14) else 16 * 1024
    if hasattr(sys, "gettotalrefcount") and sys.version_info >= (3, 14):
        expected *= 2                      # a debug build's stack margins are twice as big
    assert low == expected
    assert greenlet(stack_size=low - 4096).stack_size == low
    assert greenlet(stack_size=low + 1).stack_size == low + mmap.PAGESIZE   # whole pages
    # The smallest stack works: it runs, and deep recursion fails cleanly.
    def deep(n: int) -> int:
        return deep(n + 1)
    def run() -> str:
        try:
            deep(0)
        except RecursionError:
            return "RecursionError"
        return "no error"
    assert greenlet(run, stack_size=low).switch() == "RecursionError"


def test_default_stack_size_setting() -> None:
    big = 2 * max(64 * 1024, smallest_stack())
    previous = fastco.set_default_stack_size(big)
    try:
        assert greenlet().stack_size == big
        assert greenlet(stack_size=big // 2).stack_size == big // 2
        assert greenlet(lambda: getcurrent().stack_size).switch() == big
        with pytest.raises(ValueError):
            fastco.set_default_stack_size(-1)
        with pytest.raises(TypeError):
            fastco.set_default_stack_size("big")
    finally:
        fastco.set_default_stack_size(previous)
    assert greenlet().stack_size == previous
