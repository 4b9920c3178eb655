"""The seed programs shipped in examples/ run on fastco as the seed says."""

from __future__ import annotations

import re

from conftest import ROOT, run_python


def test_seed_greenlet_pingpong_alternates() -> None:
    proc = run_python("examples/seed_greenlet.py", "4", "0.01")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines == ["----A----", "----B----"] * 4


def test_seed_greenlet_only_change_is_the_import() -> None:
    """Apart from the import and the round bound, it is the seed's program."""
    source = (ROOT / "examples" / "seed_greenlet.py").read_text(encoding="utf-8")
    assert "from fastco import greenlet" in source
    assert not re.search(r"^\s*(from|import) greenlet", source, re.M)
    assert re.search(r"gr1 = greenlet\(test1\)\s+gr2 = greenlet\(test2\)\s+gr1\.switch\(\)",
                     source)
