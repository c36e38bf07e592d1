"""Adaptive rebalancing inside a training run: the held-out probe moves the mix at block boundaries, every update
lands in the lake's `mix_weights`, and a run stopped and resumed replays the uninterrupted one exactly."""

from __future__ import annotations

import pytest

from kiwi.curriculum import RunConfig, StageConfig
from kiwi.model.kiwi_edit import tiny_edit
from kiwi.train import Trainer
from lake.adaptive import AdaptiveConfig
from lake.balance import Strategy
from lake.slices import build_slice, save_slice
from tests.conftest import synthetic_quadruplet_lake


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = synthetic_quadruplet_lake(tmp_path_factory.mktemp("adaptive") / "lake", 60, seed=21, frames=5, size=32)
    save_slice(db, build_slice(db, where="split = 'train'", strategy=Strategy("natural"), name="train"))
    return db


def run_config() -> RunConfig:
    stage = StageConfig("instruct", "train", "instruct", ("queries", "query_connector", "source_embedder", "dit"),
                        steps=12, lr=1e-3, batch_size=2, frames=5, size=32, probe_per_category=2,
                        adaptive=AdaptiveConfig(update_every=8, step_size=5.0, max_repeats=None))
    return RunConfig("adaptive", (stage,), seed=3, checkpoint_every=3)


@pytest.fixture(scope="module")
def uninterrupted(db, tmp_path_factory):
    return Trainer(tiny_edit(seed=0), db, run_config(), tmp_path_factory.mktemp("whole")).train()


def test_the_mix_moves_at_block_boundaries_and_is_recorded(db, uninterrupted):
    updates = [h for h in uninterrupted.history if "mix" in h]
    assert [h["global_step"] for h in updates] == [4, 8, 12]  # every 8 samples at batch 2
    assert [h["mix"]["position"] for h in updates] == [16, 24, 32]  # in force one block after the probe
    first = updates[0]["mix"]
    # categories without validation rows keep their relative weight; the probed ones move
    assert first["heldout_loss"] and set(first["heldout_loss"]) <= set(first["weights"])
    assert abs(sum(first["weights"].values()) - 1) < 1e-9
    rows = db.sql("SELECT stage, position, category, weight, heldout_loss FROM mix_weights "
                  "ORDER BY position, category").to_pylist()
    assert len(rows) == 3 * len(first["weights"]) and {r["position"] for r in rows} == {16, 24, 32}
    joined = db.sql("""SELECT m.category, m.weight, m.heldout_loss FROM mix_weights m
                       JOIN runs r ON m.run_id = r.run_id WHERE m.position = 24""").to_pylist()
    assert len(joined) == len(first["weights"])  # SQL joins the weights with the run's lineage


def test_a_stopped_adaptive_run_resumes_exactly(db, tmp_path, uninterrupted):
    first = Trainer(tiny_edit(seed=0), db, run_config(), tmp_path / "cut").train(stop_after=6)
    assert not first.finished and first.steps == 6
    rest = Trainer(tiny_edit(seed=0), db, run_config(), tmp_path / "cut").train(resume=True)
    combined = first.history + rest.history
    assert [h["ids"] for h in combined] == [h["ids"] for h in uninterrupted.history]
    assert [h["loss"] for h in combined] == pytest.approx([h["loss"] for h in uninterrupted.history], abs=1e-6)
    mixes = [(h["global_step"], h["mix"]) for h in combined if "mix" in h]
    expected = [(h["global_step"], h["mix"]) for h in uninterrupted.history if "mix" in h]
    assert [step for step, _ in mixes] == [step for step, _ in expected]
    for (_, got), (_, want) in zip(mixes, expected, strict=True):
        assert got["position"] == want["position"] and got["weights"] == pytest.approx(want["weights"])


def test_updates_of_every_epoch_stay_in_the_lake(db, tmp_path):
    """Sampler positions restart each epoch: the record of an update must not overwrite the previous epoch's."""
    from dataclasses import replace

    stage = replace(run_config().stages[0], steps=40)
    summary = Trainer(tiny_edit(seed=0), db, RunConfig("epochs", (stage,), seed=3, checkpoint_every=40),
                      tmp_path / "epochs").train()
    updates = [h for h in summary.history if "mix" in h]
    positions = [h["mix"]["position"] for h in updates]
    assert len(positions) > len(set(positions))  # more than one epoch: positions repeat
    recorded = db.sql(f"SELECT DISTINCT global_step FROM mix_weights WHERE run_id = '{summary.run_id}'")
    assert sorted(recorded["global_step"].to_pylist()) == [h["global_step"] for h in updates]

