"""Randomized differential test: random greenlet programs on greenlet and fastco.

A program is a list of operations over a small pool of greenlet slots.  The
operations form one shared script: whoever runs (the main greenlet or any
greenlet of the pool) takes the next operation and executes it.  Every
greenlet runs the same body, a loop over the script, so a switch can happen
at any point of any greenlet: nested switches, switches into greenlets
suspended deep in their own switches, kills while other greenlets are
suspended, and so on.

The same interpreter runs each program on the greenlet package and on
fastco; the traces (values, exception types and data args, greenlet names,
flags, settrace events) must be equal.

Termination: each operation is taken from the script exactly once, and a
greenlet that finds the script empty returns, so a program executes at most
len(ops) operations (a step counter enforces it); GreenletExit is never
swallowed, so a kill always kills.  A watchdog (faulthandler) ends the
process with tracebacks if a switch hangs in C.
"""

from __future__ import annotations

import contextvars
import faulthandler
import gc
import io
import os
import sys
import traceback
import weakref
from collections import deque
from typing import Any

import pytest

pytest.importorskip("greenlet")
hypothesis = pytest.importorskip("hypothesis")

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
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import frame_chain  # noqa: E402

GREENLET, FASTCO = load_impls()

SLOTS = 3
MAX_OPS = 30
# Examples per run; FASTCO_DIFFTEST_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("FASTCO_DIFFTEST_EXAMPLES", "300"))
# Seconds after which a hung program ends the process with tracebacks.
WATCHDOG = 300


# A context variable that programs set and read, each greenlet in its context.
VAR: contextvars.ContextVar[Any] = contextvars.ContextVar("difftest", default="unset")


class E1(Exception):
    """Raised by programs; args are data."""


class E2(Exception):
    """Thrown by programs; args are data."""


# ---------------------------------------------------------------------------
# The interpreter


def collect_but_suspended() -> None:
    """gc.collect(), except where greenlet would collect a suspended greenlet
    caught in a cycle (3.15), silently, where fastco keeps it: a difference
    tested on its own in test_differential.  The program kills such
    greenlets by hand at its end, before the collector runs."""
    if not REFERENCE_COLLECTS_SUSPENDED:
        gc.collect()


def tb_names(exc: BaseException) -> list[str]:
    """The function names of an exception's traceback."""
    return [frame.f_code.co_name for frame, _ in traceback.walk_tb(exc.__traceback__)]


class Program:
    """One run of a program on one implementation."""

    def __init__(self, impl: Impl, ops: list[tuple], tracing: bool) -> None:
        self.impl = impl
        self.script = deque(enumerate(ops))
        self.step_limit = len(ops)
        self.steps = 0
        self.tracing = tracing
        self.pool: dict[int, Any] = {}
        self.refs: list[weakref.ref] = []
        self.trace: list[tuple] = []

    # -- recording

    def log(self, *items: Any) -> None:
        self.trace.append(tuple(describe(self.impl, i) for i in items))

    def name(self, g: Any) -> str | None:
        return name_of(self.impl, g)

    def tracer(self, event: str, args: tuple) -> None:
        origin, target = args
        if origin is target:
            # A switch that stays in the current greenlet: greenlet reports
            # it, fastco does not (test_differential's
            # settrace_switch_to_current); not compared here.
            return
        self.log("trace", event, self.name(origin), self.name(target))

    def frames(self, g: Any) -> list[str]:
        """The function names of a suspended greenlet's frames."""
        return [f.f_code.co_name for f in frame_chain(g.gr_frame)]

    # -- the script

    def take(self) -> tuple[int, tuple]:
        self.steps += 1
        if self.steps > self.step_limit:
            raise RuntimeError("program ran more steps than it has operations")
        return self.script.popleft()

    def body(self, *args: Any, **kwargs: Any) -> Any:
        """The run of every greenlet of the pool: executes script operations."""
        me = self.name(self.impl.getcurrent())
        if len(args) == 1 and not kwargs and isinstance(args[0], self.impl.GreenletExit):
            # A GreenletExit ending a child starts its unstarted parent:
            # greenlet calls run() with the exception object as the args
            # "tuple" (undefined behaviour; no arguments in practice, a crash
            # if the exception has a __dict__), fastco with it as the one
            # argument.  Not compared.
            args = ()
        self.log(me, "start", args, kwargs)
        try:
            while self.script:
                index, op = self.take()
                end = self.execute(me, index, op)
                if end is not None:
                    mode, value = end
                    if mode == "return":
                        return (me, value)
                    if mode == "raise":
                        raise E1(me, value)
                    raise self.impl.GreenletExit(me, value)
            self.log(me, "script exhausted")
            return (me, "exhausted")
        except BaseException as exc:
            self.log(me, "dies with", exc)
            raise

    def subclass_run(self) -> Any:
        """A run method for a greenlet subclass: the body again."""
        program = self

        def run(g: Any, *args: Any, **kwargs: Any) -> Any:
            # Not kept in this frame: a traceback through it would keep the
            # greenlet alive as long as the exception lives.
            del g
            return program.body(*args, **kwargs)

        return run

    def resolve(self, who: str, spec: Any) -> Any:
        """A greenlet named by an operation: a slot number, 'main', 'self',
        'parent' (of the current greenlet); None when there is none."""
        current = self.impl.getcurrent()
        if spec == "self":
            return current
        if spec == "parent":
            return current.parent
        if spec == "main":
            while current.parent is not None:
                current = current.parent
            return current
        return self.pool.get(spec)

    def execute(self, who: str, index: int, op: tuple) -> tuple | None:
        """Executes one operation in the current greenlet `who`.  Returns
        (mode, value) for an 'end' operation in a pool greenlet."""
        kind = op[0]
        in_main = who == "main"
        if kind == "create":
            _, slot, parent_spec, subclass = op
            parent = self.resolve(who, parent_spec) if parent_spec is not None else None
            name = f"g{len(self.refs)}"
            cls = self.impl.greenlet
            if subclass:
                cls = type("Sub", (cls,), {"run": self.subclass_run()})
            kwargs = {} if subclass else {"run": self.body}
            if parent is not None:
                kwargs["parent"] = parent
            try:
                g = cls(**kwargs)
            except Exception as exc:  # noqa: BLE001
                self.log(who, index, "create", slot, "raised", exc)
                return None
            set_name(g, name)
            self.refs.append(weakref.ref(g))
            self.log(who, index, "create", slot, name, self.name(g.parent))
            del parent
            self.pool[slot] = g     # may drop, and so kill, the one that was there
            del g
            return None
        if kind in ("switch", "throw"):
            _, target_spec, payload, catch = op
            target = self.resolve(who, target_spec)
            if target is None:
                self.log(who, index, kind, target_spec, "no such greenlet")
                return None
            tname = self.name(target)
            try:
                if kind == "switch":
                    args, kwargs = payload
                    result = target.switch(*args, **kwargs)
                else:
                    result = target.throw(*self.throw_args(payload))
            except BaseException as exc:
                del target
                self.log(who, index, kind, tname, "raised", exc, tb_names(exc))
                if in_main:
                    return None
                if isinstance(exc, self.impl.GreenletExit):
                    if catch == "last-op" and self.script:
                        # Dying: one more operation, inside the handler.
                        last, last_op = self.take()
                        self.log(who, index, "last operation", last)
                        self.execute(who, last, last_op)
                    raise
                if not catch:
                    raise
                return None
            del target
            self.log(who, index, kind, tname, "->", result)
            return None
        if kind == "drop":
            _, slot = op
            g = self.pool.pop(slot, None)
            self.log(who, index, "drop", slot, self.name(g))
            del g
            collect_but_suspended()
            self.log(who, index, "dropped")
            return None
        if kind == "setparent":
            _, slot, spec = op
            g = self.pool.get(slot)
            if g is None:
                self.log(who, index, "setparent", slot, "empty")
                return None
            if spec == "int":
                value: Any = 3
            elif spec == "none":
                value = None
            elif spec == "self":
                value = g
            else:
                value = self.resolve(who, spec)
                if value is None:
                    self.log(who, index, "setparent", slot, spec, "no such greenlet")
                    return None
            try:
                g.parent = value
            except Exception as exc:  # noqa: BLE001
                self.log(who, index, "setparent", self.name(g), "raised", exc)
            else:
                self.log(who, index, "setparent", self.name(g), self.name(value))
            del g, value
            return None
        if kind == "inspect":
            state = []
            g = None
            for slot in sorted(self.pool):
                g = self.pool[slot]
                frames = self.frames(g) if g and g is not self.impl.getcurrent() else None
                state.append((slot, self.name(g), g.dead, bool(g), self.name(g.parent), frames))
            del g
            self.log(who, index, "inspect", self.name(self.impl.getcurrent()), state,
                     sys.exc_info()[0], VAR.get())
            return None
        if kind == "ctxvar":
            _, value = op
            self.log(who, index, "ctxvar", VAR.get(), value)
            VAR.set(value)
            return None
        if kind == "setctx":
            # A copy of the current context becomes a pool greenlet's (not
            # a dead one's: see test_differential's gr_context_of_dead_greenlet).
            _, slot = op
            g = self.pool.get(slot)
            if g is None or g.dead:
                self.log(who, index, "setctx", slot, "empty or dead")
            else:
                try:
                    g.gr_context = contextvars.copy_context()
                except Exception as exc:  # noqa: BLE001
                    self.log(who, index, "setctx", self.name(g), "raised", exc)
                else:
                    self.log(who, index, "setctx", self.name(g), g.gr_context.get(VAR))
            del g
            return None
        if kind == "end":
            _, mode, value = op
            if in_main:
                self.log(who, index, "end ignored in main")
                return None
            self.log(who, index, "end", mode, value)
            return (mode, value)
        raise AssertionError(f"unknown operation {op!r}")

    def throw_args(self, spec: str) -> tuple:
        exit_ = self.impl.GreenletExit
        return {
            "default": (),
            "GreenletExit": (exit_,),
            "GreenletExit()": (exit_("thrown"),),
            "E1": (E1,),
            "E2()": (E2("thrown"),),
            "E2, value": (E2, 7),
        }[spec]

    # -- the whole run

    def run(self) -> list[tuple]:
        main = self.impl.getcurrent()
        set_name(main, "main")
        del main
        if self.tracing:
            self.impl.settrace(self.tracer)
        # A kill whose GreenletExit is not the end of the greenlet is
        # reported: "GreenletExit did not kill <repr>" on stderr, or an
        # unraisable exception.  Both are part of the trace.
        stderr, sys.stderr = sys.stderr, io.StringIO()
        hook, sys.unraisablehook = sys.unraisablehook, self.unraisable
        try:
            while self.script:
                index, op = self.take()
                self.execute("main", index, op)
            self.log("script done")
            self.execute("main", -1, ("inspect",))
            # The pool's references go: suspended greenlets that nothing
            # else holds are killed now.
            self.pool.clear()
            collect_but_suspended()
            self.log("pool cleared")
            # What survives (held by another suspended greenlet's frame, say)
            # is killed by hand, in the order of creation.
            for ref in self.refs:
                g = ref()
                if g is not None and g:
                    name = self.name(g)
                    try:
                        result = g.throw()
                    except BaseException as exc:  # noqa: BLE001
                        self.log("kill", name, "raised", exc)
                    else:
                        self.log("kill", name, "->", result)
                        del result
                del g
            gc.collect()
            self.log("left", [(self.name(r()), r().dead) for r in self.refs if r() is not None])
        finally:
            self.impl.settrace(None)
            captured, sys.stderr = sys.stderr, stderr
            sys.unraisablehook = hook
        for line in captured.getvalue().splitlines():
            if line.startswith("GreenletExit did not kill"):
                self.log("stderr", "GreenletExit did not kill")
            else:
                self.log("stderr", line)
        return self.trace

    def unraisable(self, info: Any) -> None:
        self.log("unraisable", info.exc_value, self.name(info.object)
                 if isinstance(info.object, self.impl.greenlet) else None)


def run_program(impl: Impl, ops: list[tuple], tracing: bool) -> list[tuple]:
    # What exists now (hypothesis' growing state, mostly) is moved out of the
    # collector's sight, so that the programs' many gc.collect() calls take
    # microseconds; the previous program's garbage was collected already.
    gc.freeze()
    # In a new empty context, so that what main sets does not outlive the run.
    trace = contextvars.Context().run(Program(impl, ops, tracing).run)
    settle()
    return trace


# ---------------------------------------------------------------------------
# Programs

slots = st.integers(0, SLOTS - 1)
values = st.one_of(st.integers(-2, 9), st.sampled_from(["a", "b", ""]), st.none(), st.just(()))
args_st = st.lists(values, max_size=3).map(tuple)
kwargs_st = st.dictionaries(st.sampled_from(["x", "y", "z"]), values, max_size=2)
targets = st.one_of(slots, slots, st.sampled_from(["main", "self", "parent"]))

create_st = st.tuples(st.just("create"), slots,
                      st.one_of(st.none(), st.none(), slots,
                                st.sampled_from(["main", "self", "parent"])),
                      st.booleans())
# Whether a greenlet whose switch or throw raises goes on (True) or dies with
# the exception (False); "last-op": dies, but on GreenletExit runs one more
# operation first, inside the handler.
catch_st = st.sampled_from([False, True, "last-op"])
switch_st = st.tuples(st.just("switch"), targets, st.tuples(args_st, kwargs_st), catch_st)
ops_st = st.one_of(
    create_st,
    switch_st,
    switch_st,
    st.tuples(st.just("throw"), targets,
              st.sampled_from(["default", "GreenletExit", "GreenletExit()", "E1", "E2()",
                               "E2, value"]),
              catch_st),
    st.tuples(st.just("end"), st.sampled_from(["return", "raise", "exit"]), values),
    st.tuples(st.just("drop"), slots),
    st.tuples(st.just("setparent"), slots,
              st.one_of(slots, st.sampled_from(["main", "self", "parent", "int", "none"]))),
    st.tuples(st.just("inspect")),
    st.tuples(st.just("ctxvar"), values),
    st.tuples(st.just("setctx"), slots),
)
# A program starts by filling a slot or two, so that most switches have a
# target; the rest is free.
programs = st.builds(
    lambda head, tail: head + tail,
    st.lists(create_st, min_size=1, max_size=3),
    st.lists(ops_st, min_size=2, max_size=MAX_OPS - 3),
)


@pytest.fixture(scope="module", autouse=True)
def frozen_heap():
    """Gives back to the collector what run_program froze."""
    settle()
    yield
    gc.unfreeze()
    settle()


@pytest.fixture
def watchdog():
    """Ends the process with tracebacks if the test hangs (in C, say)."""
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def assert_same(ops: list[tuple], tracing: bool) -> None:
    if DEBUG_BUILD:
        # greenlet would abort the interpreter in some programs (see
        # Program.body): fastco runs alone, under the debug build's checks.
        assert run_program(FASTCO, ops, tracing)
        return
    expected = run_program(GREENLET, ops, tracing)
    got = run_program(FASTCO, ops, tracing)
    assert got == expected


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 300,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(ops=programs, tracing=st.booleans())
def test_random_programs_agree(watchdog, ops: list[tuple], tracing: bool) -> None:
    assert_same(ops, tracing)


# Programs worth keeping: each hits a corner the random ones rarely reach.
FIXED_PROGRAMS = {
    "kill-nested-suspended": [
        ("create", 0, None, False), ("switch", 0, ((), {}), False),
        ("create", 1, None, False), ("switch", 1, ((1,), {}), False),
        ("switch", "main", ((2,), {}), False), ("drop", 0), ("inspect",),
        ("switch", 1, ((), {"x": 1}), True), ("end", "raise", 3),
    ],
    "parent-unstarted-gets-result": [
        ("create", 0, None, False), ("create", 1, 0, True),
        ("switch", 1, ((1, 2), {}), False), ("end", "return", "r1"),
        ("inspect",), ("end", "exit", "e0"),
    ],
    "kill-raises-another-exception": [
        ("create", 0, None, False), ("switch", 0, ((), {}), False),
        ("switch", "main", ((), {}), "last-op"), ("drop", 0),
        ("throw", "self", "E1", False), ("inspect",),
    ],
    "kill-switches-back-to-killer": [
        ("create", 0, None, False), ("switch", 0, ((), {}), False),
        ("switch", "main", ((), {}), "last-op"), ("drop", 0),
        ("switch", "parent", (("not dying",), {}), False), ("inspect",),
    ],
    "throw-into-main-from-child": [
        ("create", 0, None, False), ("switch", 0, ((), {}), False),
        ("throw", "main", "E2()", False), ("throw", 0, "E1", True),
        ("setparent", 0, "self"), ("setparent", 0, "int"), ("end", "return", 0),
    ],
}


@pytest.mark.parametrize("tracing", [False, True])
@pytest.mark.parametrize("name", sorted(FIXED_PROGRAMS))
def test_fixed_programs_agree(watchdog, name: str, tracing: bool) -> None:
    assert_same(FIXED_PROGRAMS[name], tracing)
