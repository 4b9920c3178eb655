"""greenlet's C API served by fastco (csrc/pyglue/capi.c): a C extension
built here (tests/capi_probe.c) calls each of the 12 slots of the capsule
greenlet._C_API as code compiled against greenlet.h does, with good and bad
arguments; greenlet 3.5's conventions (src/greenlet/CObjects.cpp) are the
expected ones.  greenlet's own C-API tests run in .ci/greenlet_suite.py."""

from __future__ import annotations

import gc
import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import fastco
from conftest import build_c_extension, run_python
from fastco import _native

PROBE = Path(__file__).resolve().parent / "capi_probe.c"


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> ModuleType:
    """The probe extension, loaded, its table read from fastco's capsule."""
    out = build_c_extension(PROBE, tmp_path_factory.mktemp("capi"), "capi_probe",
                            include=(PROBE.parent,))
    spec = importlib.util.spec_from_file_location("capi_probe", out)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.load(_native._C_API)
    return mod


def test_object_layout_is_greenlets() -> None:
    """greenlet.h's PyGreenlet is the whole object: a Cython subclass's
    fields start right after it (40 bytes on x86-64)."""
    assert fastco.greenlet.__basicsize__ == object.__basicsize__ + 3 * 8
    assert fastco.greenlet.__weakrefoffset__ == object.__basicsize__
    assert fastco.greenlet.__dictoffset__ == object.__basicsize__ + 8


def test_size_matches_the_header(probe) -> None:
    assert probe.GREENLET_SIZE == fastco.greenlet.__basicsize__


def test_objects(probe) -> None:
    assert probe.objects() == (fastco.greenlet, fastco.error, fastco.GreenletExit)


def test_new_and_switch(probe) -> None:
    g = probe.new(lambda *a, **k: (a, k), probe.NULL)
    assert isinstance(g, fastco.greenlet) and g.parent is fastco.getcurrent()
    assert probe.switch(g, (1, 2), {"x": 3}) == ((1, 2), {"x": 3})
    assert g.dead


def test_new_with_parent_and_without_run(probe) -> None:
    parent = fastco.greenlet(lambda v: ("parent got", v))
    g = probe.new(probe.NULL, parent)
    assert g.parent is parent
    g.run = lambda: 5
    assert g.switch() == ("parent got", 5)


def test_new_with_a_bad_parent(probe) -> None:
    with pytest.raises(TypeError, match="Expected any type of greenlet, not str"):
        probe.new(lambda: 1, "not a greenlet")


def test_switch_null_args_and_bad_kwargs(probe) -> None:
    """NULL args means (); keywords that are not a dict are ignored (as
    greenlet does); args that are not a tuple are refused."""
    g = fastco.greenlet(lambda *a, **k: (a, k))
    assert probe.switch(g, probe.NULL, probe.NULL) == ((), {})
    g = fastco.greenlet(lambda *a, **k: (a, k))
    assert probe.switch(g, (7,), ["not", "a", "dict"]) == ((7,), {})
    g = fastco.greenlet(lambda *a: a)
    with pytest.raises(TypeError, match="must be a tuple"):
        probe.switch(g, [1], probe.NULL)
    assert not g.dead


def test_switch_into_a_suspended_greenlet(probe) -> None:
    main = fastco.getcurrent()
    g = fastco.greenlet(lambda: (main.switch("out"), "back"))
    assert g.switch() == "out"
    assert probe.switch(g, ("in",), probe.NULL) == ("in", "back")


def test_getcurrent(probe) -> None:
    assert probe.getcurrent() is fastco.getcurrent()
    seen = []
    g = fastco.greenlet(lambda: seen.append(probe.getcurrent()))
    g.switch()
    assert seen == [g]


def test_getcurrent_is_a_new_reference(probe) -> None:
    cur = fastco.getcurrent()
    before = sys.getrefcount(cur)
    for _ in range(1000):
        probe.getcurrent()
    assert sys.getrefcount(cur) == before


def test_throw(probe) -> None:
    main = fastco.getcurrent()

    def body():
        try:
            main.switch()
        except KeyError as e:
            return ("caught", e.args)

    g = fastco.greenlet(body)
    g.switch()
    assert probe.throw(g, KeyError, "k", probe.NULL) == ("caught", ("k",))


def test_throw_null_value_and_instance(probe) -> None:
    g = fastco.greenlet(lambda: None)
    with pytest.raises(ValueError) as info:
        probe.throw(g, ValueError, probe.NULL, probe.NULL)
    assert info.value.args == ()
    g = fastco.greenlet(lambda: None)
    with pytest.raises(ValueError, match="inst"):
        probe.throw(g, ValueError("inst"), probe.NULL, None)


def test_throw_bad_exceptions(probe) -> None:
    g = fastco.greenlet(lambda: None)
    with pytest.raises(TypeError, match="exceptions must be classes"):
        probe.throw(g, probe.NULL, probe.NULL, probe.NULL)
    with pytest.raises(TypeError, match="exceptions must be classes"):
        probe.throw(g, 42, probe.NULL, probe.NULL)
    with pytest.raises(TypeError, match="traceback"):
        probe.throw(g, ValueError, probe.NULL, "not a traceback")
    with pytest.raises(TypeError, match="separate value"):
        probe.throw(g, ValueError("x"), "v", probe.NULL)
    assert not g.dead and not g


def test_throw_greenletexit_into_a_dead_greenlet(probe) -> None:
    """As g.throw(): GreenletExit into a finished greenlet comes back as a
    value (to the parent, the caller here)."""
    g = fastco.greenlet(lambda: None)
    g.switch()
    r = probe.throw(g, fastco.GreenletExit, probe.NULL, probe.NULL)
    assert isinstance(r, fastco.GreenletExit)


def test_setparent(probe) -> None:
    a = fastco.greenlet(lambda: None)
    b = fastco.greenlet(lambda: None)
    assert probe.setparent(b, a) == 0 and b.parent is a
    with pytest.raises(ValueError, match="cyclic"):
        probe.setparent(a, b)
    with pytest.raises(TypeError, match="Expected any type of greenlet, not int"):
        probe.setparent(b, 5)
    with pytest.raises(AttributeError, match="can't delete"):
        probe.setparent(b, probe.NULL)
    with pytest.raises(AttributeError, match="main greenlet"):
        probe.setparent(fastco.getcurrent(), a)


def test_flags(probe) -> None:
    main = fastco.getcurrent()
    main_flags = [probe.flag(i, main) for i in (8, 9, 10)]
    assert main_flags == [1, 1, 1]
    g = fastco.greenlet(lambda: main.switch())
    assert [probe.flag(i, g) for i in (8, 9, 10)] == [0, 0, 0]
    g.switch()
    assert [probe.flag(i, g) for i in (8, 9, 10)] == [0, 1, 1]
    g.switch()
    assert g.dead
    assert [probe.flag(i, g) for i in (8, 9, 10)] == [0, 1, 0]


def test_active_asks_no_subclass_bool(probe) -> None:
    """ACTIVE reads the greenlet's state, as greenlet does: a subclass's
    __bool__ (gevent's Greenlet has one) is neither called nor believed."""
    main = fastco.getcurrent()

    class Raising(fastco.greenlet):
        def __bool__(self) -> bool:
            raise RuntimeError("__bool__ called by ACTIVE")

    class Falsy(fastco.greenlet):
        def __bool__(self) -> bool:
            return False

    for cls in (Raising, Falsy):
        g = cls(lambda: main.switch())
        assert probe.flag(10, g) == 0
        g.switch()
        assert probe.flag(10, g) == 1
        g.switch()
        assert probe.flag(10, g) == 0


def test_getparent(probe) -> None:
    g = fastco.greenlet(lambda: None)
    main = fastco.getcurrent()
    assert probe.getparent(g) is main
    before = sys.getrefcount(main)
    for _ in range(1000):
        probe.getparent(g)
    assert sys.getrefcount(main) == before   # a new reference each time, released
    # No parent: NULL, and no exception.
    assert probe.getparent(main) is probe.NULL


@pytest.mark.parametrize("bad", ["not a greenlet", 5, None, "NULL"])
def test_non_greenlets_get_typeerror(probe, bad) -> None:
    """Each slot that takes a greenlet refuses anything else, NULL included,
    with TypeError (greenlet's PyErr_BadArgument), and touches nothing."""
    if bad == "NULL":
        bad = probe.NULL
    with pytest.raises(TypeError, match="bad argument type"):
        probe.throw(bad, ValueError, probe.NULL, probe.NULL)
    with pytest.raises(TypeError, match="bad argument type"):
        probe.switch(bad, (), probe.NULL)
    with pytest.raises(TypeError, match="bad argument type"):
        probe.setparent(bad, fastco.getcurrent())
    for i in (8, 9, 10):
        with pytest.raises(TypeError, match="bad argument type"):
            probe.flag(i, bad)
    with pytest.raises(TypeError, match="bad argument type"):
        probe.getparent(bad)


def test_greenlets_made_by_c_are_collected(probe) -> None:
    """A greenlet from New in a cycle goes with the collector."""
    import weakref

    g = probe.new(lambda: None, probe.NULL)
    g.cycle = g
    ref = weakref.ref(g)
    del g
    gc.collect()
    assert ref() is None


def test_capsule_import_as_greenlet(tmp_path) -> None:
    """With FASTCO_AS_GREENLET=1, PyCapsule_Import("greenlet._C_API") finds
    fastco's table (through the provider module), and GetCurrent during
    finalization is NULL with greenlet's RuntimeError."""
    out = build_c_extension(PROBE, tmp_path, "capi_probe", include=(PROBE.parent,))
    code = textwrap.dedent(f"""
        import importlib.util, sys, greenlet, fastco
        spec = importlib.util.spec_from_file_location("capi_probe", {str(out)!r})
        probe = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(probe)
        probe.load()
        assert probe.objects()[0] is greenlet.greenlet is fastco.greenlet
        assert greenlet._greenlet._C_API is greenlet._C_API
        print(probe.switch(probe.new(lambda *a: sum(a), probe.NULL), (1, 2, 3), probe.NULL))
        print(greenlet.greenlet.__name__, greenlet.greenlet.__module__)

        class AtExit:
            def __del__(self, probe=probe, print=print):
                try:
                    probe.getcurrent()
                except RuntimeError as e:
                    print("at exit:", e, flush=True)

        greenlet._greenlet.at_exit = AtExit()
    """)
    proc = run_python(code=code, env={"FASTCO_AS_GREENLET": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["6", "greenlet greenlet",
                                        "at exit: greenlet is being finalized"]
