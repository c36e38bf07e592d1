"""Writes, versions, tags and random access on the LanceDB-backed lake."""

import numpy as np
import pytest

import lake
from lake import media
from lake.errors import LakeError, SchemaMismatchError
from tests.conftest import moving_square, quadruplet_rows


def test_open_creates_every_table_and_reopens(tmp_path):
    db = lake.open(tmp_path / "lake")
    assert db.table_names == list(lake.TABLES)
    assert all(t.rows == 0 for t in db.info())
    assert lake.open(tmp_path / "lake").table_names == list(lake.TABLES)


def test_default_uri_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KIWI_LAKE", str(tmp_path / "from-env"))
    assert lake.open().uri == str(tmp_path / "from-env")
    monkeypatch.delenv("KIWI_LAKE")
    assert lake.default_uri() == "./data/lake"


def test_upsert_twice_leaves_no_duplicates(empty_lake):
    rows = quadruplet_rows(20)
    first = empty_lake.upsert("quadruplets", rows)
    second = empty_lake.upsert("quadruplets", rows)
    assert (first.inserted, first.updated) == (20, 0)
    assert (second.inserted, second.updated) == (0, 20)
    assert empty_lake.count("quadruplets") == 20
    ids = empty_lake.read("quadruplets", columns=["id"])["id"].to_pylist()
    assert sorted(ids) == sorted(r["id"] for r in rows)


def test_upsert_replaces_by_key(empty_lake):
    rows = quadruplet_rows(3, videos=False)
    empty_lake.upsert("quadruplets", rows)
    empty_lake.upsert("quadruplets", [dict(rows[1], instruction="changed")])
    got = empty_lake.take("quadruplets", [r["id"] for r in rows], columns=["instruction"])["instruction"]
    assert got.to_pylist() == ["edit number 0", "changed", "edit number 2"]


def test_a_bad_batch_writes_nothing(empty_lake):
    rows = quadruplet_rows(3, videos=False)
    rows[2]["num_frames"] = "many"
    with pytest.raises(SchemaMismatchError, match="quadruplets.num_frames"):
        empty_lake.upsert("quadruplets", rows)
    assert empty_lake.count("quadruplets") == 0
    assert empty_lake.table("quadruplets").version == 1


def test_older_version_stays_readable_after_an_append(empty_lake):
    empty_lake.upsert("quadruplets", quadruplet_rows(10, videos=False))
    pinned = empty_lake.table("quadruplets").version
    empty_lake.upsert("quadruplets", quadruplet_rows(5, videos=False, seed=1))
    assert empty_lake.count("quadruplets") == 15
    assert empty_lake.count("quadruplets", version=pinned) == 10
    assert empty_lake.read("quadruplets", columns=["id"], version=pinned).num_rows == 10
    assert empty_lake.sql("SELECT count(*) AS n FROM quadruplets", version=pinned)["n"][0].as_py() == 10
    assert [v.rows for v in empty_lake.versions("quadruplets")] == [0, 10, 15]


def test_tags_name_versions(empty_lake):
    empty_lake.upsert("quadruplets", quadruplet_rows(4, videos=False))
    assert empty_lake.tag("quadruplets", "refvie-v1") == 2
    empty_lake.upsert("quadruplets", quadruplet_rows(4, videos=False, seed=1))
    assert empty_lake.count("quadruplets", version="refvie-v1") == 4
    assert empty_lake.table("quadruplets", version="refvie-v1").count_rows() == 4
    assert empty_lake.tags() == [("quadruplets", "refvie-v1", 2)]
    assert empty_lake.versions("quadruplets")[1].tags == ("refvie-v1",)
    with pytest.raises(LakeError, match="already has a tag 'refvie-v1'"):
        empty_lake.tag("quadruplets", "refvie-v1")
    with pytest.raises(LakeError, match=r"has no tag 'v9' \(tags: refvie-v1\)"):
        empty_lake.count("quadruplets", version="v9")
    with pytest.raises(LakeError, match=r"has no version 42 \(versions 1..3\)"):
        empty_lake.count("quadruplets", version=42)
    empty_lake.delete_tag("quadruplets", "refvie-v1")
    assert empty_lake.tags("quadruplets") == []


def test_unknown_tables_and_columns_are_named(empty_lake):
    with pytest.raises(LakeError, match="unknown table 'quads'"):
        empty_lake.count("quads")
    with pytest.raises(LakeError, match="quadruplets has no column 'colour'"):
        empty_lake.read("quadruplets", columns=["colour"])
    with pytest.raises(LakeError, match="blob columns"):
        empty_lake.read("quadruplets", columns=["id", "source_video"])


def test_take_returns_rows_in_the_order_asked(filled_lake):
    keys = ["q0-00250", "q0-00003", "q0-00117"]
    got = filled_lake.take("quadruplets", keys, columns=["id", "instruction"])
    assert got["id"].to_pylist() == keys
    assert got["instruction"].to_pylist() == ["edit number 250", "edit number 3", "edit number 117"]
    with pytest.raises(LakeError, match="1 key\\(s\\) not found"):
        filled_lake.take("quadruplets", ["q0-00001", "missing"])


def test_blobs_are_file_objects_pyav_can_decode(filled_lake):
    blobs = filled_lake.blobs("quadruplets", "target_video", ["q0-00042", "q0-00007"])
    decoded = [media.decode_video(b) for b in blobs]
    expected = [media.decode_video(media.encode_video(moving_square(i + 1))) for i in (42, 7)]
    for got, want in zip(decoded, expected, strict=True):
        assert np.array_equal(got, want)  # the stored bytes are exactly the bytes written
    assert filled_lake.read_video("quadruplets", "q0-00042", "source_video").shape == (9, 32, 32, 3)
    payloads = filled_lake.read_blobs("quadruplets", "target_video", ["q0-00042", "q0-00007"])
    assert [np.array_equal(media.decode_video(p), w) for p, w in zip(payloads, expected, strict=True)] == [True] * 2


def test_rows_without_bytes_point_to_uris(empty_lake):
    empty_lake.upsert("quadruplets", quadruplet_rows(2, videos=False))
    assert empty_lake.blobs("quadruplets", "source_video", ["q0-00000"]) == [None]
    assert empty_lake.read_blobs("quadruplets", "source_video", ["q0-00000", "q0-00001"]) == [None, None]
    with pytest.raises(LakeError, match="has no bytes in source_video"):
        empty_lake.read_video("quadruplets", "q0-00000")


def test_rejects_are_idempotent_and_keep_scores(empty_lake):
    for _ in range(2):
        empty_lake.reject("ingest", "train.csv:12", "truncated", detail="decoded 3 of 9 frames")
        empty_lake.reject("filter", "pair-7", "low_edit_strength", scores={"edit_strength": 0.01})
    rows = empty_lake.sql("SELECT stage, reason, scores FROM rejects ORDER BY stage").to_pylist()
    assert [(r["stage"], r["reason"]) for r in rows] == [("filter", "low_edit_strength"), ("ingest", "truncated")]
    assert rows[0]["scores"] == '{"edit_strength": 0.01}'


def test_delete_and_optimize(empty_lake):
    empty_lake.upsert("quadruplets", quadruplet_rows(30, videos=False))
    assert empty_lake.delete("quadruplets", "edit_type = 'global_style'") > 0
    before = empty_lake.count("quadruplets")
    empty_lake.optimize("quadruplets")
    assert [ix.columns for ix in empty_lake.table("quadruplets").list_indices()] == [["id"]]
    assert empty_lake.count("quadruplets") == before
    assert empty_lake.take("quadruplets", ["q0-00001"])["id"][0].as_py() == "q0-00001"


def test_a_key_asked_for_twice_comes_back_twice(filled_lake):
    keys = ["q0-00005", "q0-00009", "q0-00005"]
    assert filled_lake.take("quadruplets", keys, columns=["id"])["id"].to_pylist() == keys
    blobs = filled_lake.read_blobs("quadruplets", "source_video", keys)
    assert blobs[0] == blobs[2] != blobs[1]
