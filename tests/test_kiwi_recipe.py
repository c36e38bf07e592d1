"""The published training recipe: stages as task mixtures (interleaved, resumable), stage 1 on LoRA, fp32 master
weights, stage chaining, and the kiwi_paper recipe's settings against upstream's scripts."""

import json

import pytest
import torch

from kiwi.checkpoints import NOT_CHECKPOINTED
from kiwi.curriculum import STAGE1, RunConfig, StageConfig, TaskSource, kiwi_paper
from kiwi.feed import round_robin
from kiwi.model.kiwi_edit import tiny
from kiwi.train import Trainer
from lake.slices import build_slice, save_slice
from tests.conftest import synthetic_quadruplet_lake


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = synthetic_quadruplet_lake(tmp_path_factory.mktemp("recipe") / "lake", 40, seed=21, size=64)
    save_slice(db, build_slice(db, where="task <> 'ref_subject'", seed=0, name="plain"))
    save_slice(db, build_slice(db, where="task = 'ref_subject'", seed=0, name="refs"))
    return db


def _ids(db, name):
    from lake.slices import load_slice

    return set(load_slice(db, name).ids)


def test_round_robin_spreads_each_source_by_its_weight():
    assert round_robin([1, 1, 1]) == [0, 1, 2]  # upstream's stage 3: image, video, reference in turn
    assert round_robin([1, 1]) == [0, 1]
    assert round_robin([1, 2]) == [1, 0, 1]
    assert sorted(round_robin([3, 1, 2])) == [0, 0, 0, 1, 2, 2]
    with pytest.raises(ValueError, match="positive integers"):
        round_robin([1, 0])


def _mixed_run(steps=6, accumulation=1):
    sources = (TaskSource("image", "plain", weight=1, frames=1), TaskSource("instruct", "plain", weight=2),
               TaskSource("ref_subject", "refs", weight=1))
    stage = StageConfig("mix", "plain", "instruct", ("queries", "query_connector", "source_embedder", "dit"), steps,
                        2e-3, batch_size=2, grad_accumulation=accumulation, sources=sources,
                        source_conditioning=True)
    return RunConfig("mix", (stage,), seed=4, checkpoint_every=100)


def _spy_on_sources(model, seen):
    """Records, per DiT call in training, (frames of the source, whether source latents went in)."""
    predict = model.predict

    def spying(noisy, sigma, context, source, reference, *condition):
        seen.append((noisy.shape[2], source is not None, reference is not None))
        return predict(noisy, sigma, context, source, reference, *condition)

    model.predict = spying


def test_a_mixed_stage_deals_its_tasks_in_proportion_each_from_its_own_slice(db, tmp_path):
    model, seen = tiny(seed=0), []
    _spy_on_sources(model, seen)
    summary = Trainer(model, db, _mixed_run(steps=8), tmp_path / "mix").train()
    plain, refs = _ids(db, "plain"), _ids(db, "refs")
    slices = ["refs" if set(h["ids"]) <= refs else "plain" if set(h["ids"]) <= plain else "?"
              for h in summary.history]
    cycle = round_robin([1, 2, 1])  # image, instruct x2, reference
    assert slices == ["refs" if cycle[i % 4] == 2 else "plain" for i in range(8)]
    # images read one frame (one latent frame) and, in a source-conditioned stage, still get their source latents
    # (upstream's stages 2-3); video and reference rows read the stage's 5 frames (2 latent frames of the tiny Wan
    # VAE); only the reference task carries a reference
    kinds = {0: (1, True, False), 1: (2, True, False), 2: (2, True, True)}
    expected = [kinds[cycle[i % 4]] for i in range(8)]
    assert seen == expected


def test_images_get_no_source_latents_in_an_unconditioned_stage(db, tmp_path):
    model, seen = tiny(seed=0), []
    _spy_on_sources(model, seen)
    stage = StageConfig("align", "plain", "image", STAGE1, 2, 1e-3, frames=1)
    Trainer(model, db, RunConfig("align", (stage,), checkpoint_every=100), tmp_path / "align").train()
    assert seen == [(1, False, False)] * 2


# mid-cycle (after image, instruct, instruct) and mid-accumulation round (slow: `make test-slow`)
@pytest.mark.parametrize("stop", [3, pytest.param(5, marks=pytest.mark.slow)])
def test_a_mixed_stage_resumes_exactly_mid_mixture(db, tmp_path, stop):
    run = _mixed_run(steps=7, accumulation=3)  # 3 micro-batches a step over a 4-long cycle: steps straddle rounds
    whole = Trainer(tiny(seed=0), db, run, tmp_path / "whole").train()
    first = Trainer(tiny(seed=0), db, run, tmp_path / "cut").train(stop_after=stop)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["loader"]["micro"] == 3 * stop and len(state["loader"]["sources"]) == 3
    rest = Trainer(tiny(seed=0), db, run, tmp_path / "cut").train()
    combined = first.history + rest.history
    assert [h["ids"] for h in combined] == [h["ids"] for h in whole.history]
    assert [h["loss"] for h in combined] == pytest.approx([h["loss"] for h in whole.history], abs=1e-6)


def test_a_mixture_refuses_adaptive_rebalancing_and_bad_sources():
    from lake.adaptive import AdaptiveConfig

    with pytest.raises(ValueError, match="cannot run on a mixture of 2 task sources"):
        StageConfig("s", "a", "instruct", ("dit",), 1, 1e-3, adaptive=AdaptiveConfig(update_every=64),
                    sources=(TaskSource("instruct", "a"), TaskSource("image", "b")))
    with pytest.raises(ValueError, match="unknown task 'video'"):
        TaskSource("video", "a")
    with pytest.raises(ValueError, match="weight must be a positive integer"):
        TaskSource("image", "a", weight=0)


def _lora_tiny(seed=0):
    from kiwi.model.lora import add_lora

    model = tiny(seed=seed)
    add_lora(model.mllm.model.model.language_model, rank=4)
    return model


def test_stage_one_trains_lora_queries_and_connector_and_leaves_the_dit_bit_identical(db, tmp_path):
    model = _lora_tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stage = StageConfig("stage1-align", "plain", "image", STAGE1, 3, 1e-2, frames=1)
    Trainer(model, db, RunConfig("s1", (stage,), checkpoint_every=100), tmp_path / "s1").train()
    after = dict(model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    lora = {n for n in before if "lora_" in n}
    assert lora and lora & moved == {n for n in lora if "lora_B" in n or "lora_A" in n} & moved
    assert any("lora_B" in n for n in moved), "LoRA did not move"
    assert any(n.startswith("mllm.queries") for n in moved) and any(n.startswith("query_connector") for n in moved)
    assert not any(n.startswith(("transformer.", "reference_connector.", "vae.")) for n in moved)
    assert not any(n.startswith("mllm.model.") and "lora_" not in n for n in moved)  # the base LM stays frozen


def _bf16_tiny(seed=0):
    model = tiny(seed=seed)
    return model.to(torch.bfloat16)


@pytest.mark.parametrize("master", [None, "fp32"])
def test_fp32_master_weights_keep_updates_that_a_bare_bf16_step_rounds_away(db, tmp_path, master):
    model = _bf16_tiny()
    before = {n: p.detach().float().clone() for n, p in model.transformer.transformer.named_parameters()}
    stage = StageConfig("s", "plain", "instruct", ("dit",), 2, 1e-5)
    run = RunConfig("precision", (stage,), checkpoint_every=100, master_weights=master)
    Trainer(model, db, run, tmp_path / "p").train()
    params = dict(model.transformer.transformer.named_parameters())
    changed = sum(int((params[n].detach().float() != before[n]).sum()) for n in before)
    total = sum(t.numel() for t in before.values())
    print(f"\nmaster weights {master}: {changed} of {total} DiT values changed after 2 steps at lr 1e-5")
    if master is None:
        assert all(p.dtype == torch.bfloat16 for p in params.values())
        assert changed < 0.2 * total  # most updates (|lr x 1| << bf16's spacing at the weight) round away
    else:
        assert all(p.dtype == torch.float32 for p in params.values())
        assert changed > 0.9 * total
        assert model.mllm.model.dtype == torch.bfloat16  # what no stage trains stays in its own dtype


def test_a_run_starts_from_a_named_checkpoint_and_records_each_stages_origin(db, tmp_path):
    stage = StageConfig("a", "plain", "instruct", ("queries", "query_connector", "source_embedder", "dit"), 2, 1e-2)
    first = Trainer(tiny(seed=0), db, RunConfig("first", (stage,), checkpoint_every=100), tmp_path / "first")
    first.train()
    trained = {n: p.detach().clone() for n, p in first.model.named_parameters()}
    zero_steps = StageConfig("b", "plain", "instruct", ("dit",), 0, 1e-2)
    after = StageConfig("c", "plain", "instruct", ("dit",), 0, 1e-2)
    run = RunConfig("second", (zero_steps, after), init_from=str(tmp_path / "first" / "checkpoint"))
    second = Trainer(tiny(seed=7), db, run, tmp_path / "second")
    summary = second.train()
    checkpointed = [n for n in trained if not n.startswith(NOT_CHECKPOINTED)]  # the frozen VAE and vision tower
    params = dict(second.model.named_parameters())
    assert checkpointed and all(torch.equal(params[n], trained[n]) for n in checkpointed)
    row = db.read("runs", where=f"run_id = '{summary.run_id}'").to_pylist()[0]
    assert json.loads(row["config"])["init_from"] == str(tmp_path / "first" / "checkpoint")
    assert json.loads(row["metrics"])["starts_from"] == [
        {"stage": "b", "starts_from": str(tmp_path / "first" / "checkpoint")}, {"stage": "c", "starts_from": "stage b"}]
    with pytest.raises(FileNotFoundError, match="neither a training checkpoint"):
        Trainer(tiny(seed=0), db, RunConfig("x", (after,), init_from=str(tmp_path)), tmp_path / "x").train()


def test_the_paper_recipe_matches_upstreams_scripts():
    run = kiwi_paper("img", "vid", "ref")
    s1, s2, s3 = run.stages
    assert (s1.steps, s1.lr, s1.mixture[0].task, s1.frames) == (30_000, 1e-5, "image", 1)
    # upstream's trainer counts a step per micro-batch: the published 30K / 20K / 15K are samples per GPU
    assert [(s.steps, s.grad_accumulation, s.samples_per_rank) for s in run.stages] == [
        (30_000, 1, 30_000), (10_000, 2, 20_000), (5_000, 3, 15_000)]
    assert all(s.frame_sampling == "prefix_cut" and s.raw_reference and s.mllm_frame_pixels == 768 * 28 * 28
               for s in run.stages)
    assert "lora" in s1.trains and "dit" not in s1.trains and s1.source_conditioning is None
    assert [(t.task, t.slice, t.weight, t.frames) for t in s2.mixture] == [("image", "img", 1, 1),
                                                                         ("instruct", "vid", 1, None)]
    assert (s2.steps, s2.lr, s2.grad_accumulation, s2.frames, s2.source_conditioning) == (10_000, 1e-5, 2, 81, True)
    assert [t.task for t in s3.mixture] == ["image", "instruct", "ref_subject"]
    assert (s3.steps, s3.lr, s3.grad_accumulation) == (5_000, 5e-6, 3)
    assert all(s.weight_decay == 0.01 and s.batch_size == 1 and s.lr_schedule == "constant" for s in run.stages)
    assert run.master_weights == "fp32" and run.reference_position is None
    only = kiwi_paper("img", "vid", "ref", variant="refvid-only")
    assert [t.task for t in only.stages[2].mixture] == ["ref_subject"]
    assert (only.stages[2].steps, only.stages[2].grad_accumulation, only.reference_position) == (30_000, 1, "prepend")
    assert only.stages[2].samples_per_rank == 30_000
    with pytest.raises(ValueError, match="unknown kiwi_paper variant"):
        kiwi_paper("a", "b", "c", variant="ref")


def test_a_stage_consumes_steps_times_accumulation_times_batch_samples(db, tmp_path):
    """4 optimizer steps of 3 micro-batches of 2 samples: 24 samples, as upstream would count 12 steps of 2."""
    run = _mixed_run(steps=4, accumulation=3)
    summary = Trainer(tiny(seed=0), db, run, tmp_path / "count").train()
    assert run.stages[0].samples_per_rank == 4 * 3 * 2 == sum(summary.consumed.values())
    assert sum(len(h["ids"]) for h in summary.history) == 24 and summary.steps == 4


def test_the_mllm_trains_at_its_training_budget_on_the_raw_reference(db, tmp_path):
    """A stage's MLLM frame budget holds while it trains (and the model's own comes back after); with
    `raw_reference` the MLLM is given the reference image as stored, the VAE still its white canvas."""
    from lake import media
    from lake.slices import load_slice

    model = tiny(seed=0)
    own = model.mllm.max_pixels
    seen = []
    encode = model.mllm.encode

    def spying(instructions, sources, references=None, **kwargs):
        seen.append((model.mllm.max_pixels, None if references is None else [r.copy() for r in references]))
        return encode(instructions, sources, references, **kwargs)

    model.mllm.encode = spying
    stage = StageConfig("refs", "refs", "ref_subject", ("queries", "query_connector", "reference_connector"), 2,
                        1e-3, batch_size=2, mllm_frame_pixels=own * 2, raw_reference=True)
    Trainer(model, db, RunConfig("raw", (stage,), checkpoint_every=100), tmp_path / "raw").train()
    assert [pixels for pixels, _ in seen] == [own * 2] * 2 and model.mllm.max_pixels == own
    ids = load_slice(db, "refs").ids
    stored = [media.decode_image(r) for r in db.take("quadruplets", ids, columns=["reference_image"])
              ["reference_image"].to_pylist()]
    given = [ref for _, refs in seen for ref in refs]
    assert len(given) == 4 and all(any(ref.shape == s.shape and (ref == s).all() for s in stored) for ref in given)
    seen.clear()
    canvas = StageConfig("refs", "refs", "ref_subject", ("queries",), 1, 1e-3, batch_size=2)
    Trainer(model, db, RunConfig("canvas", (canvas,), checkpoint_every=100), tmp_path / "canvas").train()
    assert seen[0][0] == own and not any((ref == s).all() for ref in seen[0][1] for s in stored
                                         if ref.shape == s.shape)
