"""Timing helpers for the benchmarks: median of repeats, and a printed table of ratios against a baseline."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def timeit(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds of `repeat` calls after `warmup` calls (the first call pays for caches and imports)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(name: str, rows: list[dict], path: Path | None = None) -> None:
    """Print `rows` (each: what, ours_s, baseline, baseline_s) with the speed-up, and save them as JSON."""
    print(f"\n## {name}")
    print("| measurement | ours | baseline | baseline time | speed-up |")
    print("|---|---:|---|---:|---:|")
    for r in rows:
        r["speedup"] = r["baseline_s"] / r["ours_s"]
        print(f"| {r['what']} | {r['ours_s'] * 1e3:.1f} ms | {r['baseline']} | {r['baseline_s'] * 1e3:.1f} ms "
              f"| {r['speedup']:.1f}x |")
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=1))
