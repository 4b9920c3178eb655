"""gevent's compiled wheel on fastco's switch (issue 12): with
FASTCO_AS_GREENLET=1, gevent's Cython modules subclass fastco's greenlet
type through greenlet's C API and ABI.  (The seed tutorial's gevent
programs on real gevent over fastco: tests/test_examples_hub.py.)  Skipped
where gevent is not installed (a test extra; wheels exist for the CPython
versions gevent supports)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gevent") is None,
                                reason="gevent is not installed")

ON = {**os.environ, "FASTCO_AS_GREENLET": "1"}

#: Run first in every process here: gevent must be the compiled one, on fastco.
PRELUDE = """\
import greenlet, fastco
assert greenlet.greenlet is fastco.greenlet, "not fastco"
"""


def run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `code` with fastco as greenlet and RuntimeWarnings as errors."""
    return subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code, *args],
                          capture_output=True, text=True, timeout=timeout, env=ON, check=False)


def test_import_gevent_is_clean() -> None:
    """No "greenlet.greenlet size changed" (a RuntimeWarning, an error here),
    nothing on stderr."""
    proc = run("import gevent")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_gevent_compiled_greenlets_are_fastco_greenlets() -> None:
    code = PRELUDE + textwrap.dedent("""
        import sys, gevent, gevent.greenlet
        cg = sys.modules["gevent._gevent_cgreenlet"]
        print(cg.__file__.endswith(".so"), gevent.greenlet.Greenlet is cg.Greenlet)
        hub = gevent.get_hub()
        g = gevent.spawn(lambda: gevent.getcurrent())
        print(isinstance(hub, fastco.greenlet), isinstance(g, fastco.greenlet),
              g.get() is g, gevent.Greenlet.__basicsize__ > fastco.greenlet.__basicsize__)
    """)
    proc = run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["True True", "True True True True"]
