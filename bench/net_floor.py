"""Where the time of the network benchmarks goes: the client libraries' own
code, fastco's, gevent's.  Instruction counts, not times: they repeat from
run to run on a loaded machine where times do not.

    python -m bench.net_floor [--kinds redis,urllib3,requests] [--impls plain,fastco,gevent]

For each kind of operation of bench/test_bench_net.py (redis-py SET/GET,
urllib3 and requests HTTPS GETs with keep-alive, 100 tasks) and each client
(bench/net_client.py: ``plain`` runs the same code with no library, the
tasks one after another on blocking sockets; ``fastco`` and ``gevent``
after their patch_all), it counts with valgrind's callgrind the user-space
instructions of one measured ``run`` (after the connections are made and a
warm-up run: the counters are zeroed, then dumped), and with ``strace -c``
the system calls of another.  ``plain`` is the client libraries' own work
plus that of the stdlib's blocking primitives (OS locks, socket timeouts by
poll(2): a few thousand instructions per operation), the work on top of
which any library's own comes: so plain ÷ gevent is, within those few
thousand, the least fastco ÷ gevent can be, whatever fastco does.

Needs valgrind (callgrind_control) and strace (Debian packages of the same
names), redis-server, and a few minutes (callgrind runs ~50x slower).
PYTHONHASHSEED is fixed so that the clients' dicts are laid out alike.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import https_server

ROOT = Path(__file__).resolve().parent.parent
#: kind -> operations per task in the measured run (100 tasks)
OPS = {"redis": 20, "urllib3": 10, "requests": 5}
TASKS = 100


class Client:
    """bench/net_client.py for one library, maybe under a tool, driven line by line."""

    def __init__(self, lib: str, tool: list[str]) -> None:
        self.proc = subprocess.Popen([*tool, sys.executable, "-m", "bench.net_client", lib],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def command(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer.startswith("ok"):
            raise RuntimeError(f"client answered {answer!r} to {line!r}")
        return answer

    def connect(self, kind: str, ports: tuple[int, int, str]) -> None:
        redis_port, https_port, ca = ports
        if kind == "redis":
            self.command(f"redis {redis_port} {TASKS}")
        else:
            self.command(f"https {https_port} {ca} {TASKS}")
        self.command(f"run {kind} {max(1, OPS[kind] // 4)}")    # warm-up

    def run(self, kind: str) -> int:
        """One measured run; the number of operations it did."""
        return int(self.command(f"run {kind} {OPS[kind]}").split()[1])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


def instructions(lib: str, kind: str, ports: tuple[int, int, str], tmp: Path) -> float:
    """User-space instructions per operation of one measured run."""
    out = tmp / f"callgrind.{lib}.{kind}"
    client = Client(lib, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          "--dump-instr=no", "--collect-systime=no"])
    try:
        client.connect(kind, ports)
        pid = str(client.proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        ops = client.run(kind)
        subprocess.run(["callgrind_control", "-d", "measured", pid], check=True,
                       capture_output=True)
    finally:
        client.close()
    dump = next(p for p in tmp.iterdir() if p.name.startswith(out.name + ".")
                and "measured" in p.read_text(errors="replace")[:2000])
    match = re.search(r"^summary: (\d+)$", dump.read_text(errors="replace"), re.M)
    assert match, f"no summary in {dump}"
    return int(match.group(1)) / ops


def syscalls(lib: str, kind: str, ports: tuple[int, int, str], tmp: Path) -> dict[str, float]:
    """System calls per operation of one measured run: {name: count}."""
    out = tmp / f"strace.{lib}.{kind}"
    client = Client(lib, [])
    try:
        client.connect(kind, ports)
        strace = subprocess.Popen(["strace", "-c", "-f", "-o", str(out),
                                   "-p", str(client.proc.pid)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)     # attached to every thread
        ops = client.run(kind)
        strace.terminate()
        strace.wait(timeout=30)
    finally:
        client.close()
    counts = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3]) / ops
    return counts


def _diff(ir: dict[str, float], a: str, b: str) -> str:
    return f"{(ir[a] - ir[b]) / 1000:+,.1f}k" if a in ir and b in ir else ""


def _ratio(ir: dict[str, float], a: str, b: str) -> str:
    return f"{ir[a] / ir[b]:.3f}" if a in ir and b in ir else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(OPS))
    parser.add_argument("--impls", default="plain,fastco,gevent")
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control", "strace", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install valgrind strace redis-server)")
    os.environ["PYTHONHASHSEED"] = "0"
    kinds, impls = args.kinds.split(","), args.impls.split(",")
    with tempfile.TemporaryDirectory() as d, https_server.servers(Path(d)) as ports:
        rows = []
        for kind in kinds:
            ir = {lib: instructions(lib, kind, ports, Path(d)) for lib in impls}
            sc = {lib: syscalls(lib, kind, ports, Path(d)) for lib in impls}
            rows.append((kind, ir, sc))
            print(f"{kind}: " + ", ".join(f"{lib} {ir[lib]:,.0f} instructions, "
                                          f"{sum(sc[lib].values()):.1f} system calls"
                                          for lib in impls), file=sys.stderr, flush=True)
    print("| per operation | " + " | ".join(impls)
          + " | fastco − plain | gevent − plain | fastco ÷ gevent | plain ÷ gevent |")
    print("|---|" + "---|" * (len(impls) + 4))
    for kind, ir, sc in rows:
        cells = [f"{ir[lib] / 1000:,.1f}k ({sum(sc[lib].values()):.1f} syscalls)"
                 for lib in impls]
        cells += [_diff(ir, "fastco", "plain"), _diff(ir, "gevent", "plain"),
                  _ratio(ir, "fastco", "gevent"), _ratio(ir, "plain", "gevent")]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    for kind, _, sc in rows:
        print(f"\n{kind}, system calls per operation:")
        for lib in impls:
            calls = ", ".join(f"{name} {n:.2f}" for name, n in
                              sorted(sc[lib].items(), key=lambda kv: -kv[1]) if n >= 0.01)
            print(f"  {lib}: {calls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
