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
