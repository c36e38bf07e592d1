"""Lake benchmark: metadata SQL and random access with blobs, each against a baseline measured in the same run.

A table of 100k quadruplet rows (10k holding real MP4 source/target videos, the rest pointing at URIs):
  1. edit-type distribution through `db.sql` (DuckDB over Lance, blob columns never read)
     vs pandas over the one column it needs, read from the same Lance table;
  2. 1,000 random rows by id with their video bytes: Lance (BTree key index + take_blobs)
     vs the same rows read from an equivalent Parquet file (pyarrow filter on id).

    python bench/lake_bench.py [--rows 100000] [--video-rows 10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report, timeit  # noqa: E402

import lake  # noqa: E402
from lake import media  # noqa: E402
from lake.taxonomy import EDIT_TYPES, edit_scope  # noqa: E402


def clip(seed: int, frames: int = 17, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 4 % 256, y * 4 % 256, np.full_like(x, int(rng.integers(0, 255)))], -1).astype(np.uint8)
    out = np.repeat(base[None], frames, 0)
    for t in range(frames):
        o = (t * 3 + seed) % (size - 16)
        out[t, o : o + 16, o : o + 16] = rng.integers(0, 255, 3)
    return out


def encoded_clip(seed: int) -> bytes:
    return media.encode_video(clip(seed))


def build_rows(n: int, n_video: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    weights = np.array([0.3, 0.2, 0.2, 0.15, 0.1, 0.05])  # the real pools' local-edit skew
    edit_types = np.array(EDIT_TYPES)[rng.choice(len(EDIT_TYPES), size=n, p=weights)]
    ids = [f"q{i:07d}" for i in range(n)]
    # every video is its own encoding: repeated bytes would let Parquet's dictionary encoding cheat
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2, mp_context=get_context("spawn")) as pool:
        clips = list(pool.map(encoded_clip, range(n_video + 1), chunksize=64))
    video = [clips[i] if i < n_video else None for i in range(n)]
    target = [clips[i + 1] if i < n_video else None for i in range(n)]
    uri = [None if i < n_video else f"s3://videos/{i}.mp4" for i in range(n)]
    return pa.table({
        "id": ids, "pair_id": [f"p{i:07d}" for i in range(n)], "dataset": ["bench"] * n, "task": ["instruct"] * n,
        "edit_type": edit_types.tolist(), "edit_scope": [edit_scope(t).value for t in edit_types],
        "instruction": [f"instruction {i}" for i in range(n)],
        "source_video": pa.array(video, pa.large_binary()), "target_video": pa.array(target, pa.large_binary()),
        "source_uri": uri, "target_uri": uri, "num_frames": pa.array([17] * n, pa.int32()),
        "edit_strength": pa.array(rng.random(n), pa.float32()), "split": ["train"] * n,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--video-rows", type=int, default=10_000)
    parser.add_argument("--take", type=int, default=1_000)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lake-bench-"))

    start = time.perf_counter()
    rows = build_rows(args.rows, args.video_rows)
    db = lake.open(workdir / "lake")
    for offset in range(0, rows.num_rows, 20_000):
        db.upsert("quadruplets", rows.slice(offset, 20_000))
    db.optimize("quadruplets")
    parquet_path = workdir / "quadruplets.parquet"
    pq.write_table(rows, parquet_path)
    lance_mb = db.info()[1].bytes / 2**20
    print(f"built {args.rows:,} rows ({args.video_rows:,} with videos) in {time.perf_counter() - start:.1f}s: "
          f"lance {lance_mb:.0f} MiB, parquet {os.path.getsize(parquet_path) / 2**20:.0f} MiB ({workdir})")

    # 1. metadata query
    def via_sql():
        return db.sql("SELECT edit_type, count(*) AS n FROM quadruplets GROUP BY 1 ORDER BY 1")

    def via_pandas_one_column():  # the fair baseline reads the one column the query needs, as DuckDB does
        frame = db.dataset("quadruplets").to_table(columns=["edit_type"]).to_pandas()
        return frame.groupby("edit_type").size()

    assert via_sql()["n"].to_pylist() == via_pandas_one_column().sort_index().tolist()
    results = [dict(what="edit-type distribution, db.sql (DuckDB over Lance)", ours_s=timeit(via_sql),
                    baseline="pandas over the same column read from Lance",
                    baseline_s=timeit(via_pandas_one_column))]

    # 2. random access with blobs
    rng = np.random.default_rng(1)
    video_ids = rows["id"].slice(0, args.video_rows).to_pylist()

    def sample():
        return [video_ids[i] for i in rng.choice(len(video_ids), size=args.take, replace=False)]

    def via_lance():
        keys = sample()
        meta = db.take("quadruplets", keys, columns=["id", "edit_type"])
        videos = db.read_blobs("quadruplets", "source_video", keys)
        return meta, videos

    def via_parquet():
        keys = sample()
        table = pq.read_table(parquet_path, columns=["id", "edit_type", "source_video"],
                              filters=pc.field("id").isin(keys))
        return table, table["source_video"].to_pylist()

    meta, videos = via_lance()
    assert meta.num_rows == args.take and all(len(v) > 0 for v in videos)
    assert via_parquet()[0].num_rows == args.take
    results.append(dict(what=f"{args.take:,} random rows by id with video bytes, Lance take",
                        ours_s=timeit(via_lance, repeat=3), baseline="Parquet, filter on id",
                        baseline_s=timeit(via_parquet, repeat=3)))
    report("lake_bench", results, Path("bench/results/lake_bench.json"))


if __name__ == "__main__":
    main()
