"""A Cython cdef subclass of greenlet.greenlet, with fields of its own, on
fastco serving as greenlet: what gevent's compiled Greenlet and Hub are.

The subclass (tests/greenlet_sub.pyx) is compiled here, against
greenlet's object layout, and used in a fresh interpreter with
FASTCO_AS_GREENLET=1 and RuntimeWarnings as errors (Cython warns, as a
RuntimeWarning, when the base type's size is not the one it was compiled
against).  Its fields must survive switches, the collector, and the kill of
a suspended one that is dropped, including its resurrection by that kill.
Needs Cython (the test extra) and a C compiler; skipped without them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import build_c_extension

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The directory holding the compiled greenlet_sub extension."""
    pytest.importorskip("Cython", reason="Cython is not installed (pip install cython)")
    out = tmp_path_factory.mktemp("cython")
    c_file = out / "greenlet_sub.c"
    proc = subprocess.run([sys.executable, "-m", "cython", "-3", str(HERE / "greenlet_sub.pyx"),
                           "-o", str(c_file)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    build_c_extension(c_file, out, "greenlet_sub", strict=False, include=(HERE,))
    return out


def run_with_sub(built: Path, body: str) -> list[str]:
    """Run `body` with ``Sub`` imported (and greenlet, gc, weakref), fastco
    serving as greenlet and RuntimeWarnings as errors; its output lines."""
    code = textwrap.dedent("""
        import gc, sys, weakref
        sys.path.insert(0, {path!r})
        import greenlet, fastco
        from greenlet_sub import Sub
        assert greenlet.greenlet is fastco.greenlet
        main = greenlet.getcurrent()

        def suspended(g, at_end):
            # g, started with a run that waits in main.switch() and hands
            # itself to at_end in its finally.  (Its frame must not hold it
            # across the switch: a suspended greenlet is a root, so such a
            # self-reference would keep it, as with greenlet.)
            def body():
                try:
                    main.switch()
                finally:
                    at_end(greenlet.getcurrent())
            g.run = body
            g.switch()
            return g
    """).format(path=str(built)) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                          capture_output=True, text=True, timeout=120,
                          env=run_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def run_env() -> dict[str, str]:
    import os
    return {**os.environ, "FASTCO_AS_GREENLET": "1"}


def test_subclass_has_its_own_fields_after_greenlets(built) -> None:
    out = run_with_sub(built, """
        print(Sub.__basicsize__ > greenlet.greenlet.__basicsize__,
              Sub.__mro__[1] is fastco.greenlet)
        s = Sub(payload="x")
        s.extra = 1        # the base's __dict__, at greenlet's offset
        print(s.payload, s.counter, s.log, s.__dict__)
    """)
    assert out == ["True True", "x 0 [] {'extra': 1}"]


def test_fields_survive_switches(built) -> None:
    out = run_with_sub(built, """
        def body():
            me = greenlet.getcurrent()
            for i in range(1000):
                me.bump()
                me.log.append(i)
                main.switch(me.payload)
            return me.counter

        s = Sub(body, payload=("p", 1))
        assert all(s.switch() == ("p", 1) for _ in range(1000))
        print(s.switch(), s.dead, s.log == list(range(1000)), s.payload)
    """)
    assert out == ["1000 True True ('p', 1)"]


def test_collector_frees_cycles_through_the_fields(built) -> None:
    """tp_traverse and tp_clear chain from the subclass to greenlet's: cycles
    through the subclass's fields and through the base's __dict__ go."""
    out = run_with_sub(built, """
        a = Sub(lambda: None); a.payload = a
        b = Sub(lambda: None); b.me = b; b.switch()
        c = Sub(lambda: None); d = Sub(lambda: None, parent=c); c.log.append(d)
        refs = [weakref.ref(x) for x in (a, b, c, d)]
        del a, b, c, d
        gc.collect()
        print([r() is None for r in refs])
    """)
    assert out == ["[True, True, True, True]"]


def test_suspended_subclass_is_a_root(built) -> None:
    """As with greenlet: a suspended greenlet is not collected, even in a
    cycle (its frames may still run); its fields stay."""
    out = run_with_sub(built, """
        def body():
            main.switch()
        s = Sub(body, payload="kept"); s.payload2 = s; s.switch()
        r = weakref.ref(s)
        del s
        gc.collect()
        print(r() is not None, r().payload)
        r().throw()
        print(r() is None or r().dead)
    """)
    assert out == ["True kept", "True"]


def test_dropped_suspended_subclass_is_killed_with_its_fields_intact(built) -> None:
    """Dropping a suspended one throws GreenletExit into it (finally blocks
    run) before the subclass's fields are cleared: the dying code reads them."""
    out = run_with_sub(built, """
        seen = []
        s = Sub(payload="precious"); s.counter = 7; s.log.append("l")
        s = suspended(s, lambda me: seen.append((me.payload, me.counter, list(me.log))))
        del s
        print(seen)
    """)
    assert out == ["[('precious', 7, ['l'])]"]


def test_kill_resurrects_the_subclass_whole(built) -> None:
    """Its dying code keeps a reference to it: the object lives on, dead,
    with its fields (and the base's dict), and is freed later as usual."""
    out = run_with_sub(built, """
        keep = []
        s = Sub(payload="precious"); s.counter = 7; s.note = "dict"
        s = suspended(s, keep.append)
        del s
        g = keep[0]
        print(type(g).__name__, g.dead, g.payload, g.counter, g.note)
        r = weakref.ref(g)
        del g, keep[:]
        gc.collect()
        print(r() is None)
    """)
    assert out == ["Sub True precious 7 dict", "True"]


def test_subclass_that_swallows_greenletexit(built) -> None:
    """As greenlet: it is kept (with a complaint on stderr), fields intact."""
    out = run_with_sub(built, """
        keep = []
        def body():
            while True:
                try:
                    main.switch()
                except greenlet.GreenletExit:
                    keep.append(greenlet.getcurrent().payload)
        s = Sub(body, payload="stubborn")
        s.switch()
        r = weakref.ref(s)
        del s
        print(keep, r() is not None and r().payload)
    """)
    assert out == ["['stubborn'] stubborn"]


def test_python_subclass_of_the_cython_subclass(built) -> None:
    out = run_with_sub(built, """
        class PySub(Sub):
            def __init__(self, run):
                super().__init__(run, payload="py")
        seen = []
        s = suspended(PySub(None), lambda me: seen.append((me.payload, type(me).__name__)))
        del s
        print(seen)
    """)
    assert out == ["[('py', 'PySub')]"]


def test_python_subclass_with_del_of_the_cython_subclass(built) -> None:
    """Its __del__ takes the finalizer's place, so the kill would come after
    Cython's dealloc cleared the fields its code reads (greenlet 3.5.6
    crashes there): the greenlet is left unfinished, with a message."""
    out = run_with_sub(built, """
        class PySub(Sub):
            def __del__(self):
                print("__del__", self.payload)
        seen = []
        s = suspended(PySub(None, payload="P"), lambda me: seen.append(me.payload))
        del s
        gc.collect()
        print(seen, "survived")
    """)
    assert out == ["__del__ P", "[] survived"]


def test_greenlet_module_api_on_the_subclass(built) -> None:
    """The subclass through the Python API and fastco's own tools alike."""
    out = run_with_sub(built, """
        s = Sub(lambda x: x * 2, payload=1)
        print(bool(s), s.dead, s.parent is main, s.switch(21), s.dead, s.payload)
    """)
    assert out == ["False False True 42 True 1"]



def test_subclass_dropped_on_another_thread_is_killed_on_its_own(built) -> None:
    """Its last reference goes on another thread: the kill waits for its own
    thread's next switch (getcurrent() here), the fields still there."""
    out = run_with_sub(built, """
        import threading
        seen = []
        box = [suspended(Sub(payload="far"),
                         lambda me: seen.append((me.payload, threading.current_thread().name)))]
        t = threading.Thread(target=box.clear, name="dropper")
        t.start(); t.join()
        print(seen)
        greenlet.getcurrent()
        print(seen)
    """)
    assert out == ["[]", "[('far', 'MainThread')]"]
