"""The hub returns what it takes: loops of tasks, sockets, timeouts and
waits leave RSS, fds, stacks and timers flat.  Each loop runs in a fresh
process so that other tests' garbage does not blur the measurement."""

from __future__ import annotations

import json

import pytest

from conftest import PROC_STATS, run_python

MEASURE = PROC_STATS + r"""
import gc, json, os, sys
import fastco
from fastco import socket

def nop():
    pass

def cycle_tasks():
    tasks = [fastco.spawn(nop) for _ in range(10)]
    fastco.joinall(tasks)

def cycle_killed_tasks():
    tasks = [fastco.spawn(fastco.sleep, 10) for _ in range(10)]
    fastco.sleep(0)
    fastco.killall(tasks)

def cycle_sockets():
    a, b = socket.socketpair()
    t = fastco.spawn(lambda: b.sendall(b.recv(100)))
    a.sendall(b"ping")
    assert a.recv(100) == b"ping"
    t.join()
    a.close()
    b.close()

def cycle_tcp():
    srv = socket.create_server(("127.0.0.1", 0))
    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(conn.recv(100))
    t = fastco.spawn(serve)
    with socket.create_connection(srv.getsockname(), timeout=5) as c:
        c.sendall(b"x" * 50)
        assert c.recv(100) == b"x" * 50
    t.join()
    srv.close()

def cycle_timeouts():
    with fastco.Timeout(0.0001, False):
        fastco.sleep(1)
    with fastco.Timeout(10, False):          # cancelled before it fires
        fastco.sleep(0)

def cycle_recv_timeout():
    a, b = socket.socketpair()
    a.settimeout(0.0001)
    try:
        a.recv(10)
    except socket.timeout:
        pass
    a.close()
    b.close()

def cycle_queue():
    q = fastco.Queue()
    t = fastco.spawn(lambda: [q.put(i) for i in range(10)])
    for _ in range(10):
        q.get()
    t.join()
    try:
        q.get(timeout=0.0001)
    except Exception:
        pass

cycle = globals()["cycle_" + sys.argv[1]]
n = int(sys.argv[2])
for _ in range(max(1, n // 10)):
    cycle()
gc.collect()
r0, f0 = rss(), fds()
for _ in range(n):
    cycle()
gc.collect()
hub = fastco.hub.get_hub()
print(json.dumps({"rss0": r0, "rss1": rss(), "fds0": f0, "fds1": fds(),
                  "stacks": fastco.stack_stats()["in_use"], "hub": repr(hub)}))
"""


@pytest.mark.parametrize("kind, n", [
    ("tasks", 5000),
    ("killed_tasks", 2000),
    ("sockets", 5000),
    ("tcp", 1000),
    ("timeouts", 2000),
    ("recv_timeout", 2000),
    ("queue", 3000),
])
def test_loop_leaves_resources_flat(kind: str, n: int) -> None:
    proc = run_python(kind, str(n), code=MEASURE, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.splitlines()[-1])
    assert m["fds1"] == m["fds0"], m
    assert m["rss1"] <= m["rss0"] * 1.10 + 512 * 1024, m
    assert m["stacks"] <= 1, m            # at most the hub's own stack
    assert "timers=0" in m["hub"] and "fd_waiters=0" in m["hub"], m
