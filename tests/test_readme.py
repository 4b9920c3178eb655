"""The README's Python snippets run as written and print what their comments say.

Users copy these first; a snippet that raises NameError or prints something
else than the README claims is a bug in the docs.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import connect_when_listening, free_port

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _expected_output(block: str) -> list[str]:
    """What the block's `print(...)  # value` lines say they print, in order.

    The comment's first words are the output; a remark follows after two spaces.
    """
    return [m.group(1) for m in
            re.finditer(r"^print\(.*\)\s+#\s*(.+?)(?:\s{2,}.*)?$", block, re.M)]


def test_readme_has_snippets() -> None:
    assert len(BLOCKS) >= 4


# Servers run until stopped: test_server_snippet_serves checks those.
@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS) if "serve_forever()" not in b])
def test_snippet_runs_as_written(index: int, tmp_path: Path) -> None:
    block = BLOCKS[index]
    script = tmp_path / "snippet.py"
    script.write_text(block, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    expected = _expected_output(block)
    if expected:
        assert proc.stdout.splitlines() == expected
    if "from fastco import greenlet" in block and "----A----" in block:
        assert proc.stdout.splitlines() == ["----A----", "----B----"] * 3


def test_server_snippet_serves(tmp_path: Path) -> None:
    """The StreamServer snippet echoes, on a free port instead of 7788."""
    (block,) = [b for b in BLOCKS if "serve_forever()" in b]
    assert '("127.0.0.1", 7788)' in block
    port = free_port()
    script = tmp_path / "server.py"
    script.write_text(block.replace("7788", str(port)), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        client = connect_when_listening(port, time.monotonic() + 20, proc)
        payload = bytes(range(256)) * 400
        with client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            echoed = bytearray()
            while data := client.recv(65536):
                echoed += data
        assert bytes(echoed) == payload
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
