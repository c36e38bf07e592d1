"""The writer's keyed upsert as `quadruplets` grows: a 32-row batch joined with the whole `id` column (what
merge_insert does without an index) against the same batch found through a BTree index on `id` (what the writer
keeps from `Write.key_index_rows` rows), same table, same process, alternating.

Both sides run on the same table with the same index, alternating; the scan side tells merge_insert not to use
it. The table is filled by plain appends of small-blob rows (the join reads only `id`, so clip sizes do not matter) and
compacted into large fragments, as a finished build leaves it.

    python bench/upsert_bench.py [--rows 8192,65536,262144,1048576] [--repeat 8]

Figures go to bench/results/upsert_bench.json."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]
import lake  # noqa: E402
from lake.schema import spec_for  # noqa: E402
from lake.validate import to_arrow  # noqa: E402
from refvie.stages.write import Write, quadruplet_row, synthetic_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="8192,65536,262144,1048576")
    parser.add_argument("--repeat", type=int, default=8, help="upserts timed per side and size (the median)")
    args = parser.parse_args()
    db = lake.open(Path(tempfile.mkdtemp(prefix="upsert-bench-")) / "lake")
    writer = Write(db)  # only its row settings are used
    rng = np.random.default_rng(0)
    rows, out = 0, {"rows": [], "scan_ms": [], "index_ms": []}

    def batch(n: int) -> list[dict]:
        nonlocal rows
        made = synthetic_batch(rows, n, rng, blob=16)
        rows += n
        return [quadruplet_row(made, i, writer.pipeline_version, writer.split_fractions) for i in range(n)]

    for size in [int(x) for x in args.rows.split(",")]:
        while rows < size:
            db.append("quadruplets", batch(min(8192, size - rows)))
        dataset = db.dataset("quadruplets")
        dataset.optimize.compact_files(target_rows_per_fragment=Write.build_rows)
        dataset.create_scalar_index("id", "BTREE", replace=True)
        timings = {"scan": [], "index": []}
        for _ in range(args.repeat):
            for way in ("scan", "index"):
                data = to_arrow(spec_for("quadruplets"), batch(32))
                start = time.perf_counter()
                (db.table("quadruplets").merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
                 .use_index(way == "index").execute(data, on_bad_vectors="null"))  # as Lake.upsert does
                timings[way].append(time.perf_counter() - start)
        scan, index = (1e3 * float(np.median(timings[w])) for w in ("scan", "index"))
        out["rows"].append(db.count("quadruplets"))
        out["scan_ms"].append(scan)
        out["index_ms"].append(index)
        print(f"  {out['rows'][-1]:>9,} rows: a 32-row upsert {scan:6.1f} ms joining the whole id column, "
              f"{index:6.1f} ms through the BTree index ({scan / index:.1f}x)", flush=True)
    if len(out["rows"]) > 1:
        fit = {w: float(np.polyfit(np.log(out["rows"]), np.log(out[f"{w}_ms"]), 1)[0]) for w in ("scan", "index")}
        out["exponents"] = fit
        print(f"growth exponent of one upsert's time in the table's rows: scan {fit['scan']:.2f}, "
              f"index {fit['index']:.2f}")
    path = Path("bench/results/upsert_bench.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
