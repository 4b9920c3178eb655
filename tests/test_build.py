"""The build refuses, in one sentence, the interpreters fastco cannot run on:
free-threaded builds and versions outside 3.10-3.15 (setup.py, before any
compiling; pip's requires-python stops the versions first)."""

from __future__ import annotations

import pytest

from conftest import run_python

# Runs setup.py as pip's build backend does (as __main__), on an interpreter
# made to look like another one.
FAKE = r"""
import runpy, sys, sysconfig
kind = sys.argv[1]
if kind == "free-threaded":
    real = sysconfig.get_config_var
    sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
else:
    sys.version_info = tuple(int(p) for p in kind.split("."))
sys.argv = ["setup.py", "--version"]
runpy.run_path("setup.py", run_name="__main__")
"""


@pytest.mark.parametrize("kind, message", [
    ("free-threaded", "fastco does not support free-threaded CPython builds"),
    ("3.9.18", "fastco supports CPython 3.10 to 3.15"),
    ("3.16.0", "fastco supports CPython 3.10 to 3.15"),
])
def test_setup_refuses_an_unsupported_interpreter(kind: str, message: str) -> None:
    proc = run_python(kind, code=FAKE)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]   # one line
    assert message in proc.stderr
