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
import copy, json, pickle, sys, threading
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

# Each takes the nesting depth (the last three recurse without end).
PATTERNS = {
    "repr": lambda n: repr(nested_list(n)),
    "json": lambda n: json.dumps(nested_list(n)),
    "pickle": lambda n: pickle.dumps(nested_list(n)),
    "python_repr": lambda n: repr(deep_r(n)),
    "deepcopy": lambda n: copy.deepcopy(nested_list(n)),
    "compare": lambda n: nested_list(n) == nested_list(n),
    "python": lambda n: py_rec(0),
    "sorted_key": lambda n: sorted_rec(0),
    "getattr": lambda n: Attr().a,
}

def outcome(pattern, depth):
    try:
        PATTERNS[pattern](depth)
    except RecursionError:
        return "RecursionError"
    return "no error"

pattern, depth, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# What CPython does on a thread with an 8 MiB stack, the size its limits
# are made for (and fastco's default), then on a coroutine stack.
threading.stack_size(8 << 20)
found = []
t = threading.Thread(target=lambda: found.append(outcome(pattern, depth)))
t.start()
t.join()
print("thread:", found[0])
print("greenlet:", greenlet(outcome, stack_size=size).switch(pattern, depth))
"""

PATTERNS = ["repr", "json", "pickle", "python_repr", "deepcopy", "compare", "python",
            "sorted_key", "getattr"]
# Deep enough to overflow an 8 MiB stack (at about 40 bytes a level, list
# comparison needs the most), and a depth that fits in one on 3.14+ but
# not under the recursion counters of 3.10-3.13.
DEEP, MODERATE = 300_000, 3_000


def recursion_outcomes(pattern: str, depth: int, size: int) -> tuple[str, str]:
    """(on a thread, on a greenlet with `size` bytes of stack), from a fresh
    process: a crash fails the test, it does not end the test run."""
    proc = run_python(pattern, str(depth), str(size), code=RECURSE)
    assert proc.returncode == 0, f"crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    return lines["thread"], lines["greenlet"]


@pytest.mark.parametrize("size", [64 * 1024, 0], ids=["64KiB", "default"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_deep_recursion_raises_recursion_error(pattern: str, size: int) -> None:
    """Deep C and Python recursion raise RecursionError on a coroutine stack,
    as they do on a thread, on a small stack too."""
    on_thread, on_greenlet = recursion_outcomes(pattern, DEEP, size)
    assert on_thread == "RecursionError"      # the pattern is deep enough here
    assert on_greenlet == "RecursionError"


@pytest.mark.parametrize("pattern", PATTERNS[:6])
def test_recursion_that_fits_a_thread_fits_a_default_coroutine(pattern: str) -> None:
    """On the default stack, a coroutine recurses as deep as a thread: the
    same outcome at a depth that 3.14+ allow and 3.10-3.13 refuse."""
    on_thread, on_greenlet = recursion_outcomes(pattern, MODERATE, 0)
    assert on_greenlet == on_thread


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
