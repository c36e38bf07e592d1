"""Training: exact resume, stage freezing, lineage, and a curriculum that learns on the synthetic lake."""

import json
import shutil

import pytest
import torch

from kiwi.curriculum import RunConfig, StageConfig
from kiwi.curriculum import tiny as tiny_curriculum
from kiwi.model.kiwi_edit import tiny
from kiwi.train import Trainer
from kiwi.trainable import set_trainable
from lake.balance import Strategy
from lake.slices import build_slice, save_slice
from tests.conftest import synthetic_quadruplet_lake


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = synthetic_quadruplet_lake(tmp_path_factory.mktemp("train") / "lake", 40, seed=12, size=64)
    save_slice(db, build_slice(db, strategy=Strategy("temperature", alpha=0.3), seed=0, name="video"))
    save_slice(db, build_slice(db, where="task = 'ref_subject'", seed=0, name="reference"))
    return db


def run_config(checkpoint_every=2):
    base = tiny_curriculum("video", "reference", steps=(2, 3, 3), seed=5)
    return base.__class__(base.name, base.stages, seed=base.seed, checkpoint_every=checkpoint_every)


@pytest.fixture(scope="module")
def uninterrupted(db, tmp_path_factory):
    return Trainer(tiny(seed=0), db, run_config(), tmp_path_factory.mktemp("whole")).train()


@pytest.mark.parametrize("stop", [3, 4, 5])  # mid-stage, on a periodic checkpoint, at a stage boundary
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(db, tmp_path, uninterrupted, stop):
    whole = uninterrupted
    assert whole.finished and whole.steps == 8
    first = Trainer(tiny(seed=0), db, run_config(), tmp_path / "cut").train(stop_after=stop)
    assert not first.finished and first.steps == stop
    rest = Trainer(tiny(seed=0), db, run_config(), tmp_path / "cut").train(resume=True)
    combined = first.history + rest.history
    assert [h["ids"] for h in combined] == [h["ids"] for h in whole.history]
    assert [h["loss"] for h in combined] == pytest.approx([h["loss"] for h in whole.history], abs=1e-6)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


@pytest.mark.parametrize("where", ["mid-file", "between-renames"])
def test_a_run_killed_while_checkpointing_resumes_from_a_whole_checkpoint(db, tmp_path, uninterrupted, monkeypatch,
                                                                          where):
    import kiwi.checkpoints as train_module

    if where == "mid-file":  # the second checkpoint dies after its weights, before its optimizer and state
        real, calls = train_module.save_file, []

        def dying_save(tensors, path):
            calls.append(path)
            if len(calls) == 4:
                raise Killed
            return real(tensors, path)

        monkeypatch.setattr(train_module, "save_file", dying_save)
    else:  # the second checkpoint dies after moving the old one aside, before putting the new one in place
        real, calls = train_module.replace_folder, []

        def dying_replace(new, folder):
            calls.append(new)
            if len(calls) == 2:
                folder.rename(folder.with_name(folder.name + ".old"))
                raise Killed
            return real(new, folder)

        monkeypatch.setattr(train_module, "replace_folder", dying_replace)
    with pytest.raises(Killed):
        Trainer(tiny(seed=0), db, run_config(), tmp_path / "out").train()
    monkeypatch.undo()
    rest = Trainer(tiny(seed=0), db, run_config(), tmp_path / "out").train()
    assert rest.finished and rest.history[0]["global_step"] == 3  # from the first checkpoint (step 2), whole
    whole = {h["global_step"]: h for h in uninterrupted.history}
    assert [h["ids"] for h in rest.history] == [whole[h["global_step"]]["ids"] for h in rest.history]
    assert [h["loss"] for h in rest.history] == pytest.approx(
        [whole[h["global_step"]]["loss"] for h in rest.history], abs=1e-6)


def test_resuming_another_runs_checkpoint_is_refused_with_what_differs(db, tmp_path):
    from dataclasses import replace

    from kiwi.checkpoints import RunMismatch

    first = Trainer(tiny(seed=0), db, run_config(), tmp_path / "out").train(stop_after=2)
    assert first.steps == 2
    longer = replace(run_config(), stages=(*run_config().stages[:2], replace(run_config().stages[2], steps=9)))
    with pytest.raises(RunMismatch, match=r"stages\[2\]\.steps: 3 there, 9 now.*--no-resume"):
        Trainer(tiny(seed=0), db, longer, tmp_path / "out").train()
    with pytest.raises(RunMismatch, match="seed: 5 there, 6 now"):
        Trainer(tiny(seed=0), db, replace(run_config(), seed=6), tmp_path / "out").train()
    fresh = Trainer(tiny(seed=0), db, longer, tmp_path / "out").train(resume=False, stop_after=1)
    assert fresh.steps == 1  # --no-resume starts over in the same folder


def test_stage_one_leaves_frozen_parameters_bit_identical(db, tmp_path):
    model = tiny(seed=1)
    stage = StageConfig("s1", "video", "image", ("queries", "query_connector"), 2, 1e-2, frames=1)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if not n.startswith(("mllm.queries", "query_connector"))}
    run = run_config().__class__("freeze", (stage,), seed=0, checkpoint_every=10)
    Trainer(model, db, run, tmp_path / "freeze").train()
    changed = [n for n, p in model.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
    assert changed == []
    assert not torch.equal(model.query_connector[2].weight, torch.zeros_like(model.query_connector[2].weight))
    assert set(p for p in set_trainable(model, ("dit",))) == set(model.transformer.transformer.parameters())


def test_lineage_and_metrics_are_recorded(db, tmp_path):
    trainer = Trainer(tiny(seed=2), db, run_config(), tmp_path / "lineage")
    summary = trainer.train()
    row = db.read("runs", where=f"run_id = '{summary.run_id}'").to_pylist()[0]
    assert row["status"] == "finished" and row["seed"] == 5 and row["code_version"]
    versions = json.loads(row["lake_versions"])
    assert {v["table"] for v in versions.values()} == {"quadruplets"} and len(row["slice_ids"]) == 3
    metrics = json.loads(row["metrics"])
    assert metrics["steps"] == 8 and sum(metrics["consumed"].values()) == 8 * 2
    lines = (tmp_path / "lineage" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8 and "per_type" in json.loads(lines[-1])
    assert any((tmp_path / "lineage" / "tensorboard").iterdir())


def test_the_tiny_curriculum_lowers_the_loss_and_consumes_the_slice_mix(db, tmp_path):
    """A fixed seed, 40 steps on the video slice (temperature 0.3): the mean loss of the last 10 steps is clearly
    below that of the first 10, and the edit types consumed follow the slice's shares."""
    from collections import Counter

    from lake.slices import load_slice

    stage = StageConfig("learn", "video", "instruct", ("queries", "query_connector", "source_embedder", "dit"), 40,
                        2e-3, batch_size=4, mode="stratified")
    run = run_config().__class__("learn", (stage,), seed=3, checkpoint_every=100)
    summary = Trainer(tiny(seed=3), db, run, tmp_path / "learn").train()
    losses = [h["loss"] for h in summary.history]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print(f"\ntiny curriculum: mean loss of steps 1-10 {first:.3f} -> steps 31-40 {last:.3f}")
    assert last < 0.8 * first
    shares = load_slice(db, "video").allocation.shares
    consumed = Counter(summary.consumed)
    total = sum(consumed.values())
    for edit_type, share in shares.items():
        assert abs(consumed[edit_type] / total - share) < 0.02, (edit_type, consumed[edit_type] / total, share)


def test_background_run_stops_and_resumes(db, tmp_path):
    from kiwi.runs import BackgroundRun, plot_losses, read_history

    run = run_config()
    background = BackgroundRun(tiny(seed=0), db, run, tmp_path / "bg").start()
    while len(read_history(tmp_path / "bg")) < 2 and background.running:
        background.thread.join(0.05)
    background.stop()
    stopped = background.wait(60)
    assert stopped is not None and not stopped.finished and 2 <= stopped.steps < 8
    resumed = BackgroundRun(tiny(seed=0), db, run, tmp_path / "bg").start().wait(120)
    assert resumed.finished and resumed.steps == 8
    assert [h["global_step"] for h in read_history(tmp_path / "bg")] == list(range(1, 9))
    ax = plot_losses({"bg": tmp_path / "bg"}, per_type=True)
    assert len(ax.lines) >= 2


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "checkpoint" / "model.safetensors")


def _two_worker_ids(out):
    from kiwi.runs import read_history

    rank1 = [json.loads(line) for line in (out / "metrics.rank1.jsonl").read_text().splitlines()]
    return [[x for pair in zip(r0["ids"], r1["ids"], strict=True) for x in pair]
            for r0, r1 in zip(read_history(out), rank1, strict=True)]


@pytest.fixture(scope="module")
def single_worker(db, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    return Trainer(tiny(seed=7), db, RunConfig("one", (_single_stage(),), seed=7), out).train(), out


def _single_stage():
    return StageConfig("s2", "video", "instruct", ("queries", "query_connector", "dit"), 4, 1e-3, batch_size=4)


def _two_worker_run(name):
    half = StageConfig("s2", "video", "instruct", ("queries", "query_connector", "dit"), 4, 1e-3, batch_size=2)
    return run_config().__class__(name, (half,), seed=7, checkpoint_every=2)


@pytest.mark.slow  # `make test-slow`; CI keeps its FSDP twin below
def test_two_ray_train_workers_read_the_single_worker_sequence_and_train_the_same_model(
        db, tmp_path, ray_local, single_worker):
    """DDP over two CPU workers with half the batch each: the same samples, the same losses and (gradients
    averaged across ranks) the same weights as one worker with the whole batch."""
    from kiwi.distributed import train_distributed
    from kiwi.runs import read_history

    single, single_out = single_worker
    result = train_distributed(db.uri, _two_worker_run("two"), tmp_path / "two", num_workers=2)
    assert result.error is None
    assert _two_worker_ids(tmp_path / "two") == [h["ids"] for h in single.history]
    rank1 = [json.loads(line) for line in (tmp_path / "two" / "metrics.rank1.jsonl").read_text().splitlines()]
    for h, r0, r1 in zip(single.history, read_history(tmp_path / "two"), rank1, strict=True):
        assert (r0["loss"] + r1["loss"]) / 2 == pytest.approx(h["loss"], rel=1e-4)
    _assert_same_training(_weights(tmp_path / "two"), _weights(single_out))


@pytest.mark.slow  # `make test-slow`; CI keeps a resume onto two workers (a one-process checkpoint, below)
def test_a_stopped_two_worker_run_resumes_to_the_uninterrupted_sequence_and_weights(
        db, tmp_path, ray_local, single_worker):
    from kiwi.distributed import train_distributed

    single, single_out = single_worker
    out = tmp_path / "two"
    first = train_distributed(db.uri, _two_worker_run("two"), out, num_workers=2, stop_after=1)
    assert first.error is None and len(_two_worker_ids(out)) == 1
    assert json.loads((out / "checkpoint" / "state.json").read_text())["global_step"] == 1
    assert (out / "checkpoint" / "state.rank1.json").exists()
    second = train_distributed(db.uri, _two_worker_run("two"), out, num_workers=2)
    assert second.error is None
    assert _two_worker_ids(out) == [h["ids"] for h in single.history]
    _assert_same_training(_weights(out), _weights(single_out))


def _sharded_weights(folder):
    from kiwi.checkpoints import NOT_CHECKPOINTED, load_weights

    model = load_weights(tiny(seed=7), folder / "checkpoint")  # gathered from the shards into one process
    return {k: v for k, v in model.state_dict().items() if not k.startswith(NOT_CHECKPOINTED)}


def _fsdp_first_step_resumed_alone(db, tmp_path, single_worker):
    """Two FSDP ranks stopped after one step; their shards resumed by one process (resharded, the same global batch
    of 4) must read the single worker's sequence and end with its weights. Returns the two-rank run's folder."""
    from kiwi.distributed import train_distributed
    from kiwi.runs import read_history

    single, single_out = single_worker
    out = tmp_path / "fsdp"
    first = train_distributed(db.uri, _two_worker_run("two"), out, num_workers=2, stop_after=1, parallel="fsdp")
    assert first.error is None
    shards = sorted(p.name for p in (out / "checkpoint" / "sharded").iterdir())
    assert "__0_0.distcp" in shards and "__1_0.distcp" in shards  # each rank wrote its own shards
    assert not (out / "checkpoint" / "model.safetensors").exists()
    assert _two_worker_ids(out) == [single.history[0]["ids"]]
    rank1 = json.loads((out / "metrics.rank1.jsonl").read_text().splitlines()[0])
    assert (read_history(out)[0]["loss"] + rank1["loss"]) / 2 == pytest.approx(single.history[0]["loss"], rel=1e-4)
    alone = tmp_path / "alone"
    shutil.copytree(out, alone)
    resumed = Trainer(tiny(seed=7), db, _two_worker_run("two"), alone).train()
    assert [h["ids"] for h in resumed.history] == [h["ids"] for h in single.history[1:]]
    _assert_same_training(_weights(alone), _weights(single_out))
    return out


def test_two_fsdp_workers_shard_the_model_and_one_process_resumes_their_shards(db, tmp_path, ray_local,
                                                                                single_worker):
    """FSDP2 over two CPU workers (gloo): each rank holds half of every parameter and writes its own shards; the
    first step's samples and mean loss are the single worker's, and the shards resume in one process to the single
    worker's weights. (Two ranks training a whole run: the one-process checkpoint test below; two ranks resuming
    their own shards: the slow twin.)"""
    _fsdp_first_step_resumed_alone(db, tmp_path, single_worker)


@pytest.mark.slow  # `make test-slow`; CI keeps the twin above and the one-process resume below
def test_two_fsdp_workers_shard_the_model_and_train_what_one_worker_trains(db, tmp_path, ray_local, single_worker):
    """FSDP2 over two CPU workers (gloo): a run stopped after one step resumes from its shards, on one process and
    on the same two ranks, to the same sequence, losses and weights as the single worker."""
    from kiwi.distributed import train_distributed
    from kiwi.runs import read_history

    single, single_out = single_worker
    out = _fsdp_first_step_resumed_alone(db, tmp_path, single_worker)
    second = train_distributed(db.uri, _two_worker_run("two"), out, num_workers=2, parallel="fsdp")
    assert second.error is None
    assert _two_worker_ids(out) == [h["ids"] for h in single.history]
    rank1 = [json.loads(line) for line in (out / "metrics.rank1.jsonl").read_text().splitlines()]
    for h, r0, r1 in zip(single.history, read_history(out), rank1, strict=True):
        assert (r0["loss"] + r1["loss"]) / 2 == pytest.approx(h["loss"], rel=1e-4)
    _assert_same_training(_sharded_weights(out), _weights(single_out))


def test_a_one_process_checkpoint_resumes_on_two_fsdp_workers(db, tmp_path, ray_local, single_worker):
    """Elastic the other way: the single worker's run stopped after a step (whole files, batch 4) resumes on two
    FSDP ranks, each taking 2 of the same global batch, spreading the whole weights and AdamW moments into shards;
    it reads the same sequence and ends with the same weights."""
    from kiwi.distributed import train_distributed

    single, single_out = single_worker
    out = tmp_path / "grow"
    run = RunConfig("one", (_single_stage(),), seed=7)
    Trainer(tiny(seed=7), db, run, out).train(stop_after=1)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["ranks"] == 1
    result = train_distributed(db.uri, run, out, num_workers=2, parallel="fsdp")
    assert result.error is None
    rank0 = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rank1 = [json.loads(line) for line in (out / "metrics.rank1.jsonl").read_text().splitlines()]
    assert [len(h["ids"]) for h in rank0] == [4, 2, 2, 2]  # one process's step, then two ranks' halves
    dealt = [[x for pair in zip(r0["ids"], r1["ids"], strict=True) for x in pair]
             for r0, r1 in zip(rank0[1:], rank1, strict=True)]
    assert dealt == [h["ids"] for h in single.history[1:]]
    _assert_same_training(_sharded_weights(out), _weights(single_out))


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused():
    from kiwi.train import rank_batch

    assert rank_batch(_single_stage(), ranks_at_start=1, ranks=2) == 2  # batch 4 started on one rank
    assert rank_batch(_single_stage(), ranks_at_start=2, ranks=1) == 8
    with pytest.raises(ValueError, match=r"'s2': its global batch of 4 samples .* does not split over 3 ranks"):
        rank_batch(_single_stage(), ranks_at_start=1, ranks=3)


def _assert_same_training(mine, theirs):
    """The two runs moved the weights the same way: their difference is a rounding-sized fraction of the update
    (AdamW amplifies float differences in tiny gradients a little; a rank stepping on its own half batch instead
    of the averaged gradient lands tens of percent away)."""
    init = tiny(seed=7).state_dict()
    update = torch.sqrt(sum(((theirs[k] - init[k]) ** 2).sum() for k in theirs))
    gap = torch.sqrt(sum(((mine[k] - theirs[k]) ** 2).sum() for k in theirs))
    assert update > 0.01, "training changed no weights"
    assert gap < 0.02 * update, (float(gap), float(update))


def test_loss_plot_leaves_gaps_for_absent_types_and_marks_stage_boundaries(tmp_path):
    """A type missing from a step's batch is not drawn there (the old plot carried a filled value through the gap,
    a flat line that read as a plateau); the step where a new stage starts gets a dotted line named after it."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    from kiwi.runs import plot_losses

    history = [dict(global_step=i, stage="stage1" if i <= 3 else "stage2", loss=1.0 / i,
                    per_type={"a": 1.0 / i} | ({"b": 2.0} if i in (1, 2, 6) else {})) for i in range(1, 7)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    ax = plot_losses({"run": tmp_path}, per_type=True, smooth=1)
    lines = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    assert list(lines["run · b"].get_xdata()) == [1, 2, 6]
    assert list(lines["run · a"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    boundaries = [line for line in ax.lines if line.get_label().startswith("_") and line.get_linestyle() == ":"]
    assert len(boundaries) == 1 and boundaries[0].get_xdata()[0] == 3.5
    assert any(text.get_text().strip() == "stage2" for text in ax.texts)


def test_cosine_schedule_warms_up_then_decays_to_its_floor_and_constant_stays_flat():
    import math

    from kiwi.curriculum import StageConfig

    cosine = StageConfig("s", "x", "instruct", ("dit",), steps=103, lr=1e-3, warmup_steps=2, lr_schedule="cosine",
                         min_lr_ratio=0.1)
    rates = [cosine.lr_at(step) for step in range(103)]
    assert rates[:3] == [5e-4, 1e-3, 1e-3]  # warm-up, then the peak at the first decayed step
    assert math.isclose(rates[-1], 1e-4) and all(a >= b for a, b in zip(rates[2:], rates[3:], strict=False))
    assert math.isclose(rates[52], 1e-3 * (0.1 + 0.9 * 0.5), rel_tol=1e-2)  # half-way: half-way down
    flat = StageConfig("s", "x", "instruct", ("dit",), steps=10, lr=1e-3)
    assert {flat.lr_at(step) for step in range(10)} == {1e-3}
    with pytest.raises(ValueError, match="lr_schedule must be"):
        StageConfig("s", "x", "instruct", ("dit",), steps=10, lr=1e-3, lr_schedule="linear")


def test_the_metrics_log_holds_each_step_once_after_a_resume_and_starts_over_on_a_fresh_run(tmp_path):
    from kiwi.train import open_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"global_step": s, "loss": 1.0}) + "\n" for s in range(1, 8)))
    with open_metrics(path, resumed_at=4) as log:  # killed after step 7, last checkpoint at 4: steps 5-7 are redone
        log.write(json.dumps({"global_step": 5, "loss": 0.5}) + "\n")
    steps = [json.loads(line)["global_step"] for line in path.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    with open_metrics(path, resumed_at=0):  # a fresh start (no checkpoint, or --no-resume)
        pass
    assert path.read_text() == ""
