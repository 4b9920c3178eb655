"""Stack safety: deep recursion in a coroutine raises RecursionError as it
would on a thread, and a C-level overflow into the guard page ends the
process with a message naming it.  Each case runs in its own process."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_python

RECURSE = r"""
import copy, json, pickle, sys
from fastco import greenlet

def nested_list(n):
    x = []
    for _ in range(n):
        x = [x]
    return x

class R:
    def __init__(self, inner):
        self.inner = inner
    def __repr__(self):
        return "R(%r)" % (self.inner,)

def deep_r(n):
    x = None
    for _ in range(n):
        x = R(x)
    return x

def py_rec(n):
    return py_rec(n + 1)

def sorted_rec(n):
    return sorted([1, 2], key=lambda v: sorted_rec(n + 1))

class Attr:
    def __getattr__(self, name):
        return getattr(self, name + "x")

PATTERNS = {
    "repr": lambda: repr(nested_list(200000)),
    "json": lambda: json.dumps(nested_list(200000)),
    "pickle": lambda: pickle.dumps(nested_list(200000)),
    "python_repr": lambda: repr(deep_r(200000)),
    "python": lambda: py_rec(0),
    "sorted_key": lambda: sorted_rec(0),
    "getattr": lambda: Attr().a,
    "deepcopy": lambda: copy.deepcopy(nested_list(200000)),
    "compare": lambda: nested_list(100000) == nested_list(100000),
}

def run():
    try:
        PATTERNS[sys.argv[1]]()
    except RecursionError:
        return "RecursionError"
    return "no error"

print(greenlet(run, stack_size=int(sys.argv[2])).switch())
"""

PATTERNS = ["repr", "json", "pickle", "python_repr", "python", "sorted_key", "getattr",
            "deepcopy", "compare"]


@pytest.mark.parametrize("size", [64 * 1024, 0], ids=["64KiB", "default"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_deep_recursion_raises_recursion_error(pattern: str, size: int) -> None:
    proc = run_python(pattern, str(size), code=RECURSE)
    assert proc.returncode == 0, f"crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "RecursionError"


BURN_C = r"""
int burn(int n)
{
    volatile char pad[1024];
    pad[0] = (char)n;
    if (n == 0)
        return 0;
    return burn(n - 1) + pad[0];
}
"""

OVERFLOW = r"""
import ctypes, sys
from fastco import greenlet
lib = ctypes.CDLL(sys.argv[1])
g = greenlet(lambda: lib.burn(1000000), stack_size=64 * 1024)
g.switch()
print("survived?")
"""


@pytest.fixture(scope="module")
def libburn(tmp_path_factory) -> Path:
    """BURN_C as a shared library, compiled once for the tests that need it."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    out = tmp_path_factory.mktemp("burn")
    src = out / "burn.c"
    src.write_text(BURN_C)
    lib = out / "libburn.so"
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def test_c_overflow_is_reported_and_ends_the_process(libburn: Path) -> None:
    proc = run_python(str(libburn), code=OVERFLOW)
    assert proc.returncode < 0 or proc.returncode > 128, proc.returncode   # killed by SIGSEGV
    assert "survived" not in proc.stdout
    assert "fastco: coroutine stack overflow" in proc.stderr
    assert "stack_size=" in proc.stderr


def test_overflow_message_does_not_fire_on_ordinary_segfaults() -> None:
    """A fault elsewhere keeps its usual report: no coroutine message."""
    code = "import ctypes, fastco; ctypes.string_at(16)"
    proc = run_python(code=code)
    assert proc.returncode != 0
    assert "coroutine stack overflow" not in proc.stderr


def test_faulthandler_still_reports_after_our_message(libburn: Path) -> None:
    proc = run_python("-X", "faulthandler", "-c", OVERFLOW, str(libburn), timeout=60)
    assert "fastco: coroutine stack overflow" in proc.stderr
    assert "Segmentation fault" in proc.stderr        # faulthandler's report follows
