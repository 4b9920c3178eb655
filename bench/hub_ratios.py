"""Print fastco/gevent median ratios from a pytest-benchmark JSON file.

    pytest bench/test_bench_hub.py --benchmark-only --benchmark-json=out.json
    python bench/hub_ratios.py out.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    groups: dict[str, dict[str, float]] = {}
    for bench in data["benchmarks"]:
        impl = bench["param"]
        groups.setdefault(bench["group"], {})[impl] = bench["stats"]["median"]
    print(f"{'group':28} {'fastco':>12} {'gevent':>12} {'ratio':>7}")
    for group, medians in groups.items():
        fc, ge = medians.get("fastco"), medians.get("gevent")
        ratio = f"{fc / ge:7.3f}" if fc and ge else "      -"
        fcs = f"{fc * 1e3:9.3f} ms" if fc else "           -"
        ges = f"{ge * 1e3:9.3f} ms" if ge else "           -"
        print(f"{group:28} {fcs} {ges} {ratio}")


if __name__ == "__main__":
    main(sys.argv[1])
