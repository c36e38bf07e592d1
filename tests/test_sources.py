"""Dataset adapters and ingest: good rows land, every bad row lands in `rejects` with its reason, reruns add nothing."""

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import lake
from lake import media
from refvie.cli import cli
from refvie.ingest import IngestConfig, check_instruction, ingest
from refvie.sources import (
    KiwiCsvSource,
    ManifestSource,
    RefvieParquetSource,
    RowProblem,
    SyntheticSource,
    resolve_inside,
)
from refvie.synthetic import SyntheticConfig
from tests.datasets import make_dataset

QUIET = IngestConfig(progress=False, batch_size=5)


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path)


def write_kiwi_csv(path: Path, rows, with_ref=False) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["src_video", "tgt_video", "prompt"] + (["ref_image"] if with_ref else []))
        writer.writerows(rows)
    return path


def rejects_by_reason(db) -> Counter:
    return Counter(db.read("rejects", columns=["reason"])["reason"].to_pylist())


def test_kiwi_csv_good_rows_land_and_each_bad_row_is_rejected_with_its_reason(dataset, empty_lake, tmp_path):
    rows = [list(p) for p in dataset.good_pairs] + [list(p[:3]) for p in dataset.bad_pairs]
    rows.append(list(dataset.image_pair))
    path = write_kiwi_csv(tmp_path / "train.csv", rows)
    with path.open("a") as f:
        f.write("clips/a_src.mp4,only-two-fields\n")  # a malformed line
    summary = ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET)

    expected = Counter(p[3] for p in dataset.bad_pairs) + Counter({"malformed_row": 1})
    assert summary.accepted == len(dataset.good_pairs) + 1
    assert summary.rejected == expected
    assert summary.read == len(rows) + 1 == summary.accepted + summary.rejected_total
    assert rejects_by_reason(empty_lake) == expected
    assert empty_lake.count("pairs") == summary.accepted
    codecs = empty_lake.sql("SELECT codec, count(*) AS n FROM pairs GROUP BY 1 ORDER BY 1").to_pydict()
    assert codecs["codec"] == ["h264", "mjpeg", "png", "vp9"]


def test_rejects_say_where_the_row_came_from(dataset, empty_lake, tmp_path):
    path = write_kiwi_csv(tmp_path / "train.csv", [list(dataset.good_pairs[0]), ["bad/truncated.mp4", "clips/a_tgt.mp4",
                                                                                  "Add a dog"]])
    ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET)
    (row,) = empty_lake.read("rejects").to_pylist()
    assert (row["input_ref"], row["stage"], row["reason"], row["dataset"]) == ("train.csv:3", "ingest", "truncated",
                                                                                "train")
    assert "source bad/truncated.mp4" in row["detail"]


def test_rerunning_an_ingest_adds_nothing(dataset, empty_lake, tmp_path):
    rows = [list(p) for p in dataset.good_pairs] + [list(p[:3]) for p in dataset.bad_pairs[:4]]
    path = write_kiwi_csv(tmp_path / "train.csv", rows)
    first = ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET)
    pairs_version = empty_lake.table("pairs").version
    second = ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET)
    assert (second.accepted, second.unchanged) == (0, first.accepted)
    assert second.rejected == first.rejected
    assert empty_lake.count("pairs") == first.accepted
    assert empty_lake.count("rejects") == first.rejected_total
    assert empty_lake.table("pairs").version == pairs_version  # nothing rewritten


def test_a_fixed_row_leaves_rejects_on_the_next_run(dataset, empty_lake, tmp_path):
    path = write_kiwi_csv(tmp_path / "train.csv", [["clips/late.mp4", "clips/a_tgt.mp4", "Add a late cat"]])
    assert ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET).rejected == Counter(missing_file=1)
    (dataset.root / "clips/late.mp4").write_bytes((dataset.root / "clips/a_src.mp4").read_bytes())
    assert ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET).accepted == 1
    assert empty_lake.count("rejects") == 0 and empty_lake.count("pairs") == 1


def test_prompts_with_unquoted_commas_are_repaired_when_unambiguous(dataset, empty_lake, tmp_path):
    """Kiwi-Edit's own demo CSV (header prompt,src_video,tgt_video) does not quote its prompts."""
    (src, tgt, _), (src2, tgt2, _) = dataset.good_pairs[:2]
    path = tmp_path / "video_demo_training_set.csv"
    path.write_text("prompt,src_video,tgt_video\n"
                    f"Add a hat, a scarf, and gloves to the man,{src},{tgt}\n"
                    f"Make it snow,{src2},{tgt2}\n"
                    f"Turn it red, then,blue,{src2}\n"  # the last path column is no media file: ambiguous
                    "only,two\n")
    summary = ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET)
    assert (summary.accepted, summary.repaired) == (2, 1)
    assert summary.rejected == Counter(malformed_row=2)
    assert "(1 accepted after a repair; see meta.repaired_from)" in str(summary)
    rows = {r["instruction"]: r for r in empty_lake.read("pairs", columns=["instruction", "meta"]).to_pylist()}
    repaired = json.loads(rows["Add a hat, a scarf, and gloves to the man"]["meta"])
    assert repaired["repaired_from"] == f"Add a hat, a scarf, and gloves to the man,{src},{tgt}"
    details = sorted(empty_lake.read("rejects", columns=["detail"])["detail"].to_pylist())
    assert details == ["line 4 has 4 fields, expected 3", "line 5 has 2 fields, expected 3"]  # the real counts
    copy = tmp_path / "strict" / path.name  # one file is one dataset: the strict reading goes in as a copy
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    strict = ingest(KiwiCsvSource(copy, dataset.root, dataset="strict", strict=True), empty_lake, QUIET)
    assert strict.rejected == Counter(malformed_row=3) and strict.repaired == 0


def test_two_datasets_with_the_same_file_name_keep_their_own_rejects(dataset, empty_lake, tmp_path):
    """Real pools all call their manifest train.csv: the second dataset's good rows must not erase the first's
    rejects at the same line numbers."""
    (tmp_path / "one").mkdir()
    bad = write_kiwi_csv(tmp_path / "one" / "train.csv", [list(p[:3]) for p in dataset.bad_pairs[:3]])
    first = ingest(KiwiCsvSource(bad, dataset.root, dataset="pool-one"), empty_lake, QUIET)
    assert first.rejected_total == 3
    (tmp_path / "two").mkdir()
    good = write_kiwi_csv(tmp_path / "two" / "train.csv", [list(p) for p in dataset.good_pairs[:3]])
    second = ingest(KiwiCsvSource(good, dataset.root, dataset="pool-two"), empty_lake, QUIET)
    assert second.accepted == 3 and second.rejected_total == 0
    kept = empty_lake.read("rejects", columns=["dataset", "input_ref"]).to_pylist()
    assert sorted((r["dataset"], r["input_ref"]) for r in kept) == [("pool-one", f"train.csv:{n}") for n in (2, 3, 4)]
    again = ingest(KiwiCsvSource(bad, dataset.root, dataset="pool-one"), empty_lake, QUIET)
    assert again.rejected_total == 3 and empty_lake.count("rejects") == 3  # a rerun still never duplicates


def test_image_pairs_are_one_frame_clips_and_references_are_kept(dataset, empty_lake, tmp_path):
    src, tgt, prompt = dataset.image_pair
    rows = [[src, tgt, prompt, dataset.reference],
            ["clips/a_src.mp4", "clips/a_tgt.mp4", "Add it", "clips/a_src.mp4"]]  # a video is no reference image
    path = write_kiwi_csv(tmp_path / "stage3.csv", rows, with_ref=True)
    summary = ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET)
    assert summary.accepted == 1 and summary.rejected == Counter(bad_reference=1)
    row = empty_lake.read("pairs").to_pylist()[0]
    assert (row["num_frames"], row["codec"], row["source_uri"]) == (1, "png", src)
    assert json.loads(row["meta"])["image_pair"] is True
    assert row["given_reference"] == (dataset.root / dataset.reference).read_bytes()
    stored = empty_lake.read_blobs("pairs", "target_video", [row["pair_id"]])[0]
    assert stored == (dataset.root / tgt).read_bytes()  # the original bytes, not a re-encode


def test_refvie_parquet_chunks(dataset, empty_lake, tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    ref = (dataset.root / dataset.reference).read_bytes()
    chunks = [
        [dict(iid=1, prompt="Add a red ball", src_video="clips/a_src.mp4", tgt_video="clips/a_tgt.mp4",
              ref_image_bytes=ref),
         dict(iid=2, prompt="Swap the box", src_video="clips/b_src.webm", tgt_video="clips/b_tgt.webm",
              ref_image_bytes=ref)],
        [dict(iid=3, prompt="Add a moon", src_video="../outside/secret.mp4", tgt_video="clips/a_tgt.mp4",
              ref_image_bytes=ref),
         dict(iid=4, prompt="Add junk", src_video="clips/c_src.avi", tgt_video="clips/c_tgt.avi",
              ref_image_bytes=b"not an image"),
         dict(iid=2, prompt="Swap the box", src_video="clips/b_src.webm", tgt_video="clips/b_tgt.webm",
              ref_image_bytes=ref)],
    ]
    for i, chunk in enumerate(chunks):
        pq.write_table(pa.Table.from_pylist(chunk), folder / f"part-{i:03d}.parquet")
    summary = ingest(RefvieParquetSource(folder, dataset.root), empty_lake, QUIET)
    assert summary.accepted == 2
    assert summary.rejected == Counter(path_escape=1, bad_reference=1, duplicate_id=1)
    assert sorted(empty_lake.read("pairs", columns=["pair_id"])["pair_id"].to_pylist()) == ["refvie-1", "refvie-2"]
    assert empty_lake.read("rejects", columns=["input_ref"], where="reason = 'path_escape'")["input_ref"][0].as_py() \
        == "part-001.parquet:0"


def test_refvie_parquet_without_a_required_column_is_refused(dataset, tmp_path):
    pq.write_table(pa.table({"iid": [1], "prompt": ["x"]}), tmp_path / "broken.parquet")
    with pytest.raises(ValueError, match=r"broken.parquet: missing column\(s\) \['src_video', 'tgt_video'"):
        RefvieParquetSource(tmp_path / "broken.parquet", dataset.root)


def test_manifest_jsonl_with_a_column_mapping(dataset, empty_lake, tmp_path):
    lines = [
        json.dumps(dict(clip_id="a", text="Add a red ball", before="clips/a_src.mp4", after="clips/a_tgt.mp4",
                        category="local_add")),
        json.dumps(dict(clip_id="b", text="Recolour it", before="clips/b_src.webm", after="clips/b_tgt.webm",
                        category="zoom_in")),
        "{this is not json",
        json.dumps(dict(clip_id="c", text="No target", before="clips/c_src.avi")),
        json.dumps(dict(clip_id="d", text="Style it", before="clips/c_src.avi", after="clips/c_tgt.avi",
                        ref="images/ref.png")),
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    mapping = dict(id="clip_id", instruction="text", source="before", target="after", edit_type="category",
                   reference="ref")
    summary = ingest(ManifestSource(path, dataset.root, mapping=mapping), empty_lake, QUIET)
    assert summary.accepted == 2
    assert summary.rejected == Counter(unknown_edit_type=1, malformed_row=2)
    rows = {r["pair_id"]: r for r in empty_lake.read("pairs").to_pylist()}
    assert rows["manifest-a"]["gt_edit_type"] == "local_add"
    assert rows["manifest-d"]["given_reference"] is not None


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_manifest_csv_and_parquet(dataset, empty_lake, tmp_path, suffix):
    table = pa.table({"source": ["clips/a_src.mp4", "clips/missing.mp4"], "target": ["clips/a_tgt.mp4"] * 2,
                      "instruction": ["Add a red ball", "Add a ghost"]})
    path = tmp_path / f"pairs.{suffix}"
    if suffix == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    summary = ingest(ManifestSource(path, dataset.root), empty_lake, QUIET)
    assert summary.accepted == 1 and summary.rejected == Counter(missing_file=1)


def test_manifest_mapping_mistakes_are_named(dataset, tmp_path):
    (tmp_path / "m.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match=r"--map names unknown field\(s\) \['colour'\]"):
        ManifestSource(tmp_path / "m.csv", dataset.root, mapping={"colour": "a"})
    with pytest.raises(ValueError, match=r"no column\(s\) \['instruction', 'source', 'target'\].*--map"):
        ManifestSource(tmp_path / "m.csv", dataset.root)


def test_paths_are_resolved_inside_the_root(dataset):
    assert resolve_inside(dataset.root, "clips/a_src.mp4").path == (dataset.root / "clips/a_src.mp4").resolve()
    assert resolve_inside(dataset.root, "clips/../clips/a_src.mp4").uri == "clips/../clips/a_src.mp4"
    for bad in ("../outside/secret.mp4", "clips/../../outside/secret.mp4", str(dataset.outside / "secret.mp4"),
                "clips/link_out.mp4"):
        with pytest.raises(RowProblem) as info:
            resolve_inside(dataset.root, bad)
        assert info.value.reason == "path_escape"
    with pytest.raises(RowProblem, match="unsupported_uri"):
        resolve_inside(dataset.root, "s3://bucket/x.mp4")


def test_instruction_checks():
    assert check_instruction("  Add   a\tred\nball ", 100) == "Add a red ball"
    for text, reason in ((None, "empty_instruction"), ("", "empty_instruction"), ("a" * 101, "instruction_too_long"),
                         ("bell\x07", "control_characters"), ("esc\x1b[31m", "control_characters")):
        with pytest.raises(RowProblem) as info:
            check_instruction(text, 100)
        assert info.value.reason == reason


def test_synthetic_ingest_fills_the_ground_truth(empty_lake):
    config = SyntheticConfig(frames=5, height=32, width=32, seed=3)
    summary = ingest(SyntheticSource(30, config), empty_lake, QUIET)
    assert summary.accepted == 30
    assert ingest(SyntheticSource(30, config), empty_lake, QUIET).unchanged == 30
    rows = empty_lake.read("pairs").to_pylist()
    assert all(r["gt_edit_type"] and r["gt_mask"] for r in rows)
    assert {r["gt_edit_type"] for r in rows if r["gt_reference"] is None} == {"local_remove"}
    first = rows[0]
    assert media.decode_mask_stack(first["gt_mask"]).shape == (5, 32, 32)
    source = empty_lake.read_video("pairs", first["pair_id"], "source_video")
    assert source.shape == (5, 32, 32, 3)
    assert json.loads(first["meta"])["synthetic"]["seed"] == 3


def test_refvie_ingest_command(dataset, tmp_path):
    path = write_kiwi_csv(tmp_path / "train.csv", [list(p) for p in dataset.good_pairs] +
                          [list(dataset.bad_pairs[1][:3])])
    result = CliRunner().invoke(cli, ["ingest", "--format", "kiwi-csv", str(path), "--root", str(dataset.root),
                                      "--lake", str(tmp_path / "lake"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "read 5, accepted 4, already in the lake 0, rejected 1" in result.output
    assert "rejected truncated" in result.output
    synthetic = CliRunner().invoke(cli, ["ingest", "--format", "synthetic", "--n", "6", "--frames", "5", "--size", "32",
                                         "--mix", "background_change=1", "--lake", str(tmp_path / "lake"), "--quiet"])
    assert synthetic.exit_code == 0, synthetic.output
    db = lake.open(tmp_path / "lake")
    assert db.count("pairs", where="gt_edit_type = 'background_change'") == 6


@pytest.mark.parametrize(("args", "message"), [
    (["ingest", "--format", "kiwi-csv", "nope.csv"], "nope.csv: no such CSV file"),
    (["ingest", "--format", "kiwi-csv"], "needs a PATH"),
    (["ingest", "--format", "synthetic", "--mix", "local_add"], "is not edit_type=proportion"),
    (["ingest", "--format", "synthetic", "--mix", "zoom=1"], "unknown edit types"),
])
def test_refvie_command_mistakes(tmp_path, args, message):
    result = CliRunner().invoke(cli, [*args, "--lake", str(tmp_path / "lake")])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_preview_grid(tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(cli, ["preview", "--synthetic", "--n", "3", "--out", str(out)])
    assert result.exit_code == 0 and out.exists()
    image = media.decode_image(out.read_bytes())
    assert image.shape[0] > image.shape[1] and image.std() > 10  # three tall rows of real pictures
    assert not np.all(image == 255)


def test_no_bytes_keeps_resolvable_uris_that_the_build_and_every_reader_follow(dataset, tmp_path):
    """--no-bytes stores no video in the lake: each pair keeps the absolute file:// URI of its file, which the
    build's decode stage, the training loader and evaluation read instead (a relative path kept under a root the
    lake never recorded could not be read back). A file that disappears is a clear `missing_file`."""
    from refvie.pipeline import build_local

    db = lake.open(tmp_path / "lake")
    path = write_kiwi_csv(tmp_path / "train.csv", [list(p) for p in dataset.good_pairs[:3]])
    summary = ingest(KiwiCsvSource(path, dataset.root), db, IngestConfig(progress=False, store_bytes=False))
    assert summary.accepted == 3
    pairs = db.read("pairs", columns=["pair_id", "source_uri", "target_uri"]).to_pylist()
    assert all(r["source_uri"].startswith("file:///") and r["target_uri"].startswith("file:///") for r in pairs)
    assert db.count("pairs", where="source_video IS NOT NULL") == 0
    ids = [r["pair_id"] for r in pairs]
    assert db.read_blobs("pairs", "source_video", ids[:1]) == [(dataset.root / "clips/a_src.mp4").read_bytes()]
    assert db.read_blobs("pairs", "source_video", ids[:1], resolve_uris=False) == [None]

    built = build_local(db)
    # decoded from the URIs (before, every such pair was rejected as `empty`); the content filters still apply
    assert built.accepted >= 2 and built.accepted + sum(built.rejected.values()) == 3, built
    assert not set(built.rejected) & {"empty", "missing_file"}
    quads = db.read("quadruplets", columns=["id", "source_uri"]).to_pylist()
    assert all(q["source_uri"].startswith("file:///") for q in quads)
    frames = media.decode_video(db.read_blobs("quadruplets", "target_video", [quads[0]["id"]])[0])
    assert frames.ndim == 4

    (dataset.root / "clips/a_src.mp4").unlink()
    with pytest.raises(lake.MediaError, match="a_src.mp4") as raised:
        db.read_blobs("pairs", "source_video", ids)
    assert raised.value.reason == "missing_file"

    inline = ingest(SyntheticSource(2, SyntheticConfig(frames=5, height=32, width=32)), db,
                    IngestConfig(progress=False, store_bytes=False))
    assert inline.rejected == Counter(missing_path=2)  # synthetic clips have no file to point to


def test_ingest_counts_frames_without_holding_a_clip_in_memory(dataset, empty_lake, tmp_path, monkeypatch):
    """Ingest needs a clip's frame count and its validity, not its pixels: a long HD video must not be decoded into
    one array. Every frame is still decoded and checked (a truncated clip is rejected as before)."""
    def refuse(*args, **kwargs):
        raise AssertionError("ingest materialised a whole clip")

    monkeypatch.setattr(media, "decode_video", refuse)
    path = write_kiwi_csv(tmp_path / "train.csv", [list(dataset.good_pairs[0]), list(dataset.bad_pairs[1][:3])])
    summary = ingest(KiwiCsvSource(path, dataset.root), empty_lake, QUIET)
    assert summary.accepted == 1 and summary.rejected == Counter(truncated=1)
    assert empty_lake.read("pairs", columns=["num_frames"])["num_frames"].to_pylist() == [
        media.count_frames((dataset.root / dataset.good_pairs[0][0]).read_bytes())]


def write_manifest(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_two_manifests_with_one_file_name_are_two_datasets(dataset, empty_lake, tmp_path):
    """Every release calls its manifest pairs.jsonl / train.csv: a second one must neither erase the first's reject
    records nor be mistaken for rows already in the lake."""
    good = [dict(source=s, target=t, instruction=p) for s, t, p in dataset.good_pairs[:3]]
    bad = [dict(source=s, target=t, instruction=p) for s, t, p, _ in dataset.bad_pairs]
    first = ingest(ManifestSource(write_manifest(tmp_path / "bad" / "pairs.jsonl", good + bad), dataset.root),
                   empty_lake, QUIET)
    assert (first.accepted, first.rejected_total) == (3, 13)
    others = [dict(source=s, target=t, instruction=f"{p}, take {n}")
              for n in range(2) for s, t, p in dataset.good_pairs[:3]]
    second = ingest(ManifestSource(write_manifest(tmp_path / "other" / "pairs.jsonl", others), dataset.root),
                    empty_lake, QUIET)
    assert (second.accepted, second.unchanged, second.rejected_total) == (6, 0, 0)
    assert empty_lake.count("rejects") == 13 and empty_lake.count("pairs") == 9
    names = {r["dataset"]: r["origin"] for r in empty_lake.read("datasets").to_pylist()}
    assert names == {"pairs": (tmp_path / "bad" / "pairs.jsonl").resolve().as_uri(),
                     "other-pairs": (tmp_path / "other" / "pairs.jsonl").resolve().as_uri()}
    again = ingest(ManifestSource(tmp_path / "other" / "pairs.jsonl", dataset.root), empty_lake, QUIET)
    assert (again.dataset, again.unchanged) == ("other-pairs", 6)  # a rerun finds its own name and rows


def test_same_given_id_in_two_folders_is_two_pairs(dataset, empty_lake, tmp_path):
    src, tgt, _ = dataset.good_pairs[0]
    for folder, text in (("a", "Add a red apple on the table"), ("b", "Remove the apple from the table")):
        path = write_manifest(tmp_path / folder / "pairs.jsonl", [dict(id="x1", source=src, target=tgt,
                                                                      instruction=text)])
        summary = ingest(ManifestSource(path, dataset.root), empty_lake, QUIET)
        assert (summary.accepted, summary.unchanged) == (1, 0)
    rows = {r["pair_id"]: r["instruction"] for r in empty_lake.read("pairs", columns=["pair_id", "instruction"])
            .to_pylist()}
    assert rows == {"pairs-x1": "Add a red apple on the table", "b-pairs-x1": "Remove the apple from the table"}


def test_a_dataset_name_held_by_another_source_is_refused(dataset, empty_lake, tmp_path):
    rows = [dict(source=s, target=t, instruction=p) for s, t, p in dataset.good_pairs[:1]]
    ingest(ManifestSource(write_manifest(tmp_path / "a" / "train.jsonl", rows), dataset.root, dataset="pool"),
           empty_lake, QUIET)
    from refvie.datasets import DatasetConflict

    with pytest.raises(DatasetConflict, match=r"dataset 'pool' already holds the rows of .*a/train.jsonl.*"
                                              r"give it its own --dataset"):
        ingest(ManifestSource(write_manifest(tmp_path / "b" / "train.jsonl", rows), dataset.root, dataset="pool"),
               empty_lake, QUIET)
    with pytest.raises(DatasetConflict, match=r"was ingested as dataset 'pool'; rerun with --dataset pool"):
        ingest(ManifestSource(tmp_path / "a" / "train.jsonl", dataset.root, dataset="renamed"), empty_lake, QUIET)
    assert empty_lake.count("pairs") == 1


def test_absolute_paths_are_accepted_inside_the_allowed_roots(dataset, empty_lake, tmp_path):
    inside = str((dataset.root / "clips/a_src.mp4").resolve())
    elsewhere = tmp_path / "pool"
    elsewhere.mkdir()
    (elsewhere / "t.mp4").write_bytes((dataset.root / "clips/a_tgt.mp4").read_bytes())
    rows = [[inside, str(elsewhere / "t.mp4"), "Add a red ball"],
            [inside, str(dataset.outside / "secret.mp4"), "Add a sun"]]
    path = write_kiwi_csv(tmp_path / "abs.csv", rows)
    summary = ingest(KiwiCsvSource(path, dataset.root, allowed_roots=(elsewhere,)), empty_lake, QUIET)
    assert summary.accepted == 1 and summary.rejected == Counter(path_escape=1)
    (detail,) = empty_lake.read("rejects", columns=["detail"])["detail"].to_pylist()
    assert "outside the allowed roots" in detail and "--root" in detail
    with pytest.raises(RowProblem, match="path_escape"):  # without the second root, the pool is outside
        resolve_inside(dataset.root, str(elsewhere / "t.mp4"))
