"""A whole `refvie build` at scale: does the per-pair cost of dedup + write grow with the lake, and does the driver's
memory stay flat?

Ingests N synthetic pairs, then runs the pipeline on Ray (every stage, as `refvie build` does) with the writer
instrumented in the driver: after each write batch, the cumulative seconds spent in dedup + write, the pairs
settled so far (accepted + rejected) and the driver's resident memory. Prints them at 1k, 2k, 5k, 10k, 20k…
pairs, the growth exponent of dedup + write (time ~ pairs^k; 1 is linear), the per-pair cost of the first and
last blocks, and the driver's memory at each mark (with the part of it that is Lance's capped caches).

    python bench/build_growth.py [--pairs 20000] [--size 32] [--frames 9]

Figures go to bench/results/build_growth.json."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_bench import exponent, resident_mib  # noqa: E402

import lake  # noqa: E402
from lake.memory import MIB, limit_arenas, shared_session  # noqa: E402
from refvie import pipeline  # noqa: E402
from refvie.ingest import IngestConfig, ingest  # noqa: E402
from refvie.sources import SyntheticSource  # noqa: E402
from refvie.synthetic import SyntheticConfig  # noqa: E402

MARKS = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)


class Instrumented:
    """Wraps the writer's __call__: cumulative dedup + write seconds and the driver's memory per batch."""

    def __init__(self):
        self.settled, self.seconds, self.trace = 0, 0.0, []
        self._call = pipeline.Write.__call__
        self._marks = list(MARKS)

    def __enter__(self):
        original = self._call

        def timed(writer, batch):
            start = time.perf_counter()
            result = original(writer, batch)
            self.seconds += time.perf_counter() - start
            self.settled += result["accepted"] + result["rejected"] + result["taken"]
            self.trace.append((self.settled, self.seconds, resident_mib(), shared_session().size_bytes / MIB,
                               writer.seconds["dedup"], writer.seconds["write"]))
            if self._marks and self.settled >= self._marks[0]:  # live, so a run cut short still says something
                while self._marks and self.settled >= self._marks[0]:
                    self._marks.pop(0)
                print(f"\n  {self.settled:,} pairs settled: dedup + write {self.seconds:.1f} s, driver memory "
                      f"{self.trace[-1][2]:.0f} MiB (Lance's caches {self.trace[-1][3]:.0f})", flush=True)
            return result

        pipeline.Write.__call__ = timed
        return self

    def __exit__(self, *exc):
        pipeline.Write.__call__ = self._call


def at_marks(trace: list[tuple], total: int) -> list[tuple]:
    """The first trace point at or past each mark (and the last)."""
    points = []
    for mark in [m for m in MARKS if m < total] + [total]:
        point = next((p for p in trace if p[0] >= mark), None)
        if point and (not points or point[0] > points[-1][0]):
            points.append(point)
    return points


def main() -> None:
    limit_arenas()  # as the `refvie` command does before it opens a lake
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="build-growth-"))
    db = lake.open(workdir / "lake")
    start = time.perf_counter()
    ingest(SyntheticSource(args.pairs, SyntheticConfig(frames=args.frames, height=args.size, width=args.size)), db,
           IngestConfig(progress=False))
    print(f"ingested {args.pairs:,} pairs ({args.frames}x{args.size}x{args.size}) in {time.perf_counter() - start:.0f}"
          f" s; driver memory {resident_mib():.0f} MiB", flush=True)
    pipeline.init_ray()
    start = time.perf_counter()
    with Instrumented() as probe:
        summary = pipeline.build(db, pipeline.PipelineConfig(), progress=True)
    wall = time.perf_counter() - start
    assert summary.accepted + summary.rejected_total == args.pairs, "pairs in != accepted + rejected"
    points = at_marks(probe.trace, probe.settled)
    for settled, seconds, rss, caches, dedup, write in points:
        print(f"  {settled:>7,} pairs settled: dedup + write {seconds:7.1f} s ({1e3 * seconds / settled:.2f} ms/pair "
              f"so far; dedup {dedup:.1f} s, write {write:.1f} s), driver memory {rss:.0f} MiB, of which Lance's "
              f"capped caches {caches:.0f}", flush=True)
    rows, seconds = [p[0] for p in points], [p[1] for p in points]
    k = exponent(rows, seconds) if len(points) > 1 else float("nan")
    first = seconds[0] / rows[0]
    last = (seconds[-1] - seconds[-2]) / (rows[-1] - rows[-2]) if len(points) > 1 else first
    memory = [p[2] for p in probe.trace]
    print(f"refvie build of {args.pairs:,} pairs: {wall:.0f} s ({args.pairs / wall:.1f} pairs/s), "
          f"{summary.accepted:,} accepted, {summary.rejected_total:,} rejected")
    print(f"dedup + write: exponent {k:.2f} ({rows[0]:,} -> {rows[-1]:,} pairs), {1e3 * first:.2f} ms/pair in the "
          f"first block, {1e3 * last:.2f} in the last; driver memory {memory[0]:.0f} MiB after the first batch, "
          f"{points[0][2]:.0f} at {rows[0]:,}, {memory[-1]:.0f} at the end (peak {max(memory):.0f})")
    out = dict(pairs=args.pairs, frames=args.frames, size=args.size, wall_s=wall, accepted=summary.accepted,
               rejected=summary.rejected_total, marks=rows, seconds=seconds, exponent=k,
               first_ms_per_pair=1e3 * first, last_ms_per_pair=1e3 * last,
               driver_mib=[p[2] for p in points], lance_cache_mib=[p[3] for p in points],
               dedup_seconds=[p[4] for p in points], write_seconds=[p[5] for p in points],
               driver_peak_mib=max(memory),
               trace=np.asarray(probe.trace).round(3).tolist())
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/build_growth.json").write_text(json.dumps(out, indent=1))
    print("results: bench/results/build_growth.json")


if __name__ == "__main__":
    main()
