"""The rebalancing experiment: mixed-task training (each row on its own task), effect sizes over seeds with
intervals and a power statement, arms parsed from the command line, and `kiwi experiment` end to end on a small
lake (resumable: a rerun trains and scores nothing twice)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from kiwi.data import DataConfig, prepare_rows, row_task_of
from kiwi.eval.effects import LOCAL_GROUP, arm_lines, effects, seed_means, verdict, with_fixed_arm
from kiwi.eval.experiment import LOCAL_HEAVY, parse_arm
from kiwi.model.flow import keyed_generator
from kiwi.model.kiwi_edit import MIXED, EditBatch, tiny_edit
from lake.balance import Strategy
from lake.slices import build_slice, save_slice
from tests.conftest import synthetic_quadruplet_lake


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    from kiwi.eval.bench import freeze_lake_bench
    from refvie.ingest import IngestConfig, ingest
    from refvie.pipeline import build_local
    from refvie.sources import SyntheticSource
    from refvie.synthetic import SyntheticConfig

    db = synthetic_quadruplet_lake(tmp_path_factory.mktemp("experiment") / "lake", 60, seed=31, frames=5, size=32)
    uniform = {e: 1.0 for e in ("local_add", "local_remove", "local_change", "background_change", "global_style")}
    ingest(SyntheticSource(15, SyntheticConfig(frames=5, height=32, width=32, seed=3100, mix=uniform,
                                               dataset="held-out")), db, IngestConfig(progress=False))
    build_local(db)
    freeze_lake_bench(db, "xb", per_category=2, where="dataset = 'held-out'")
    return db


def test_each_row_of_a_mixed_stage_keeps_its_own_task():
    assert row_task_of("ref_background", True) == "ref_background"
    assert row_task_of("ref_subject", True) == "ref_subject"
    assert row_task_of("ref_subject", False) == "instruct"  # no reference image: instruction editing
    assert row_task_of("instruct", True) == "instruct"  # e.g. a style exemplar is no reference task
    assert row_task_of(None, True) == row_task_of("not-a-task", True) == "instruct"


def test_a_mixed_batch_loses_exactly_what_its_single_task_parts_lose(db):
    slice_ = build_slice(db, where="split = 'train'", strategy=Strategy("natural"), name="mixed-check")
    save_slice(db, slice_)
    rows = db.read("quadruplets", columns=["id", "edit_type", "task"], where="split = 'train'").to_pylist()
    picked = [next(r["id"] for r in rows if r["task"] == t) for t in ("ref_background", "instruct", "ref_subject")]
    picked.append(next(r["id"] for r in rows if r["task"] == "instruct" and r["id"] not in picked))
    arrays = prepare_rows(db, slice_, picked, DataConfig(frames=5, size=32, train=False), MIXED, seed=0, epoch=0)
    by_id = {r["id"]: r for r in rows}
    assert arrays["tasks"] == [by_id[i]["task"] for i in picked]
    assert arrays["reference"].shape == (4, 32, 32, 3)
    model = tiny_edit(seed=0).eval()
    batch = EditBatch(arrays["instructions"], arrays["source"], arrays["target"], arrays["reference"], MIXED,
                      arrays["tasks"])
    sigma = torch.tensor([0.2, 0.5, 0.7, 0.9])
    with torch.no_grad():
        mixed = model.training_loss(batch, [keyed_generator("t", i) for i in picked], per_sample=True, sigma=sigma)
        for k, row_id in enumerate(picked):
            task = arrays["tasks"][k]
            alone = EditBatch([arrays["instructions"][k]], arrays["source"][k : k + 1], arrays["target"][k : k + 1],
                              arrays["reference"][k : k + 1] if task.startswith("ref") else None, task)
            single = model.training_loss(alone, [keyed_generator("t", row_id)], per_sample=True, sigma=sigma[k : k + 1])
            assert float(mixed[k]) == pytest.approx(float(single[0]), rel=1e-5)
        # the reference matters to the reference rows: without it their loss changes
        blank = EditBatch(batch.instructions, batch.source, batch.target, None, "instruct")
        plain = model.training_loss(blank, [keyed_generator("t", i) for i in picked], per_sample=True, sigma=sigma)
    assert float(plain[0]) != pytest.approx(float(mixed[0]), rel=1e-4)
    assert float(plain[1]) == pytest.approx(float(mixed[1]), rel=1e-5)


def test_arms_parse_from_their_command_line_names():
    assert parse_arm("natural").strategy == Strategy("natural")
    assert parse_arm("temperature:0.3").strategy == Strategy("temperature", alpha=0.3)
    assert parse_arm("local-heavy").strategy.proportions == LOCAL_HEAVY
    assert parse_arm("target:local_add=1,background_change=3").strategy.proportions == {
        "local_add": 1.0, "background_change": 3.0}
    adaptive = parse_arm("adaptive:128")
    assert adaptive.adaptive.update_every == 128 and adaptive.strategy == Strategy("natural")
    for bad, message in (("temperature", "temperature"), ("warm", "not understood"), ("adaptive:x", "adaptive:x"),
                         ("natural:1", "not understood")):
        with pytest.raises(ValueError, match=message):
            parse_arm(bad)


def _means(differences: dict[str, list[float]], local: list[float] | None = None) -> pd.DataFrame:
    """eval_results-like rows for arms 'natural' (10 dB everywhere) and 'uniform' (10 + d on background)."""
    rows = []
    for seed, d in enumerate(differences["background_change"]):
        for arm, delta in (("natural", 0.0), ("uniform", d)):
            rows.append(dict(arm=arm, seed=seed, category="background_change", metric="psnr", value=10 + delta))
            shift = (local or [0.0] * 99)[seed] if arm == "uniform" else 0.0
            for c in ("local_add", "local_change"):
                for item in range(2):  # two items per category: the seed's mean is what counts
                    rows.append(dict(arm=arm, seed=seed, category=c, metric="psnr", value=20 + shift + item))
    return seed_means(pd.DataFrame(rows), "psnr")


def test_effects_are_paired_over_seeds_with_a_student_interval_and_a_detectable_size():
    means = _means({"background_change": [1.0, 2.0, 3.0, 2.0, 2.0]})
    assert means.loc[("uniform", 0), LOCAL_GROUP] == 20.5  # mean of the local categories' means
    table = effects(means, "natural")
    row = table.loc[("uniform", "background_change")]
    sd = np.std([1, 2, 3, 2, 2], ddof=1)
    assert row["difference"] == pytest.approx(2.0) and row["seeds"] == 5
    assert row["high"] - row["difference"] == pytest.approx(2.776445 * sd / np.sqrt(5), rel=1e-5)  # t(0.975, 4)
    assert row["detectable"] == pytest.approx((2.776445 + 0.940965) * sd / np.sqrt(5), rel=1e-5)  # + t(0.8, 4)
    assert row["clear"] and not table.loc[("uniform", LOCAL_GROUP), "clear"]
    with pytest.raises(ValueError, match="baseline arm 'adaptive'"):
        effects(means, "adaptive")


def test_an_experiment_of_the_baseline_arm_alone_has_no_effects_and_says_so():
    """One arm (e.g. `--arms natural`, to measure it against copying the source) must not fail at the comparison."""
    means = _means({"background_change": [1.0, 2.0]})
    alone = means[means.index.get_level_values("arm") == "natural"]
    table = effects(alone, "natural")
    assert table.empty and list(table.index.names) == ["arm", "category"]
    assert "Only `natural` was trained" in verdict(table, "natural")


def test_the_verdict_says_what_the_intervals_allow_and_no_more():
    gain = verdict(effects(_means({"background_change": [1.0, 2.0, 3.0, 2.0, 2.0]},
                                  local=[-1.0, -1.2, -0.9, -1.1, -1.0]), "natural"), "natural")
    assert "`natural` leaves background_change behind: `uniform` clearly improve" in gain
    assert "`uniform` improves background_change and costs the local edits" in gain
    assert "With 5 seeds an effect on background_change of about" in gain
    noisy = verdict(effects(_means({"background_change": [2.0, -1.5, 1.0, -2.0, 0.5]}), "natural"), "natural")
    assert "No rebalanced arm clearly improves background_change" in noisy
    assert "does not clearly move background_change with no clear cost" in noisy
    one = verdict(effects(_means({"background_change": [5.0]}), "natural"), "natural")
    assert "One seed only" in one and "clearly" not in one


def test_arms_against_a_fixed_baseline_get_intervals_over_their_own_seeds():
    """Copying the source scores the same under every seed: each trained arm's gain over it is measured with the
    spread of that arm's seeds alone."""
    means = _means({"background_change": [1.0, 2.0, 3.0, 2.0, 2.0]})
    copy = pd.Series({"background_change": 8.0, "local_add": 25.0, "local_change": 26.0, LOCAL_GROUP: 25.5})
    table = effects(with_fixed_arm(means, "copy-source", copy), "copy-source", order=["copy-source", "uniform"])
    row = table.loc[("uniform", "background_change")]
    sd = np.std([11, 12, 13, 12, 12], ddof=1)
    assert row["difference"] == pytest.approx(4.0) and row["clear"] and row["seeds"] == 5
    assert row["high"] - row["difference"] == pytest.approx(2.776445 * sd / np.sqrt(5), rel=1e-5)
    assert table.loc[("uniform", LOCAL_GROUP), "difference"] == pytest.approx(-5.0)
    assert list(table.index.get_level_values("arm").unique()) == ["uniform"]
    assert arm_lines(table, "copying the source")[0].startswith("uniform vs copying the source: background_change "
                                                                "+4.00 dB [")


def test_kiwi_experiment_trains_every_arm_and_seed_reports_and_resumes(db, tmp_path):
    from kiwi.cli import cli

    args = ["experiment", "--bench", "xb", "--arms", "local-heavy,natural,adaptive:32", "--seeds", "2", "--steps",
            "4", "--batch-size", "2", "--where", "split = 'train' AND dataset <> 'held-out'", "--out",
            str(tmp_path / "exp"), "--lake", db.uri]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "seed 1, arm adaptive:32: training 4 steps of batch 2" in first.output
    assert "local-heavy vs natural: background_change" in first.output and "copy-source" in first.output
    assert "natural vs copying the source: background_change" in first.output
    report = (tmp_path / "exp" / "report.md").read_text()
    assert report.startswith("# Rebalancing experiment") and "## Verdict" in report and "edit_psnr" in report
    assert "## Against copying the source (psnr)" in report
    assert {p.name for p in (tmp_path / "exp").glob("*.png")} >= {"psnr_by_arm.png", "training_loss.png"}
    from kiwi.eval.bench import load_bench

    outputs = db.count("eval_outputs", "bench = 'xb'")
    assert outputs == (3 * 2 + 1) * len(load_bench(db, "xb"))  # three arms x two seeds + the copy baseline
    runs = db.read("runs", columns=["name", "status"]).to_pylist()
    assert sum(r["status"] == "finished" and r["name"].startswith(("local-heavy", "natural", "adaptive"))
               for r in runs) == 6
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert db.count("eval_outputs", "bench = 'xb'") == outputs  # nothing ran twice
    bad = CliRunner().invoke(cli, [*args[:4], "natural,warm", *args[5:]])
    assert bad.exit_code == 2 and "arm 'warm'" in bad.output


def test_another_model_trained_under_the_same_settings_is_scored_anew_and_jobs_train_in_processes(
        db, tmp_path, monkeypatch):
    """Results are keyed by the trained weights, not only by the run's settings: the same arm, seed and budget
    run again with another architecture (here: no source refiner) into a fresh folder is evaluated again, not
    handed the first model's scores. Runs trained by worker processes (--jobs 2) are found done by the parent."""
    from kiwi.cli import cli
    from kiwi.model import kiwi_edit

    args = ["experiment", "--bench", "xb", "--arms", "natural", "--seeds", "2", "--steps", "2", "--batch-size", "2",
            "--where", "split = 'train' AND dataset <> 'held-out'", "--sampler-steps", "2", "--lake", db.uri]
    first = CliRunner().invoke(cli, [*args, "--jobs", "2", "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert "training 2 runs, 2 at a time" in first.output and "(2/2)" in first.output
    outputs = db.count("eval_outputs", "bench = 'xb'")
    from safetensors.torch import load_file

    trained = [load_file(p) for p in (tmp_path / "a" / "runs").glob("*/checkpoint/model.safetensors")]
    assert len(trained) == 2 and all(t["refiner.net.2.weight"].abs().sum() > 0 for t in trained)  # it trains
    monkeypatch.setattr(kiwi_edit, "tiny_edit", lambda seed=0, **kw: tiny_edit(seed=seed, source_refiner=0))
    second = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    from kiwi.eval.bench import load_bench

    assert db.count("eval_outputs", "bench = 'xb'") == outputs + 2 * len(load_bench(db, "xb"))
