"""The seed's gevent programs, shipped in examples/, run on fastco as on gevent."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, connect_when_listening, free_port, run_python

# The seed's program, on gevent (the reference), bounded like the example.
GEVENT_SEED = """
import sys
import gevent
ARG = sys.argv[1] if len(sys.argv) > 1 else "1"
SLEEP = None if ARG == "nosleep" else float(ARG)
def f(n):
    for i in range(n):
        print(gevent.getcurrent(), i)
        if SLEEP is not None:
            gevent.sleep(SLEEP)
g1 = gevent.spawn(f, 5)
g2 = gevent.spawn(f, 5)
g3 = gevent.spawn(f, 5)
g1.join()
g2.join()
g3.join()
"""

#: Put first in a gevent program run with FASTCO_AS_GREENLET=1: it fails
#: unless gevent's greenlets are fastco's.
AS_FASTCO = "import greenlet, fastco; assert greenlet.greenlet is fastco.greenlet\n"

LINE = re.compile(r"<(\w+) at (0x[0-9a-f]+): f\(5\)> (\d)")


def _turns(stdout: str, cls: str) -> list[tuple[int, int]]:
    """The printed lines as (which task, i), tasks numbered by first appearance."""
    seen: dict[str, int] = {}
    turns = []
    for line in stdout.splitlines():
        m = LINE.fullmatch(line)
        assert m, line
        assert m.group(1) == cls
        turns.append((seen.setdefault(m.group(2), len(seen)), int(m.group(3))))
    return turns


ROUND_ROBIN = [(k, i) for i in range(5) for k in range(3)]
ONE_AFTER_ANOTHER = [(k, i) for k in range(3) for i in range(5)]


@pytest.mark.parametrize("arg, expected", [("0.01", ROUND_ROBIN), ("0", ROUND_ROBIN),
                                           ("nosleep", ONE_AFTER_ANOTHER)])
def test_seed_gevent_program_interleaves_like_gevent(arg, expected) -> None:
    proc = run_python("examples/seed_gevent.py", arg, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _turns(proc.stdout, "Task") == expected
    try:
        import gevent  # noqa: F401
    except ImportError:
        return
    ref = run_python(arg, code=GEVENT_SEED, timeout=60)
    assert ref.returncode == 0, ref.stderr
    assert _turns(ref.stdout, "Greenlet") == expected
    # And gevent itself, its compiled modules, on fastco's switch (issue 12).
    on = run_python("-W", "error::RuntimeWarning", "-c", AS_FASTCO + GEVENT_SEED, arg,
                    timeout=60, env={"FASTCO_AS_GREENLET": "1"})
    assert on.returncode == 0, on.stderr
    assert _turns(on.stdout, "Greenlet") == expected


def test_seed_gevent_program_is_the_seeds() -> None:
    source = (ROOT / "examples" / "seed_gevent.py").read_text(encoding="utf-8")
    assert re.search(r"g1 = fastco\.spawn\(f, 5\)\s+g2 = fastco\.spawn\(f, 5\)\s+"
                     r"g3 = fastco\.spawn\(f, 5\)\s+g1\.join\(\)\s+g2\.join\(\)\s+g3\.join\(\)",
                     source)
    assert "print(fastco.getcurrent(), i)" in source
    assert "gevent" not in re.sub(r"#.*|\"\"\"[\s\S]*?\"\"\"", "", source)


@pytest.mark.parametrize("lib", ["fastco", "gevent on fastco"])
def test_seed_echo_server_serves_clients_concurrently(lib, tmp_path) -> None:
    """The example; and, as "gevent on fastco", the seed's own program (the
    example with gevent for fastco) on gevent's compiled modules with
    FASTCO_AS_GREENLET=1 (issue 12)."""
    source = (ROOT / "examples" / "seed_echo_server.py").read_text(encoding="utf-8")
    assert "from fastco import socket, monkey" in source and "coon.send" not in source
    script, env = ROOT / "examples" / "seed_echo_server.py", dict(os.environ)
    if lib != "fastco":
        pytest.importorskip("gevent")
        script = tmp_path / "seed_echo_server_gevent.py"
        script.write_text(AS_FASTCO + source.replace("fastco", "gevent"), encoding="utf-8")
        env["FASTCO_AS_GREENLET"] = "1"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-u", "-W", "error::RuntimeWarning", str(script),
                             str(port), "127.0.0.1"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    clients: list[socket.socket] = []
    try:
        connect_when_listening(port, time.monotonic() + 30).close()  # the server is up
        clients = [connect_when_listening(port, time.monotonic() + 5) for _ in range(10)]
        # The last client is served while the first ones have sent nothing:
        # a server that handled one client at a time would never answer.
        for i in reversed(range(10)):
            msg = f"hello {i}".encode()
            clients[i].sendall(msg)
            assert clients[i].recv(1024) == msg
        for i, c in enumerate(clients):  # and again, in another order
            c.sendall(b"again %d" % i)
        for i, c in enumerate(clients):
            assert c.recv(1024) == b"again %d" % i
        for c in clients:
            c.close()
        time.sleep(0.2)
    finally:
        for c in clients:
            c.close()
        proc.kill()
        out, err = proc.communicate(timeout=30)
    assert out.count("new client from [('127.0.0.1', ") == 11, out + err
    assert out.count("client was closed") == 11, out + err
    assert "recv: b'hello 0'" in out and "recv: b'again 9'" in out
    assert "Traceback" not in err, err
