"""Shared helpers for fastco's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_python(*args: str, code: str | None = None, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run this interpreter on a script (or `code`) in a fresh process."""
    cmd = [sys.executable]
    cmd += ["-c", code] if code is not None else []
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=full_env, check=False)


@pytest.fixture
def python_run():
    """The run_python helper, as a fixture."""
    return run_python
