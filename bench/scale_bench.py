"""Scale benchmark: how costs grow with the lake, as growth exponents (time ~ rows^k) and a log-log chart.

1. dedup + write: the pipeline's write stage (`refvie.stages.write.Write`: near-duplicate check against the
   whole lake, keyed upserts, periodic compaction) fed batches of 32 synthetic rows (640-d keys, 4 KB blobs) into
   one growing lake; the cumulative time at each size, its exponent, the per-row cost of the first and last
   blocks, and the peak memory. A per-row cost that does not grow is k ~ 1.
2. category SQL: the edit-type distribution over a metadata-only `quadruplets` table: `db.sql` (over the
   version's Parquet snapshot, `lake/snapshots.py`) and with snapshots off (DuckDB over the Lance scan), vs DuckDB
   over a Parquet file of the same columns and pandas reading the one column it needs from it — same process,
   DuckDB's default threads on both sides, each warmed up first; and the first two queries of a version (the
   second writes the snapshot).
3. random access with realistic clips: `--take` random rows by id with their source video (incompressible 1–5 MB
   blobs) from a growing lake — `db.take` + `db.read_blobs` (BTree key index, Lance's blob reader) vs a Parquet
   file of the same rows sorted by id, in row groups of `--row-group-mb` (a Parquet filter read on id prunes row
   groups by their statistics, then decodes each surviving group's whole blob column). pyarrow's default row group
   (a million rows) would put the whole file in one group, which the filter read loads entire: not measured.

    python bench/scale_bench.py [--write-rows 1000,5000,20000] [--sql-rows 100000,1000000,10000000] \
        [--blob-rows 1000,2000,5000] [--part write|sql|blobs|all]

Figures go to bench/results/scale_bench.json and the chart to docs/scale_growth.png."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timeit  # noqa: E402

import lake  # noqa: E402
from lake.memory import limit_arenas  # noqa: E402
from lake.taxonomy import EDIT_TYPES, edit_scope  # noqa: E402

BATCH = 32


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(time) on log(rows)."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def bench_write(sizes: list[int], workdir: Path) -> dict:
    from refvie.stages.write import Write, synthetic_batch

    db = lake.open(workdir / "write-lake")
    writer = Write(db, expected_versions={t: db.table(t).version for t in ("quadruplets", "rejects")})
    rng = np.random.default_rng(0)
    marks, rss, rows, elapsed = [], [], 0, 0.0
    for size in sizes:
        while rows < size:
            batch = synthetic_batch(rows, BATCH, rng)  # made outside the clock
            start = time.perf_counter()
            writer(batch)
            elapsed += time.perf_counter() - start
            rows += BATCH
        marks.append((rows, elapsed))
        rss.append(resident_mib())
        print(f"  dedup + write: {rows:>7,} rows in {elapsed:7.1f} s ({1e3 * elapsed / rows:.2f} ms/row so far), "
              f"resident memory {rss[-1]:.0f} MiB (the bank {writer.bank.memory_bytes / 2**20:.1f} MiB)", flush=True)
    assert db.count("quadruplets") == writer.accepted == rows, "rows in != rows written"
    firsts = marks[0][1] / marks[0][0]
    lasts = (marks[-1][1] - marks[-2][1]) / (marks[-1][0] - marks[-2][0]) if len(marks) > 1 else firsts
    return dict(rows=[m[0] for m in marks], seconds=[m[1] for m in marks],
                exponent=exponent([m[0] for m in marks], [m[1] for m in marks]),
                first_ms_per_row=1e3 * firsts, last_ms_per_row=1e3 * lasts, resident_mib=rss,
                bank_mib=writer.bank.memory_bytes / 2**20, bank_exact_checks=writer.bank.exact_checks,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def resident_mib() -> float:
    """This process's resident memory now (Linux), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def metadata_rows(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    weights = np.array([0.3, 0.2, 0.2, 0.15, 0.1, 0.05])
    edit_types = np.array(EDIT_TYPES)[rng.choice(len(EDIT_TYPES), size=n, p=weights)]
    return pa.table({
        "id": [f"q{i:09d}" for i in range(n)], "pair_id": [f"p{i:09d}" for i in range(n)],
        "dataset": ["scale"] * n, "task": ["instruct"] * n, "edit_type": edit_types.tolist(),
        "edit_scope": [edit_scope(t).value for t in edit_types], "instruction": [f"instruction {i}" for i in range(n)],
        "source_uri": [f"s3://videos/{i}.mp4" for i in range(n)],
        "target_uri": [f"s3://videos/{i}-edit.mp4" for i in range(n)],
        "num_frames": pa.array([81] * n, pa.int32()),
        "edit_strength": pa.array(rng.random(n), pa.float32()), "split": ["train"] * n,
    })


QUERY = "SELECT edit_type, count(*) AS n FROM {} GROUP BY 1 ORDER BY 1"


def sql_at(n: int, workdir: Path) -> dict[str, float]:
    """Seconds per edit-type distribution over n metadata rows, four ways, same process and DuckDB's default
    threads: `db.sql` as users run it (over the version's Parquet snapshot, written by the second query of a
    version), `db.sql` with snapshots off (DuckDB over the Lance scan), DuckDB over a Parquet file of the same
    columns, pandas reading the one column it needs from that file."""
    import duckdb

    from lake.snapshots import scalar_columns

    db = lake.open(workdir / f"sql-lake-{n}")
    if db.count("quadruplets") != n:
        rows = metadata_rows(n)
        for offset in range(0, n, 500_000):
            db.append("quadruplets", rows.slice(offset, 500_000))
        db.optimize("quadruplets")
        del rows
    parquet = workdir / f"quadruplets-{n}.parquet"
    pq.write_table(db.read("quadruplets", columns=scalar_columns(db, "quadruplets")), parquet)
    lance_scan = lake.open(workdir / f"sql-lake-{n}")
    lance_scan.snapshots.enabled = False
    connection = duckdb.connect()
    query = QUERY.format("quadruplets")
    start = time.perf_counter()
    db.sql(query), db.sql(query)  # the second query of a version writes its snapshot
    made = time.perf_counter() - start
    ways = {
        "db_sql": lambda: db.sql(query)["n"].to_pylist(),
        "db_sql_lance_scan": lambda: lance_scan.sql(query)["n"].to_pylist(),
        "duckdb_parquet": lambda: [r[1] for r in connection.execute(
            QUERY.format(f"read_parquet('{parquet}')")).fetchall()],
        "pandas_one_column": lambda: pq.read_table(parquet, columns=["edit_type"]).to_pandas()
        .groupby("edit_type").size().tolist(),
    }
    answers = [fn() for fn in ways.values()]
    assert all(a == answers[0] for a in answers), answers
    return {"first_two_queries": made, **{name: timeit(fn, repeat=7, warmup=2) for name, fn in ways.items()}}


def bench_sql(sizes: list[int], workdir: Path) -> dict:
    out: dict[str, list] = {"rows": []}
    for n in sizes:
        times = sql_at(n, workdir)
        out["rows"].append(n)
        for name, seconds in times.items():
            out.setdefault(name, []).append(seconds)
        print(f"  category SQL at {n:>10,} rows: db.sql {1e3 * times['db_sql']:7.1f} ms, DuckDB over Parquet "
              f"{1e3 * times['duckdb_parquet']:7.1f} ms ({times['db_sql'] / times['duckdb_parquet']:.2f}x); "
              f"snapshots off (Lance scan) {1e3 * times['db_sql_lance_scan']:7.1f} ms, pandas one column "
              f"{1e3 * times['pandas_one_column']:7.1f} ms; first two queries (the snapshot made) "
              f"{times['first_two_queries']:.2f} s", flush=True)
    if len(sizes) > 1:
        out["exponents"] = {k: exponent(sizes, out[k]) for k in
                            ("db_sql", "db_sql_lance_scan", "duckdb_parquet", "pandas_one_column")}
    return out


def clip_rows(start: int, n: int, rng: np.random.Generator, low_mb: float = 1.0, high_mb: float = 5.0) -> pa.Table:
    """n quadruplet rows with random (incompressible) source clips of low_mb..high_mb."""
    table = metadata_rows(start + n).slice(start, n)
    sizes = rng.integers(int(low_mb * 2**20), int(high_mb * 2**20), size=n)
    return table.append_column("source_video", pa.array([rng.bytes(int(k)) for k in sizes], pa.large_binary()))


def blobs_at(db, n: int, parquet: Path, take: int, rng: np.random.Generator) -> dict[str, float]:
    """Seconds to fetch `take` random rows by id with their clips, Lance vs a Parquet filter read; each side draws
    its own random ids per repeat (fresh rows: the page cache cannot serve repeats), both warmed up once."""
    ids = [f"q{i:09d}" for i in range(n)]

    def keys():
        return [ids[i] for i in rng.choice(n, size=take, replace=False)]

    def via_lance():
        chosen = keys()
        meta = db.take("quadruplets", chosen, columns=["id", "edit_type"])
        clips = db.read_blobs("quadruplets", "source_video", chosen)
        assert meta.num_rows == take and all(c for c in clips)
        return clips

    def via_parquet():
        import pyarrow.compute as pc

        table = pq.read_table(parquet, columns=["id", "edit_type", "source_video"], filters=pc.field("id").isin(keys()))
        assert table.num_rows == take
        return table["source_video"]

    return {"lance_take": timeit(via_lance, repeat=5), "parquet_filter": timeit(via_parquet, repeat=5)}


def bench_blobs(sizes: list[int], workdir: Path, take: int, row_group_mb: int) -> dict:
    """Grows one lake (appends, then a BTree index on id) and a Parquet dataset beside it (one file per increment,
    as a growing Parquet store is kept): 1–5 MB a row, so 4,000 rows are ~12 GB on each side."""
    from lancedb.index import BTree

    db = lake.open(workdir / "blob-lake")
    parquet = workdir / "clips-parquet"
    parquet.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out: dict[str, list] = {"rows": [], "lance_take": [], "parquet_filter": [], "lance_gib": [], "parquet_gib": []}
    rows, chunk = 0, 64
    for size in sizes:
        writer = None
        while rows < size:
            n = min(chunk, size - rows)
            table = clip_rows(rows, n, rng)
            db.append("quadruplets", table)
            writer = _parquet_write(writer, parquet / f"part-{size:09d}.parquet", table, row_group_mb)
            rows += n
        writer.close()
        db.table("quadruplets").create_index("id", config=BTree(), replace=True)
        times = blobs_at(db, rows, parquet, take, np.random.default_rng(size))
        out["rows"].append(rows)
        for name, seconds in times.items():
            out[name].append(seconds)
        out["lance_gib"].append(_folder_gib(workdir / "blob-lake"))
        out["parquet_gib"].append(_folder_gib(parquet))
        print(f"  {take} random rows with 1–5 MB clips at {rows:>6,} rows: Lance take {1e3 * times['lance_take']:7.1f} "
              f"ms, Parquet filter read ({row_group_mb} MB row groups) {1e3 * times['parquet_filter']:8.1f} ms "
              f"({times['parquet_filter'] / times['lance_take']:.1f}x); {out['lance_gib'][-1]:.1f} GiB Lance, "
              f"{out['parquet_gib'][-1]:.1f} GiB Parquet", flush=True)
    if len(sizes) > 1:
        out["exponents"] = {k: exponent(out["rows"], out[k]) for k in ("lance_take", "parquet_filter")}
    return out


def _parquet_write(writer, path: Path, table: pa.Table, row_group_mb: int):
    """Append `table` to the Parquet file at `path` in row groups of about `row_group_mb` MB."""
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema, compression="none")
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    writer.write_table(table, row_group_size=max(1, row_group_mb * 2**20 // per_row))
    return writer


def _folder_gib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if "write" in results:
        w = results["write"]
        axes[0].loglog(w["rows"], w["seconds"], "o-", label=f"dedup + write (k = {w['exponent']:.2f})")
        ref = np.array(w["rows"], float)
        axes[0].loglog(ref, w["seconds"][0] * ref / ref[0], ":", color="grey", label="linear")
        axes[0].set(xlabel="rows in the lake", ylabel="cumulative seconds", title="pipeline write stage")
        axes[0].legend()
    if "sql" in results:
        s = results["sql"]
        for key, label in (("db_sql", "db.sql"), ("db_sql_lance_scan", "db.sql, snapshots off (Lance scan)"),
                           ("duckdb_parquet", "DuckDB over Parquet"), ("pandas_one_column", "pandas, one column")):
            k = s.get("exponents", {}).get(key)
            axes[1].loglog(s["rows"], s[key], "o-", label=label + (f" (k = {k:.2f})" if k is not None else ""))
        axes[1].set(xlabel="metadata rows", ylabel="seconds per query", title="edit-type distribution")
        axes[1].legend()
    if "blobs" in results:
        b = results["blobs"]
        for key, label in (("lance_take", "Lance take + blob read"), ("parquet_filter", "Parquet filter read")):
            k = b.get("exponents", {}).get(key)
            axes[2].loglog(b["rows"], b[key], "o-", label=label + (f" (k = {k:.2f})" if k is not None else ""))
        axes[2].set(xlabel="rows (1–5 MB clips)", ylabel="seconds per fetch",
                    title=f"{b['take']} random rows by id with their clips")
        axes[2].legend()
    else:
        axes[2].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)

def main() -> None:
    limit_arenas()  # as the `refvie` command does before it opens a lake
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-rows", default="1000,2000,5000,10000,20000")
    parser.add_argument("--sql-rows", default="100000,1000000,10000000")
    parser.add_argument("--blob-rows", default="1000,2000,4000")
    parser.add_argument("--take", type=int, default=20, help="rows per random fetch (20 rows: ~60 MB of clips)")
    parser.add_argument("--row-group-mb", type=int, default=64, help="Parquet row-group size of the blob baseline")
    parser.add_argument("--part", choices=("write", "sql", "blobs", "all"), default="all")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--chart", default="docs/scale_growth.png")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="scale-bench-"))
    os.environ.setdefault("KIWI_LAKE_SQL_CACHE", str(workdir / "sql-snapshots"))  # before any lake is opened
    results: dict = {}
    if args.part in ("write", "all"):
        results["write"] = bench_write([int(x) for x in args.write_rows.split(",")], workdir)
        w = results["write"]
        print(f"dedup + write: exponent {w['exponent']:.2f} ({w['rows'][0]:,} -> {w['rows'][-1]:,} rows), "
              f"{w['first_ms_per_row']:.2f} ms/row in the first block, {w['last_ms_per_row']:.2f} in the last, "
              f"resident memory {w['resident_mib'][0]:.0f} -> {w['resident_mib'][-1]:.0f} MiB")
    if args.part in ("sql", "all"):
        results["sql"] = bench_sql([int(x) for x in args.sql_rows.split(",")], workdir)
        if "exponents" in results["sql"]:
            exponents = results["sql"]["exponents"]
            print("category SQL exponents: " + ", ".join(f"{k} {v:.2f}" for k, v in exponents.items()))
    if args.part in ("blobs", "all"):
        results["blobs"] = b = bench_blobs([int(x) for x in args.blob_rows.split(",")], workdir, args.take,
                                           args.row_group_mb)
        b.update(take=args.take, row_group_mb=args.row_group_mb)
        ratios = [p / t for p, t in zip(b["parquet_filter"], b["lance_take"], strict=True)]
        print(f"random access with clips: Lance {ratios[-1]:.1f}x faster than the Parquet filter read at "
              f"{b['rows'][-1]:,} rows" + (f"; exponents {b['exponents']}" if "exponents" in b else ""))
    previous = Path("bench/results/scale_bench.json")
    if args.part != "all" and previous.exists():  # a partial run keeps the other parts' last figures
        results = {**json.loads(previous.read_text()), **results}
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/scale_bench.json").write_text(json.dumps(results, indent=1))
    chart(results, Path(args.chart))
    print(f"results: bench/results/scale_bench.json, chart: {args.chart}")


if __name__ == "__main__":
    main()
