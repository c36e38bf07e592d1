"""The near-duplicate check at the scale of the paper's corpus: per-row cost of `DuplicateBank.check_and_add` as
the bank grows, with its cells (`refvie/stages/dedup.py`) against the same bank scanned whole (one product of the
batch with every banked projection: what the check did before the cells), same process, same keys.

Keys are clustered, as a real build's are (instructions from a grammar, clips of a few scenes): `--clusters`
centres in 640 dimensions, each key a centre plus noise, unit length; queries come from the same distribution.
Also checks that both ways reject exactly the same queries.

    python bench/dedup_bench.py [--rows 20000,200000,1000000] [--clusters 200] [--batches 20]

Figures go to bench/results/dedup_bench.json."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]
from lake.embed import l2_normalise  # noqa: E402
from refvie.stages.dedup import DuplicateBank  # noqa: E402

DIM, THRESHOLD, BATCH = 640, 0.995, 32


def clustered(centres: np.ndarray, n: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    picks = rng.integers(0, len(centres), n)
    return l2_normalise(centres[picks] + rng.normal(scale=noise, size=(n, DIM)).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="20000,200000,1000000")
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.02, help="per-dimension noise around a centre")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = l2_normalise(rng.normal(size=(args.clusters, DIM)).astype(np.float32))
    bank, out = DuplicateBank(), {"rows": [], "cells": [], "cells_ms_per_row": [], "whole_ms_per_row": [],
                                  "share_scanned": [], "fill_s": []}
    for size in [int(x) for x in args.rows.split(",")]:
        start = time.perf_counter()
        while bank.size < size:
            n = min(65536, size - bank.size)
            bank.add(clustered(centres, n, rng, args.noise), [f"b{bank.size + i}" for i in range(n)])
        fill = time.perf_counter() - start
        queries = [clustered(centres, BATCH, rng, args.noise) for _ in range(args.batches)]
        names = [[f"q{size}-{b}-{i}" for i in range(BATCH)] for b in range(args.batches)]
        timings, decisions = {}, {}
        for way in ("cells", "whole"):
            probe = DuplicateBank.__new__(DuplicateBank)
            probe.__dict__.update(bank.__dict__)  # the same bank, as it stands; kept rows would join a copy only
            probe._projected, probe._pair_hashes, probe._norms2 = (
                bank._projected.copy(), bank._pair_hashes.copy(), bank._norms2.copy())
            probe._members = [m.copy() for m in bank._members]
            probe._member_counts = bank._member_counts.copy()
            probe._cells_made_at = 10**12  # no remaking inside the timed batches
            if way == "whole":
                probe._centroids = None
            scanned, start = probe.rows_scanned, time.perf_counter()
            decisions[way] = [probe.check_and_add(q, p, THRESHOLD).tolist() for q, p in zip(queries, names,
                                                                                            strict=True)]
            timings[way] = (time.perf_counter() - start) / (args.batches * BATCH)
            if way == "cells":
                share = (probe.rows_scanned - scanned) / (args.batches * BATCH) / size
            probe._file = None  # the bank's key file is shared: the copy must not close it
        assert decisions["cells"] == decisions["whole"], "the cells changed a decision"
        out["rows"].append(size)
        out["cells"].append(bank.cells)
        out["cells_ms_per_row"].append(1e3 * timings["cells"])
        out["whole_ms_per_row"].append(1e3 * timings["whole"])
        out["share_scanned"].append(share)
        out["fill_s"].append(fill)
        print(f"  {size:>9,} banked rows ({bank.cells} cells; filling took {fill:.0f} s): check "
              f"{1e3 * timings['cells']:.3f} ms a row with cells ({100 * share:.1f} % of the bank scanned) vs "
              f"{1e3 * timings['whole']:.3f} ms "
              f"scanning it whole ({timings['whole'] / timings['cells']:.1f}x); same decisions", flush=True)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/dedup_bench.json").write_text(json.dumps(out, indent=1))
    print("results: bench/results/dedup_bench.json")


if __name__ == "__main__":
    main()
