"""The same code path against an S3-compatible object store: moto's server on 127.0.0.1, started by the test."""

import pytest

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


def test_rows_without_bytes_are_read_from_their_s3_uris(s3_lake_options, tmp_path):
    """A lake that keeps only URIs (`--no-bytes` on shared storage) reads the videos from object storage with the
    lake's own storage options; a missing object is a clear `missing_file` naming it."""
    import boto3

    from lake import media
    from tests.conftest import moving_square

    clip = media.encode_video(moving_square(3, frames=9, size=32))
    boto3.client("s3", endpoint_url=s3_lake_options["aws_endpoint"], aws_access_key_id="test",
                 aws_secret_access_key="test", region_name="us-east-1").put_object(
        Bucket="kiwi", Key="videos/clip.mp4", Body=clip)
    db = lake.open(tmp_path / "lake", storage_options=s3_lake_options)
    db.upsert("pairs", [dict(pair_id="p1", dataset="shared", instruction="Add a ball",
                             source_uri="s3://kiwi/videos/clip.mp4", target_uri="s3://kiwi/videos/gone.mp4")])
    assert db.read_blobs("pairs", "source_video", ["p1"]) == [clip]
    with pytest.raises(lake.MediaError, match="gone.mp4") as raised:
        db.read_blobs("pairs", "target_video", ["p1"])
    assert raised.value.reason == "missing_file"
