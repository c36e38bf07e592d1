"""Adapters for the recipe's video datasets in their released layouts, fabricated here at a few rows:
Ditto-1M (training_metadata/*.json + videos/<subset>/, or its DiffSynth CSVs), OpenVE-3M (one `;` CSV per category,
video / original_video / prompt, under videos/) and ReCo-Data (<task>/<task>_data_configs.json +
<task>/src_videos|tar_videos/). Each keeps its own categories as given labels through its shipped label map."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from lake import media
from refvie.cli import cli
from refvie.ingest import IngestConfig, ingest
from refvie.labels.maps import parse_label_map
from refvie.sources import DittoSource, OpenVeSource, ReCoSource
from tests.conftest import moving_square

QUIET = IngestConfig(progress=False, batch_size=4)


def clip(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(media.encode_video(moving_square(seed, frames=5, size=32)))


def pairs_of(db) -> dict[str, dict]:
    return {r["pair_id"]: r for r in db.read("pairs").to_pylist()}


def stored(db, pair_id: str, column: str) -> bytes:
    return db.read_blobs("pairs", column, [pair_id])[0]


def ditto_release(tmp_path: Path) -> Path:
    root = tmp_path / "Ditto-1M"
    triplets = []
    for i, subset in enumerate(["global_style1", "local", "global_freeform2"]):
        clip(root / f"videos/source/v{i}.mp4", i)
        clip(root / f"videos/{subset}/v{i}_1.mp4", 10 + i)
        triplets.append({"source_path": f"source/v{i}.mp4", "instruction": f"Edit number {i}",
                         "edited_path": f"{subset}/v{i}_1.mp4"})
    (root / "training_metadata").mkdir()
    (root / "training_metadata/global.json").write_text(json.dumps([triplets[0], triplets[2]]))
    gone = {"source_path": "source/gone.mp4", "instruction": "Remove it", "edited_path": "local/gone_1.mp4"}
    (root / "training_metadata/local.json").write_text(json.dumps([triplets[1], gone, {"instruction": "x"}]))
    return root


def test_ditto_1m_in_its_released_layout(tmp_path, empty_lake):
    root = ditto_release(tmp_path)
    summary = ingest(DittoSource(root), empty_lake, QUIET)
    assert summary.accepted == 3 and summary.rejected == Counter(missing_file=1, malformed_row=1)
    rows = pairs_of(empty_lake)
    assert set(rows) == {"ditto-1m-global_style1-v0_1", "ditto-1m-local-v1_1", "ditto-1m-global_freeform2-v2_1"}
    style = rows["ditto-1m-global_style1-v0_1"]
    assert style["gt_edit_type"] == "global_style" and style["num_frames"] == 5
    assert json.loads(style["meta"])["ditto"] == {"subset": "global_style1", "metadata_file": "global.json"}
    assert stored(empty_lake, style["pair_id"], "source_video") == (root / "videos/source/v0.mp4").read_bytes()
    # Local and freeform subsets do not say which of our categories they are: the classifier decides.
    assert rows["ditto-1m-local-v1_1"]["gt_edit_type"] is None
    assert rows["ditto-1m-global_freeform2-v2_1"]["gt_edit_type"] is None
    (dataset,) = empty_lake.read("datasets").to_pylist()
    assert (dataset["dataset"], dataset["licence"], dataset["format"]) == ("ditto-1m", "cc-by-nc-sa-4.0", "ditto-1m")


def test_ditto_1m_diffsynth_csv_and_paths_relative_to_the_dataset_folder(tmp_path, empty_lake):
    root = ditto_release(tmp_path)
    (root / "csvs_for_DiffSynth").mkdir()
    with (root / "csvs_for_DiffSynth/style.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "vace_video", "prompt"])
        writer.writerow(["global_style1/v0_1.mp4", "source/v0.mp4", "Make it an oil painting, thick strokes"])
        writer.writerow(["videos/local/v1_1.mp4", "videos/source/v1.mp4", "Add a hat"])  # from the dataset folder
    summary = ingest(DittoSource(root / "csvs_for_DiffSynth/style.csv"), empty_lake, QUIET)
    assert summary.accepted == 2 and not summary.rejected
    rows = pairs_of(empty_lake)
    assert rows["ditto-1m-global_style1-v0_1"]["instruction"] == "Make it an oil painting, thick strokes"
    assert stored(empty_lake, "ditto-1m-local-v1_1", "target_video") == (root / "videos/local/v1_1.mp4").read_bytes()


def openve_release(tmp_path: Path) -> Path:
    root = tmp_path / "OpenVE-3M"
    files = {"local_add": [], "background_change": [], "camera_multi_shot": []}
    for i, category in enumerate(files):
        clip(root / f"videos/{category}/src_{i}.mp4", i)
        clip(root / f"videos/{category}/edit_{i}.mp4", 20 + i)
        files[category].append([f"{category}/edit_{i}.mp4", f"{category}/src_{i}.mp4",
                                f"In the sunny park, with trees, benches and people, change number {i}."])
    files["local_add"].append(["local_add/edit_9.mp4", "local_add/src_9.mp4", "Add a; broken row"])
    (root / "csv_files").mkdir(parents=True)
    for category, rows in files.items():
        with (root / f"csv_files/{category}.csv").open("w", newline="") as f:
            writer = csv.writer(f, delimiter=";")
            writer.writerow(["video", "original_video", "prompt"])
            writer.writerows(rows)
    return root


def test_openve_3m_in_its_released_layout(tmp_path, empty_lake):
    root = openve_release(tmp_path)
    summary = ingest(OpenVeSource(root), empty_lake, QUIET)
    # The prompt's ';' is quoted by the writer, so that row parses; its clips are missing.
    assert summary.accepted == 3 and summary.rejected == Counter(missing_file=1)
    rows = pairs_of(empty_lake)
    by_category = {json.loads(r["meta"])["openve"]["category"]: r for r in rows.values()}
    assert {c: r["gt_edit_type"] for c, r in by_category.items()} == {
        "local_add": "local_add", "background_change": "background_change", "camera_multi_shot": "other"}
    add = by_category["local_add"]
    assert add["pair_id"] == "openve-3m-local_add-local_add-edit_0"
    assert "sunny park, with trees" in add["instruction"]  # commas in a ';' file stay in the prompt
    assert stored(empty_lake, add["pair_id"], "target_video") == (root / "videos/local_add/edit_0.mp4").read_bytes()


def test_openve_3m_category_outside_its_map_is_a_reject_naming_the_map_and_a_user_map_fills_it(tmp_path,
                                                                                                empty_lake):
    root = openve_release(tmp_path)
    (root / "csv_files/camera_multi_shot.csv").rename(root / "csv_files/zoom_edit.csv")
    summary = ingest(OpenVeSource(root / "csv_files/zoom_edit.csv", root / "videos"), empty_lake, QUIET)
    assert summary.rejected == Counter(unknown_edit_type=1)
    (reject,) = empty_lake.read("rejects").to_pylist()
    assert "'zoom_edit'" in reject["detail"] and "openve" in reject["detail"]
    config = IngestConfig(progress=False, label_map=parse_label_map("zoom_edit=other"))
    summary = ingest(OpenVeSource(root / "csv_files/zoom_edit.csv", root / "videos"), empty_lake, config)
    assert summary.accepted == 1 and empty_lake.read("rejects").num_rows == 0
    (row,) = pairs_of(empty_lake).values()
    assert row["gt_edit_type"] == "other" and json.loads(row["meta"])["given_label"] == "zoom_edit"


def reco_release(tmp_path: Path) -> Path:
    root = tmp_path / "ReCo-Data"
    for i, task in enumerate(["add", "remove", "replace", "style"]):
        target = f"v{i}-a_Van_Gogh_style.mp4" if task == "style" else f"v{i}.mp4"
        clip(root / f"{task}/src_videos/v{i}.mp4", i)
        clip(root / f"{task}/tar_videos/{target}", 30 + i)
        pairs = [{"src_video": f"{task}/src_videos/v{i}.mp4", "tar_video": f"{task}/tar_videos/{target}",
                  "instruction_final_refine": f" Do the {task} edit {i}. ", "instruction": f"raw {task}",
                  "caption": "x" * 900}]
        if task == "add":
            pairs.append({"src_video": "add/src_videos/v0.mp4", "tar_video": "add/tar_videos/v9.mp4",
                          "instruction_final_refine": None})
            pairs.append({"src_video": "../outside.mp4", "tar_video": "add/tar_videos/v0.mp4",
                          "instruction_final_refine": "Add a cat"})
        (root / f"{task}/{task}_data_configs.json").write_text(json.dumps(pairs))
    return root


def test_reco_in_its_released_layout(tmp_path, empty_lake):
    root = reco_release(tmp_path)
    summary = ingest(ReCoSource(root), empty_lake, QUIET)
    assert summary.accepted == 4 and summary.rejected == Counter(empty_instruction=1, path_escape=1)
    rows = pairs_of(empty_lake)
    assert {r["pair_id"]: r["gt_edit_type"] for r in rows.values()} == {
        "reco-add-v0": "local_add", "reco-remove-v1": "local_remove", "reco-replace-v2": "local_change",
        "reco-style-v3-a_Van_Gogh_style": "global_style"}
    style = rows["reco-style-v3-a_Van_Gogh_style"]
    assert style["instruction"] == "Do the style edit 3."  # instruction_final_refine, as ReCo trains on it
    meta = json.loads(style["meta"])
    assert meta["reco"] == {"task": "style", "instruction": "raw style"}  # the long caption is not kept
    assert stored(empty_lake, style["pair_id"], "target_video") == (
        root / "style/tar_videos/v3-a_Van_Gogh_style.mp4").read_bytes()


def test_video_dataset_commands(tmp_path):
    ditto, openve, reco = ditto_release(tmp_path), openve_release(tmp_path), reco_release(tmp_path)
    lake_dir = str(tmp_path / "lake")
    runner = CliRunner()
    outputs = []
    for fmt, path in [("ditto-1m", ditto), ("openve-3m", openve), ("reco", reco)]:
        result = runner.invoke(cli, ["ingest", "--format", fmt, str(path), "--lake", lake_dir, "--quiet"])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "ingest ditto-1m: read 5, accepted 3" in outputs[0]
    assert "ingest openve-3m: read 4, accepted 3" in outputs[1]
    assert "ingest reco: read 6, accepted 4" in outputs[2]
    result = runner.invoke(cli, ["ingest", "--format", "reco", str(tmp_path / "nowhere"), "--lake", lake_dir])
    assert result.exit_code != 0 and "no such ReCo-Data folder" in result.output
