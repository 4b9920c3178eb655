"""Turn a benchmark run into a table of ratios and a bar chart.

    python -m bench.report --run            # run everything, then report
    python -m bench.report RUN.json         # report a saved pytest-benchmark run
    python -m bench.report --run --pytest-args "-k switch"   # a subset
    python -m bench.report --run --results bench/results/py314  # elsewhere

Running means: the pytest-benchmark suite (``pytest bench/ --benchmark-only
--benchmark-json=...``, which pytest-benchmark can also ``--benchmark-save``
and ``--benchmark-compare``), and the C microbenchmark (ns per switch of
each backend).  The report goes to bench/results/: REPORT.md (a markdown
table: per-operation medians, and fastco's time divided by each peer's
measured in the same run) and REPORT.png (the ratios as bars).  With
--readme, the table also replaces the one in README.md between the
``<!-- bench-report -->`` markers.

The interpreter is the one that runs the report (the suite runs on
sys.executable): for another one, run its ``python -m bench.report`` (e.g.
in the Debian sid chroot of .ci/sid.sh for CPython 3.14 and 3.15), with
--results so that its report does not replace the default one.

Ratios below 1 mean fastco is faster.  Every benchmark records, in
extra_info["ops"], how many operations one measured call performs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"     # the default --results
PEERS = ("greenlet", "gevent", "asyncio", "uvloop")
MARK_BEGIN = "<!-- bench-report -->"
MARK_END = "<!-- /bench-report -->"


def impl_of(bench: dict) -> str:
    """The implementation a benchmark ran on: extra_info["impl"], or the first
    parameter that names one."""
    impl = (bench.get("extra_info") or {}).get("impl")
    if impl:
        return impl
    params = bench.get("params") or {}
    for value in params.values():
        if isinstance(value, str) and (value.startswith("fastco") or value in PEERS):
            return value
    name = bench["name"]
    match = re.search(r"\[([^\]-]+(?:-(?:asm|ucontext))?)", name)
    return match.group(1) if match else "fastco"


def per_op_ns(bench: dict) -> float:
    """Median time of one operation, in nanoseconds."""
    ops = (bench.get("extra_info") or {}).get("ops", 1)
    return bench["stats"]["median"] / ops * 1e9


def cpu_ns(bench: dict) -> float | None:
    """CPU time of the process under test per operation, where the benchmark
    measured it (the client processes of the network and monkey benchmarks;
    the gevent benchmarks' workers and servers)."""
    return (bench.get("extra_info") or {}).get("cpu_ns")


def collect(run: dict, measure=per_op_ns) -> dict[str, dict[str, float]]:
    """{group: {implementation: median ns per operation}}; a benchmark
    measured as several entries (one per round, implementations taking
    turns: bench/test_bench_net.py) counts with the median of its entries.
    ``measure`` (per_op_ns: wall time, or cpu_ns) gives an entry's figure;
    entries without one are left out."""
    entries: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for bench in run["benchmarks"]:
        value = measure(bench)
        if value is None:
            continue
        group = bench.get("group") or bench["name"]
        entries[group][impl_of(bench)].append(value)
    return {group: {impl: statistics.median(values) for impl, values in impls.items()}
            for group, impls in entries.items()}


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def fmt_ratio(r: float) -> str:
    """Two decimals, or two significant digits for the very small ones."""
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def ratios(table: dict[str, dict[str, float]]) -> list[tuple[str, str, str, float]]:
    """(group, fastco implementation, peer, fastco time / peer time)."""
    out = []
    for group, impls in sorted(table.items()):
        for impl, ns in sorted(impls.items()):
            if not impl.startswith("fastco"):
                continue
            for peer in PEERS:
                if peer in impls:
                    out.append((group, impl, peer, ns / impls[peer]))
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    debug = " (debug build)" if hasattr(sys, "gettotalrefcount") else ""
    return (f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), Linux "
            f"{platform.release()}, CPython {platform.python_version()}{debug}")


def markdown(table: dict[str, dict[str, float]], c_bench: str, info: str,
             cpu: dict[str, dict[str, float]] | None = None) -> str:
    impls = sorted({i for g in table.values() for i in g},
                   key=lambda i: (not i.startswith("fastco"), i))
    lines = [f"Measured on {info}.", "",
             "Median time per operation (lower is better):", "",
             "| benchmark | " + " | ".join(impls) + " |",
             "|---|" + "---|" * len(impls)]
    for group, row in sorted(table.items()):
        cells = [fmt_ns(row[i]) if i in row else "" for i in impls]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    lines += ["", "fastco's time divided by the peer's, same run (below 1: fastco is faster):",
              "", "| benchmark | fastco backend | peer | ratio |", "|---|---|---|---|"]
    for group, impl, peer, r in ratios(table):
        lines.append(f"| {group} | {impl} | {peer} | **{fmt_ratio(r)}** |")
    if cpu:
        lines += ["", "CPU time of the library's process per operation (a client, or the gevent "
                  "benchmarks' worker or server), where measured (less "
                  "disturbed than the wall time by the load of a shared machine), and "
                  "fastco's divided by the peer's:", "",
                  "| benchmark | fastco backend | fastco | peer | peer's | ratio |",
                  "|---|---|---|---|---|---|"]
        for group, impl, peer, r in ratios(cpu):
            lines.append(f"| {group} | {impl} | {fmt_ns(cpu[group][impl])} | {peer} | "
                         f"{fmt_ns(cpu[group][peer])} | **{fmt_ratio(r)}** |")
    if c_bench:
        lines += ["", "C microbenchmark (`make -C csrc bench`), one context switch:", "",
                  "```", c_bench.strip(), "```"]
    return "\n".join(lines) + "\n"


def chart(table: dict[str, dict[str, float]], path: Path) -> bool:
    """A horizontal bar chart of the ratios; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = ratios(table)
    if not rows:
        return False
    labels = [f"{g}\n{i} vs {p}" for g, i, p, _ in rows]
    values = [r for *_, r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.5))
    colors = ["#2a9d8f" if v < 1 else "#e76f51" for v in values]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("fastco time / peer time (log scale; < 1: fastco faster)")
    ax.invert_yaxis()
    for y, v in enumerate(values):
        ax.text(v, y, f" {fmt_ratio(v)}", va="center", fontsize=7)
    ax.set_title("fastco against its peers, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run_c_bench() -> str:
    """Build and run the C microbenchmark; its output, or '' if it fails."""
    # -B: built here, not a binary another system (a chroot) left.
    proc = subprocess.run(["make", "-s", "-B", "-C", str(ROOT / "csrc"), "bench"],
                          capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def run_suite(out: Path, extra: list[str]) -> None:
    """Run the pytest-benchmark suite into a JSON file: all of bench/, or
    the files or tests that `extra` names."""
    named = any(os.path.exists(ROOT / a.split("::")[0]) for a in extra if not a.startswith("-"))
    paths = [] if named else [str(ROOT / "bench")]
    cmd = [sys.executable, "-m", "pytest", *paths, "--benchmark-only",
           f"--benchmark-json={out}", "-q", *extra]
    subprocess.run(cmd, check=True, cwd=ROOT)


def update_readme(text: str) -> None:
    readme = ROOT / "README.md"
    content = readme.read_text(encoding="utf-8")
    if MARK_BEGIN not in content:
        raise SystemExit(f"README.md has no {MARK_BEGIN} marker")
    head, rest = content.split(MARK_BEGIN, 1)
    _, tail = rest.split(MARK_END, 1)
    readme.write_text(f"{head}{MARK_BEGIN}\n{text}{MARK_END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", help="a pytest-benchmark JSON file")
    parser.add_argument("--run", action="store_true", help="run the benchmarks first")
    parser.add_argument("--readme", action="store_true", help="update README.md's table")
    parser.add_argument("--pytest-args", default="",
                        help='extra arguments for pytest, e.g. "-k switch"')
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="directory for run.json and the report (default: %(default)s)")
    args = parser.parse_args(argv)
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    path = Path(args.json) if args.json else results / "run.json"
    extra = shlex.split(args.pytest_args)
    if args.run:
        run_suite(path, extra)
    if not path.exists():
        parser.error(f"{path} does not exist: give a JSON file or --run")
    run = json.loads(path.read_text(encoding="utf-8"))
    table = collect(run)
    c_bench = run_c_bench() if args.run else ""
    c_file = results / "ctx_bench.txt"
    if c_bench:
        c_file.write_text(c_bench, encoding="utf-8")
    elif c_file.exists():
        c_bench = c_file.read_text(encoding="utf-8")
    info = machine()
    text = markdown(table, c_bench, info, collect(run, cpu_ns))
    has_png = chart(table, results / "REPORT.png")
    (results / "REPORT.md").write_text("# Benchmark report\n\n" + text
                                       + ("\n![ratios](REPORT.png)\n" if has_png else ""),
                                       encoding="utf-8")
    if args.readme:
        png = (results / "REPORT.png").resolve().relative_to(ROOT)
        update_readme(text + (f"\n![ratios]({png})\n" if has_png else ""))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
