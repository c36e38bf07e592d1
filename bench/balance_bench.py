"""Curation benchmark on a 1M-row metadata table: build a rebalanced slice (temperature 0.3 over edit_type) and
sample one epoch of row ids, against a pandas baseline measured in the same run (read the table, groupby-sample
each category to the same per-category counts).

    python bench/balance_bench.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

import lake  # noqa: E402
from lake.balance import Strategy  # noqa: E402
from lake.slices import build_slice  # noqa: E402
from lake.splits import split_for  # noqa: E402
from lake.taxonomy import EDIT_TYPES, edit_scope  # noqa: E402


def metadata_rows(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    types = np.array(EDIT_TYPES)[rng.choice(6, size=n, p=[0.3, 0.2, 0.2, 0.15, 0.1, 0.05])]
    ids = [f"q{i:07d}" for i in range(n)]
    return pa.table({"id": ids, "pair_id": ids, "dataset": ["bench"] * n, "task": ["instruct"] * n,
                     "edit_type": types, "edit_scope": [edit_scope(t).value for t in types],
                     "instruction": ["x"] * n, "source_uri": ["s3://v/a.mp4"] * n, "target_uri": ["s3://v/b.mp4"] * n,
                     "split": [split_for(i) for i in ids[:1]] * n})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    db = lake.open(Path(tempfile.mkdtemp(prefix="balance-bench-")) / "lake")
    start = time.perf_counter()
    table = metadata_rows(args.rows)
    for offset in range(0, args.rows, 250_000):
        db.append("quadruplets", table.slice(offset, 250_000))
    print(f"wrote {args.rows:,} metadata rows in {time.perf_counter() - start:.1f}s")
    strategy = Strategy("temperature", alpha=0.3)

    start = time.perf_counter()
    s = build_slice(db, strategy=strategy, seed=0)
    ids = s.sampler(seed=0).remaining_ids()
    ours = time.perf_counter() - start
    targets = s.allocation.samples()

    start = time.perf_counter()
    frame = db.read("quadruplets", columns=["id", "edit_type"]).to_pandas()
    parts = [group.sample(n=targets[name], replace=targets[name] > len(group), random_state=0)
             for name, group in frame.groupby("edit_type")]
    baseline_ids = [i for part in parts for i in part["id"]]
    baseline = time.perf_counter() - start
    assert len(ids) == len(baseline_ids) == s.epoch_size
    print(f"slice + one epoch of {len(ids):,} ids: {ours:.2f}s; pandas read + groupby-sample: {baseline:.2f}s")
    report("balance_bench", [dict(what=f"build a temperature slice over {args.rows:,} rows and sample one epoch",
                                  ours_s=ours, baseline="pandas: read + groupby().sample() per category",
                                  baseline_s=baseline)], Path("bench/results/balance_bench.json"))


if __name__ == "__main__":
    main()
