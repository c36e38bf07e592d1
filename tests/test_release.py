"""The released data as released: the RefVIE parquet's own references become the quadruplets' references (byte for
byte), and the whole Kiwi-Edit training metadata ingests in one command, each row on its task, resumable by file."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from lake import media
from refvie.cli import cli
from refvie.ingest import IngestConfig, ingest
from refvie.pipeline import PipelineConfig, build_local
from refvie.release import ingest_release
from refvie.sources import RefvieParquetSource
from refvie.synthetic import SyntheticConfig, SyntheticWorld

QUIET = IngestConfig(progress=False, batch_size=4)
MIX = {"local_add": 1.0, "background_change": 1.0, "global_style": 1.0}


def source_pool(base: Path, n: int = 6, seed: int = 3) -> list[dict]:
    """Pairs as a source dataset ships them (videos under `base`), with the references a RefVIE release would give:
    a subject on white for additions, the new background for background changes, a style frame for styles."""
    world = SyntheticWorld(SyntheticConfig(seed=seed, frames=9, height=64, width=64, mix=MIX))
    (base / "ditto/videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for sample in world.samples(n):
        src, tgt = f"ditto/videos/{sample.pair_id}.mp4", f"ditto/videos/{sample.pair_id}_edit.mp4"
        (base / src).write_bytes(media.encode_video(sample.source))
        (base / tgt).write_bytes(media.encode_video(sample.target))
        reference = sample.reference if sample.reference is not None else sample.target[len(sample.target) - 1]
        rows.append(dict(iid=sample.index, prompt=sample.instruction, src_video=src, tgt_video=tgt,
                         ref_image_bytes=media.encode_image(reference, "jpeg"), edit_type=sample.edit_type.value))
    return rows


def write_chunks(folder: Path, rows: list[dict], per_chunk: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    columns = ("iid", "prompt", "src_video", "tgt_video", "ref_image_bytes")
    for i in range(0, len(rows), per_chunk):
        chunk = [{k: r[k] for k in columns} for r in rows[i : i + per_chunk]]
        pq.write_table(pa.Table.from_pylist(chunk), folder / f"chunk_{i // per_chunk:04d}.parquet")


def test_given_references_become_the_quadruplets_references_byte_for_byte(tmp_path, empty_lake):
    base = tmp_path / "datasets"
    rows = source_pool(base)
    write_chunks(tmp_path / "refvie_477k", rows)
    summary = ingest(RefvieParquetSource(tmp_path / "refvie_477k", base), empty_lake, QUIET)
    assert summary.accepted == len(rows)
    built = build_local(empty_lake, PipelineConfig())
    quads = {q["pair_id"]: q for q in empty_lake.read("quadruplets").to_pylist()}
    given = {f"refvie-{r['iid']}": r for r in rows}
    assert built.accepted == len(quads) >= 4, str(built)
    for pair_id, q in quads.items():
        assert q["reference_source"] == "given"
        assert q["reference_image"] == given[pair_id]["ref_image_bytes"]  # the release's JPEG, not a re-encode
        assert q["task"] in ("ref_subject", "ref_background")  # a given reference makes a reference task
    styles = [q for q in quads.values() if q["edit_type"] == "global_style"]
    assert all(q["task"] == "ref_background" for q in styles)
    by_sql = empty_lake.sql("SELECT reference_source, count(*) AS n FROM quadruplets GROUP BY 1").to_pylist()
    assert by_sql == [{"reference_source": "given", "n": len(quads)}]


def test_resynthesise_replaces_given_references(tmp_path, empty_lake):
    base = tmp_path / "datasets"
    rows = [r for r in source_pool(base) if r["edit_type"] == "local_add"][:2]
    write_chunks(tmp_path / "refvie_477k", rows)
    ingest(RefvieParquetSource(tmp_path / "refvie_477k", base), empty_lake, QUIET)
    build_local(empty_lake, PipelineConfig(resynthesise=True))
    quads = empty_lake.read("quadruplets", columns=["reference_source", "reference_image"]).to_pylist()
    assert quads and {q["reference_source"] for q in quads} == {"synthesised"}
    assert not {q["reference_image"] for q in quads} & {r["ref_image_bytes"] for r in rows}


def test_a_given_reference_that_fails_the_filters_is_a_reject_not_replaced(tmp_path, empty_lake):
    base = tmp_path / "datasets"
    rows = [r for r in source_pool(base) if r["edit_type"] == "local_add"][:2]
    wrong = np.zeros((48, 48, 3), np.uint8)
    wrong[::2] = (255, 0, 255)  # stripes: nothing like the subject the edit added
    rows[1] = {**rows[1], "ref_image_bytes": media.encode_image(wrong, "png")}
    write_chunks(tmp_path / "refvie_477k", rows)
    ingest(RefvieParquetSource(tmp_path / "refvie_477k", base), empty_lake, QUIET)
    built = build_local(empty_lake, PipelineConfig())
    assert built.accepted == 1 and built.rejected == Counter(reference_mismatch=1), str(built)
    (reject,) = empty_lake.read("rejects", columns=["input_ref", "stage", "detail"]).to_pylist()
    assert (reject["input_ref"], reject["stage"]) == (f"refvie-{rows[1]['iid']}", "filter")
    assert "ref_similarity" in reject["detail"]
    assert empty_lake.count("quadruplets", where="reference_source = 'synthesised'") == 0


def fabricated_release(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    """linyq/kiwi_edit_training_data's three folders, at a few rows, pointing into a base of source datasets."""
    base, root = tmp_path / "datasets", tmp_path / "kiwi_edit_training_data"
    rows = source_pool(base, n=6)
    frame = media.decode_video((base / rows[0]["src_video"]).read_bytes())[0]
    (base / "nhr/images/00").mkdir(parents=True)
    (base / "nhr/images/00/image_1_original.jpg").write_bytes(media.encode_image(frame, "jpeg"))
    (base / "nhr/images/00/image_1_edited_0.jpg").write_bytes(media.encode_image(frame[::-1].copy(), "jpeg"))
    (root / "image_edit_metadata").mkdir(parents=True)
    with (root / "image_edit_metadata/nhr_edit.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tgt_video", "src_video", "prompt"])  # upstream's own image CSV puts the target first
        writer.writerow(["nhr/images/00/image_1_edited_0.jpg", "nhr/images/00/image_1_original.jpg", "Flip it"])
    (root / "video_edit_metadata").mkdir()
    with (root / "video_edit_metadata/ditto.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "src_video", "tgt_video"])
        for r in rows[:3]:
            writer.writerow([r["prompt"], r["src_video"], str((base / r["tgt_video"]).resolve())])  # absolute too
        writer.writerow(["A row whose video is gone", "ditto/videos/gone.mp4", rows[0]["tgt_video"]])
    write_chunks(root / "refvie_477k", rows[3:], per_chunk=2)
    return root, base, rows


def test_kiwi_release_ingest_puts_each_row_on_its_task(tmp_path, empty_lake):
    root, base, rows = fabricated_release(tmp_path)
    lines: list[str] = []
    summary = ingest_release(root, empty_lake, base, config=QUIET, say=lines.append)
    assert summary.read == 1 + 4 + 3
    assert [name for name, _ in summary.files] == [
        "image_edit_metadata/nhr_edit.csv", "video_edit_metadata/ditto.csv", "refvie_477k/chunk_0000.parquet",
        "refvie_477k/chunk_0001.parquet"]
    assert "video_edit_metadata/ditto.csv: ingesting into dataset kiwi-video" in lines  # progress, one line a file
    assert "video_edit_metadata/ditto.csv: read 4, accepted 3, already in the lake 0, rejected 1" in str(summary)
    pairs = {r["dataset"]: [] for r in empty_lake.read("pairs", columns=["dataset"]).to_pylist()}
    for r in empty_lake.read("pairs", columns=["dataset", "num_frames", "given_reference"]).to_pylist():
        pairs[r["dataset"]].append(r)
    assert {k: len(v) for k, v in pairs.items()} == {"kiwi-image": 1, "kiwi-video": 3, "refvie": 3}
    assert [r["num_frames"] for r in pairs["kiwi-image"]] == [1]  # an image pair: a one-frame clip
    assert all(r["num_frames"] > 1 and r["given_reference"] is None for r in pairs["kiwi-video"])
    assert all(r["given_reference"] is not None for r in pairs["refvie"])
    datasets = {r["dataset"]: r for r in empty_lake.read("datasets").to_pylist()}
    assert json.loads(datasets["refvie"]["meta"])["release_part"] == "reference"
    assert datasets["kiwi-video"]["origin"] == (root / "video_edit_metadata").resolve().as_uri()
    build_local(empty_lake, PipelineConfig())
    tasks = {(q["dataset"], q["task"], q["reference_source"])
             for q in empty_lake.read("quadruplets", columns=["dataset", "task", "reference_source"]).to_pylist()}
    assert {t for d, t, s in tasks if d == "refvie"} <= {"ref_subject", "ref_background"}
    assert {s for d, t, s in tasks if d == "refvie"} == {"given"}
    assert {s for d, t, s in tasks if d != "refvie"} <= {"synthesised", None}


def test_kiwi_release_ingest_resumes_by_file(tmp_path, empty_lake):
    root, base, _ = fabricated_release(tmp_path)
    first = ingest_release(root, empty_lake, base, config=QUIET, say=lambda _: None)
    lines: list[str] = []
    again = ingest_release(root, empty_lake, base, config=QUIET, say=lines.append)
    assert again.read == 0 and all(isinstance(outcome, int) for _, outcome in again.files)
    assert "refvie_477k/chunk_0001.parquet: done before (1 row), skipped" in lines
    chunk = root / "refvie_477k/chunk_0001.parquet"
    chunk.write_bytes(chunk.read_bytes())  # touched: read again, its rows found in the lake
    touched = ingest_release(root, empty_lake, base, config=QUIET, say=lambda _: None)
    assert touched.read == 1 and dict(touched.files)["refvie_477k/chunk_0001.parquet"].unchanged == 1
    assert empty_lake.count("pairs") == first.read - 1  # the one row whose video is gone is a reject
    assert empty_lake.count("rejects") == 1


def test_kiwi_release_command(tmp_path):
    root, base, _ = fabricated_release(tmp_path)
    lake_uri = str(tmp_path / "lake")
    result = CliRunner().invoke(cli, ["ingest", "--format", "kiwi-release", str(root), "--root", str(base),
                                      "--lake", lake_uri, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "kiwi-release: 4 files, read 8, accepted 7, already in the lake 0, rejected 1" in result.output
    missing = CliRunner().invoke(cli, ["ingest", "--format", "kiwi-release", str(root), "--lake", lake_uri])
    assert missing.exit_code != 0 and "--root" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = CliRunner().invoke(cli, ["ingest", "--format", "kiwi-release", str(empty), "--root", str(base),
                                     "--lake", lake_uri])
    assert wrong.exit_code == 1 and "is this the kiwi_edit_training_data folder?" in wrong.output
