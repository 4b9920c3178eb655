"""Hold many connections open to an echo server, all of them echoing, and
verify every byte.

    python -m bench.echo_hold [--conns 10000] [--duration 30] [--interval 1]
        [--port P | --server-args '...'] [--full-speed S]

Without ``--port`` it starts ``python -m fastco echo --port 0`` (plus
``--server-args``) and stops it with SIGTERM at the end.  The client is plain
Python (``selectors``, no fastco), independent of the server under test:

1. it opens ``--conns`` connections (in batches, so that the server's listen
   queue does not overflow), and keeps all of them open to the end;
2. every connection, once per ``--interval`` seconds (staggered), sends a
   payload of 1 to 4096 random bytes and reads the echo back, compared byte
   for byte with what was sent;
3. after ``--duration`` seconds it reports: connections held, echoes per
   connection (min / median / max: every connection must have kept echoing),
   bytes verified, mismatches, errors, the server's RSS and CPU time.

``--full-speed S`` then runs the C load generator closed-loop on as many
connections for S seconds (``bench/loadgen``), for the rate the server
sustains with that many connections.  Exit status 0 when every connection
stayed open, echoed at least ``duration / interval - 1`` times, and no byte
differed.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import re
import resource
import selectors
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from bench._build_loadgen import build_loadgen

HOST = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Conn:
    """One client connection: the message in flight and its counters."""

    __slots__ = ("sock", "index", "expect", "got", "echoes", "sent_at")

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock, self.index = sock, index
        self.expect = b""          # the payload in flight (b"": none)
        self.got = bytearray()
        self.echoes = 0
        self.sent_at = 0.0


def proc_info(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of a process."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(extra: str) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "fastco", "echo", "--port", "0", *shlex.split(extra)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on \S+:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(m.group(1))


def open_connections(n: int, port: int, batch: int) -> list[socket.socket]:
    """n connected sockets (non-blocking), opened batch by batch."""
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    while len(socks) < n:
        pending = []
        for _ in range(min(batch, n - len(socks) - len(pending))):
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.connect_ex((HOST, port))
            sel.register(s, selectors.EVENT_WRITE)
            pending.append(s)
        deadline = time.monotonic() + 30
        while pending:
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(pending)} connections did not complete in 30 s")
            for key, _ in sel.select(1.0):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise SystemExit(f"connect failed: {os.strerror(err)}")
                sel.unregister(s)
                pending.remove(s)
                socks.append(s)
    sel.close()
    return socks


def hold(socks: list[socket.socket], duration: float, interval: float,
         seed: int) -> dict[str, Any]:
    """Echo on every connection once per interval for duration seconds."""
    rng = random.Random(seed)
    pattern = os.urandom(1 << 20)
    sel = selectors.DefaultSelector()
    conns = [Conn(s, i) for i, s in enumerate(socks)]
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    start = time.monotonic()
    end = start + duration
    due = [(start + interval * i / len(conns), i) for i in range(len(conns))]
    heapq.heapify(due)
    mismatches = errors = verified = 0
    closed: set[int] = set()
    latencies: list[float] = []
    while True:
        now = time.monotonic()
        while due and due[0][0] <= now and now < end:
            _, i = heapq.heappop(due)
            c = conns[i]
            size = rng.randint(1, 4096)
            off = rng.randrange(0, len(pattern) - size)
            c.expect = pattern[off:off + size]
            c.got.clear()
            c.sent_at = now
            try:
                n = c.sock.send(c.expect)   # <= 4 KiB: fits in the socket buffer
                if n != size:
                    raise OSError(f"short send {n}/{size}")
            except OSError:
                errors += 1
                closed.add(i)
        if now >= end and not any(c.expect for c in conns if c.index not in closed):
            break
        if now >= end + 10:
            errors += sum(1 for c in conns if c.expect)
            break
        timeout = max(0.0, min(due[0][0] - now, 0.05)) if due and now < end else 0.05
        for key, _ in sel.select(timeout):
            c = key.data
            try:
                chunk = c.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                errors += 1
                closed.add(c.index)
                sel.unregister(c.sock)
                c.expect = b""
                continue
            c.got += chunk
            if len(c.got) >= len(c.expect):
                if c.got != c.expect:
                    mismatches += 1
                verified += len(c.got)
                c.echoes += 1
                t = time.monotonic()
                latencies.append(t - c.sent_at)
                c.expect = b""
                heapq.heappush(due, (c.sent_at + interval, c.index))
    sel.close()
    still_open = sum(1 for c in conns if c.index not in closed and _is_open(c.sock))
    echoes = sorted(c.echoes for c in conns)
    latencies.sort()
    return {
        "connections": len(conns), "held_at_end": still_open,
        "echoes_min": echoes[0], "echoes_median": statistics.median(echoes),
        "echoes_max": echoes[-1], "echoes_total": sum(echoes),
        "bytes_verified": verified, "mismatches": mismatches, "errors": errors,
        "latency_ms_p50": 1e3 * latencies[len(latencies) // 2] if latencies else None,
        "latency_ms_p99": 1e3 * latencies[int(len(latencies) * 0.99)] if latencies else None,
    }


def _is_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.echo_hold",
                                description=__doc__.split("\n")[0])
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of echoing")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between echoes of a connection")
    p.add_argument("--batch", type=int, default=500, help="connections opened at a time")
    p.add_argument("--port", type=int, help="an echo server already running on 127.0.0.1")
    p.add_argument("--server-args", default="", help="extra arguments of `fastco echo`")
    p.add_argument("--full-speed", type=float, default=0.0, metavar="S",
                   help="then run bench/loadgen closed-loop on as many connections for S s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the result here too")
    args = p.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.conns + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = None
    port = args.port
    if port is None:
        server, port = start_server(args.server_args)
    result: dict[str, Any] = {"conns": args.conns, "duration_s": args.duration,
                              "interval_s": args.interval}
    try:
        pid = server.pid if server else None
        base_rss = proc_info(pid)[0] if pid else None
        t0 = time.monotonic()
        socks = open_connections(args.conns, port, args.batch)
        result["connect_s"] = time.monotonic() - t0
        print(f"{len(socks)} connections open in {result['connect_s']:.1f} s; "
              f"echoing for {args.duration:g} s", file=sys.stderr)
        if pid:
            rss_open, cpu0 = proc_info(pid)
        result.update(hold(socks, args.duration, args.interval, args.seed))
        if pid:
            rss, cpu1 = proc_info(pid)
            result.update(server_rss_idle_mb=base_rss / 1e6, server_rss_mb=rss / 1e6,
                          server_rss_per_conn_kb=(rss - base_rss) / 1e3 / args.conns,
                          server_cpu_s=cpu1 - cpu0)
        if args.full_speed:
            for s in socks:
                s.close()
            lg = build_loadgen()
            out = subprocess.run([str(lg), "-H", HOST, "-p", str(port), "-c", str(args.conns),
                                  "-s", "64", "-d", str(args.full_speed), "-w", "2"],
                                 capture_output=True, text=True, timeout=args.full_speed + 120)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if lines:
                d = json.loads(lines[-1])
                result["full_speed"] = {k: d[k] for k in (
                    "connections", "rps", "errors", "mismatches", "latency_us")}
            else:
                result["full_speed"] = {"error": out.stderr.strip()[-300:]}
        else:
            for s in socks:
                s.close()
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                rest = server.communicate(timeout=30)[0]
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                rest = server.communicate()[0]
            result["server_summary"] = (rest or "").strip().splitlines()[-1:]
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    ok = (result["held_at_end"] == args.conns and result["mismatches"] == 0
          and result["errors"] == 0
          and result["echoes_min"] >= int(args.duration / args.interval) - 1)
    fs = result.get("full_speed")
    if fs and (fs.get("mismatches") or fs.get("errors") or fs.get("connections") != args.conns):
        ok = False
    print("OK" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
