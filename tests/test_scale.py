"""Scale: 100,000 coroutines suspended at once, under vm.max_map_count."""

from __future__ import annotations

import json

from conftest import run_python

SCALE = r"""
import gc, json
import fastco
from fastco import greenlet, getcurrent

def nest(n):
    if n > 1:
        return nest(n - 1)
    return getcurrent().parent.switch() + 1

N = 100_000
kept = []
for i in range(N):
    g = greenlet(nest)
    g.switch(5)
    kept.append(g)
with open("/proc/self/maps") as f:
    maps = sum(1 for _ in f)
alive = sum(1 for g in kept if g and not g.dead)
stats = fastco.stack_stats()
results = [g.switch(i) for i, g in enumerate(kept[:1000])]   # they still run
del kept, g
gc.collect()
print(json.dumps({"maps": maps, "alive": alive, "in_use_peak": stats["in_use"],
                  "guarded": stats["guarded"], "results_ok": results == list(range(1, 1001)),
                  "in_use_after": fastco.stack_stats()["in_use"]}))
"""


def test_100k_suspended_coroutines() -> None:
    proc = run_python(code=SCALE, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r["alive"] == 100_000
    assert r["in_use_peak"] >= 100_000
    assert r["results_ok"]
    assert r["in_use_after"] == 0          # dropped ones were killed, stacks returned
    with open("/proc/sys/vm/max_map_count") as f:
        max_maps = int(f.read())
    assert r["maps"] < max_maps // 8, r    # far from the limit
