"""Rows are checked before writing; a mismatch names the table, the column and the offending value's type."""

import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lake.errors import SchemaMismatchError
from lake.schema import IMAGE_EMBEDDING_DIM, TABLES, TEXT_EMBEDDING_DIM
from lake.validate import to_arrow

Q = TABLES["quadruplets"]


def good_row(**overrides):
    row = dict(id="q1", pair_id="p1", dataset="d", task="ref_subject", edit_type="local_add", instruction="add a cat",
               source_uri="s3://b/src.mp4", target_uri="s3://b/tgt.mp4", split="train")
    row.update(overrides)
    return row


def test_all_design_tables_exist_with_keys():
    assert set(TABLES) == {"pairs", "quadruplets", "rejects", "slices", "slice_rows", "runs", "mix_weights",
                           "eval_results", "bench_items", "eval_outputs", "datasets", "latents"}
    assert TABLES["latents"].key == ("latent_id",)
    assert TABLES["latents"].blob_columns == ["source_latents", "target_latents"]
    assert TABLES["datasets"].key == ("dataset",)
    assert TABLES["slice_rows"].key == ("slice_id", "id") and TABLES["mix_weights"].key == ("mix_id",)
    assert TABLES["bench_items"].blob_columns == ["source_video", "target_video"]
    assert TABLES["eval_outputs"].blob_columns == ["video"]
    assert TABLES["pairs"].blob_columns == ["source_video", "target_video"]
    assert TABLES["quadruplets"].blob_columns == ["source_video", "target_video"]


def test_blob_and_embedding_column_types():
    for name in ("source_video", "target_video"):
        f = Q.schema.field(name)
        assert f.type == pa.large_binary() and f.metadata[b"lance-encoding:blob"] == b"true"
    assert Q.schema.field("instruction_emb").type == pa.list_(pa.float32(), TEXT_EMBEDDING_DIM)
    assert Q.schema.field("reference_emb").type == pa.list_(pa.float32(), IMAGE_EMBEDDING_DIM)


def test_a_good_row_gets_derived_columns():
    table = to_arrow(Q, [good_row(instruction_emb=np.ones(TEXT_EMBEDDING_DIM, np.float32), meta={"k": 1})])
    assert table.schema == Q.schema
    row = table.to_pylist()[0]
    assert row["edit_scope"] == "local"
    assert row["meta"] == '{"k": 1}'
    assert isinstance(row["created_at"], datetime) and row["created_at"].tzinfo is not None


@pytest.mark.parametrize(
    ("overrides", "column", "pattern"),
    [
        (dict(num_frames="five"), "num_frames", r"expected int32, got str at row 0: 'five'"),
        (dict(num_frames=1.5), "num_frames", r"expected int32, got float"),
        (dict(source_video="not bytes"), "source_video", r"expected bytes, got str"),
        (dict(reference_image=[1, 2]), "reference_image", r"expected bytes, got list"),
        (dict(instruction=42), "instruction", r"expected str, got int"),
        (dict(instruction_emb=[0.1] * 3), "instruction_emb", r"fixed_size_list.*got list.*expected 384"),
        (dict(edit_type="zoom"), "edit_type", r"unknown edit_type 'zoom'"),
        (dict(task="generate"), "task", r"value 'generate' is not one of instruct, ref_subject, ref_background"),
        (dict(split="test"), "split", r"'test' is not one of train, val, bench"),
        (dict(created_at="yesterday"), "created_at", r"expected datetime, got str"),
        (dict(meta="{not json"), "meta", r"not valid JSON"),
        (dict(colour="red"), "colour", r"unknown column"),
        (dict(instruction=None), "instruction", r"null value at row 0 in a required column"),
        (dict(source_uri=None), "source_video", r"row 0 has neither source_video nor source_uri"),
    ],
)
def test_mismatch_names_table_column_and_type(overrides, column, pattern):
    with pytest.raises(SchemaMismatchError) as info:
        to_arrow(Q, [good_row(**overrides)])
    assert info.value.table == "quadruplets"
    assert info.value.column == column
    assert str(info.value).startswith(f"quadruplets.{column}: ")
    assert re.search(pattern, str(info.value)), str(info.value)


def test_missing_required_column_is_named():
    row = good_row()
    del row["dataset"]
    with pytest.raises(SchemaMismatchError, match=r"quadruplets.dataset: missing required column of type string"):
        to_arrow(Q, [row])


def test_the_offending_row_is_found_in_a_batch():
    rows = [good_row(id=f"q{i}", num_frames=9) for i in range(5)]
    rows[3]["num_frames"] = "nine"
    with pytest.raises(SchemaMismatchError, match=r"at row 3: 'nine'"):
        to_arrow(Q, rows)


def test_duplicate_keys_in_one_write_are_refused():
    with pytest.raises(SchemaMismatchError, match=r"quadruplets.id: 1 key value\(s\) appear more than once.*'q1'"):
        to_arrow(Q, [good_row(), good_row()])


def test_arrow_and_pandas_inputs_are_checked_too():
    frame = pd.DataFrame([good_row(), good_row(id="q2")])
    assert to_arrow(Q, frame).num_rows == 2
    table = pa.Table.from_pylist([good_row()]).append_column("num_frames", pa.array(["x"]))
    with pytest.raises(SchemaMismatchError, match=r"quadruplets.num_frames: expected int32, got arrow string"):
        to_arrow(Q, table)
    widened = pa.Table.from_pylist([good_row()]).append_column("num_frames", pa.array([9], pa.int64()))
    assert to_arrow(Q, widened)["num_frames"].type == pa.int32()


def test_timestamps_keep_their_instant():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert to_arrow(Q, [good_row(created_at=at)])["created_at"][0].as_py() == at


def test_a_lake_from_before_a_nullable_column_was_added_gains_it_and_other_gaps_are_refused(tmp_path):
    import lancedb
    import pytest

    import lake
    from lake.errors import LakeError
    from lake.schema import EVAL_RESULTS, RUNS

    old = lancedb.connect(str(tmp_path / "old"))
    old.create_table("eval_results", schema=pa.schema([f for f in EVAL_RESULTS.schema if f.name != "category"]))
    db = lake.open(tmp_path / "old")
    assert "category" in db.table("eval_results").schema.names
    db.upsert("eval_results", [dict(result_id="r", bench="b", item_id="i", scorer="auto", metric="psnr", value=1.0,
                                    category="local_add")])
    assert db.read("eval_results")["category"].to_pylist() == ["local_add"]
    other = lancedb.connect(str(tmp_path / "other"))
    other.create_table("runs", schema=pa.schema([f for f in RUNS.schema if f.name != "status"]))
    with pytest.raises(LakeError, match="lacks columns \\['status'\\]"):
        lake.open(tmp_path / "other")
