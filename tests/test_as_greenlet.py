"""fastco as the ``greenlet`` module: FASTCO_AS_GREENLET=1 and
fastco.install_as_greenlet().

Each case runs in a fresh interpreter, since what ``import greenlet`` gives
is decided once per process.
"""

from __future__ import annotations

import os
import site
import sys

import pytest

from conftest import run_python

ON = {"FASTCO_AS_GREENLET": "1"}
OFF = {"FASTCO_AS_GREENLET": ""}

#: Prints which greenlet module ``import greenlet`` gave.
WHICH = """
import greenlet, fastco
print("fastco" if greenlet.greenlet is fastco.greenlet else "greenlet")
"""


def real_greenlet_installed() -> bool:
    proc = run_python(code="import greenlet, sys; sys.exit(hasattr(greenlet, '__fastco__'))",
                      env=OFF)
    return proc.returncode == 0


def test_environment_variable_makes_greenlet_fastco() -> None:
    proc = run_python(code=WHICH, env=ON)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fastco"]


def test_public_face_is_greenlets() -> None:
    code = """
import sys
import greenlet, greenlet._greenlet as inner, fastco
assert greenlet.__version__ == "3.5.6", greenlet.__version__
for name in ("greenlet", "getcurrent", "GreenletExit", "error", "settrace", "gettrace"):
    assert getattr(greenlet, name) is getattr(fastco, name), name
    assert getattr(inner, name) is getattr(fastco, name), name
assert greenlet.GREENLET_USE_GC is greenlet.GREENLET_USE_TRACING is True
assert greenlet.GREENLET_USE_CONTEXT_VARS is True
for name in ("getcurrent", "GreenletExit", "error", "settrace", "gettrace"):
    assert getattr(greenlet.greenlet, name) is getattr(fastco, name), name
assert inner.get_pending_cleanup_count() == 0
inner.enable_optional_cleanup(False)
assert inner.get_clocks_used_doing_optional_cleanup() is None
inner.enable_optional_cleanup(True)
assert inner.get_clocks_used_doing_optional_cleanup() == 0 and inner.CLOCKS_PER_SEC > 1
assert hasattr(inner, "get_tstate_trash_delete_nesting") == (sys.version_info < (3, 13))
if sys.version_info < (3, 13):
    assert inner.get_tstate_trash_delete_nesting() == 0
inner.set_thread_local("key", "value")
print("ok")
"""
    proc = run_python(code=code, env=ON)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok"]


def test_main_greenlets_are_counted_until_their_thread_is_gone() -> None:
    code = """
import gc, threading
import greenlet
from greenlet._greenlet import get_total_main_greenlets as count
greenlet.getcurrent()
before = count()
kept = []
ready, done = threading.Event(), threading.Event()
def body():
    kept.append(greenlet.getcurrent())
    ready.set()
    done.wait(10)
t = threading.Thread(target=body)
t.start()
ready.wait(10)
print(count() - before)
done.set()
t.join(10)
print(count() - before)    # kept alive by kept
kept.clear()
gc.collect()
print(count() - before)
"""
    proc = run_python(code=code, env=ON)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1", "0"]


def test_child_processes_inherit_it() -> None:
    code = f"""
import subprocess, sys
import greenlet, fastco
print("parent", "fastco" if greenlet.greenlet is fastco.greenlet else "greenlet", flush=True)
subprocess.run([sys.executable, "-c", {WHICH!r}], check=True)
"""
    proc = run_python(code=code, env=ON)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["parent", "fastco", "fastco"]


def test_it_wins_over_a_greenlet_package_on_the_path(tmp_path) -> None:
    """Whether or not the real greenlet is installed: here a package named
    greenlet comes first on sys.path, and is not the one imported."""
    fake = tmp_path / "greenlet"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('the other greenlet')\n")
    env = dict(ON, PYTHONPATH=str(tmp_path))
    proc = run_python(code=WHICH, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fastco"]


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_without_it_nothing_changes(value: str) -> None:
    if not real_greenlet_installed():
        pytest.skip("the real greenlet is not installed")
    code = WHICH + """
import sys
print("_fastco_as_greenlet" in sys.modules)
"""
    proc = run_python(code=code, env={"FASTCO_AS_GREENLET": value})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["greenlet", "False"]


def test_unset_it_costs_one_line_at_startup() -> None:
    """fastco-as-greenlet.pth only reads the variable: nothing is imported."""
    code = """
import sys
print(sorted(m for m in sys.modules
             if m.split(".")[0] in ("fastco", "greenlet", "_fastco_as_greenlet")))
"""
    proc = run_python(code=code, env={"FASTCO_AS_GREENLET": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    # Set, it imports its small finder only: fastco waits for `import greenlet`.
    proc = run_python(code=code, env=ON)
    assert proc.stdout.strip() == "['_fastco_as_greenlet']"


def test_pth_file_is_installed() -> None:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    found = [d for d in dirs if os.path.isfile(os.path.join(d, "fastco-as-greenlet.pth"))]
    assert found, f"fastco-as-greenlet.pth in none of {dirs} ({sys.prefix})"


def test_install_as_greenlet_from_code() -> None:
    code = """
import fastco
fastco.install_as_greenlet()
fastco.install_as_greenlet()        # again: harmless
import greenlet
print("fastco" if greenlet.greenlet is fastco.greenlet else "greenlet")
g = greenlet.greenlet(lambda x: x * 2)
print(g.switch(21))
"""
    proc = run_python(code=code, env=OFF)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fastco", "42"]


def test_install_as_greenlet_after_greenlet_was_imported_is_an_error() -> None:
    if not real_greenlet_installed():
        pytest.skip("the real greenlet is not installed")
    code = """
import greenlet
import fastco
try:
    fastco.install_as_greenlet()
except RuntimeError as exc:
    print(exc)
"""
    proc = run_python(code=code, env=OFF)
    assert proc.returncode == 0, proc.stderr
    assert "already imported" in proc.stdout
    assert "before anything imports greenlet" in proc.stdout


def test_greenlet_code_runs_unchanged() -> None:
    """The seed's greenlet program, written for greenlet, on fastco."""
    code = """
import greenlet
out = []
def test1():
    out.append(12); gr2.switch(); out.append(34)
def test2():
    out.append(56); gr1.switch(); out.append(78)
gr1 = greenlet.greenlet(test1)
gr2 = greenlet.greenlet(test2)
gr1.switch()
print(out, "fastco" if getattr(greenlet, "__fastco__", False) else "greenlet")
"""
    proc = run_python(code=code, env=ON)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "[12, 56, 34] fastco"
