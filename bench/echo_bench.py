"""Echo benchmark harness: run echo servers under the C load generator and
compare them.

    python -m bench.echo_bench [--servers gevent,asyncio,...] [--duration 5]
        [--rounds 3] [--scenarios 100x64,1x64,50x16k] [--baseline gevent]
        [--pin auto|on|off] [--json out.json]

For each round, each server is started on a free port (in a new session, so
that it and any workers it forks can be killed together), the harness waits
until the port accepts, then runs every scenario against it with
``bench/loadgen`` and stops it. Servers are visited in a rotated order each
round so that slow drift of the machine does not favour one of them. The
report is the median over rounds of each figure, and the ratio of each
server's figure to the baseline server's, measured in the same run (absolute
figures drift between runs and machines; ratios within a run do not).

Besides what the load generator reports, the harness measures the CPU time
that the server's processes and the load generator each used during every
scenario. A server near 100% of one core while the client is well below
shows that the server, not the client, sets the rate.

The registry :data:`SERVERS` maps a name to a command line; ``{port}`` is
replaced by the port and ``{bin:NAME}`` by the path of a C program built from
``bench/peers/NAME.c``. A server whose entry in :data:`PROBES` fails (the
module is not installed) is skipped with a note. ``fastco`` is registered
already: it runs as soon as ``fastco.echo`` can be imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from bench._build_loadgen import BENCH_DIR, build_c, build_loadgen

REPO_DIR = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / "peers"
HOST = "127.0.0.1"
PY = sys.executable

#: name -> command line of each server; ``{port}`` and ``{bin:NAME}`` are expanded.
SERVERS: dict[str, list[str]] = {
    "gevent": [PY, str(PEERS_DIR / "gevent_server.py"), "--port", "{port}"],
    "asyncio": [PY, str(PEERS_DIR / "asyncio_streams.py"), "--port", "{port}"],
    "uvloop-streams": [PY, str(PEERS_DIR / "uvloop_streams.py"), "--port", "{port}"],
    "uvloop-protocol": [PY, str(PEERS_DIR / "uvloop_protocol.py"), "--port", "{port}"],
    "c-epoll": ["{bin:c_epoll_server}", "--port", "{port}"],
    "fastco": [sys.executable, "-m", "fastco", "echo", "--port", "{port}"],
    "fastco-ucontext": [sys.executable, "-m", "fastco", "echo", "--backend", "ucontext",
                        "--port", "{port}"],
    "fastco-w2": [sys.executable, "-m", "fastco", "echo", "--workers", "2", "--port", "{port}"],
}

#: name -> a command that must exit 0 for the server to be run at all.
PROBES: dict[str, list[str]] = {
    "gevent": [PY, "-c", "import gevent"],
    "uvloop-streams": [PY, "-c", "import uvloop"],
    "uvloop-protocol": [PY, "-c", "import uvloop"],
    "fastco": [sys.executable, "-c", "import fastco.echo"],
    "fastco-ucontext": [sys.executable, "-c", "import fastco.echo"],
    "fastco-w2": [sys.executable, "-c", "import fastco.echo"],
}

DEFAULT_SCENARIOS = "100x64,1x64,50x16k"
STARTUP_TIMEOUT_S = 20.0  # importing gevent on a busy machine can take seconds
STOP_TIMEOUT_S = 5.0
LOADGEN_SLACK_S = 20.0  # beyond warm-up + duration, before the client is killed
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A server could not be started, died, or a scenario could not run."""


# --------------------------------------------------------------------------
# Scenarios and metrics
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """``conns`` connections each echoing messages of ``size`` bytes."""

    name: str
    conns: int
    size: int

    @property
    def columns(self) -> list[str]:
        """The metrics this scenario is about, the first one the headline
        (the one given a ratio to the baseline)."""
        if self.size >= 4096:
            return ["mb_s"]
        if self.conns == 1:
            return ["p50"]
        return ["rps", "p99"]


def parse_scenario(text: str) -> Scenario:
    """Parse ``CONNSxSIZE`` where SIZE may end in k or m (KiB, MiB)."""
    m = re.fullmatch(r"(\d+)x(\d+)([kKmM]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"scenario {text!r} is not CONNSxSIZE, e.g. 100x64")
    mult = {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(3).lower()]
    conns, size = int(m.group(1)), int(m.group(2)) * mult
    if conns < 1 or size < 1:
        raise argparse.ArgumentTypeError(f"scenario {text!r}: connections and size must be >= 1")
    return Scenario(text.strip(), conns, size)


#: metric -> (column title, how to get it from a result, higher is better?)
METRICS: dict[str, tuple[str, Callable[[dict[str, Any]], float], bool]] = {
    "rps": ("req/s", lambda r: r["rps"], True),
    "mb_s": ("MB/s", lambda r: r["mb_s"], True),
    "p50": ("p50 µs", lambda r: r["latency_us"]["p50"], False),
    "p99": ("p99 µs", lambda r: r["latency_us"]["p99"], False),
    "server_cpu": ("server CPU %", lambda r: r["server_cpu_pct"], False),
    "client_cpu": ("client CPU %", lambda r: r["client_cpu_pct"], False),
    "other_cpu": ("other CPU %", lambda r: r["other_cpu_pct"], False),
    "server_us": ("server CPU µs/req", lambda r: r["server_us_per_req"], False),
    "client_us": ("client CPU µs/req", lambda r: r["client_us_per_req"], False),
}


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


def free_port() -> int:
    """A port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def expand(argv: Sequence[str], port: int) -> list[str]:
    """Fill in ``{port}`` and build and fill in every ``{bin:NAME}``."""
    out = []
    for arg in argv:
        m = re.fullmatch(r"\{bin:(\w+)\}", arg)
        if m:
            out.append(str(build_c(PEERS_DIR / f"{m.group(1)}.c", m.group(1))))
        else:
            out.append(arg.replace("{port}", str(port)))
    return out


def probe(name: str) -> str | None:
    """None if server ``name`` can run here, else the reason it cannot."""
    cmd = PROBES.get(name)
    if cmd is None:
        return None
    try:
        proc = subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{shlex.join(cmd)}`: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return f"`{shlex.join(cmd)}`: {last}"
    return None


def pin_to(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that binds the child (and all it will spawn) to ``cpu``."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def session_cpu_seconds(sid: int) -> float:
    """User + system CPU seconds of all live processes of session ``sid``
    (the server and any workers it forked), from /proc."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # the process has gone
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[3]) == sid:  # field 6: session id
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle (user, nice, system, irq, softirq,
    steal) since boot, from /proc/stat: with the server's and the client's
    own CPU time subtracted, what other processes (and the hypervisor) took
    from this run."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def idle_percent(seconds: float) -> float:
    """Percentage of all CPUs' time spent idle over the next ``seconds``."""

    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = snapshot()
    time.sleep(seconds)
    total1, idle1 = snapshot()
    return 100.0 * (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(threshold: float, max_wait: float) -> bool:
    """Wait until the machine is at least ``threshold`` % idle (sampled over
    2 s), for at most ``max_wait`` seconds. True if it was."""
    deadline = time.monotonic() + max_wait
    while True:
        if idle_percent(2.0) >= threshold:
            return True
        if time.monotonic() >= deadline:
            return False


class Server:
    """A running echo server: its process, port and log file."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], port: int, log: IO[bytes]):
        self.name, self.proc, self.port, self.log = name, proc, port, log

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the server wrote (stdout and stderr)."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise BenchError if the server process has exited."""
        rc = self.proc.poll()
        if rc is not None:
            raise BenchError(f"{self.name} died (exit status {rc}):\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the server's session."""
        return session_cpu_seconds(self.proc.pid)


def wait_accepting(server: Server, timeout: float) -> None:
    """Wait until the server's port accepts a connection; fail if the server
    exits first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        server.check_alive()
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(
                f"{server.name} did not accept on port {server.port} within {timeout:.0f} s:\n"
                f"{server.log_tail()}"
            )
        time.sleep(0.05)


def stop_process_group(proc: subprocess.Popen[bytes]) -> str | None:
    """SIGTERM the process's session, SIGKILL it if it lingers. Returns a note
    if the server did not exit cleanly."""
    note = None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            note = f"did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM: killed"
    try:  # whatever is left of the group (a worker, or the lingering server)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if note is None and proc.returncode not in (0, -signal.SIGTERM):
        note = f"exited with status {proc.returncode} on SIGTERM"
    return note


@contextmanager
def running_server(name: str, argv: Sequence[str], cpu: int | None) -> Iterator[Server]:
    """Start server ``name`` on a free port, wait until it accepts, yield it,
    and always stop it (and its process group) afterwards."""
    with tempfile.TemporaryFile() as log:
        port = free_port()
        cmd = expand(argv, port)
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pin_to(cpu),
        )
        server = Server(name, proc, port, log)
        try:
            wait_accepting(server, STARTUP_TIMEOUT_S)
            yield server
        finally:
            note = stop_process_group(proc)
            if note:
                print(f"  note: {name} {note}", file=sys.stderr)


def run_loadgen(
    loadgen: Path,
    server: Server,
    sc: Scenario,
    duration: float,
    warmup: float,
    cpu: int | None,
) -> dict[str, Any]:
    """Run one scenario against ``server``; return the load generator's JSON
    result, plus the CPU use of server, client and everything else on the
    machine over the client's lifetime (``server_cpu_pct``, ``client_cpu_pct``,
    ``other_cpu_pct``: percent of one core), and the CPU time server and
    client spent per request (``server_us_per_req``, ``client_us_per_req``),
    which depends much less than the rates on what else the machine runs."""
    cmd = [str(loadgen), "-H", HOST, "-p", str(server.port), "-c", str(sc.conns)]
    cmd += ["-s", str(sc.size), "-d", str(duration), "-w", str(warmup)]
    server_cpu0 = server.cpu_seconds()
    busy0 = machine_busy_seconds()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=warmup + duration + LOADGEN_SLACK_S,
            preexec_fn=pin_to(cpu),
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"loadgen timed out: {shlex.join(cmd)}") from exc
    wall = time.monotonic() - t0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = server.cpu_seconds() - server_cpu0
    busy = machine_busy_seconds() - busy0
    client_cpu = (children1.ru_utime - children0.ru_utime) + (
        children1.ru_stime - children0.ru_stime
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode not in (0, 1) or not lines:
        raise BenchError(
            f"loadgen exit status {proc.returncode}: {shlex.join(cmd)}\n{proc.stderr.strip()}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(
        exit_status=proc.returncode,
        wall_s=wall,
        server_cpu_pct=100.0 * server_cpu / wall,
        client_cpu_pct=100.0 * client_cpu / wall,
        other_cpu_pct=max(0.0, 100.0 * (busy - server_cpu - client_cpu) / wall),
        server_us_per_req=1e6 * server_cpu / max(1, result["requests_all"]),
        client_us_per_req=1e6 * client_cpu / max(1, result["requests_all"]),
        stderr=proc.stderr.strip(),
    )
    return result


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def choose_cpus(pin: str) -> tuple[int | None, int | None]:
    """(server CPU, client CPU) to pin to, or (None, None) for no pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if pin == "off" or (pin == "auto" and len(cpus) < 2):
        return None, None
    if len(cpus) < 2:
        raise BenchError("--pin on needs at least 2 CPUs")
    return cpus[0], cpus[1]


def result_ok(r: dict[str, Any]) -> bool:
    """Does this result count: no mismatch, and at least one request done."""
    return r["mismatches"] == 0 and r["requests"] > 0


def progress(rnd: int, name: str, sc: Scenario, res: dict[str, Any]) -> None:
    """One line on stderr per scenario run, so a long run shows its progress."""
    lat = res["latency_us"]
    print(
        f"round {rnd + 1} {name:16} {sc.name:8} {res['rps']:10.0f} req/s "
        f"{res['mb_s']:8.1f} MB/s p50 {lat['p50']:8.1f} p99 {lat['p99']:8.1f} us  "
        f"errors {res['errors']} mismatches {res['mismatches']}  "
        f"cpu srv {res['server_cpu_pct']:.0f}% cli {res['client_cpu_pct']:.0f}% "
        f"other {res['other_cpu_pct']:.0f}%",
        file=sys.stderr,
    )


def run_server_round(
    args: argparse.Namespace,
    loadgen: Path,
    rnd: int,
    name: str,
    entry: dict[str, Any],
    cpus: tuple[int | None, int | None],
) -> None:
    """Start server ``name``, run every scenario against it once, stop it;
    results go to ``entry["rounds"]``, a failure to ``entry["failures"]``."""
    server_cpu, client_cpu = cpus
    try:
        with running_server(name, SERVERS[name], server_cpu) as srv:
            for sc in args.scenarios:
                srv.check_alive()
                res = run_loadgen(loadgen, srv, sc, args.duration, args.warmup, client_cpu)
                srv.check_alive()  # a server that died under load fails the round
                entry["rounds"][sc.name].append(res)
                progress(rnd, name, sc, res)
    except BenchError as exc:
        entry["failures"].append(f"round {rnd + 1}: {exc}")
        print(f"FAIL {name} round {rnd + 1}: {exc}", file=sys.stderr)


def summarize(name: str, entry: dict[str, Any], scenarios: Sequence[Scenario]) -> list[str]:
    """Set ``entry["median"]`` (per scenario, the median of every metric over
    the rounds that count, or None); return notes on what went wrong."""
    notes = []
    entry["median"] = {}
    for sc in scenarios:
        rounds = entry["rounds"][sc.name]
        good = [r for r in rounds if result_ok(r)]
        bad = [r for r in rounds if r["mismatches"] > 0]
        if bad:  # a server that echoes wrong bytes gets no figure at all
            notes.append(f"{name} {sc.name}: {len(bad)} round(s) with MISMATCHED bytes")
        errs = sum(r["errors"] for r in rounds)
        if errs:
            notes.append(f"{name} {sc.name}: {errs} connection errors over all rounds")
        entry["median"][sc.name] = (
            {m: statistics.median(f(r) for r in good) for m, (_, f, _) in METRICS.items()}
            if good and not bad
            else None
        )
    notes += [f"{name}: {failure.splitlines()[0]}" for failure in entry["failures"]]
    return notes


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every round of every server and scenario; return all results."""
    loadgen = build_loadgen()
    cpus = choose_cpus(args.pin)
    notes: list[str] = []
    servers: dict[str, dict[str, Any]] = {}
    for name in args.servers:
        reason = probe(name)
        servers[name] = {
            "argv": SERVERS[name],
            "skipped": reason,
            "rounds": {sc.name: [] for sc in args.scenarios},
            "failures": [],
        }
        if reason:
            notes.append(f"{name}: skipped, {reason}")
            print(f"skip {name}: {reason}", file=sys.stderr)
    names = [n for n in args.servers if not servers[n]["skipped"]]

    for rnd in range(args.rounds):
        shift = rnd % len(names) if names else 0
        for name in names[shift:] + names[:shift]:  # rotated: drift favours nobody
            if args.wait_idle and not wait_for_idle(args.wait_idle, args.wait_max):
                msg = f"round {rnd + 1} {name}: machine not {args.wait_idle:.0f}% idle in time"
                notes.append(msg)
                print(f"note: {msg}", file=sys.stderr)
            run_server_round(args, loadgen, rnd, name, servers[name], cpus)

    others = []
    for name in names:
        notes += summarize(name, servers[name], args.scenarios)
        others += [r["other_cpu_pct"] for rs in servers[name]["rounds"].values() for r in rs]
    if others and statistics.median(others) > 20:
        notes.append(
            f"other processes used a median {statistics.median(others):.0f}% of a core during"
            " the runs: server and client shared what was left, so rates are depressed and"
            " ratios compressed by the client's share; CPU µs/req of the server compares best"
        )
    return {"meta": meta(args, loadgen, *cpus), "servers": servers, "notes": notes}


def meta(
    args: argparse.Namespace, loadgen: Path, server_cpu: int | None, client_cpu: int | None
) -> dict[str, Any]:
    """What the figures depend on: machine, versions, settings."""
    versions = {}
    for dist in ("gevent", "greenlet", "uvloop", "fastco"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "command": shlex.join([sys.executable, "-m", "bench.echo_bench", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.release()}",
        "cpus_available": sorted(os.sched_getaffinity(0)),
        "pin": {"server": server_cpu, "client": client_cpu},
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "baseline": args.baseline,
        "wait_idle": args.wait_idle,
        "versions": versions,
        "loadgen": str(loadgen),
    }


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


def fmt(value: float) -> str:
    """A figure with as many digits as are meaningful here."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(report: dict[str, Any], scenarios: Sequence[Scenario]) -> str:
    """The results as markdown: figures with ratios, then CPU use, then notes."""
    servers = {n: e for n, e in report["servers"].items() if not e["skipped"]}
    base = report["meta"]["baseline"]
    if base not in servers:
        base = next(iter(servers), "")
    header = ["server"]
    for sc in scenarios:
        for i, metric in enumerate(sc.columns):
            header.append(f"{sc.name} {METRICS[metric][0]}")
            if i == 0:
                header.append(f"× {base}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in servers.items():
        row = [name]
        for sc in scenarios:
            med = entry["median"][sc.name]
            base_med = servers[base]["median"][sc.name] if base else None
            for i, metric in enumerate(sc.columns):
                row.append(fmt(med[metric]) if med else "—")
                if i == 0:
                    ok = med and base_med and base_med[metric]
                    row.append(f"{med[metric] / base_med[metric]:.2f}" if ok else "—")
        lines.append("| " + " | ".join(row) + " |")

    lines += [
        "",
        "CPU while each scenario ran: % of one core used by server / client / everything else"
        " on the machine; then CPU µs per request, server / client:",
        "",
    ]
    lines.append("| server | " + " | ".join(sc.name for sc in scenarios) + " |")
    lines.append("|" + "---|" * (len(scenarios) + 1))
    for name, entry in servers.items():
        cells = []
        for sc in scenarios:
            med = entry["median"][sc.name]
            cells.append(
                f"{med['server_cpu']:.0f} / {med['client_cpu']:.0f} / {med['other_cpu']:.0f} %;"
                f" {fmt(med['server_us'])} / {fmt(med['client_us'])} µs"
                if med
                else "—"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    m = report["meta"]
    pin = m["pin"]
    pinned = (
        f"server on CPU {pin['server']}, client on CPU {pin['client']}"
        if pin["server"] is not None
        else "not pinned"
    )
    lines += [
        "",
        f"Median of {m['rounds']} round(s), {m['duration_s']} s each after {m['warmup_s']} s "
        f"warm-up; {pinned}; CPython {m['python']}, {m['machine']}. "
        f"× {base}: ratio to {base} in the same run (throughput: higher is better; "
        "latency: lower is better).",
    ]
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m bench.echo_bench",
        description="Compare echo servers under a closed-loop C load generator.",
    )
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated, from: {', '.join(SERVERS)} (default: all)",
    )
    p.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated CONNSxSIZE[k|m] (default: {DEFAULT_SCENARIOS})",
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per scenario")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per scenario")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the report is the median")
    p.add_argument("--baseline", default="gevent", help="server the ratios are relative to")
    p.add_argument(
        "--pin",
        choices=("auto", "on", "off"),
        default="off",
        help="pin server and client to different CPUs (auto: if 2+ CPUs); "
        "off by default: it hurt whenever another process held a CPU, "
        "and was mixed on the idle machine",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="PCT",
        help="before each server's round, wait until the machine is PCT%% idle "
        "(for a shared machine; default 0: do not wait)",
    )
    p.add_argument(
        "--wait-max",
        type=float,
        default=120,
        metavar="S",
        help="longest wait for --wait-idle, in seconds (then run anyway, with a note)",
    )
    p.add_argument("--json", type=Path, help="also write every result to this file")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in args.servers if s not in SERVERS]
    if unknown:
        p.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    try:
        args.scenarios = [parse_scenario(s) for s in args.scenarios.split(",") if s.strip()]
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    if args.duration <= 0 or args.warmup < 0 or args.rounds < 1:
        p.error("--duration must be > 0, --warmup >= 0, --rounds >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the markdown report, optionally save JSON.
    Exit status 1 if any server echoed wrong bytes or failed."""
    args = parse_args(argv)
    report = run(args)
    print(markdown(report, args.scenarios))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = any(
        e["failures"] or any(r["mismatches"] for rs in e["rounds"].values() for r in rs)
        for e in report["servers"].values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
