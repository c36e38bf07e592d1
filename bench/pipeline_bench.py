"""RefVIE pipeline benchmark.

1. Throughput: quadruplets/s of `refvie.pipeline.build` on Ray with 1 and with 2 CPUs (each in a fresh process
   with its own Ray, pinned to that many cores), on copies of the same lake of synthetic pairs; the ratio is the
   scaling. Where the CPU time went, per role (the driver's write and dedup, the stage tasks, the embed actor,
   Ray's own processes) and how much of the cores sat idle, is printed for each: the measured answer to "why not
   2x". Both writers are measured: the driver's (default) and parallel writes (workers write the bytes as
   fragments, the driver checks near-duplicates and commits). Builds of two sizes (800 and 2400 pairs) also give
   the scaling of the per-pair cost, with the fixed costs every build pays once taken out (Ray starting its workers
   and helper actors, each worker's imports and models: ~10 % of an 800-pair build's CPU).
2. Cost over the I/O floor: the pipeline's work per sample (the whole build's wall time in one process with the
   plain loop — every stage, write and near-duplicate check included — so no worker competes for the cores)
   against the time needed only to read + decode the inputs and encode the outputs (reference PNG, mask PNG, two
   JPEG thumbnails) of the same samples in one process. Aim: <= 1.5x.

    python bench/pipeline_bench.py [--sizes 800,2400] [--writers driver,parallel] [--frames 17] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import report  # noqa: E402
from cpu_accounting import describe  # noqa: E402

import lake  # noqa: E402
from lake import media  # noqa: E402
from refvie.ingest import IngestConfig, ingest  # noqa: E402
from refvie.sources import SyntheticSource  # noqa: E402
from refvie.synthetic import SyntheticConfig  # noqa: E402

RUN = """
import json, os, sys, time, lake, psutil
from refvie.pipeline import PipelineConfig, build, init_ray
cpus = int(sys.argv[2])
os.sched_setaffinity(0, set(range(cpus)))  # Ray's workers inherit it: "1 CPU" means one core, driver included
init_ray(num_cpus=cpus)
sys.path.insert(0, sys.argv[3])
from cpu_accounting import CpuMonitor
start = time.perf_counter()
with CpuMonitor() as monitor:
    summary = build(lake.open(sys.argv[1]), PipelineConfig(batch_size=8, write_batch=32,
                                                           parallel_writes=sys.argv[4] == "parallel"),
                    limit=int(sys.argv[5]), progress=False)
wall = time.perf_counter() - start
used = monitor.used
processes = {role: len(pids) for role, pids in monitor.processes.items()}
print(json.dumps({"wall": wall, "accepted": summary.accepted, "rejected": summary.rejected_total,
                  "seconds": dict(summary.seconds), "cpu": used,
                  "processes": processes}))
"""


def io_floor(db: lake.Lake, ids: list[str]) -> float:
    """Read and decode both clips, encode the four output images: what any pipeline must pay per sample."""
    start = time.perf_counter()
    for offset in range(0, len(ids), 32):
        chunk = ids[offset : offset + 32]
        for src_bytes, tgt_bytes in zip(db.read_blobs("pairs", "source_video", chunk),
                                        db.read_blobs("pairs", "target_video", chunk), strict=True):
            src, tgt = media.decode_video(src_bytes), media.decode_video(tgt_bytes)
            key = len(src) // 2
            media.encode_image(tgt[key])
            media.encode_mask_stack(np.abs(src[key].astype(int) - tgt[key]).max(-1) > 30)
            media.thumbnail(src[key])
            media.thumbnail(tgt[key])
    return time.perf_counter() - start


def marginal(runs: dict, writer: str, small: int, large: int) -> str:
    """The scaling of the per-pair cost: what the extra pairs of the larger build cost on 1 and on 2 CPUs, so the
    fixed costs every build pays once (starting Ray's workers and helper actors, each worker's imports and models,
    the last batches' drain) cancel out; and where that extra CPU went, per role."""
    extra = large - small
    one = runs[writer, large, 1]["wall"] - runs[writer, small, 1]["wall"]
    two = runs[writer, large, 2]["wall"] - runs[writer, small, 2]["wall"]
    roles = {cpus: {role: runs[writer, large, cpus]["cpu"][role] - runs[writer, small, cpus]["cpu"][role]
                    for role in runs[writer, large, cpus]["cpu"]} for cpus in (1, 2)}
    per_pair = ", ".join(f"{role} {roles[1][role] / extra * 1e3:.1f} -> {roles[2][role] / extra * 1e3:.1f}"
                         for role in roles[1])
    return (f"{writer} writer, per pair beyond the first {small} ({extra} pairs): 1 CPU {one / extra * 1e3:.1f} ms, "
            f"2 CPUs {two / extra * 1e3:.1f} ms: scaling {one / two:.2f}x\n"
            f"   CPU ms per extra pair, 1 -> 2 CPUs: {per_pair}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=800, help="pairs in the lake; the builds take the first --sizes")
    parser.add_argument("--sizes", default="800,2400",
                        help="build sizes (comma-separated, each <= the largest); two sizes also give the scaling of "
                             "the per-pair cost, the fixed start-up costs of a build (Ray's workers and helper "
                             "actors, each worker's imports and models) taken out")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--writers", default="driver,parallel", help="driver, parallel, or both (comma-separated)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    args.n = max([args.n, *sizes])
    work = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    base = lake.open(work / "base")
    ingest(SyntheticSource(args.n, SyntheticConfig(frames=args.frames, height=args.size, width=args.size)), base,
           IngestConfig(progress=False))
    ids = base.read("pairs", columns=["pair_id"])["pair_id"].to_pylist()[: sizes[0]]
    floor = io_floor(base, ids)

    runs = {}
    for writer in args.writers.split(","):
        for n in sizes:
            for cpus in (1, 2):
                copy = work / f"{writer}-{n}-cpus{cpus}"
                shutil.copytree(work / "base", copy)
                out = subprocess.run([sys.executable, "-c", RUN, str(copy), str(cpus), str(HERE), writer, str(n)],
                                     capture_output=True, text=True,
                                     env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, check=True)
                runs[writer, n, cpus] = r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{writer} writer, {cpus} CPU(s): {n} pairs -> {r['accepted']} quadruplets + "
                      f"{r['rejected']} rejects in {r['wall']:.1f}s = {n / r['wall']:.1f} pairs/s")
                print(describe(r["cpu"], r["wall"], cpus, r["processes"]))
                shutil.rmtree(copy, ignore_errors=True)
            print(f"{writer} writer, {n} pairs: 1 -> 2 CPUs scaling "
                  f"{runs[writer, n, 1]['wall'] / runs[writer, n, 2]['wall']:.2f}x")
        if len(sizes) > 1:
            print(marginal(runs, writer, sizes[0], sizes[-1]))
    shutil.copytree(work / "base", work / "local")
    from refvie.pipeline import build_local

    local_lake = lake.open(work / "local")
    start = time.perf_counter()
    local = build_local(local_lake, limit=len(ids))
    work_seconds = time.perf_counter() - start  # the whole build: every stage, classify, dedup and write included
    print(f"stage seconds (one process): { {k: round(v, 2) for k, v in sorted(local.seconds.items())} }")
    print(f"I/O floor: {floor:.2f}s for {len(ids)} samples ({floor / len(ids) * 1e3:.1f} ms each); pipeline work "
          f"{work_seconds:.2f}s ({work_seconds / len(ids) * 1e3:.1f} ms each): {work_seconds / floor:.2f}x the floor")
    report("pipeline_bench", [
        *[dict(what=f"build {sizes[0]} pairs ({args.frames}x{args.size}x{args.size}) on 2 CPUs, {writer} writer, wall",
               ours_s=runs[writer, sizes[0], 2]["wall"], baseline="the same on 1 CPU",
               baseline_s=runs[writer, sizes[0], 1]["wall"])
          for writer in args.writers.split(",")],
        dict(what="pipeline work per sample (the whole build, one process)", ours_s=work_seconds / len(ids),
             baseline="I/O floor: decode inputs + encode outputs", baseline_s=floor / len(ids)),
    ], Path("bench/results/pipeline_bench.json"))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
