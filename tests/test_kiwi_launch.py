"""`kiwi train --config kiwi-paper`: the published recipe over three saved slices, checked against the stages that
read them before anything is built or trained (`--dry-run` on a laptop, seconds)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kiwi.cli import cli
from lake.slices import build_slice, save_slice
from tests.conftest import quadruplet_rows, synthetic_quadruplet_lake


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = synthetic_quadruplet_lake(tmp_path_factory.mktemp("launch") / "lake", 30, seed=8, size=64)
    images = quadruplet_rows(6, seed=3)
    for row in images:  # image pairs: one-frame clips, as Kiwi-Edit's stage 1 reads them
        row.update(num_frames=1, id=f"img-{row['id']}", pair_id=f"img-{row['pair_id']}")
    db.upsert("quadruplets", images)
    save_slice(db, build_slice(db, where="num_frames = 1", seed=0, name="images"))
    save_slice(db, build_slice(db, where="num_frames > 1 AND task = 'instruct'", seed=0, name="videos"))
    save_slice(db, build_slice(db, where="task LIKE 'ref%'", seed=0, name="references"))
    save_slice(db, build_slice(db, where="num_frames > 1", seed=0, name="all-videos"))
    return db


def run(db, *args):
    return CliRunner().invoke(cli, ["train", "--config", "kiwi-paper", "--lake", db.uri, *args])


def test_a_dry_run_checks_every_slice_and_prints_the_plan(db):
    result = run(db, "--image-slice", "images", "--video-slice", "videos", "--reference-slice", "references",
                 "--dry-run", "--workers", "8")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    checked = [line for line in lines if line.startswith("stage") and "  " in line and "slice" not in line
               and "opt." not in line and "GiB" not in line]
    assert len([line for line in checked if line.split()[1] in ("image", "instruct", "ref_subject")]) == 6
    assert "9 frames" not in result.output or "shorter than 81 frames: cut to 4k+1 frames (e.g. 9 -> 9)" in \
        result.output  # the synthetic clips are 9 frames: the stage cuts, and says so
    assert "samples: 65,000 per GPU, 520,000 over 8 GPU(s)" in result.output
    assert result.output.rstrip().endswith("dry run: nothing trained")


def test_a_misconfigured_run_fails_in_seconds_naming_each_problem(db):
    wrong = run(db, "--image-slice", "all-videos", "--video-slice", "images", "--reference-slice", "videos",
                "--dry-run")
    assert wrong.exit_code == 1
    assert "every row is a video; an image task reads image pairs" in wrong.output
    assert "row(s) are images; the instruct task reads clips of 81 frames" in wrong.output
    assert "row(s) have no reference image" in wrong.output
    assert "problem(s) above: the run would fail on them" in wrong.output
    gone = run(db, "--image-slice", "nope", "--video-slice", "videos", "--reference-slice", "references",
               "--dry-run")
    assert gone.exit_code == 2 and "no slice 'nope'" in gone.output and "STRATEGY WHERE SQL" in gone.output
    missing = run(db, "--video-slice", "videos", "--dry-run")
    assert missing.exit_code == 2 and "--image-slice, --reference-slice" in missing.output
    no_model = run(db, "--image-slice", "images", "--video-slice", "videos", "--reference-slice", "references")
    assert no_model.exit_code == 2 and "give --model DIR" in no_model.output
    steps = run(db, "--image-slice", "images", "--video-slice", "videos", "--reference-slice", "references",
                "--dry-run", "--steps", "2,2")
    assert steps.exit_code == 2 and "has 3 stages; got 2 step counts" in steps.output


def test_slices_built_on_the_spot_from_a_strategy_and_a_where(db):
    result = run(db, "--image-slice", "WHERE num_frames = 1 AND split = 'train'",
                 "--video-slice", "temperature:0.3 WHERE num_frames > 1 AND task = 'instruct'",
                 "--reference-slice", "natural where task LIKE 'ref%' AND split = 'train'", "--dry-run")
    assert result.exit_code == 0, result.output
    saved = {r["name"]: r for r in db.read("slices").to_pylist()}
    assert saved["kiwi-paper-video"]["strategy"] == "temperature" and "task = 'instruct'" in \
        saved["kiwi-paper-video"]["where"]
    assert saved["kiwi-paper-image"]["strategy"] == "natural" and saved["kiwi-paper-reference"]["where"] == \
        "task LIKE 'ref%' AND split = 'train'"
    again = run(db, "--image-slice", "WHERE num_frames = 1 AND split = 'train'", "--video-slice", "videos",
                "--reference-slice", "references", "--dry-run")
    assert again.exit_code == 0  # the same spec again: the same slice, saved once
    assert sum(r["name"] == "kiwi-paper-image" for r in db.read("slices").to_pylist()) == 1
    adaptive = run(db, "--image-slice", "images", "--video-slice", "adaptive WHERE num_frames > 1",
                   "--reference-slice", "references", "--dry-run")
    assert adaptive.exit_code == 2 and "an adaptive mix moves during training" in adaptive.output
    empty = run(db, "--image-slice", "images", "--video-slice", "WHERE num_frames > 999", "--reference-slice",
                "references", "--dry-run")
    assert empty.exit_code == 2 and "matches WHERE num_frames > 999" in empty.output
