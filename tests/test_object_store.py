"""The same code path against an S3-compatible object store: moto's server on 127.0.0.1, started by the test."""

import lake
from tests.conftest import quadruplet_rows


def test_lake_on_s3_writes_reads_versions_and_queries(s3_lake_options):
    db = lake.open("s3://kiwi/lake", storage_options=s3_lake_options)
    assert db.table_names == list(lake.TABLES)
    rows = quadruplet_rows(8)
    db.upsert("quadruplets", rows)
    db.upsert("quadruplets", rows)
    db.tag("quadruplets", "eight")
    db.upsert("quadruplets", quadruplet_rows(2, seed=1))
    assert db.count("quadruplets") == 10
    assert db.count("quadruplets", version="eight") == 8
    dist = db.sql("SELECT edit_type, count(*) AS n FROM quadruplets GROUP BY 1 ORDER BY 1").to_pydict()
    assert sum(dist["n"]) == 10
    assert db.read_video("quadruplets", "q0-00003").shape == (9, 32, 32, 3)
    reopened = lake.open("s3://kiwi/lake", storage_options=s3_lake_options)
    assert reopened.count("quadruplets", version="eight") == 8


def test_daft_reads_the_s3_lake(s3_lake_options):
    db = lake.open("s3://kiwi/lake", storage_options=s3_lake_options)
    via_daft = db.daft("quadruplets").count_rows()
    assert via_daft == db.count("quadruplets")
