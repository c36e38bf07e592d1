"""`kiwi init` and `kiwi edit` as a user runs them, and their errors."""

import pytest
from click.testing import CliRunner

from kiwi.cli import cli
from lake import media
from tests.conftest import moving_square


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kiwi-cli")
    result = CliRunner().invoke(cli, ["init", "--config", "tiny", "--out", str(folder / "model"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    (folder / "in.mp4").write_bytes(media.encode_video(moving_square(2, frames=10, size=70), fps=8))
    (folder / "ref.png").write_bytes(media.encode_image(moving_square(3, frames=1, size=40)[0]))
    (folder / "notes.mp4").write_text("these are meeting notes, not a video " * 20)
    (folder / "still.png").write_bytes(media.encode_image(moving_square(4, frames=1, size=64)[0]))
    return folder


def test_edit_writes_a_playable_mp4_of_the_right_size_and_length(files):
    out = files / "out.mp4"
    result = CliRunner().invoke(cli, ["edit", "--model", str(files / "model"), "--video", str(files / "in.mp4"),
                                      "--instruction", "Add a red ball", "--reference", str(files / "ref.png"),
                                      "--out", str(out), "--steps", "2"])
    assert result.exit_code == 0, result.output
    info = media.probe_video(out)
    assert (info.frames, info.width, info.height) == (9, 64, 64)  # 10 frames -> 4k+1 = 9; 70 px -> 64
    assert media.decode_video(out).shape == (9, 64, 64, 3)


def test_edit_takes_an_image_through_the_image_path_and_caps_frames(files):
    out = files / "still-edited.png"
    result = CliRunner().invoke(cli, ["edit", "--model", str(files / "model"), "--video", str(files / "still.png"),
                                      "--instruction", "Turn the box blue", "--out", str(out), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert media.decode_image(out).shape == (64, 64, 3) and "an image of 64x64" in result.output
    short = files / "short.mp4"
    result = CliRunner().invoke(cli, ["edit", "--model", str(files / "model"), "--video", str(files / "in.mp4"),
                                      "--instruction", "Add a red ball", "--out", str(short), "--steps", "2",
                                      "--frames", "5", "--max-pixels", str(40 * 40)])
    assert result.exit_code == 0, result.output
    assert media.decode_video(short).shape == (5, 32, 32, 3)  # 40x40 pixels at most: 40 -> floored to 32


def test_edit_runs_in_bfloat16_when_asked_and_refuses_a_gpu_this_machine_lacks(files):
    """The full model is meant to run in bf16 on a GPU (3B + 5B parameters): every component boundary casts to
    the weights' dtype, shown here on the CPU; a device that is not there is a one-line error."""
    import torch

    out = files / "bf16.mp4"
    result = CliRunner().invoke(cli, ["edit", "--model", str(files / "model"), "--video", str(files / "in.mp4"),
                                      "--instruction", "Add a red ball", "--reference", str(files / "ref.png"),
                                      "--out", str(out), "--steps", "2", "--dtype", "bfloat16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert media.decode_video(out).shape == (9, 64, 64, 3)
    if not torch.cuda.is_available():
        refused = CliRunner().invoke(cli, ["edit", "--model", str(files / "model"), "--video", str(files / "in.mp4"),
                                           "--instruction", "x", "--out", str(out), "--device", "cuda"])
        assert refused.exit_code != 0 and "no CUDA device" in refused.output and "Traceback" not in refused.output


@pytest.mark.parametrize(("args", "message"), [
    (["--video", "missing.mp4"], "no such file"),
    (["--video", "{files}/still.png"], "give --out a .png"),
    (["--video", "{files}/still.png", "--reference", "{files}/ref.png"], "takes no --reference"),
    (["--video", "{files}/in.mp4", "--task", "ref_subject"], "needs --reference"),
    (["--video", "{files}/notes.mp4"], "not_a_video"),
])
def test_edit_errors_are_one_line(files, args, message):
    args = [a.format(files=files) for a in args]
    result = CliRunner().invoke(cli, ["edit", "--model", str(files / "model"), "--instruction", "x",
                                      "--out", str(files / "x.mp4"), *args])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_kiwi_train_command_runs_the_tiny_curriculum(tmp_path):
    import lake
    from refvie.ingest import IngestConfig, ingest
    from refvie.pipeline import build_local
    from refvie.sources import SyntheticSource
    from refvie.synthetic import SyntheticConfig

    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(24, SyntheticConfig(frames=9, height=64, width=64, seed=6)), db,
           IngestConfig(progress=False))
    build_local(db)
    result = CliRunner().invoke(cli, ["train", "--lake", str(tmp_path / "lake"), "--out", str(tmp_path / "run"),
                                      "--steps", "1,2,2"])
    assert result.exit_code == 0, result.output
    assert "5 steps" in result.output and (tmp_path / "run" / "model" / "model_index.json").exists()
    assert "\r" not in result.output and "step/s" not in result.output  # no progress bar off a terminal
    assert "stage2-instruct: step 2/2 (run step 3), loss" in result.stderr  # a line per tenth of a stage instead
    trained = (tmp_path / "run" / "model" / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    again = CliRunner().invoke(cli, ["train", "--lake", str(tmp_path / "lake"), "--out", str(tmp_path / "run"),
                                     "--steps", "1,2,2"])
    assert again.exit_code == 0 and "5 steps" in again.output  # resumed at the end: nothing left to do
    assert "nothing left to train" in again.output
    # the rerun saves the trained weights again, not a fresh initialisation over them
    assert (tmp_path / "run" / "model" / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == trained
    assert lake.open(tmp_path / "lake").count("runs", where="status = 'finished'") == 1
    other = CliRunner().invoke(cli, ["train", "--lake", str(tmp_path / "lake"), "--out", str(tmp_path / "run"),
                                     "--steps", "1,2,4"])  # another budget into the same folder: refused
    assert other.exit_code == 1 and "steps: 2 there, 4 now" in other.output and "Traceback" not in other.output

    # scoring it on a bench frozen from its own training rows is refused, naming the overlap; the bench split is not
    uri, model = str(tmp_path / "lake"), str(tmp_path / "run" / "model")
    runner = CliRunner()
    for name, split in (("seen", "train"), ("unseen", "bench")):
        frozen = runner.invoke(cli, ["bench", "freeze", name, "--per-category", "1", "--where", f"split = '{split}'",
                                     "--lake", uri])
        assert frozen.exit_code == 0, frozen.output
    refused = runner.invoke(cli, ["eval", "--model", model, "--bench", "seen", "--steps", "1", "--lake", uri])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "trained on" in refused.output and "items of bench 'seen'" in refused.output
    assert "--allow-overlap" in refused.output
    assert lake.open(uri).count("eval_outputs") == 0  # refused before any inference
    forced = runner.invoke(cli, ["eval", "--model", model, "--bench", "seen", "--steps", "1", "--lake", uri,
                                 "--allow-overlap"])
    assert forced.exit_code == 0 and forced.output.startswith("warning: --model") and "eval run" in forced.output
    clean = runner.invoke(cli, ["eval", "--model", model, "--bench", "unseen", "--steps", "1", "--lake", uri])
    assert clean.exit_code == 0 and "warning" not in clean.output, clean.output


def test_bench_freeze_eval_and_compare_from_the_command_line(files, tmp_path):
    from tests.conftest import synthetic_quadruplet_lake

    uri = str(tmp_path / "lake")
    synthetic_quadruplet_lake(uri, 12, seed=31)
    runner = CliRunner()
    frozen = runner.invoke(cli, ["bench", "freeze", "cli-bench", "--per-category", "1", "--lake", uri,
                                 "--where", "split IN ('train', 'val', 'bench')"])
    assert frozen.exit_code == 0, frozen.output
    assert frozen.output.startswith("bench cli-bench: ")
    listed = runner.invoke(cli, ["bench", "list", "--lake", uri])
    assert "cli-bench" in listed.output
    report = tmp_path / "report"
    ran = runner.invoke(cli, ["eval", "--model", str(files / "model"), "--bench", "cli-bench", "--steps", "1",
                              "--lake", uri, "--report", str(report)])
    assert ran.exit_code == 0, ran.output
    assert "automatic metrics, mean per category" in ran.output and "overall" in ran.output
    printed = ran.output.split("automatic metrics")[1].splitlines()
    assert printed[1].split()[:3] == ["items", "psnr", "ssim"] and "NaN" not in ran.output  # no stray header row
    assert (report / "report.md").read_text().startswith("# Evaluation eval-") and (report / "psnr.png").exists()
    rerun = runner.invoke(cli, ["eval", "--model", str(files / "model"), "--bench", "cli-bench", "--steps", "1",
                                "--lake", uri])
    assert "0 items run now" in rerun.output
    import shutil

    from kiwi.model.io import save_pretrained
    from kiwi.model.kiwi_edit import tiny

    shutil.copytree(files / "model", tmp_path / "model")  # the same folder trained again: new weights, new scores
    before = runner.invoke(cli, ["eval", "--model", str(tmp_path / "model"), "--bench", "cli-bench", "--steps", "1",
                                 "--lake", uri])
    assert before.exit_code == 0 and "0 items run now" not in before.output
    save_pretrained(tiny(seed=7), tmp_path / "model")
    retrained = runner.invoke(cli, ["eval", "--model", str(tmp_path / "model"), "--bench", "cli-bench", "--steps",
                                    "1", "--lake", uri])
    assert retrained.exit_code == 0 and "0 items run now" not in retrained.output
    baseline = runner.invoke(cli, ["eval", "--model", "copy-source", "--bench", "cli-bench", "--lake", uri])
    assert baseline.exit_code == 0, baseline.output
    import lake

    compared = lake.open(uri).query("eval_by_category", bench="cli-bench", metric="psnr").to_pandas()
    assert compared["run_id"].nunique() == 4 and set(compared["model"]) >= {"copy-source"}  # 3 models + copy
    missing = runner.invoke(cli, ["eval", "--model", str(files / "model"), "--bench", "nope", "--lake", uri])
    assert missing.exit_code == 1 and "no bench named 'nope'" in missing.output and "Traceback" not in missing.output


@pytest.mark.slow  # `make test-slow`; CI keeps the two-worker runs of tests/test_kiwi_train.py (same machinery)
def test_train_on_two_ray_train_workers_from_the_command_line(tmp_path, ray_local):
    from tests.conftest import synthetic_quadruplet_lake

    uri = str(tmp_path / "lake")
    synthetic_quadruplet_lake(uri, 16, seed=32)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--lake", uri, "--out", str(out), "--steps", "1,1,1",
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("2 workers: 3 steps; checkpoint in")
    assert (out / "checkpoint" / "state.rank1.json").exists() and (out / "metrics.rank1.jsonl").exists()


@pytest.mark.parametrize("steps, message", [("2,4", "three stages"), ("2 4 4", "is not comma-separated step counts"),
                                            ("1,2,3", "two stages")])
def test_train_refuses_bad_step_counts_in_one_line(tmp_path, steps, message):
    recipe = "tiny-edit" if steps == "1,2,3" else "tiny"
    result = CliRunner().invoke(cli, ["train", "--config", recipe, "--steps", steps, "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "lake").exists()  # refused before the lake was touched


def test_train_without_reference_rows_skips_an_empty_reference_stage_or_says_what_is_missing(tmp_path):
    import lake
    from refvie.ingest import IngestConfig, ingest
    from refvie.pipeline import build_local
    from refvie.sources import SyntheticSource
    from refvie.synthetic import SyntheticConfig

    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(10, SyntheticConfig(frames=5, height=32, width=32, seed=8, mix={"local_remove": 1.0})),
           db, IngestConfig(progress=False))
    build_local(db)
    base = ["train", "--config", "tiny-edit", "--lake", str(tmp_path / "lake")]
    skipped = CliRunner().invoke(cli, [*base, "--steps", "1,0", "--out", str(tmp_path / "a")])
    assert skipped.exit_code == 0 and "1 steps" in skipped.output, skipped.output
    missing = CliRunner().invoke(cli, [*base, "--steps", "1,1", "--out", str(tmp_path / "b")])
    assert missing.exit_code == 1 and "matches WHERE split = 'train' AND task IN ('ref_subject'" in missing.output
    assert "Traceback" not in missing.output
