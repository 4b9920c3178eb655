"""Memory per suspended coroutine, fastco against greenlet, in one run.

Each library runs in its own process: it suspends N coroutines, each five
Python frames deep, and reports the growth of RSS (and of the kernel's page
tables, which RSS does not count) divided by N.

    python -m bench.scale [--count 100000] [--depth 5] [--libs fastco,greenlet]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import gc, json, sys, time
lib, count, depth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if lib == "greenlet":
    from greenlet import greenlet, getcurrent
else:
    from fastco import greenlet, getcurrent

def status():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmPTE"):
                fields[key] = int(value.split()[0]) * 1024
    return fields

def nest(n):
    if n > 1:
        return nest(n - 1)
    getcurrent().parent.switch()

kept = []
for _ in range(1000):                      # warm up allocators
    g = greenlet(nest); g.switch(depth); kept.append(g)
gc.collect()
before = status()
t0 = time.perf_counter()
for _ in range(count):
    g = greenlet(nest); g.switch(depth); kept.append(g)
elapsed = time.perf_counter() - t0
gc.collect()
after = status()
with open("/proc/self/maps") as f:
    maps = sum(1 for _ in f)
print(json.dumps({
    "lib": lib, "count": count, "depth": depth,
    "rss_per": (after["VmRSS"] - before["VmRSS"]) / count,
    "pte_per": (after["VmPTE"] - before["VmPTE"]) / count,
    "rss_total": after["VmRSS"], "maps": maps, "seconds": elapsed,
}))
"""


def measure(lib: str, count: int, depth: int) -> dict:
    """Run one library's measurement in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", CHILD, lib, str(count), str(depth)],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        return {"lib": lib, "error": proc.stderr.strip()[-500:] or f"exit {proc.returncode}"}
    return json.loads(proc.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--libs", default="fastco,greenlet")
    args = parser.parse_args(argv)
    results = [measure(lib, args.count, args.depth) for lib in args.libs.split(",")]
    print(f"{args.count} suspended coroutines, {args.depth} Python frames deep, "
          f"Python {sys.version.split()[0]}")
    print("| library | RSS per coroutine | page tables per coroutine | total RSS | maps | time |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['lib']} | failed: {r['error']} | | | | |")
            continue
        print(f"| {r['lib']} | {r['rss_per']:.0f} B | {r['pte_per']:.0f} B | "
              f"{r['rss_total'] / 2**20:.0f} MiB | {r['maps']} | {r['seconds']:.1f} s |")
    ok = {r["lib"]: r for r in results if "error" not in r}
    if "fastco" in ok and "greenlet" in ok:
        print(f"\nRSS per coroutine, fastco / greenlet: "
              f"{ok['fastco']['rss_per'] / ok['greenlet']['rss_per']:.2f}")
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
