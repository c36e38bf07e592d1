"""Adapters for the recipe's image datasets in their released layouts, fabricated here at a few rows: NHR-Edit
(train/metadata.jsonl + train/images/NN/) and GPT-Image-Edit-1.5M (training_json/*.json + gpt-edit/<family>/)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from lake import media
from refvie.cli import cli
from refvie.ingest import IngestConfig, ingest
from refvie.sources import GptImageEditSource, NhrEditSource
from refvie.sources.gpt_image_edit import iter_json_array
from tests.conftest import moving_square

QUIET = IngestConfig(progress=False, batch_size=4)


def image(path: Path, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(media.encode_image(moving_square(seed, frames=1, size=48)[0], "jpeg"))
    return path.name


def nhr_release(tmp_path: Path) -> Path:
    root = tmp_path / "nhr-edit"
    rows = []
    for i in range(3):
        image(root / f"train/images/0{i}/image_{i}_original.jpg", i)
        image(root / f"train/images/0{i}/image_{i}_edited_0.jpg", 10 + i)
        rows.append(dict(sample_id=f"s{i}", source_file_name=f"images/0{i}/image_{i}_original.jpg",
                         edited_file_name=f"images/0{i}/image_{i}_edited_0.jpg", edit_instruction=f"Add hat {i}",
                         augmented_instructions=[f"Put a hat on it {i}"], category="add", kind="object",
                         style="photo", img_width=48, img_height=48))
    rows.append(dict(sample_id="s9", source_file_name="images/09/gone.jpg", edited_file_name="images/09/gone_e.jpg",
                     edit_instruction="Remove the cup"))
    (root / "train/metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    return root


def test_nhr_edit_in_its_released_layout(tmp_path, empty_lake):
    root = nhr_release(tmp_path)
    summary = ingest(NhrEditSource(root), empty_lake, QUIET)  # the dataset folder finds train/metadata.jsonl
    assert summary.accepted == 3 and summary.rejected == Counter(missing_file=1, malformed_row=1)
    rows = {r["pair_id"]: r for r in empty_lake.read("pairs").to_pylist()}
    assert set(rows) == {"nhr-edit-s0", "nhr-edit-s1", "nhr-edit-s2"}
    row = rows["nhr-edit-s1"]
    assert (row["num_frames"], row["dataset"], row["instruction"]) == (1, "nhr-edit", "Add hat 1")
    meta = json.loads(row["meta"])
    assert meta["nhr"]["category"] == "add" and meta["image_pair"] is True
    assert row["gt_edit_type"] is None  # its categories become labels only through a label map
    (dataset,) = empty_lake.read("datasets").to_pylist()
    assert (dataset["licence"], dataset["format"]) == ("apache-2.0", "nhr-edit")


def gpt_release(tmp_path: Path) -> tuple[Path, Path]:
    images, annotations = tmp_path / "gpt-edit", tmp_path / "training_json"
    annotations.mkdir()
    hq = []
    for i in range(2):
        image(images / f"hqedit/edit/input/{i:08d}.png", i)
        image(images / f"hqedit/edit/output/{i:08d}.png", 20 + i)
        hq.append({"id": f"hq{i}", "image": [f"input/{i:08d}.png", f"output/{i:08d}.png"],
                   "conversations": [{"from": "human", "value": f"<image>\nTurn the sky pink {i}"},
                                     {"from": "gpt", "value": "<image>"}]})
    hq.append({"id": "bad", "image": ["input/only.png"], "conversations": []})
    (annotations / "hqedit_gpt_edit.json").write_text(json.dumps(hq, indent=1))
    image(images / "ultraedit/a/src.png", 5)
    image(images / "ultraedit/a/tgt.png", 6)
    ultra = [{"image": ["a/src.png", "a/tgt.png"],
              "conversations": [{"from": "human", "value": "Add a moon <image>"}, {"from": "gpt", "value": ""}]}]
    (annotations / "ultraedit_gpt.json").write_text(json.dumps(ultra))
    return annotations, images


def test_gpt_image_edit_in_its_released_layout(tmp_path, empty_lake):
    annotations, images = gpt_release(tmp_path)
    summary = ingest(GptImageEditSource(annotations, images), empty_lake, QUIET)
    assert summary.accepted == 3 and summary.rejected == Counter(malformed_row=1)
    rows = {r["pair_id"]: r for r in empty_lake.read("pairs", columns=["pair_id", "instruction", "num_frames",
                                                                       "source_uri"]).to_pylist()}
    assert rows["gpt-image-edit-hqedit_gpt_edit-1"]["instruction"] == "Turn the sky pink 1"
    assert rows["gpt-image-edit-hqedit_gpt_edit-1"]["source_uri"] == "hqedit/edit/input/00000001.png"
    assert rows["gpt-image-edit-ultraedit_gpt-0"]["instruction"] == "Add a moon"
    assert {r["num_frames"] for r in rows.values()} == {1}


def test_the_json_array_is_read_as_a_stream(tmp_path):
    path = tmp_path / "big.json"
    items = [{"i": i, "text": "x" * (i % 7) + "]},[{"} for i in range(500)]
    path.write_text(json.dumps(items))
    assert list(iter_json_array(path, chunk=64)) == items  # records cut across reads, brackets inside strings
    path.write_text(json.dumps(items)[:-40])
    with pytest.raises(ValueError, match="cut short"):
        list(iter_json_array(path, chunk=64))


def test_source_dataset_commands(tmp_path):
    root = nhr_release(tmp_path)
    lake_uri = str(tmp_path / "lake")
    result = CliRunner().invoke(cli, ["ingest", "--format", "nhr-edit", str(root / "train/metadata.jsonl"),
                                      "--lake", lake_uri, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "read 5, accepted 3, already in the lake 0, rejected 2" in result.output
    annotations, images = gpt_release(tmp_path)
    missing = CliRunner().invoke(cli, ["ingest", "--format", "gpt-image-edit", str(annotations), "--lake", lake_uri])
    assert missing.exit_code != 0 and "gpt-edit/" in missing.output
    result = CliRunner().invoke(cli, ["ingest", "--format", "gpt-image-edit", str(annotations), "--root",
                                      str(images), "--lake", lake_uri, "--quiet"])
    assert result.exit_code == 0 and "accepted 3" in result.output, result.output


def test_numbers_cut_by_a_read_are_not_decoded_short(tmp_path):
    path = tmp_path / "numbers.json"
    values = [123456789, 2.5e10, True, None, "a,b]"]
    path.write_text(json.dumps(values))
    for chunk in (1, 2, 3, 5, 1000):
        assert list(iter_json_array(path, chunk=chunk)) == values
