"""What greenlet's own test suite showed fastco doing differently, fixed:
each test here is ours, written for one behaviour (the suite itself runs in
CI through .ci/greenlet_suite.py).

The crashes run in a child process, so that a regression fails a test
instead of ending the test run.
"""

from __future__ import annotations

import threading
from abc import ABCMeta, abstractmethod

import pytest

import fastco
from conftest import run_python
from fastco import GreenletExit, getcurrent, greenlet

# Looking up `run` (Python code, in a subclass) gives the new greenlet a
# parent on another thread: the switch must fail with fastco.error (it used
# to start it on this thread with the other thread's state: a segfault).
MOVED_BY_RUN_LOOKUP = r"""
import sys, threading
import fastco

other_alive = sys.argv[1] == "alive"
ready, done = threading.Event(), threading.Event()
another = []

def worker():
    g = fastco.greenlet(lambda: None)
    another.append(g)
    g.switch()                       # finished: its parent is the thread's main
    another.append(fastco.getcurrent())
    ready.set()
    if other_alive:
        done.wait(30)

t = threading.Thread(target=worker)
t.start()
ready.wait(30)
if not other_alive:
    t.join()

class Convoluted(fastco.greenlet):
    def __getattribute__(self, name):
        if name == "run":
            self.parent = another[0]
        return fastco.greenlet.__getattribute__(self, name)

g = Convoluted(lambda: "ran")
try:
    print("switched", g.switch())
except fastco.error as exc:
    print("error", str(exc).splitlines()[0])
print("started", bool(g) or g.dead)
done.set()
t.join(30)
"""


@pytest.mark.parametrize("other", ["ended", "alive"])
def test_run_lookup_that_moves_the_greenlet_to_another_thread(other: str) -> None:
    proc = run_python(other, code=MOVED_BY_RUN_LOOKUP, timeout=60)
    assert proc.returncode == 0, proc.stderr
    message = ("cannot switch to a different thread (which happens to have exited)"
               if other == "ended" else "Cannot switch to a different thread")
    assert proc.stdout.splitlines() == [f"error {message}", "started False"]


# The lookup moves the new greenlet to thread b and lets b start it: the
# switch here, retried on the now started greenlet, must see that it is b's.
STARTED_ON_ANOTHER_THREAD_DURING_LOOKUP = r"""
import threading
import fastco

go, started, finish = threading.Event(), threading.Event(), threading.Event()
other = {}

def thread_b():
    other["main"] = fastco.getcurrent()
    other["ready"] = True
    go.wait(30)
    print("b got", g.switch())
    started.set()
    finish.wait(30)
    print("b end", g.switch())

def run():
    fastco.getcurrent().parent.switch("hi from g")
    return "g done"

class G(fastco.greenlet):
    moved = False
    def __getattribute__(self, name):
        if name == "run" and not G.moved:
            G.moved = True
            self.parent = other["main"]
            go.set()
            started.wait(30)
        return run if name == "run" else fastco.greenlet.__getattribute__(self, name)

t = threading.Thread(target=thread_b)
t.start()
while "ready" not in other:
    t.join(0.01)
g = G(run)
try:
    print("main got", g.switch())
except fastco.error as exc:
    print("error", str(exc).splitlines()[0])
finish.set()
t.join(30)
"""


def test_run_lookup_that_has_another_thread_start_the_greenlet() -> None:
    proc = run_python(code=STARTED_ON_ANOTHER_THREAD_DURING_LOOKUP, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "b got hi from g", "error Cannot switch to a different thread", "b end g done"]


def test_run_lookup_that_starts_the_greenlet_switches_to_it_as_started() -> None:
    """The lookup switches into the greenlet itself, which starts it there:
    the outer switch then goes on as a plain switch to the started greenlet
    (greenlet's retry), instead of failing."""
    received = []

    class Convoluted(greenlet):
        looked_up = False

        def __getattribute__(self, name):
            if name == "run" and not type(self).looked_up:
                type(self).looked_up = True
                assert self.switch(43) == "43 received"
            return greenlet.__getattribute__(self, name)

        def run(self, value):
            while True:
                received.append(value)
                value = self.parent.switch(f"{value} received")

    g = Convoluted()
    assert g.switch(42) == "42 received"
    assert received == [43, 42]
    g.throw()
    assert g.dead


def test_callable_given_is_dropped_in_the_new_greenlet() -> None:
    """A subclass's run() replaces the callable it was given; that one is
    dropped once the new greenlet runs, so its __del__ runs there."""
    log = []
    main = getcurrent()

    class Callable:
        def __del__(self):
            log.append(("del in", "new" if getcurrent() is not main else "main"))
            main.switch("from __del__")

    class G(greenlet):
        def __getattribute__(self, name):
            if name == "run":
                return lambda: log.append("run")
            return greenlet.__getattribute__(self, name)

    g = G(Callable())
    assert g.switch() == "from __del__"
    assert log == [("del in", "new")]
    assert g and not g.dead
    g.switch()
    assert log == [("del in", "new"), "run"] and g.dead


def test_run_is_gone_once_started() -> None:
    g = greenlet(lambda: getcurrent().parent.switch())
    assert g.run is not None
    g.switch()
    with pytest.raises(AttributeError):
        g.run                       # noqa: B018 - as in greenlet
    g.switch()
    with pytest.raises(AttributeError):
        g.run                       # noqa: B018


def test_abstract_subclass_cannot_be_created() -> None:
    Abstract = ABCMeta("Abstract", (greenlet,), {"run": abstractmethod(lambda self: None)})

    class Bad(Abstract):  # type: ignore[misc, valid-type]
        pass

    class Good(Abstract):  # type: ignore[misc, valid-type]
        def run(self):
            return "good"

    with pytest.raises(TypeError, match="abstract"):
        Bad()
    assert Good().switch() == "good"


def _dropped_on_another_thread(trigger: str) -> list[str]:
    """A greenlet of a worker thread loses its last reference on the main
    thread; the worker then calls `trigger`.  What the greenlet saw."""
    seen: list[str] = []
    dropped, triggered, finish = threading.Event(), threading.Event(), threading.Event()
    holder = []

    def run():
        try:
            getcurrent().parent.switch()
        except GreenletExit:
            seen.append("GreenletExit")
            raise

    def worker():
        g = greenlet(run)
        g.switch()
        holder.append(g)
        del g
        dropped.wait(10)
        if trigger == "getcurrent":
            getcurrent()
        else:
            greenlet()
        seen.append("after " + trigger)
        triggered.set()
        finish.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    while not holder:
        t.join(0.01)
    holder.clear()                  # the last reference goes, on this thread
    assert seen == []               # not killed here: only its thread may run it
    dropped.set()
    triggered.wait(10)
    finish.set()
    t.join(10)
    return seen


@pytest.mark.parametrize("trigger", ["getcurrent", "greenlet()"])
def test_greenlet_dropped_on_another_thread_dies_at_its_threads_next_call(trigger) -> None:
    """As in greenlet: not only at the next switch of its thread."""
    assert _dropped_on_another_thread(trigger) == ["GreenletExit", "after " + trigger]


def test_errors_across_threads_say_what_greenlet_says() -> None:
    results = {}
    go, done = threading.Event(), threading.Event()

    def worker():
        results["main"] = getcurrent()
        results["repr here"] = repr(getcurrent())
        go.set()
        done.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    go.wait(10)
    other_main = results["main"]
    try:
        with pytest.raises(ValueError) as get_err:
            other_main.gr_context                   # noqa: B018
        with pytest.raises(ValueError) as set_err:
            other_main.gr_context = None
        with pytest.raises(fastco.error) as switch_err:
            other_main.switch()
        repr_there = repr(other_main)
    finally:
        done.set()
        t.join(10)
    assert str(get_err.value) == (
        "cannot get context of a greenlet that is running in a different thread")
    assert str(set_err.value) == (
        "cannot set context of a greenlet that is running in a different thread")
    assert str(switch_err.value).startswith("Cannot switch to a different thread\n\tCurrent:")
    assert results["repr here"].endswith(" current active started main>")
    assert repr_there.endswith(" suspended active started main>")
    assert repr(other_main).endswith(" (thread exited) dead>")
    with pytest.raises(fastco.error, match=r"^cannot switch to a different thread \(which"):
        other_main.switch()


@pytest.mark.parametrize("bad", [None, 1, "42", object()])
def test_parent_of_the_wrong_type_says_what_greenlet_says(bad) -> None:
    g = greenlet(lambda: None)
    expected = f"GreenletChecker: Expected any type of greenlet, not {type(bad).__name__}"
    with pytest.raises(TypeError) as err:
        g.parent = bad
    assert str(err.value) == expected
    with pytest.raises(TypeError) as err:
        greenlet(lambda: None, bad if bad is not None else 1)
    assert str(err.value).startswith("GreenletChecker: Expected any type of greenlet")


# getcurrent() from code run by the interpreter's final collection.
GETCURRENT_AT_FINALIZATION = r"""
import gc, os
import fastco

gc.disable()

class Checker:
    def __del__(self, write=os.write, getcurrent=fastco.getcurrent):
        try:
            getcurrent()
        except RuntimeError as exc:
            write(1, b"RuntimeError: " + str(exc).encode() + b"\n")
        else:
            write(1, b"returned a greenlet\n")

a = Checker()
a.cycle = {"a": a}
del a
print("ready", flush=True)
"""


def test_getcurrent_during_finalization_raises_runtime_error() -> None:
    """As greenlet 3.5 does: no greenlet can run any more then."""
    proc = run_python(code=GETCURRENT_AT_FINALIZATION, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["ready", "RuntimeError: greenlet is being finalized"]


# A greenlet switched to, and started, by a __del__ that runs when the
# modules are torn down (here, fastco's own module's dict).
SWITCH_AT_MODULE_TEARDOWN = r"""
import os
import fastco

gs = []

def run(gs=gs, write=os.write):
    write(1, b"run\n")
    gs[0].parent.switch(1)

gs.append(fastco.greenlet(run))
gs.append(fastco.greenlet(run))
gs[1].switch()

class WithDel:
    def __del__(self, gs=gs, write=os.write):
        write(1, b"__del__\n")
        result = gs[0].switch()
        write(1, b"result %d\n" % result)

fastco.with_del = WithDel()
"""


def test_switch_and_start_at_module_teardown() -> None:
    proc = run_python(code=SWITCH_AT_MODULE_TEARDOWN, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["run", "__del__", "run", "result 1"]


# Bad input, side by side with greenlet: each case gets the name of the
# exception it raised (or "ok") from each implementation, `G` being the
# module (fastco, or the greenlet package).

class _FailingInit(Exception):
    def __init__(self, *args):
        raise KeyError("no")


def _suspended(G):
    g = G.greenlet(lambda: G.getcurrent().parent.switch())
    g.switch()
    return g


def _finished(G):
    g = G.greenlet(lambda: None)
    g.switch()
    return g


def _other_thread(G, keep_alive: bool):
    """(a suspended greenlet, the main greenlet) of another thread, which has
    ended or is waiting; and a function that lets it end."""
    got, release = {}, threading.Event()

    def body():
        got["g"], got["main"] = _suspended(G), G.getcurrent()
        got["ready"] = True
        if keep_alive:
            release.wait(10)

    t = threading.Thread(target=body)
    t.start()
    while "ready" not in got:
        t.join(0.01)
    if not keep_alive:
        t.join(10)

    def finish():
        release.set()
        t.join(10)
    return got["g"], got["main"], finish


BAD_INPUT = {
    "run not callable": lambda G: G.greenlet(5).switch(),
    "run None": lambda G: G.greenlet(None).switch(),
    "parent an int": lambda G: G.greenlet(lambda: 1, 5),
    "parent a str keyword": lambda G: G.greenlet(lambda: 1, parent="x"),
    "too many arguments": lambda G: G.greenlet(lambda: 1, None, 5),
    "unknown keyword": lambda G: G.greenlet(foo=1),
    "throw an int": lambda G: _suspended(G).throw(5),
    "throw a non-exception class": lambda G: _suspended(G).throw(object),
    "throw a str": lambda G: _suspended(G).throw("x"),
    "throw a bad traceback": lambda G: _suspended(G).throw(ValueError, 1, 2),
    "throw an instance and a value": lambda G: _suspended(G).throw(ValueError(), 5),
    "throw four arguments": lambda G: _suspended(G).throw(ValueError, None, None, 1),
    "throw by keyword": lambda G: _suspended(G).throw(typ=ValueError),
    "throw a class whose __init__ fails": lambda G: _suspended(G).throw(_FailingInit),
    "throw into an unstarted one": lambda G: G.greenlet(lambda: 1).throw(ValueError),
    "throw into a finished one": lambda G: _finished(G).throw(ValueError),
    "switch unbound to a non-greenlet": lambda G: G.greenlet.switch(5),
    "throw unbound to a non-greenlet": lambda G: G.greenlet.throw(5),
    "delete parent": lambda G: delattr(G.greenlet(lambda: 1), "parent"),
    "parent of a main greenlet": lambda G: setattr(G.getcurrent(), "parent", G.greenlet()),
    "parent cycle": lambda G: (lambda g: setattr(g, "parent", g))(G.greenlet()),
    "run set after the start": lambda G: setattr(_suspended(G), "run", len),
    "__init__ again after the start": lambda G: _suspended(G).__init__(len),
    "gr_context an int": lambda G: setattr(G.greenlet(lambda: 1), "gr_context", 5),
    "delete gr_context": lambda G: delattr(G.greenlet(lambda: 1), "gr_context"),
    "getcurrent with an argument": lambda G: G.getcurrent(1),
    "gettrace with an argument": lambda G: G.gettrace(1),
    "settrace with two arguments": lambda G: G.settrace(None, None),
    "pickle": lambda G: __import__("pickle").dumps(G.greenlet(lambda: 1)),
    "copy": lambda G: __import__("copy").copy(G.greenlet(lambda: 1)),
}


def _outcome(G, case) -> str:
    try:
        case(G)
    except BaseException as exc:  # noqa: BLE001 - the type is the result
        return "error" if isinstance(exc, G.error) else type(exc).__name__
    return "ok"


def _real_greenlet():
    real = pytest.importorskip("greenlet")
    if getattr(real, "__fastco__", False):
        pytest.skip("the greenlet module is fastco's here")
    return real


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_raises_what_greenlet_raises(case: str) -> None:
    real = _real_greenlet()
    expected = _outcome(real, BAD_INPUT[case])
    assert expected != "ok"
    assert _outcome(fastco, BAD_INPUT[case]) == expected


CROSS_THREAD = {
    "switch to a greenlet of a thread that ended": lambda G, g, main: g.switch(),
    "throw into a greenlet of a thread that ended": lambda G, g, main: g.throw(ValueError),
    "switch to the main greenlet of a thread that ended": lambda G, g, main: main.switch(),
    "start with a parent on a thread that ended": lambda G, g, main: (
        lambda n: (setattr(n, "parent", main), n.switch()))(G.greenlet(lambda: 1)),
}
CROSS_LIVE_THREAD = {
    "switch to a greenlet of another thread": lambda G, g, main: g.switch(),
    "throw into a greenlet of another thread": lambda G, g, main: g.throw(),
    "move a started greenlet to another thread": lambda G, g, main: setattr(
        _suspended(G), "parent", main),
    "gr_context of another thread's running greenlet": lambda G, g, main: main.gr_context,
    "set gr_context of another thread's running greenlet": lambda G, g, main: setattr(
        main, "gr_context", None),
}


@pytest.mark.parametrize("alive", [False, True], ids=["ended", "alive"])
def test_cross_thread_misuse_raises_what_greenlet_raises(alive: bool) -> None:
    real = _real_greenlet()
    cases = CROSS_LIVE_THREAD if alive else CROSS_THREAD
    outcomes = {}
    for G in (real, fastco):
        g, main, finish = _other_thread(G, keep_alive=alive)
        try:
            outcomes[G.__name__] = {
                name: _outcome(G, lambda G, c=c, g=g, main=main: c(G, g, main))
                for name, c in cases.items()}
        finally:
            finish()
    assert "ok" not in outcomes["greenlet"].values()
    assert outcomes["fastco"] == outcomes["greenlet"]


# A suspended greenlet dropped while the interpreter finalizes cannot be
# killed and is freed as it is; a neighbour in its thread's list of active
# greenlets then finishes and unlinks itself (it read the freed one).
DROP_SUSPENDED_AT_FINALIZATION = r"""
import os, sys
from fastco import greenlet, getcurrent

ns = {"getcurrent": getcurrent}
exec("def body():\n    getcurrent().parent.switch()\n", ns)  # frames hold no __main__ dict
b = greenlet(ns["body"]); b.switch()
a = greenlet(ns["body"]); a.switch()      # the thread's active list: a, b

class Dropper:
    def __init__(self, a, b):
        self.a, self.b = [a], b

    def __del__(self, write=os.write, sys=sys):
        write(1, b"finalizing %d\n" % sys.is_finalizing())
        self.a.pop()                          # freed, not killed
        self.b.switch()                       # b finishes: leaves the list
        write(1, b"b finished %d\n" % self.b.dead)

dropper = Dropper(a, b)
del a, b
"""


def test_suspended_greenlet_dropped_at_finalization_leaves_its_thread_list() -> None:
    proc = run_python(code=DROP_SUSPENDED_AT_FINALIZATION, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["finalizing 1", "b finished 1"]
