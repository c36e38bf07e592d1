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
   With `--blob-store s3` both sides live on moto's S3 server on 127.0.0.1 (in memory: keep it to a few hundred
   rows) and the figures add the HTTP requests each fetch makes, which is what costs on a real object store.

    python bench/scale_bench.py [--write-rows 1000,5000,20000] [--sql-rows 100000,1000000,10000000] \
        [--blob-rows 1000,2000,5000] [--blob-store local|s3] [--part write|sql|blobs|all]

Figures go to bench/results/scale_bench.json and the chart to docs/scale_growth.png."""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from collections import Counter
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
    marks, rss, rows, elapsed, split = [], [], 0, 0.0, []
    for size in sizes:
        while rows < size:
            batch = synthetic_batch(rows, BATCH, rng)  # made outside the clock
            start = time.perf_counter()
            writer(batch)
            elapsed += time.perf_counter() - start
            rows += BATCH
        marks.append((rows, elapsed))
        rss.append(resident_mib())
        split.append((writer.seconds["dedup"], writer.seconds["write"]))
        stretch = [(b - a) * 1e3 / (rows - (marks[-2][0] if len(marks) > 1 else 0))
                   for a, b in zip(split[-2] if len(split) > 1 else (0.0, 0.0), split[-1], strict=True)]
        print(f"  dedup + write: {rows:>7,} rows in {elapsed:7.1f} s ({1e3 * elapsed / rows:.2f} ms/row so far; "
              f"since the last mark dedup {stretch[0]:.2f} + write {stretch[1]:.2f} ms/row), "
              f"resident memory {rss[-1]:.0f} MiB (the bank {writer.bank.memory_bytes / 2**20:.1f} MiB)", flush=True)
    assert db.count("quadruplets") == writer.accepted == rows, "rows in != rows written"
    firsts = marks[0][1] / marks[0][0]
    lasts = (marks[-1][1] - marks[-2][1]) / (marks[-1][0] - marks[-2][0]) if len(marks) > 1 else firsts
    return dict(rows=[m[0] for m in marks], seconds=[m[1] for m in marks],
                exponent=exponent([m[0] for m in marks], [m[1] for m in marks]),
                first_ms_per_row=1e3 * firsts, last_ms_per_row=1e3 * lasts, resident_mib=rss,
                dedup_seconds=[d for d, _ in split], write_seconds=[w for _, w in split],
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


def blobs_at(db, n: int, parquet, take: int, rng: np.random.Generator, filesystem=None,
             requests: tuple[Counter, Counter] | None = None) -> dict[str, float]:
    """Seconds to fetch `take` random rows by id with their clips, Lance vs a Parquet filter read; each side draws
    its own random ids per repeat (fresh rows: the page cache cannot serve repeats), both warmed up once. With
    `requests` (an object store's counters of requests and bytes sent), also the requests and MB per fetch."""
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

        table = pq.read_table(parquet, columns=["id", "edit_type", "source_video"], filters=pc.field("id").isin(keys()),
                              filesystem=filesystem)
        assert table.num_rows == take
        return table["source_video"]

    out = {}
    for name, fetch in (("lance_take", via_lance), ("parquet_filter", via_parquet)):
        fetch()  # warm-up, outside the request count as well as the clock
        before = (sum(requests[0].values()), requests[1]["bytes"]) if requests is not None else None
        out[name] = timeit(fetch, repeat=5, warmup=0)
        if requests is not None:
            out[f"{name}_requests"] = (sum(requests[0].values()) - before[0]) / 5
            out[f"{name}_mb"] = (requests[1]["bytes"] - before[1]) / 5 / 2**20
    return out


def bench_blobs(sizes: list[int], workdir: Path, take: int, row_group_mb: int, store: str = "local") -> dict:
    """Grows one lake (appends, then a BTree index on id) and a Parquet dataset beside it (one file per increment,
    as a growing Parquet store is kept): 1–5 MB a row, so 4,000 rows are ~12 GB on each side. `store="s3"` puts
    both on a local S3 server and counts the requests."""
    from lancedb.index import BTree

    requests, filesystem = None, None
    if store == "s3":
        options, filesystem, requests = _s3_store()
        db = lake.open("s3://kiwi/blob-lake", storage_options=options)
        parquet = "kiwi/clips-parquet"
    else:
        db = lake.open(workdir / "blob-lake")
        parquet = workdir / "clips-parquet"
        parquet.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out: dict[str, list] = {"rows": [], "lance_take": [], "parquet_filter": [], "lance_gib": [], "parquet_gib": []}
    if requests is not None:
        out.update(lance_take_requests=[], parquet_filter_requests=[], lance_take_mb=[], parquet_filter_mb=[])
    rows, chunk = 0, 64
    for size in sizes:
        writer = None
        while rows < size:
            n = min(chunk, size - rows)
            table = clip_rows(rows, n, rng)
            db.append("quadruplets", table)
            writer = _parquet_write(writer, f"{parquet}/part-{size:09d}.parquet", table, row_group_mb, filesystem)
            rows += n
        writer.close()
        db.table("quadruplets").create_index("id", config=BTree(), replace=True)
        times = blobs_at(db, rows, parquet, take, np.random.default_rng(size), filesystem, requests)
        out["rows"].append(rows)
        for name, value in times.items():
            out[name].append(value)
        gib = rows * 3 / 1024 if store == "s3" else None  # 3 MB a row on average
        out["lance_gib"].append(gib or _folder_gib(workdir / "blob-lake"))
        out["parquet_gib"].append(gib or _folder_gib(parquet))
        counts = (f", {times['lance_take_requests']:.0f} vs {times['parquet_filter_requests']:.0f} requests, "
                  f"{times['lance_take_mb']:.0f} vs {times['parquet_filter_mb']:.0f} MB"
                  if requests is not None else "")
        print(f"  {take} random rows with 1–5 MB clips at {rows:>6,} rows ({store}): Lance take "
              f"{1e3 * times['lance_take']:7.1f} ms, Parquet filter read ({row_group_mb} MB row groups) "
              f"{1e3 * times['parquet_filter']:8.1f} ms ({times['parquet_filter'] / times['lance_take']:.1f}x"
              f"{counts}); "
              f"{out['lance_gib'][-1]:.1f} GiB Lance, {out['parquet_gib'][-1]:.1f} GiB Parquet", flush=True)
    if len(sizes) > 1:
        out["exponents"] = {k: exponent(out["rows"], out[k]) for k in ("lance_take", "parquet_filter")}
    return out


def _parquet_write(writer, path, table: pa.Table, row_group_mb: int, filesystem=None):
    """Append `table` to the Parquet file at `path` in row groups of about `row_group_mb` MB."""
    if writer is None:
        writer = pq.ParquetWriter(str(path), table.schema, compression="none", filesystem=filesystem)
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    writer.write_table(table, row_group_size=max(1, row_group_mb * 2**20 // per_row))
    return writer


def _s3_store():
    """moto's S3 server on a free local port, behind a counter of the HTTP requests it answers; a bucket `kiwi`.
    Returns the lake's storage options, a pyarrow file system on it and the counter (method -> requests)."""
    import socket
    import threading

    import boto3
    from moto.server import DomainDispatcherApplication, create_backend_app
    from pyarrow import fs
    from werkzeug.serving import make_server

    app, requests, transferred = DomainDispatcherApplication(create_backend_app), Counter(), Counter()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise

    def counting(environ, start_response):
        requests[environ["REQUEST_METHOD"]] += 1

        def counted(status, headers, *args):
            sent = dict((k.lower(), v) for k, v in headers).get("content-length")
            if environ["REQUEST_METHOD"] == "GET" and sent:
                transferred["bytes"] += int(sent)
            return start_response(status, headers, *args)

        return app(environ, counted)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = make_server("127.0.0.1", port, counting, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="kiwi")
    options = {"aws_endpoint": endpoint, "aws_access_key_id": "test", "aws_secret_access_key": "test",
               "aws_region": "us-east-1", "allow_http": "true"}
    filesystem = fs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1", scheme="http",
                                 endpoint_override=f"127.0.0.1:{port}", request_timeout=300, connect_timeout=30)
    return options, filesystem, (requests, transferred)


def _folder_gib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30


def chart(results: dict, path: Path) -> None:
    """One log-log panel per part present in `results` (a partial run draws only its own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    parts = [p for p in ("write", "sql", "blobs") if p in results or (p == "blobs" and "blobs_s3" in results)]
    if not parts:
        return
    fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts) + 1, 4.5), squeeze=False)
    panels = dict(zip(parts, axes[0], strict=True))
    if "write" in panels:
        w, ax = results["write"], panels["write"]
        ax.loglog(w["rows"], w["seconds"], "o-", label=f"dedup + write (k = {w['exponent']:.2f})")
        ref = np.array(w["rows"], float)
        ax.loglog(ref, w["seconds"][0] * ref / ref[0], ":", color="grey", label="linear")
        ax.set(xlabel="rows in the lake", ylabel="cumulative seconds", title="pipeline write stage")
        ax.legend()
    if "sql" in panels:
        s, ax = results["sql"], panels["sql"]
        for key, label in (("db_sql", "db.sql"), ("db_sql_lance_scan", "db.sql, snapshots off (Lance scan)"),
                           ("duckdb_parquet", "DuckDB over Parquet"), ("pandas_one_column", "pandas, one column")):
            k = s.get("exponents", {}).get(key)
            ax.loglog(s["rows"], s[key], "o-", label=label + (f" (k = {k:.2f})" if k is not None else ""))
        ax.set(xlabel="metadata rows", ylabel="seconds per query", title="edit-type distribution")
        ax.legend()
    if "blobs" in panels:
        ax = panels["blobs"]
        for part, style, where in (("blobs", "o-", "local disk"), ("blobs_s3", "s--", "S3 (moto, local)")):
            if part not in results:
                continue
            b = results[part]
            for key, label, colour in (("lance_take", "Lance take + blob read", "C0"),
                                       ("parquet_filter", "Parquet filter read", "C1")):
                k = b.get("exponents", {}).get(key)
                ax.loglog(b["rows"], b[key], style, color=colour,
                          label=f"{label}, {where}" + (f" (k = {k:.2f})" if k else ""))
            take, group = b["take"], b["row_group_mb"]
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xlabel="rows in the table (1–5 MB clips)", ylabel="seconds per fetch",
               title=f"{take} random rows by id with their clips\n(Parquet in {group} MB row groups)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
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
    parser.add_argument("--blob-store", choices=("local", "s3"), default="local",
                        help="where the blob part keeps both sides: local disk, or moto's S3 server (requests counted)")
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
        part = "blobs" if args.blob_store == "local" else "blobs_s3"
        results[part] = b = bench_blobs([int(x) for x in args.blob_rows.split(",")], workdir, args.take,
                                        args.row_group_mb, args.blob_store)
        b.update(take=args.take, row_group_mb=args.row_group_mb, store=args.blob_store)
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
