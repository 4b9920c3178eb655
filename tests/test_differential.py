"""Differential tests: the same scenario on greenlet and on fastco.

Each scenario is a small function `scenario(ns, trace)`.  `ns` holds one
implementation's API (greenlet, getcurrent, GreenletExit, error, settrace,
gettrace) plus `ns.named(g, name)`; the scenario records what it observes
in `trace` (`trace.add(...)`, `trace.call(label, fn, ...)`).  The harness
runs it on the greenlet package, then on fastco, and the two traces must be
equal.  Traces hold values, exception type names (and args when they are
data), flags and greenlets as the names the scenario gave them: no ids.

Where fastco differs from greenlet on purpose the scenario is listed in
FASTCO_DIFFERENCES and expected to fail (strictly), with the reason.
"""

from __future__ import annotations

import contextvars
import gc
import io
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import pytest

if getattr(pytest.importorskip("greenlet"), "__fastco__", False):
    # FASTCO_AS_GREENLET=1: "greenlet" is fastco itself, nothing to compare with.
    pytest.skip("the greenlet module is fastco's here", allow_module_level=True)

from _diffkit import (  # noqa: E402
    DEBUG_BUILD,
    REFERENCE_COLLECTS_SUSPENDED,
    Impl,
    describe,
    load_impls,
    name_of,
    set_name,
    settle,
)

from conftest import frame_chain  # noqa: E402

GREENLET, FASTCO = load_impls()


class Boom(Exception):
    """An exception whose args are data (compared in traces)."""


class Other(Exception):
    """A second one, unrelated to Boom."""


def raise_(exc: BaseException | type[BaseException]) -> Any:
    """Raises `exc` (for lambdas)."""
    raise exc


class NS:
    """One implementation's greenlet API, as a scenario sees it."""

    def __init__(self, impl: Impl) -> None:
        self.impl = impl
        self.greenlet = impl.greenlet
        self.getcurrent = impl.getcurrent
        self.GreenletExit = impl.GreenletExit
        self.error = impl.error
        self.settrace = impl.settrace
        self.gettrace = impl.gettrace

    def named(self, g: Any, name: str) -> Any:
        """Gives `g` the name traces show for it; returns `g`."""
        return set_name(g, name)

    def name(self, g: Any) -> str | None:
        return name_of(self.impl, g)

    def park(self, value: Any = None) -> Any:
        """Switches to the current greenlet's parent with `value`."""
        return self.getcurrent().parent.switch(value)


class Trace(list):
    """The events a scenario records, as comparable data."""

    def __init__(self, impl: Impl) -> None:
        super().__init__()
        self.impl = impl

    def add(self, *items: Any) -> None:
        self.append(tuple(describe(self.impl, i) for i in items))

    def call(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Records fn(*args, **kwargs)'s result or exception; returns the result."""
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - GreenletExit included
            self.add(label, "raised", exc)
            return None
        self.add(label, "->", result)
        return result

    def flags(self, label: str, g: Any) -> None:
        """Records whether `g` is dead, true (active), and its parent's name."""
        self.add(label, "dead" if g.dead else "alive", bool(g), name_of(self.impl, g.parent))


SCENARIOS: dict[str, Callable[[NS, Trace], None]] = {}


def scenario(fn: Callable[[NS, Trace], None]) -> Callable[[NS, Trace], None]:
    SCENARIOS[fn.__name__] = fn
    return fn


def run_scenario(fn: Callable[[NS, Trace], None], impl: Impl) -> Trace:
    """Runs one scenario on one implementation and returns its trace."""
    ns = NS(impl)
    trace = Trace(impl)
    settle()
    set_name(impl.getcurrent(), "main")
    try:
        fn(ns, trace)
    except BaseException as exc:  # noqa: BLE001 - an escape is part of the trace
        trace.add("scenario escaped", exc)
    finally:
        impl.settrace(None)
        sys.settrace(None)
        sys.setprofile(None)
    settle()
    trace.add("end")
    return trace


# Scenarios whose traces differ on purpose: fastco's behaviour is the
# documented one (README, "Where fastco differs from greenlet").  Each is
# expected to fail strictly, so a change of either library shows up.
FASTCO_DIFFERENCES: dict[str, str] = {
    "recursion_budget_of_a_greenlet_started_deep":
        "a new greenlet has its own stack, so it gets the full recursion limit; "
        "greenlet starts it with the recursion depth of the greenlet that started it",
    "settrace_accepts_any_object":
        "settrace(5) raises TypeError at once; greenlet accepts any object and fails "
        "at the next switch",
    "greenlet_of_exited_thread_loses_last_reference":
        "fastco kills a thread's suspended greenlets as the thread exits, on that "
        "thread (their finally blocks run); greenlet abandons them",
}
if REFERENCE_COLLECTS_SUSPENDED:
    FASTCO_DIFFERENCES["suspended_cycle_not_collected"] = (
        "greenlet on 3.15 collects a suspended greenlet caught in a reference cycle "
        "without running its finally blocks; fastco keeps it, as on 3.10-3.14")

# Scenarios that abort a debug build of CPython (see _diffkit.DEBUG_BUILD):
# with greenlet only (run with fastco alone there), or with both.
GREENLET_ABORTS_DEBUG_BUILD = {
    "unstarted_parent_receives_greenlet_exit":
        "greenlet calls run() with the GreenletExit instance as its args tuple",
}
BOTH_ABORT_DEBUG_BUILD = {
    "sys_settrace_follows_switches":
        "sys.settrace(None) in one greenlet re-instruments only the code that runs "
        "on the thread's frame chain; the frames of the suspended ones resume with "
        "the old instrumentation, which a debug build asserts against (greenlet "
        "issue #368); a release build goes on, their events stale until re-entered",
}


# ---------------------------------------------------------------------------
# Values: what switch() returns and what run() receives


@scenario
def switch_return_conventions(ns: NS, trace: Trace) -> None:
    def echo():
        value = ns.park("ready")
        while True:
            value = ns.getcurrent().parent.switch(value)

    g = ns.named(ns.greenlet(echo), "echo")
    trace.call("start", g.switch)
    trace.call("none", g.switch)
    trace.call("one", g.switch, 1)
    trace.call("one-tuple", g.switch, (1,))
    trace.call("empty-tuple", g.switch, ())
    trace.call("several", g.switch, 1, 2, 3)
    trace.call("kwargs", g.switch, a=1, b=2)
    trace.call("both", g.switch, 1, a=2)
    trace.call("None", g.switch, None)
    trace.call("empty-star", g.switch, *[], **{})
    trace.call("dict-arg", g.switch, {"a": 1})
    trace.flags("echo", g)


@scenario
def parent_switch_conventions(ns: NS, trace: Trace) -> None:
    def child():
        p = ns.getcurrent().parent
        p.switch()
        p.switch(1)
        p.switch(1, 2)
        p.switch(k=3)
        p.switch(1, k=3)
        p.switch(None)
        return "end"

    g = ns.named(ns.greenlet(child), "child")
    for label in ("none", "one", "two", "kw", "both", "None", "return"):
        trace.call(label, g.switch)
    trace.flags("child", g)


@scenario
def run_receives_args(ns: NS, trace: Trace) -> None:
    def run(*args, **kwargs):
        return ("got", args, kwargs)

    trace.call("none", ns.greenlet(run).switch)
    trace.call("one", ns.greenlet(run).switch, 1)
    trace.call("two", ns.greenlet(run).switch, 1, 2)
    trace.call("kw", ns.greenlet(run).switch, a=1)
    trace.call("both", ns.greenlet(run).switch, 1, a=1)
    trace.call("bad-signature", ns.greenlet(lambda: 1).switch, 5)


@scenario
def run_return_values(ns: NS, trace: Trace) -> None:
    for value in (None, (), (1,), (1, 2), {"k": 1}, [1], "s"):
        trace.call(f"return {value!r}", ns.greenlet(lambda v=value: v).switch)


@scenario
def ping_pong(ns: NS, trace: Trace) -> None:
    def ping(n):
        while n < 6:
            trace.add("ping", n)
            n = pong.switch(n + 1)
        return ("ping done", n)

    def pong(n):
        while True:
            trace.add("pong", n)
            n = ping.switch(n + 1)

    ping = ns.named(ns.greenlet(ping), "ping")
    pong = ns.named(ns.greenlet(pong), "pong")
    trace.call("run", ping.switch, 0)
    trace.flags("ping", ping)
    trace.flags("pong", pong)
    trace.call("pong-again", pong.switch, 100)


# ---------------------------------------------------------------------------
# Parents: results and exceptions go to the first live parent


@scenario
def nested_three_levels(ns: NS, trace: Trace) -> None:
    def level(depth):
        me = ns.getcurrent()
        trace.add("enter", depth, ns.name(me.parent))
        if depth < 3:
            child = ns.named(ns.greenlet(level), f"L{depth + 1}")
            got = child.switch(depth + 1)
            trace.add("child returned", depth, got)
        else:
            got = ns.getcurrent().parent.parent.parent.switch("from L3")
            trace.add("L3 resumed with", got)
        return f"L{depth} done"

    top = ns.named(ns.greenlet(level), "L1")
    trace.call("start", top.switch, 1)
    trace.call("resume L1", top.switch, "x")


@scenario
def result_goes_to_first_live_parent(ns: NS, trace: Trace) -> None:
    a = ns.named(ns.greenlet(lambda *args: ("a done", args)), "a")
    b = ns.named(ns.greenlet(lambda *args: ("b done", args), parent=a), "b")
    c = ns.named(ns.greenlet(lambda: ns.park("c parked") + "!", parent=b), "c")
    # c parks: its parent b never started, so b starts with c's value, and
    # b's result starts a, whose result goes to main.
    trace.call("c start", c.switch)
    trace.flags("a", a)
    trace.flags("b", b)
    trace.flags("c", c)
    trace.call("c resumed", c.switch, "c")


@scenario
def result_skips_dead_parents(ns: NS, trace: Trace) -> None:
    def parked():
        return ns.getcurrent().parent.switch("parked") + " back"

    a = ns.named(ns.greenlet(lambda: "a done"), "a")
    b = ns.named(ns.greenlet(lambda: "b done"), "b")
    c = ns.named(ns.greenlet(parked), "c")
    trace.call("c park", c.switch)
    c.parent = b
    b.parent = a
    trace.call("a", a.switch)
    trace.call("b", b.switch)
    trace.call("c finish (a, b dead)", c.switch, "c")
    trace.flags("c", c)


@scenario
def exception_skips_dead_parents(ns: NS, trace: Trace) -> None:
    def parked():
        ns.park("parked")
        raise Boom("from c")

    a = ns.named(ns.greenlet(lambda: "a done"), "a")
    b = ns.named(ns.greenlet(lambda: "b done", parent=a), "b")
    c = ns.named(ns.greenlet(parked, parent=b), "c")
    trace.call("a", a.switch)
    trace.call("b", b.switch)
    trace.call("c", c.switch)
    trace.call("c raises", c.switch)
    trace.flags("c", c)


@scenario
def exception_through_suspended_parents(ns: NS, trace: Trace) -> None:
    def outer():
        try:
            middle_g.switch()
        except Boom as exc:
            trace.add("outer caught", exc)
            return "outer handled"

    def middle():
        try:
            inner_g.switch()
        finally:
            trace.add("middle finally")

    def inner():
        raise Boom("deep", 1)

    outer_g = ns.named(ns.greenlet(outer), "outer")
    middle_g = ns.named(ns.greenlet(middle, parent=outer_g), "middle")
    inner_g = ns.named(ns.greenlet(inner, parent=middle_g), "inner")
    trace.call("outer", outer_g.switch)
    for g in (outer_g, middle_g, inner_g):
        trace.flags(ns.name(g), g)


@scenario
def unstarted_parent_receives_result(ns: NS, trace: Trace) -> None:
    def parent_run(*args, **kwargs):
        trace.add("parent started with", args, kwargs)
        return "parent done"

    p = ns.named(ns.greenlet(parent_run), "p")
    c = ns.named(ns.greenlet(lambda: ("child", "result"), parent=p), "c")
    trace.call("c", c.switch)
    trace.flags("p", p)
    trace.flags("c", c)


@scenario
def unstarted_parent_receives_exception(ns: NS, trace: Trace) -> None:
    def parent_run(*args):
        trace.add("parent started (must not)", args)

    def child():
        raise Boom("child failed")

    p = ns.named(ns.greenlet(parent_run), "p")
    c = ns.named(ns.greenlet(child, parent=p), "c")
    trace.call("c", c.switch)
    trace.flags("p", p)
    trace.flags("c", c)


@scenario
def unstarted_parent_receives_greenlet_exit(ns: NS, trace: Trace) -> None:
    # greenlet passes the GreenletExit instance itself as run's args tuple
    # (PyObject_Call on a non-tuple: run() gets no arguments by accident);
    # fastco passes it as the one argument.  Only the start is compared.
    def parent_run(*args):
        trace.add("parent started")
        return "p done"

    def child():
        raise ns.GreenletExit("quiet")

    p = ns.named(ns.greenlet(parent_run), "p")
    c = ns.named(ns.greenlet(child, parent=p), "c")
    trace.call("c", c.switch)
    trace.flags("p", p)


@scenario
def unstarted_parent_with_bad_run(ns: NS, trace: Trace) -> None:
    p = ns.named(ns.greenlet(), "p-without-run")
    q = ns.named(ns.greenlet(lambda *a: ("q got", a), parent=p), "q")
    c = ns.named(ns.greenlet(lambda: "c result", parent=q), "c")
    c2 = ns.named(ns.greenlet(lambda: "c2 result", parent=p), "c2")
    trace.call("c2 (parent cannot start)", c2.switch)
    trace.flags("p", p)
    trace.call("c (q starts)", c.switch)
    trace.flags("q", q)


@scenario
def sibling_result_goes_to_parent_not_switcher(ns: NS, trace: Trace) -> None:
    def first():
        got = second.switch("from first")
        trace.add("first resumed with", got)
        return "first done"

    second = ns.named(ns.greenlet(lambda v: ("second got", v)), "second")
    first = ns.named(ns.greenlet(first), "first")
    trace.call("first", first.switch)
    trace.flags("first", first)
    trace.call("first again", first.switch, "again")


# ---------------------------------------------------------------------------
# Exceptions crossing switches


@scenario
def exception_caught_in_parent_and_rethrown(ns: NS, trace: Trace) -> None:
    def failing():
        raise Boom("in child", 7)

    def catcher():
        try:
            ns.park("catcher ready")
        except Boom as exc:
            trace.add("catcher caught", exc, exc.__context__)
            return "handled"

    caught = None
    try:
        ns.named(ns.greenlet(failing), "failing").switch()
    except Boom as exc:
        caught = exc
        trace.add("main caught", exc, sys.exc_info()[0])
    c = ns.named(ns.greenlet(catcher), "catcher")
    trace.call("catcher start", c.switch)
    trace.call("rethrow instance", c.throw, caught)
    trace.call("raise again in a new one", ns.greenlet(lambda: raise_(caught)).switch)


@scenario
def exception_context_not_leaking(ns: NS, trace: Trace) -> None:
    def child():
        try:
            raise Boom("child")
        except Boom as exc:
            trace.add("child context", exc.__context__)
        ns.park()
        raise Other("second")

    g = ns.named(ns.greenlet(child), "child")
    try:
        raise KeyError("main handling")
    except KeyError:
        g.switch()
        try:
            g.switch()
        except Other as exc:
            trace.add("main got", exc, exc.__context__)


@scenario
def exception_traceback_starts_at_run(ns: NS, trace: Trace) -> None:
    def run():
        inner()

    def inner():
        raise Boom("tb")

    try:
        ns.greenlet(run).switch()
    except Boom as exc:
        names = [f.name for f in traceback.extract_tb(exc.__traceback__)]
        trace.add("tb names", names[1:])

    def stack():
        return [f.f_code.co_name for f in frame_chain(sys._getframe())]

    trace.call("stack in run", ns.greenlet(stack).switch)
    trace.call("extract_stack", ns.greenlet(
        lambda: [f.name for f in traceback.extract_stack()]).switch)


@scenario
def exc_info_isolation(ns: NS, trace: Trace) -> None:
    def child():
        trace.add("child start", sys.exc_info()[0])
        try:
            raise Boom("child")
        except Boom:
            ns.park()
            trace.add("child after switch", sys.exc_info()[0])
            ns.park()
        trace.add("child end", sys.exc_info()[0])

    g = ns.named(ns.greenlet(child), "child")
    try:
        raise KeyError("main")
    except KeyError:
        g.switch()
        trace.add("main in handler", sys.exc_info()[0])
    trace.add("main outside", sys.exc_info()[0])
    g.switch()
    trace.add("main outside 2", sys.exc_info()[0])
    g.switch()
    trace.add("main end", sys.exc_info()[0])


@scenario
def exc_info_in_thrown_handler(ns: NS, trace: Trace) -> None:
    def child():
        try:
            ns.park()
        except Boom:
            trace.add("handler exc_info", sys.exc_info()[0])
            got = ns.park("in handler")
            trace.add("handler resumed", got, sys.exc_info()[0])
        trace.add("after handler", sys.exc_info()[0])

    g = ns.named(ns.greenlet(child), "child")
    g.switch()
    trace.call("throw", g.throw, Boom("x"))
    trace.add("main", sys.exc_info()[0])
    trace.call("resume", g.switch, "r")


# ---------------------------------------------------------------------------
# throw()


def catcher_body(ns: NS, trace: Trace) -> Callable[[], Any]:
    def catcher():
        try:
            ns.park("parked")
        except BaseException as exc:  # noqa: BLE001
            trace.add("caught", exc)
            return ("caught", type(exc).__name__)
    return catcher


@scenario
def throw_default_into_suspended(ns: NS, trace: Trace) -> None:
    def victim():
        try:
            ns.park("parked")
        finally:
            trace.add("victim finally")

    g = ns.named(ns.greenlet(victim), "victim")
    g.switch()
    trace.call("throw()", g.throw)
    trace.flags("victim", g)


@scenario
def throw_forms_into_suspended(ns: NS, trace: Trace) -> None:
    forms = [
        ("class", (Boom,)),
        ("instance", (Boom("inst", 1),)),
        ("class+value", (Boom, 5)),
        ("class+tuple", (Boom, (1, 2))),
        ("class+instance", (Boom, Boom("given"))),
        ("class+unrelated instance", (Boom, Other("o"))),
        ("class+None+None", (Boom, None, None)),
        ("GreenletExit", (ns.GreenletExit,)),
        ("GreenletExit instance", (ns.GreenletExit("bye"),)),
        ("BaseException subclass", (KeyboardInterrupt,)),
    ]
    for label, args in forms:
        g = ns.greenlet(catcher_body(ns, trace))
        g.switch()
        trace.call(label, g.throw, *args)
        trace.flags(label, g)


@scenario
def throw_uncaught_goes_to_parent(ns: NS, trace: Trace) -> None:
    g = ns.named(ns.greenlet(lambda: ns.park()), "g")
    g.switch()
    trace.call("throw Boom", g.throw, Boom("up"))
    trace.flags("g", g)
    p = ns.named(ns.greenlet(catcher_body(ns, trace)), "p")
    p.switch()
    h = ns.named(ns.greenlet(lambda: ns.getcurrent().parent.switch(), parent=p), "h")
    trace.call("h start (goes to p)", h.switch)   # p catches? no: p receives a value
    trace.flags("p", p)
    trace.flags("h", h)


@scenario
def throw_with_traceback(ns: NS, trace: Trace) -> None:
    def origin():
        raise Boom("original")

    try:
        origin()
    except Boom as exc:
        tb = exc.__traceback__

    def run():
        try:
            ns.park()
        except Boom as exc:
            return [f.name for f in traceback.extract_tb(exc.__traceback__)]

    g = ns.greenlet(run)
    g.switch()
    trace.call("class, instance, tb", g.throw, Boom, Boom("again"), tb)
    g = ns.greenlet(run)
    g.switch()
    trace.call("class, None, tb", g.throw, Boom, None, tb)
    g = ns.greenlet(run)
    g.switch()
    trace.call("bad tb", g.throw, Boom, None, "not a tb")
    trace.flags("after bad tb", g)
    g.throw()


@scenario
def throw_into_unstarted(ns: NS, trace: Trace) -> None:
    def must_not_run():
        trace.add("ran (must not)")

    g = ns.named(ns.greenlet(must_not_run), "u1")
    trace.call("default", g.throw)
    trace.flags("u1", g)
    g = ns.named(ns.greenlet(must_not_run), "u2")
    trace.call("class", g.throw, Boom)
    trace.flags("u2", g)
    g = ns.named(ns.greenlet(must_not_run), "u3")
    trace.call("instance", g.throw, Boom("x", 2))
    trace.flags("u3", g)
    p = ns.named(ns.greenlet(catcher_body(ns, trace)), "p")
    p.switch()
    g = ns.named(ns.greenlet(must_not_run, parent=p), "u4")
    trace.call("unstarted with suspended parent", g.throw, Boom("to p"))
    trace.flags("p", p)


@scenario
def throw_into_dead(ns: NS, trace: Trace) -> None:
    g = ns.named(ns.greenlet(lambda: "done"), "d")
    trace.call("finish", g.switch)
    trace.call("default", g.throw)
    trace.call("GreenletExit instance", g.throw, ns.GreenletExit("v"))
    trace.call("Boom", g.throw, Boom("dead"))
    p = ns.named(ns.greenlet(catcher_body(ns, trace)), "p")
    p.switch()
    d = ns.named(ns.greenlet(lambda: "d2 done", parent=p), "d2")
    d.parent = ns.getcurrent()
    trace.call("d2 finish", d.switch)
    d.parent = p
    trace.call("Boom into dead with suspended parent", d.throw, Boom("to p"))
    trace.flags("p", p)


@scenario
def throw_bad_arguments(ns: NS, trace: Trace) -> None:
    g = ns.named(ns.greenlet(lambda: ns.park()), "g")
    g.switch()
    trace.call("int", g.throw, 5)
    trace.call("instance+value", g.throw, Boom("a"), 1)
    trace.call("bad tb", g.throw, Boom, None, 5)
    trace.call("object()", g.throw, object())
    trace.call("four args", g.throw, Boom, None, None, None)
    trace.call("class not exception", g.throw, int)
    trace.flags("g", g)
    trace.call("finish", g.switch, "ok")


@scenario
def throw_into_self(ns: NS, trace: Trace) -> None:
    trace.call("main throws into itself", ns.getcurrent().throw, Boom("self"))
    trace.call("main throws GreenletExit into itself", ns.getcurrent().throw)

    def child():
        try:
            ns.getcurrent().throw(Other("me"))
        except Other as exc:
            trace.add("child caught own", exc)
        return "child done"

    trace.call("child", ns.greenlet(child).switch)


@scenario
def throw_greenlet_exit_caught_returns_value(ns: NS, trace: Trace) -> None:
    def run():
        try:
            ns.park()
        except ns.GreenletExit as exc:
            trace.add("caught", exc)
            return "survived"

    g = ns.named(ns.greenlet(run), "g")
    g.switch()
    trace.call("throw", g.throw)
    trace.flags("g", g)


@scenario
def throw_from_sibling(ns: NS, trace: Trace) -> None:
    def victim():
        try:
            ns.park("victim parked")
        except Boom as exc:
            trace.add("victim caught", exc, ns.name(ns.getcurrent().parent))
            return "victim result"

    def thrower():
        got = v.throw(Boom("from sibling"))
        trace.add("thrower resumed (must not)", got)

    v = ns.named(ns.greenlet(victim), "victim")
    t = ns.named(ns.greenlet(thrower), "thrower")
    trace.call("victim", v.switch)
    trace.call("thrower", t.switch)
    trace.flags("thrower", t)
    trace.flags("victim", v)


@scenario
def main_receives_thrown_exception(ns: NS, trace: Trace) -> None:
    def child():
        ns.getcurrent().parent.throw(Boom("into main"))
        trace.add("child resumed")
        return "child end"

    g = ns.named(ns.greenlet(child), "child")
    trace.call("child throws into main", g.switch)
    trace.call("resume", g.switch)
    h = ns.named(ns.greenlet(lambda: ns.getcurrent().parent.throw()), "h")
    trace.call("GreenletExit into main", h.switch)
    trace.flags("h", h)
    h.switch()


# ---------------------------------------------------------------------------
# Dead, self, GreenletExit


@scenario
def switch_to_dead_goes_to_parent(ns: NS, trace: Trace) -> None:
    g = ns.named(ns.greenlet(lambda: "done"), "g")
    trace.call("finish", g.switch)
    trace.call("dead, one", g.switch, 5)
    trace.call("dead, two", g.switch, 5, 6)
    trace.call("dead, kw", g.switch, a=1)
    trace.call("dead, none", g.switch)
    p = ns.named(ns.greenlet(lambda: ns.getcurrent().parent.switch("p parked")), "p")
    p.switch()
    d = ns.named(ns.greenlet(lambda: "d done", parent=p), "d")
    d.parent = ns.getcurrent()
    d.switch()
    d.parent = p
    trace.call("dead with suspended parent", d.switch, "to p")
    trace.flags("p", p)


@scenario
def switch_to_self(ns: NS, trace: Trace) -> None:
    me = ns.getcurrent()
    trace.call("main none", me.switch)
    trace.call("main one", me.switch, 1)
    trace.call("main two", me.switch, 1, 2)
    trace.call("main kw", me.switch, a=1)

    def child():
        c = ns.getcurrent()
        return (c.switch(), c.switch(1), c.switch(1, 2), c.switch(k=1), c.switch(1, k=2))

    trace.call("child", ns.greenlet(child).switch)


@scenario
def greenlet_exit_with_value(ns: NS, trace: Trace) -> None:
    def bye():
        raise ns.GreenletExit("bye", 2)

    class Sub(ns.GreenletExit):
        pass

    def sub():
        raise Sub("sub")

    trace.call("GreenletExit", ns.named(ns.greenlet(bye), "bye").switch)
    trace.call("subclass", ns.greenlet(sub).switch)
    trace.call("bare class", ns.greenlet(lambda: raise_(ns.GreenletExit)).switch)
    p = ns.named(ns.greenlet(lambda: ns.getcurrent().parent.switch("p parked") + "!"), "p")
    p.switch()
    c = ns.named(ns.greenlet(bye, parent=p), "c")
    trace.call("to suspended parent", c.switch)
    trace.flags("c", c)


@scenario
def lifecycle_flags(ns: NS, trace: Trace) -> None:
    main = ns.getcurrent()
    trace.flags("main", main)
    g = ns.named(ns.greenlet(lambda: ns.park()), "g")
    trace.flags("new", g)
    g.switch()
    trace.flags("suspended", g)
    g.switch()
    trace.flags("dead", g)
    trace.add("getcurrent in child is the child",
              ns.greenlet(lambda: ns.getcurrent() is ns.getcurrent()).switch())

    def inspect():
        me = ns.getcurrent()
        return (bool(me), me.dead, bool(me.parent), me.parent.dead)

    trace.call("running flags", ns.greenlet(inspect).switch)


# ---------------------------------------------------------------------------
# Parents changed at run time, constructor, run attribute


@scenario
def change_parent_valid(ns: NS, trace: Trace) -> None:
    p = ns.named(ns.greenlet(catcher_body(ns, trace)), "p")
    trace.call("p", p.switch)
    collector = ns.named(ns.greenlet(lambda *a: ns.getcurrent().parent.switch(("coll", a))), "coll")
    g = ns.named(ns.greenlet(lambda: ns.park("g parked") * 2), "g")
    trace.call("g", g.switch)
    g.parent = collector
    trace.flags("g reparented", g)
    trace.call("g finishes to unstarted collector", g.switch, "ab")
    h = ns.named(ns.greenlet(lambda: raise_(Boom("h"))), "h")
    h.parent = p
    trace.call("h raises into p", h.switch)
    trace.flags("p", p)


@scenario
def change_parent_invalid(ns: NS, trace: Trace) -> None:
    a = ns.named(ns.greenlet(lambda: None), "a")
    b = ns.named(ns.greenlet(lambda: None, parent=a), "b")
    c = ns.named(ns.greenlet(lambda: None, parent=b), "c")

    def setp(g, value):
        g.parent = value

    def delp(g):
        del g.parent

    trace.call("a.parent = c (cycle)", setp, a, c)
    trace.call("a.parent = a", setp, a, a)
    trace.call("a.parent = None", setp, a, None)
    trace.call("a.parent = 3", setp, a, 3)
    trace.call("a.parent = 'main'", setp, a, "main")
    trace.call("del a.parent", delp, a)
    trace.call("c.parent = main", setp, c, ns.getcurrent())
    for g in (a, b, c):
        trace.flags(ns.name(g), g)
    done = ns.named(ns.greenlet(lambda: 1), "done")
    done.switch()
    trace.call("dead.parent = a", setp, done, a)
    trace.flags("done", done)


@scenario
def constructor_arguments(ns: NS, trace: Trace) -> None:
    def f(*a):
        return ("f", a)

    p = ns.named(ns.greenlet(catcher_body(ns, trace)), "p")
    p.switch()
    trace.call("positional", lambda: ns.greenlet(f, p).parent)
    trace.call("keywords", lambda: ns.greenlet(run=f, parent=p).parent)
    trace.call("parent=3", ns.greenlet, f, 3)
    trace.call("parent=None", lambda: ns.greenlet(f, None).parent)
    trace.call("extra positional", ns.greenlet, f, p, 1, 2)
    trace.call("unknown keyword", ns.greenlet, f, bogus=1)
    trace.call("default parent", lambda: ns.greenlet().parent)
    trace.call("parent in child", ns.greenlet(lambda: ns.greenlet().parent).switch)
    trace.call("finish p", p.switch)


@scenario
def run_attribute(ns: NS, trace: Trace) -> None:
    def f():
        return "f ran"

    def g_run():
        return "g ran"

    g = ns.named(ns.greenlet(f), "g")
    trace.add("run is f", g.run is f)
    g.run = g_run
    trace.add("run replaced", g.run is g_run)
    trace.call("switch", g.switch)
    trace.call("run after end", getattr, g, "run")
    trace.call("set run after end", setattr, g, "run", f)

    def started():
        me = ns.getcurrent()
        try:
            _ = me.run
        except AttributeError:
            return "no run while running"
        return "run while running"

    trace.call("run while running", ns.greenlet(started).switch)
    h = ns.greenlet()
    trace.call("run unset", getattr, h, "run")
    trace.call("del run before start", delattr, ns.greenlet(f), "run")


@scenario
def missing_or_bad_run(ns: NS, trace: Trace) -> None:
    g = ns.named(ns.greenlet(), "norun")
    trace.call("switch without run", g.switch)
    trace.flags("norun", g)
    g.run = lambda: "late run"
    trace.call("set run after failure", g.switch)
    b = ns.named(ns.greenlet(3), "int-run")
    trace.call("int run", b.switch)
    trace.flags("int-run", b)
    r = ns.named(ns.greenlet(lambda: 1 / 0), "raises")
    trace.call("run raises", r.switch)
    trace.flags("raises", r)


@scenario
def subclass_run_method(ns: NS, trace: Trace) -> None:
    class Worker(ns.greenlet):
        def __init__(self, n, **kw):
            super().__init__(**kw)
            self.n = n

        def run(self, k):
            got = self.parent.switch(self.n * k)
            return ("worker end", got, self.n)

    w = ns.named(Worker(6), "worker")
    trace.call("start", w.switch, 7)
    trace.call("resume", w.switch, "r")
    trace.flags("worker", w)
    trace.add("n kept", w.n, isinstance(w, ns.greenlet))

    class Plain(ns.greenlet):
        pass

    trace.call("subclass without run", Plain().switch)
    trace.call("subclass with run arg", Plain(lambda: "arg run").switch)

    class Both(ns.greenlet):
        def run(self):
            return "method"

    trace.call("method vs run argument", Both(lambda: "argument").switch)
    trace.call("getcurrent type", ns.greenlet(lambda: type(ns.getcurrent()).__name__).switch)
    trace.call("subclass getcurrent",
               Both(lambda: type(ns.getcurrent()).__name__).switch)


@scenario
def class_attributes(ns: NS, trace: Trace) -> None:
    g = ns.greenlet
    trace.add("getcurrent", g.getcurrent() is ns.getcurrent())
    trace.add("GreenletExit", g.GreenletExit is ns.GreenletExit)
    trace.add("error", g.error is ns.error)
    trace.add("GreenletExit base", issubclass(ns.GreenletExit, BaseException),
              issubclass(ns.GreenletExit, Exception))
    trace.add("error base", issubclass(ns.error, Exception))
    trace.add("settrace", g.settrace is not None, g.gettrace() is None)


@scenario
def instance_dict(ns: NS, trace: Trace) -> None:
    g = ns.greenlet(lambda: ns.getcurrent().attr)
    g.attr = "value"
    trace.add("dict has attr", "attr" in g.__dict__)
    trace.call("read inside", g.switch)
    trace.add("after death", g.attr)


# ---------------------------------------------------------------------------
# settrace


@scenario
def settrace_events(ns: NS, trace: Trace) -> None:
    def tracer(event, args):
        origin, target = args
        trace.add("trace", event, ns.name(origin), ns.name(target))

    trace.add("previous", ns.settrace(tracer))
    trace.add("gettrace is tracer", ns.gettrace() is tracer)
    g = ns.named(ns.greenlet(lambda: ns.park("parked")), "g")
    g.switch()
    g.throw()
    h = ns.named(ns.greenlet(lambda: ns.getcurrent().parent.switch()), "h")
    h.switch()
    trace.call("throw Boom", h.throw, Boom("b"))
    trace.call("raising run", ns.named(ns.greenlet(lambda: 1 / 0), "z").switch)
    p = ns.named(ns.greenlet(lambda: ns.getcurrent().parent.switch("p parked")), "p")
    p.switch()
    d = ns.named(ns.greenlet(lambda: 1), "d")
    d.switch()
    d.parent = p
    trace.call("switch to dead (goes to p)", d.switch, 2)
    trace.call("throw into unstarted", ns.named(ns.greenlet(lambda: 1), "u").throw)
    u2 = ns.named(ns.greenlet(lambda: 1, parent=p), "u2")
    trace.call("throw into unstarted with parent p", u2.throw, Boom("to p"))
    trace.add("removed", ns.settrace(None) is tracer, ns.gettrace())


@scenario
def settrace_raising(ns: NS, trace: Trace) -> None:
    calls = []

    def bad(event, args):
        calls.append(event)
        raise Boom("trace failed", len(calls))

    ns.settrace(bad)
    g = ns.named(ns.greenlet(lambda: ns.park("g")), "g")
    trace.call("start under failing trace", g.switch)
    trace.add("trace removed", ns.gettrace(), calls)
    trace.flags("g", g)
    trace.call("second switch", g.switch, "x")
    trace.flags("g", g)

    def bad_later(event, args):
        origin, target = args
        if ns.name(target) == "main":
            raise Other("back in main")

    h = ns.named(ns.greenlet(lambda: ns.park("h")), "h")
    ns.settrace(bad_later)
    trace.call("h: trace fails on the way back", h.switch)
    trace.flags("h", h)
    trace.add("gettrace", ns.gettrace())
    trace.call("h end", h.switch)


@scenario
def settrace_raising_inside_greenlet(ns: NS, trace: Trace) -> None:
    def bad(event, args):
        origin, target = args
        if ns.name(target) == "inner":
            raise Boom("entering inner")

    def outer():
        inner = ns.named(ns.greenlet(lambda: "inner ran"), "inner")
        try:
            inner.switch()
        except Boom as exc:
            trace.add("outer caught", exc)
        trace.flags("inner", inner)
        return "outer done"

    o = ns.named(ns.greenlet(outer), "outer")
    ns.settrace(bad)
    trace.call("outer", o.switch)
    trace.add("gettrace", ns.gettrace())


@scenario
def settrace_function_not_traced_by_sys_settrace(ns: NS, trace: Trace) -> None:
    def gtrace(event, args):
        trace.add("gtrace", event)

    def pytrace(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == __file__:
            trace.add("sys trace call", frame.f_code.co_name)
        return None

    def body():
        return "body"

    g = ns.named(ns.greenlet(body), "g")
    ns.settrace(gtrace)
    sys.settrace(pytrace)
    try:
        g.switch()
    finally:
        sys.settrace(None)
        ns.settrace(None)


@scenario
def sys_settrace_follows_switches(ns: NS, trace: Trace) -> None:
    def pytrace(frame, event, arg):
        if event == "call" and frame.f_code.co_name.startswith("traced_"):
            trace.add("call", frame.f_code.co_name)
        return None

    def traced_in_child():
        return 1

    def traced_in_main():
        return 2

    def child():
        traced_in_child()
        ns.park()
        traced_in_child()
        sys.settrace(None)
        ns.park()
        traced_in_child()
        sys.settrace(pytrace)

    g = ns.named(ns.greenlet(child), "child")
    sys.settrace(pytrace)
    try:
        g.switch()
        traced_in_main()
        g.switch()
        traced_in_main()     # tracing turned off in the child
        g.switch()
        traced_in_main()     # and on again
    finally:
        sys.settrace(None)


@scenario
def sys_setprofile_follows_switches(ns: NS, trace: Trace) -> None:
    def profiler(frame, event, arg):
        if event == "call" and frame.f_code.co_name.startswith("profiled_"):
            trace.add("profile", frame.f_code.co_name)

    def profiled_child():
        return 1

    def child():
        profiled_child()
        ns.park()
        profiled_child()

    g = ns.named(ns.greenlet(child), "child")
    sys.setprofile(profiler)
    try:
        g.switch()
        g.switch()
    finally:
        sys.setprofile(None)


@scenario
def sys_trace_call_and_return_events_around_switches(ns: NS, trace: Trace) -> None:
    watched = {"child", "park", "traced"}

    def pytrace(frame, event, arg):
        name = frame.f_code.co_name
        if name in watched:
            if event in ("call", "return"):
                trace.add(event, name, ns.name(ns.getcurrent()))
            elif event == "exception":
                trace.add(event, name, arg[0])
        return pytrace

    def traced():
        return 1

    def child():
        traced()
        ns.park("first")
        try:
            ns.park("second")
        except Boom:
            traced()
        return "end"

    g = ns.named(ns.greenlet(child), "child")
    sys.settrace(pytrace)
    try:
        g.switch()
        traced()
        g.switch()
        trace.call("throw", g.throw, Boom("b"))
    finally:
        sys.settrace(None)


@scenario
def sys_profile_c_calls_of_switch(ns: NS, trace: Trace) -> None:
    def profiler(frame, event, arg):
        if event in ("c_call", "c_return", "c_exception") and arg.__name__ in ("switch", "throw"):
            trace.add(event, arg.__name__, ns.name(ns.getcurrent()))
        elif event in ("call", "return") and frame.f_code.co_name == "child":
            trace.add(event, "child", ns.name(ns.getcurrent()))

    def child():
        main.switch("from child")
        try:
            main.switch()
        except Boom:
            pass

    main = ns.getcurrent()
    g = ns.named(ns.greenlet(child), "child")
    sys.setprofile(profiler)
    try:
        g.switch()
        g.switch()
        g.throw(Boom("b"))
    finally:
        sys.setprofile(None)


@scenario
def greenlet_of_exited_thread_loses_last_reference(ns: NS, trace: Trace) -> None:
    box = []
    unraisable = []
    stderr = io.StringIO()

    def body():
        def run():
            try:
                ns.park("parked")
            finally:
                trace.add("finally ran", threading.get_ident() == threading.main_thread().ident)

        g = ns.named(ns.greenlet(run), "orphan")
        g.switch()
        box.append(g)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    settle()
    old_hook, sys.unraisablehook = sys.unraisablehook, lambda u: unraisable.append(
        type(u.exc_value).__name__)
    old_err, sys.stderr = sys.stderr, stderr
    try:
        box.clear()
        settle()
        ns.greenlet(lambda: None).switch()
    finally:
        sys.unraisablehook = old_hook
        sys.stderr = old_err
    trace.add("unraisable", unraisable)
    trace.add("stderr", stderr.getvalue().split(" <")[0])


# ---------------------------------------------------------------------------
# gr_frame, gr_context


@scenario
def gr_frame_names(ns: NS, trace: Trace) -> None:
    def run():
        middle()

    def middle():
        ns.park()

    def frames(g):
        return [(f.f_code.co_name, f.f_lineno - f.f_code.co_firstlineno)
                for f in frame_chain(g.gr_frame)]

    g = ns.named(ns.greenlet(run), "g")
    trace.add("new", g.gr_frame)
    g.switch()
    trace.add("suspended", frames(g))
    trace.add("main", ns.getcurrent().gr_frame)
    trace.add("running", ns.greenlet(lambda: ns.getcurrent().gr_frame is None).switch())
    g.switch()
    trace.add("dead", g.gr_frame)

    def gen():
        yield ns.park()

    def gen_run():
        for _ in gen():
            pass

    h = ns.greenlet(gen_run)
    h.switch()
    trace.add("in generator", frames(h))
    h.switch()


@scenario
def frames_outlive_their_greenlet(ns: NS, trace: Trace) -> None:
    def run():
        local_value = "kept"
        inner(local_value)

    def inner(arg):
        try:
            ns.park()
        finally:
            trace.add("inner finally", arg)

    def chain(frame):
        return [(f.f_code.co_name, sorted(f.f_locals)) for f in frame_chain(frame)]

    g = ns.named(ns.greenlet(run), "g")
    g.switch()
    frame = g.gr_frame
    trace.add("suspended", chain(frame))
    trace.call("clear a suspended frame", frame.clear)
    trace.call("throw", g.throw)
    trace.add("after death", chain(frame), frame.f_lineno - frame.f_code.co_firstlineno)
    trace.call("clear after death", frame.clear)
    h = ns.greenlet(run)
    h.switch()
    kept = h.gr_frame.f_back
    del h
    trace.add("after kill by refcount", chain(kept))


@scenario
def switch_in_finalizer(ns: NS, trace: Trace) -> None:
    class Finalized:
        def __del__(self):
            trace.add("__del__ in", ns.name(ns.getcurrent()))
            trace.add("bounced", other.switch("from __del__"))

    def run():
        obj = Finalized()
        del obj                       # __del__ runs here, and switches
        return "run done"

    def bounce(value):
        while True:
            value = runner.switch(("bounced", value))

    runner = ns.named(ns.greenlet(run), "runner")
    other = ns.named(ns.greenlet(bounce), "bounce")
    trace.call("run", runner.switch)
    trace.flags("bounce", other)
    trace.call("collected in main", lambda: Finalized() and None)


@scenario
def gr_context_new_and_set(ns: NS, trace: Trace) -> None:
    var = contextvars.ContextVar("var", default="unset")
    var.set("main")
    g = ns.named(ns.greenlet(lambda: (var.get(), ns.park(var.get()), var.get())), "g")
    trace.add("new", g.gr_context)
    trace.call("start", g.switch)
    trace.add("suspended ctx", type(g.gr_context).__name__)
    ctx = contextvars.Context()
    ctx.run(var.set, "given")
    g.gr_context = ctx
    trace.call("resume in given ctx", g.switch)

    h = ns.greenlet(lambda: var.get())
    h.gr_context = ctx
    trace.add("set before start", h.gr_context is ctx)
    trace.call("h", h.switch)
    trace.call("bad type", setattr, ns.greenlet(), "gr_context", {})
    trace.call("None", setattr, ns.greenlet(), "gr_context", None)
    trace.call("del", delattr, ns.greenlet(), "gr_context")
    trace.add("main still", var.get())


@scenario
def contextvars_isolation(ns: NS, trace: Trace) -> None:
    var = contextvars.ContextVar("iso", default="default")
    var.set("main value")

    def child(name):
        trace.add(name, "sees", var.get())
        var.set(name)
        ns.park()
        trace.add(name, "still sees", var.get())

    a = ns.named(ns.greenlet(child), "a")
    b = ns.named(ns.greenlet(child), "b")
    a.switch("a")
    b.switch("b")
    trace.add("main sees", var.get())
    a.switch()
    b.switch()
    trace.add("main sees", var.get())
    c = ns.greenlet(lambda: var.get())
    c.gr_context = contextvars.copy_context()
    trace.call("copied context", c.switch)

    def running_ctx():
        var.set("running")
        return ns.getcurrent().gr_context.get(var)

    trace.call("gr_context of running", ns.greenlet(running_ctx).switch)
    trace.add("main gr_context has var", ns.getcurrent().gr_context.get(var))


# ---------------------------------------------------------------------------
# A greenlet that loses its last reference while suspended


@scenario
def lost_reference_runs_finally(ns: NS, trace: Trace) -> None:
    def run():
        try:
            ns.park("parked")
        finally:
            trace.add("finally", ns.name(ns.getcurrent()),
                      ns.name(ns.getcurrent().parent), sys.exc_info()[0])

    g = ns.named(ns.greenlet(run), "g")
    g.switch()
    ref = weakref.ref(g)
    del g
    trace.add("after del", ref() is None)


@scenario
def lost_reference_catches_and_returns(ns: NS, trace: Trace) -> None:
    def run():
        try:
            ns.park("parked")
        except ns.GreenletExit as exc:
            # The args are a message ("Killing the greenlet because all
            # references have vanished." in greenlet): compare the type.
            trace.add("caught", type(exc).__name__)
            return "returned"

    g = ns.named(ns.greenlet(run), "g")
    g.switch()
    ref = weakref.ref(g)
    del g
    trace.add("after del", ref() is None)


@scenario
def lost_reference_in_child_of_child(ns: NS, trace: Trace) -> None:
    def leaf():
        try:
            ns.getcurrent().parent.parent.switch("leaf parked")
        finally:
            trace.add("leaf finally", ns.name(ns.getcurrent()), ns.name(ns.getcurrent().parent))

    def mid():
        leaf_g = ns.named(ns.greenlet(leaf), "leaf")
        leaf_g.switch()
        trace.add("mid resumed (must not)")

    m = ns.named(ns.greenlet(mid), "mid")
    trace.call("start", m.switch)
    ref = weakref.ref(m)
    del m
    trace.add("mid freed", ref() is None)


@scenario
def lost_reference_switches_back_to_killer(ns: NS, trace: Trace) -> None:
    stderr = io.StringIO()

    def run():
        try:
            ns.park("parked")
        except ns.GreenletExit:
            trace.add("caught, killer is", ns.name(ns.getcurrent().parent))
            ns.getcurrent().parent.switch("not dying")
            trace.add("resumed after refusing to die")
            return "finally done"

    g = ns.named(ns.greenlet(run), "refuser")
    g.switch()
    ref = weakref.ref(g)
    old, sys.stderr = sys.stderr, stderr
    try:
        del g
    finally:
        sys.stderr = old
    trace.add("stderr", stderr.getvalue().split(" <")[0])
    survivor = ref()
    trace.add("resurrected", survivor is not None)
    if survivor is not None:
        trace.flags("survivor", survivor)
        trace.call("finish it", survivor.switch)


@scenario
def lost_reference_raises_other_exception(ns: NS, trace: Trace) -> None:
    seen = []

    def hook(unraisable):
        seen.append(type(unraisable.exc_value).__name__)

    def run():
        try:
            ns.park("parked")
        except ns.GreenletExit:
            raise Boom("while dying") from None

    g = ns.named(ns.greenlet(run), "g")
    g.switch()
    old, sys.unraisablehook = sys.unraisablehook, hook
    try:
        del g
    finally:
        sys.unraisablehook = old
    trace.add("unraisable", seen)


@scenario
def lost_reference_of_unstarted_and_dead(ns: NS, trace: Trace) -> None:
    refs = []
    for name, run in (("unstarted", lambda: trace.add("ran (must not)")), ("dead", lambda: 1)):
        g = ns.named(ns.greenlet(run), name)
        if name == "dead":
            g.switch()
        refs.append(weakref.ref(g))
        del g
    trace.add("freed", [r() is None for r in refs])


@scenario
def lost_reference_while_suspended_parent_of_live_child(ns: NS, trace: Trace) -> None:
    def parent_run():
        try:
            ns.park("p parked")
        finally:
            trace.add("p finally")

    p = ns.named(ns.greenlet(parent_run), "p")
    p.switch()
    c = ns.named(ns.greenlet(lambda: ns.park("c parked"), parent=p), "c")
    c.switch()
    ref = weakref.ref(p)
    del p
    trace.add("p alive via child's parent", ref() is not None)
    trace.flags("c", c)
    trace.call("finish c (to p)", c.switch, "c end")
    trace.add("p", ref() is not None and ref().dead)


@scenario
def suspended_cycle_not_collected(ns: NS, trace: Trace) -> None:
    def run():
        me = ns.getcurrent()      # the suspended frame refers to its greenlet
        try:
            ns.park("parked")
        finally:
            trace.add("finally", ns.name(me))

    g = ns.named(ns.greenlet(run), "cyclic")
    g.switch()
    ref = weakref.ref(g)
    del g
    gc.collect()
    trace.add("collected", ref() is None)
    if ref() is not None:
        trace.call("kill by hand", ref().throw)


# ---------------------------------------------------------------------------
# weakref


@scenario
def weakref_to_greenlets(ns: NS, trace: Trace) -> None:
    called = []
    g = ns.named(ns.greenlet(lambda: 1), "g")
    r = weakref.ref(g, lambda _: called.append("callback"))
    trace.add("alive", r() is g)
    g.switch()
    trace.add("dead but referenced", r() is g)
    del g
    trace.add("gone", r() is None, called)
    main_ref = weakref.ref(ns.getcurrent())
    trace.add("main weakref", main_ref() is ns.getcurrent())
    proxy = weakref.proxy(ns.greenlet(lambda: 1))
    trace.call("proxy to freed", getattr, proxy, "dead")


# ---------------------------------------------------------------------------
# Generators and with blocks around switches


@scenario
def switch_inside_generator_and_with(ns: NS, trace: Trace) -> None:
    class Ctx:
        def __enter__(self):
            trace.add("enter")

        def __exit__(self, typ, value, tb):
            trace.add("exit", typ, value)
            return typ is Other

    def gen():
        with Ctx():
            x = yield ns.park("in generator")
            trace.add("gen got", x)
            ns.park("again")

    def run():
        it = gen()
        v = next(it)
        trace.add("first yield", v)
        try:
            it.send("sent")
        except StopIteration:
            trace.add("stopped")
        return "run done"

    g = ns.named(ns.greenlet(run), "g")
    trace.call("start", g.switch)
    trace.call("resume", g.switch, "resumed")
    trace.call("throw Other (suppressed by with)", g.throw, Other("o"))
    g2 = ns.named(ns.greenlet(run), "g2")
    g2.switch()
    g2.switch(1)
    trace.call("throw Boom (not suppressed)", g2.throw, Boom("b"))


# ---------------------------------------------------------------------------
# Threads


@scenario
def threads_have_their_own_main(ns: NS, trace: Trace) -> None:
    results = {}
    main = ns.getcurrent()

    def body():
        tmain = ns.named(ns.getcurrent(), "thread-main")
        g = ns.greenlet(lambda: ns.name(ns.getcurrent().parent))
        results["child parent"] = g.switch()
        results["thread main is main"] = tmain is main
        results["thread main flags"] = (bool(tmain), tmain.dead, tmain.parent)
        results["main seen from thread"] = (bool(main), main.dead)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    for key in sorted(results):
        trace.add(key, results[key])


@scenario
def threads_cannot_switch_to_each_other(ns: NS, trace: Trace) -> None:
    g = ns.named(ns.greenlet(lambda: ns.park("parked") or "finished"), "g")
    g.switch()
    unstarted = ns.named(ns.greenlet(lambda: "ran"), "unstarted")
    out = []

    def attempt(label, fn, *args):
        try:
            out.append((label, "->", fn(*args)))
        except BaseException as exc:  # noqa: BLE001
            out.append((label, "raised", exc))

    def body():
        attempt("switch", g.switch)
        attempt("throw", g.throw)
        attempt("switch unstarted", unstarted.switch)
        attempt("throw unstarted", unstarted.throw, Boom("x"))
        started = ns.greenlet(lambda: ns.park())
        started.switch()
        attempt("started: parent across threads", setattr, started, "parent", g)
        attempt("main of other thread", main.switch)

    main = ns.getcurrent()
    t = threading.Thread(target=body)
    t.start()
    t.join()
    for item in out:
        trace.add(*item)
    trace.flags("g", g)
    trace.call("finish", g.switch)
    trace.call("unstarted", unstarted.switch)


@scenario
def greenlet_of_finished_thread(ns: NS, trace: Trace) -> None:
    box = {}

    def body():
        g = ns.named(ns.greenlet(lambda: ns.park("parked")), "orphan")
        g.switch()
        box["g"] = g
        box["u"] = ns.named(ns.greenlet(lambda: 1), "unstarted-orphan")

    t = threading.Thread(target=body)
    t.start()
    t.join()
    settle()
    g = box.pop("g")
    trace.add("orphan", g.dead, bool(g))
    trace.call("switch", g.switch)
    trace.call("throw", g.throw)
    u = box.pop("u")
    trace.add("unstarted orphan", u.dead, bool(u))
    trace.call("switch unstarted", u.switch)
    del g, u


@scenario
def threads_trace_functions_are_per_thread(ns: NS, trace: Trace) -> None:
    def tracer(event, args):
        trace.add("main thread trace", event)

    seen = {}

    def body():
        seen["gettrace in thread"] = ns.gettrace()
        ns.greenlet(lambda: 1).switch()

    ns.settrace(tracer)
    try:
        t = threading.Thread(target=body)
        t.start()
        t.join()
    finally:
        ns.settrace(None)
    trace.add("thread", seen)


@scenario
def lost_reference_on_other_thread(ns: NS, trace: Trace) -> None:
    def run():
        try:
            ns.park("parked")
        finally:
            trace.add("finally", ns.name(ns.getcurrent()))

    g = ns.named(ns.greenlet(run), "g")
    g.switch()
    box = [g]
    del g

    def body():
        box.clear()     # the last reference goes away on this thread

    t = threading.Thread(target=body)
    t.start()
    t.join()
    trace.add("after thread")
    ns.greenlet(lambda: None).switch()     # a switch here lets deferred kills run
    trace.add("after a switch")


@scenario
def unstarted_greenlet_adopted_by_another_thread(ns: NS, trace: Trace) -> None:
    main = ns.getcurrent()
    box = {}

    def body():
        g = ns.named(ns.greenlet(lambda: ("ran in", ns.name(ns.getcurrent().parent))), "adopted")
        try:
            g.parent = main       # unstarted: greenlet lets it move threads
            box["set"] = "ok"
        except BaseException as exc:  # noqa: BLE001
            box["set"] = exc
        try:
            box["new"] = ns.name(ns.greenlet(lambda: None, main).parent)
        except BaseException as exc:  # noqa: BLE001
            box["new"] = exc
        box["g"] = g

    t = threading.Thread(target=body)
    t.start()
    t.join()
    trace.add("set parent", box["set"])
    trace.add("new with foreign parent", box["new"])
    trace.call("start it here", box.pop("g").switch)


@scenario
def gr_context_across_threads(ns: NS, trace: Trace) -> None:
    box = {}
    ready = threading.Event()
    release = threading.Event()

    def body():
        def worker():
            ns.park("parked")

        g = ns.named(ns.greenlet(worker), "worker")
        g.switch()
        box["g"] = g
        box["main"] = ns.getcurrent()
        ready.set()
        release.wait(30)
        g.switch()

    t = threading.Thread(target=body)
    t.start()
    ready.wait(30)
    try:
        g = box["g"]
        trace.call("gr_context of other thread's suspended greenlet",
                   lambda: type(g.gr_context).__name__)
        trace.call("gr_context of other thread's running main",
                   lambda: type(box["main"].gr_context).__name__)
        trace.call("set gr_context of other thread's running main",
                   setattr, box["main"], "gr_context", contextvars.Context())
    finally:
        release.set()
        t.join()
        box.clear()


# ---------------------------------------------------------------------------
# More corners


@scenario
def thrown_exception_context_is_the_handled_one(ns: NS, trace: Trace) -> None:
    def run():
        try:
            raise KeyError("handled in child")
        except KeyError:
            try:
                ns.park()
            except Boom as exc:
                trace.add("thrown", exc, exc.__context__)
                raise

    g = ns.named(ns.greenlet(run), "g")
    g.switch()
    try:
        g.throw(Boom("thrown in"))
    except Boom as exc:
        trace.add("main got", exc, exc.__context__)


@scenario
def frames_across_c_calls(ns: NS, trace: Trace) -> None:
    def run():
        return list(map(lambda x: ns.park(x), [1]))

    def names(g):
        return [f.f_code.co_name for f in frame_chain(g.gr_frame)]

    g = ns.greenlet(run)
    trace.call("start", g.switch)
    trace.add("frames", names(g))
    trace.call("end", g.switch, "v")

    def key(x):
        return ns.park(("key", x))

    h = ns.greenlet(lambda: sorted([2, 1], key=key))
    trace.call("sorted", h.switch)
    trace.add("frames", names(h))
    trace.call("key 1", h.switch, 2)
    trace.call("key 2", h.switch, 1)


@scenario
def system_exit_and_keyboard_interrupt_propagate(ns: NS, trace: Trace) -> None:
    trace.call("SystemExit", ns.greenlet(lambda: sys.exit(3)).switch)
    trace.call("KeyboardInterrupt", ns.greenlet(lambda: raise_(KeyboardInterrupt)).switch)
    trace.call("StopIteration", ns.greenlet(lambda: next(iter(()))).switch)


@scenario
def run_lookup_raises(ns: NS, trace: Trace) -> None:
    class BadRun(ns.greenlet):
        @property
        def run(self):
            raise Boom("no run today")

    g = ns.named(BadRun(), "bad")
    trace.call("switch", g.switch)
    trace.flags("bad", g)
    trace.call("throw", g.throw, Other("o"))
    trace.flags("bad", g)


@scenario
def subclass_without_super_init(ns: NS, trace: Trace) -> None:
    class NoInit(ns.greenlet):
        def __init__(self, value):
            self.value = value

        def run(self):
            return ("ran", self.value, ns.name(self.parent))

    trace.call("switch", NoInit(5).switch)

    class ParentKw(ns.greenlet):
        def __init__(self, run, parent):
            super().__init__(run, parent=parent)

    p = ns.named(ns.greenlet(lambda *a: ("p got", a)), "p")
    trace.call("parent kw", ParentKw(lambda: "child", p).switch)


@scenario
def init_called_again(ns: NS, trace: Trace) -> None:
    p = ns.named(ns.greenlet(lambda *a: ("p got", a)), "p")
    g = ns.named(ns.greenlet(lambda: "first"), "g")
    trace.call("re-init before start", g.__init__, lambda: "second", p)
    trace.add("parent", ns.name(g.parent))
    trace.call("switch", g.switch)
    trace.call("re-init after end", g.__init__, lambda: "third")
    trace.call("re-init parent only after end", g.__init__, parent=ns.getcurrent())
    trace.add("parent", ns.name(g.parent))


@scenario
def repr_states(ns: NS, trace: Trace) -> None:
    import re

    def state(g):
        return re.sub(r"^<\S+ object at 0x[0-9a-f]+ \(otid=(0x[0-9a-f]+|0x\(nil\))\)", "<",
                      repr(g))

    g = ns.greenlet(lambda: ns.park())
    trace.add("new", state(g))
    g.switch()
    trace.add("suspended", state(g))
    trace.add("main", state(ns.getcurrent()))
    trace.add("running", ns.greenlet(lambda: state(ns.getcurrent())).switch())
    g.switch()
    trace.add("dead", state(g))


@scenario
def not_copyable(ns: NS, trace: Trace) -> None:
    import copy
    import pickle

    g = ns.greenlet(lambda: None)
    trace.call("pickle", pickle.dumps, g)
    trace.call("copy", lambda: type(copy.copy(g)).__name__)
    trace.call("deepcopy", lambda: type(copy.deepcopy(g)).__name__)


@scenario
def collectable_cycles_of_unstarted_and_dead(ns: NS, trace: Trace) -> None:
    g = ns.greenlet()
    box = [g]
    g.run = box.append         # unstarted, in a cycle through its run
    u_ref = weakref.ref(g)
    d = ns.greenlet(lambda: "done")
    d.switch()
    d.me = d                   # dead, in a cycle through its dict
    d_ref = weakref.ref(d)
    del g, d, box
    gc.collect()
    trace.add("collected", u_ref() is None, d_ref() is None)


@scenario
def settrace_sees_target_as_current(ns: NS, trace: Trace) -> None:
    def tracer(event, args):
        origin, target = args
        trace.add(event, ns.name(origin), ns.name(target), ns.name(ns.getcurrent()))

    g = ns.named(ns.greenlet(lambda: ns.park()), "g")
    ns.settrace(tracer)
    g.switch()
    g.switch()
    ns.settrace(None)


@scenario
def recursion_budget_of_a_greenlet_started_deep(ns: NS, trace: Trace) -> None:
    # greenlet starts a greenlet with the recursion depth of its starter.
    def depth():
        n = 0

        def down():
            nonlocal n
            n += 1
            down()

        try:
            down()
        except RecursionError:
            pass
        return n

    limit = sys.getrecursionlimit()

    def at_depth(k):
        if k > 0:
            return at_depth(k - 1)
        return ns.greenlet(depth).switch()

    shallow = ns.greenlet(depth).switch()
    deep = at_depth(limit - 150)
    trace.add("deep start has less room", deep < shallow - limit // 2)


# ---------------------------------------------------------------------------
# Small scenarios, each isolating one divergence found


@scenario
def main_parent_cannot_be_set(ns: NS, trace: Trace) -> None:
    main = ns.getcurrent()
    a = ns.greenlet(lambda: None)
    trace.call("main.parent = a", setattr, main, "parent", a)
    trace.call("main.parent = None", setattr, main, "parent", None)


@scenario
def run_none_is_stored(ns: NS, trace: Trace) -> None:
    g = ns.greenlet(None)
    trace.call("run", getattr, g, "run")
    trace.call("switch", g.switch)
    trace.flags("g", g)
    d = ns.greenlet(lambda: 1)
    d.switch()
    trace.call("re-init of a dead one with run=None", d.__init__, None, ns.getcurrent())


@scenario
def gr_context_of_dead_greenlet(ns: NS, trace: Trace) -> None:
    var = contextvars.ContextVar("dead", default="unset")
    g = ns.greenlet(lambda: var.set("inside"))
    g.switch()
    ctx = g.gr_context
    trace.add("dead gr_context", type(ctx).__name__, ctx.get(var) if ctx is not None else None)
    trace.call("set on dead", setattr, g, "gr_context", contextvars.Context())
    trace.call("None on dead", setattr, g, "gr_context", None)


@scenario
def gr_frame_of_another_threads_greenlet(ns: NS, trace: Trace) -> None:
    box = {}
    ready = threading.Event()
    release = threading.Event()

    def body():
        g = ns.greenlet(lambda: ns.park("parked"))
        g.switch()
        box["g"] = g
        ready.set()
        release.wait(30)
        g.switch()

    t = threading.Thread(target=body)
    t.start()
    ready.wait(30)
    try:
        frame = box["g"].gr_frame
        trace.add("gr_frame", frame.f_code.co_name if frame is not None else None)
    finally:
        release.set()
        t.join()
        box.clear()


@scenario
def settrace_accepts_any_object(ns: NS, trace: Trace) -> None:
    trace.call("settrace(5)", ns.settrace, 5)
    trace.add("gettrace", ns.gettrace())
    ns.settrace(None)


@scenario
def settrace_switch_to_current(ns: NS, trace: Trace) -> None:
    def tracer(event, args):
        origin, target = args
        trace.add("trace", event, ns.name(origin), ns.name(target))

    d = ns.named(ns.greenlet(lambda: 1), "d")
    d.switch()
    ns.settrace(tracer)
    trace.call("self switch", ns.getcurrent().switch, 1)
    trace.call("switch to dead (goes to main)", d.switch, 2)
    trace.call("throw into dead (goes to main)", d.throw, Boom("x"))
    ns.settrace(None)


# ---------------------------------------------------------------------------
# The test


def _params():
    for name in sorted(SCENARIOS):
        marks = []
        if DEBUG_BUILD and name in BOTH_ABORT_DEBUG_BUILD:
            marks.append(pytest.mark.skip(reason="aborts a debug build of CPython: "
                                          + BOTH_ABORT_DEBUG_BUILD[name]))
        elif name in FASTCO_DIFFERENCES:
            marks.append(pytest.mark.xfail(strict=True, reason="intended difference: "
                                           + FASTCO_DIFFERENCES[name]))
        yield pytest.param(name, marks=marks, id=name)


def test_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 40


@pytest.mark.parametrize("name", list(_params()))
def test_same_trace(name: str) -> None:
    fn = SCENARIOS[name]
    if DEBUG_BUILD and name in GREENLET_ABORTS_DEBUG_BUILD:
        assert len(run_scenario(fn, FASTCO)) > 1
        pytest.skip("greenlet aborts a debug build of CPython here ("
                    + GREENLET_ABORTS_DEBUG_BUILD[name] + "): fastco ran alone")
    expected = run_scenario(fn, GREENLET)
    got = run_scenario(fn, FASTCO)
    assert len(expected) > 1
    assert got == expected
