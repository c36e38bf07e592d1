"""DuckDB SQL and Daft over the lake: same answers, no blob reads, versions, named queries."""

import daft
import pytest

from lake.errors import LakeError
from lake.queries import list_queries, load_query
from tests.conftest import quadruplet_rows


def test_duckdb_and_daft_give_identical_edit_type_counts(filled_lake):
    duck = filled_lake.sql("SELECT edit_type, count(*) AS n FROM quadruplets GROUP BY edit_type ORDER BY edit_type")
    df = filled_lake.daft("quadruplets")
    via_daft = df.groupby("edit_type").agg(daft.col("id").count().alias("n")).sort("edit_type").to_pydict()
    quadruplets = df  # daft.sql finds DataFrames in scope by name
    via_daft_sql = daft.sql(
        "SELECT edit_type, count(id) AS n FROM quadruplets GROUP BY edit_type ORDER BY edit_type"
    ).to_pydict()
    assert duck.to_pydict()["edit_type"] == via_daft["edit_type"] == via_daft_sql["edit_type"]
    assert duck.to_pydict()["n"] == via_daft["n"] == via_daft_sql["n"]
    assert sum(duck["n"].to_pylist()) == 300
    assert quadruplets is df


def test_select_star_never_returns_blob_columns(filled_lake):
    result = filled_lake.sql("SELECT * FROM quadruplets LIMIT 3")
    assert result.num_rows == 3
    assert "source_video" not in result.column_names and "target_video" not in result.column_names
    assert "source_video" not in filled_lake.daft("quadruplets").column_names
    assert "source_video" in filled_lake.daft("quadruplets", blobs=True).column_names


def test_projection_and_filter_are_pushed_into_the_lance_scan(filled_lake):
    from lake.sql import connect

    con = connect(filled_lake, {"quadruplets"})
    plan = con.sql(
        "EXPLAIN SELECT edit_type, count(*) FROM quadruplets WHERE split = 'train' GROUP BY 1"
    ).fetchall()[0][1]
    scan = plan[plan.index("ARROW_SCAN"):]
    assert "Projections:" in scan and "edit_type" in scan and "split" in scan
    assert "Filters:" in scan
    assert "instruction" not in scan and "video" not in scan


def test_version_pins_the_table_the_query_reads(empty_lake):
    empty_lake.upsert("quadruplets", quadruplet_rows(6, videos=False))
    empty_lake.tag("quadruplets", "six")
    empty_lake.upsert("quadruplets", quadruplet_rows(4, videos=False, seed=1))
    count = "SELECT count(*) AS n FROM quadruplets"
    assert empty_lake.sql(count)["n"][0].as_py() == 10
    assert empty_lake.sql(count, version="six")["n"][0].as_py() == 6
    assert empty_lake.sql(count, version={"quadruplets": 2})["n"][0].as_py() == 6
    assert empty_lake.daft("quadruplets", version="six").count_rows() == 6
    with pytest.raises(LakeError, match="ambiguous"):
        empty_lake.sql("SELECT count(*) FROM quadruplets, rejects", version=2)


def test_sql_parameters_are_bound_not_spliced(filled_lake):
    got = filled_lake.sql("SELECT count(*) AS n FROM quadruplets WHERE edit_type = $t", params={"t": "local_add"})
    expected = sum(1 for r in quadruplet_rows(300, videos=False) if r["edit_type"] == "local_add")
    assert got["n"][0].as_py() == expected
    evil = filled_lake.sql("SELECT count(*) AS n FROM quadruplets WHERE edit_type = $t",
                           params={"t": "x' OR '1'='1"})
    assert evil["n"][0].as_py() == 0


def test_sql_errors_are_lake_errors(filled_lake):
    with pytest.raises(LakeError, match="SQL failed: .*no_such_column"):
        filled_lake.sql("SELECT no_such_column FROM quadruplets")
    with pytest.raises(LakeError, match="SQL does not parse"):
        filled_lake.sql("SELEC oops")


def test_named_query_runs_from_the_lake(filled_lake):
    assert {"edit_type_distribution", "rejects_by_reason", "pairs_by_dataset"} <= set(list_queries())
    dist = filled_lake.query("edit_type_distribution", table="quadruplets").to_pylist()
    assert sum(r["rows"] for r in dist) == 300
    assert abs(sum(r["share"] for r in dist) - 1.0) < 1e-3
    assert {r["edit_type"]: r["edit_scope"] for r in dist}["background_change"] == "background"


def test_named_query_parameters_are_checked(filled_lake):
    query = load_query("edit_type_distribution")
    assert query.identifiers == ["table"] and query.defaults == {"table": "quadruplets"}
    with pytest.raises(LakeError, match="is not a lake table"):
        filled_lake.query("edit_type_distribution", table="quadruplets; DROP TABLE x")
    with pytest.raises(LakeError, match="takes no parameter 'colour'"):
        filled_lake.query("edit_type_distribution", colour="red")
    with pytest.raises(LakeError, match="no named query 'nope'"):
        filled_lake.query("nope")


def test_extra_query_folders_come_first(filled_lake, tmp_path, monkeypatch):
    (tmp_path / "mine.sql").write_text(
        "-- name: long_instructions\n-- param min_len: 15\n"
        "SELECT count(*) AS n FROM quadruplets WHERE length(instruction) >= $min_len\n"
    )
    monkeypatch.setenv("KIWI_LAKE_QUERIES", str(tmp_path))
    assert filled_lake.query("long_instructions")["n"][0].as_py() == 200  # "edit number 100" .. "299"
    assert filled_lake.query("long_instructions", min_len=1)["n"][0].as_py() == 300



def test_large_tables_are_queried_through_a_per_version_parquet_snapshot_that_is_never_stale(tmp_path):
    """The snapshot answers as the Lance scan does (filters, parameters, joins, versions), is made at the second
    query of a version, follows every write, and is skipped for `*` and for vector or image columns."""
    import lake

    db = lake.open(tmp_path / "lake")
    lance_only = lake.open(tmp_path / "lake")
    db.snapshots.min_rows, lance_only.snapshots.enabled = 1, False
    db.upsert("quadruplets", quadruplet_rows(40, videos=False))
    db.reject("decode", "p0-00003", "unreadable", dataset="fixture")
    count = "SELECT edit_type, count(*) AS n FROM quadruplets GROUP BY 1 ORDER BY 1"
    snapshots = lambda: sorted(p.name for p in db.snapshots.folder.glob("quadruplets-*.parquet"))  # noqa: E731
    first = db.sql(count)
    assert snapshots() == []  # a version queried once is not worth a file
    assert db.sql(count).equals(first) and len(snapshots()) == 1
    for query, params in [
        ("SELECT id, edit_strength FROM quadruplets WHERE edit_type = $t AND edit_strength > 0.3 ORDER BY id",
         {"t": "local_add"}),
        ("SELECT q.edit_type, count(r.input_ref) AS rejected FROM quadruplets q "
         "LEFT JOIN rejects r ON r.input_ref = q.pair_id GROUP BY 1 ORDER BY 1", None),
        ("SELECT split, avg(num_frames) AS f, max(width) AS w FROM quadruplets GROUP BY 1", None),
    ]:
        assert db.sql(query, params=params).equals(lance_only.sql(query, params=params)), query
    db.upsert("quadruplets", quadruplet_rows(5, videos=False, seed=9))  # a write: a new version, a new key
    assert sum(db.sql(count)["n"].to_pylist()) == 45 and sum(db.sql(count)["n"].to_pylist()) == 45
    assert len(snapshots()) == 2
    assert sum(db.sql(count, version=2)["n"].to_pylist()) == 40  # a pinned version reads its own snapshot
    dataset = db.dataset("quadruplets")
    for bulky in ("SELECT * FROM quadruplets", "SELECT q.* FROM quadruplets q", "SELECT thumb_source FROM quadruplets",
                  "SELECT id FROM quadruplets WHERE instruction_emb IS NOT NULL"):
        assert db.snapshots.for_query("quadruplets", dataset, bulky) is None, bulky
    assert "instruction_emb" in db.sql("SELECT * FROM quadruplets LIMIT 1").column_names
    assert db.snapshots.for_query("quadruplets", dataset, count) is not None
    assert lance_only.snapshots.for_query("quadruplets", dataset, count) is None  # switched off: the Lance scan
