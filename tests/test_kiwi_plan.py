"""kiwi plan: memory per GPU per stage from the model's real shapes, checked against counts taken from a model."""

import numpy as np
import torch
from click.testing import CliRunner

from kiwi.curriculum import STAGE2, RunConfig, StageConfig, TaskSource
from kiwi.model.kiwi_edit import EditBatch, tiny
from kiwi.model.lora import add_lora
from kiwi.model.mllm import query_token
from kiwi.plan import CHECKPOINTED_BLOCK_BYTES, GIB, OVERHEAD_GIB, dit_tokens, mllm_tokens, plan_stage


def _model():
    model = tiny(seed=0)
    add_lora(model.mllm.model.model.language_model, rank=4)
    return model


def _stage():
    return StageConfig("s2", "v", "instruct", STAGE2, 1, 1e-5, batch_size=2, frames=5, size=64,
                       sources=(TaskSource("image", "i", frames=1), TaskSource("instruct", "v")))


def test_parameter_gradient_and_optimizer_memory_match_counts_taken_from_the_model():
    model, stage = _model(), _stage()
    run = RunConfig("r", (stage,), master_weights="fp32")
    p = plan_stage(model, run, stage, gpus=2, gpu_memory_gib=80, clip=(64, 64))
    trained = sum(q.numel() for n, q in model.named_parameters()
                  if (n.startswith(("mllm.queries", "query_connector", "transformer."))
                      and not n.startswith("transformer.reference_embedder")) or "lora_" in n)
    vae = sum(q.numel() for q in model.vae.parameters())
    frozen = sum(q.numel() for q in model.parameters()) - trained - vae
    assert p.trained_params == trained and p.frozen_params == frozen + vae
    assert p.weights_gib * GIB == (trained * 4 + frozen * 2) / 2 + vae * 2
    assert p.gradients_gib * GIB == trained * 4 / 2 and p.optimizer_gib * GIB == 2 * trained * 4 / 2
    blocks = [sum(q.numel() for q in b.parameters()) for b in model.transformer.transformer.blocks]
    layers = [sum(q.numel() for q in b.parameters()) for b in model.mllm.model.model.language_model.layers]
    assert p.gathered_gib * GIB == 2 * 2 * max(blocks + layers)
    bf16 = plan_stage(model, RunConfig("r", (stage,)), stage, gpus=1, gpu_memory_gib=80, clip=(64, 64))
    assert bf16.optimizer_gib * GIB == 2 * trained * 2 and bf16.gathered_gib == 0  # one GPU gathers nothing
    parts = p.weights_gib + p.gradients_gib + p.optimizer_gib + p.gathered_gib + p.activations_gib
    assert abs(p.total_gib - parts - OVERHEAD_GIB) < 1e-9 and p.fits
    assert not plan_stage(model, run, stage, gpus=2, gpu_memory_gib=p.total_gib - 0.01, clip=(64, 64)).fits


def test_token_counts_are_what_the_dit_and_the_language_model_see():
    model = _model().eval()
    seen = {}

    def count(module, args, output):
        seen["dit"] = args[0].shape[1]

    model.transformer.transformer.blocks[0].register_forward_hook(count)
    video = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    reference = np.full((64, 64, 3), 200, np.uint8)
    batch = EditBatch(["Add a red ball"], video[None], video[None], reference[None], "ref_subject")
    with torch.no_grad():
        model.training_loss(batch, torch.Generator().manual_seed(0))
    assert seen["dit"] == dit_tokens(model, 5, 64, 64, reference=True)
    encoded = model.mllm.encode(["Add a red ball"], [video], [reference], task="reference")
    tokenizer = model.mllm.tokenizer
    counted = {tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", query_token(tokenizer))}
    vision_and_queries = sum(int((encoded.input_ids == i).sum()) for i in counted)
    assert vision_and_queries == mllm_tokens(model, "ref_subject", 5, 64, 64, prompt_tokens=0)


def test_kiwi_plan_prints_every_stage_of_the_full_recipe_and_whether_it_fits():
    from kiwi.cli import cli

    one = CliRunner().invoke(cli, ["plan", "--gpus", "1", "--gpu-memory", "80"])
    assert one.exit_code == 0, one.output
    rows = {line.split()[0]: line.split() for line in one.output.splitlines() if line.startswith("stage")}
    assert set(rows) == {"stage", "stage1-align", "stage2-img-vid", "stage3-img-vid-refvid"}
    assert rows["stage1-align"][-1] == "yes" and rows["stage2-img-vid"][-1] == "NO"  # 5B trained: not on one GPU
    assert float(rows["stage2-img-vid"][3].rstrip("B")) > 4.9  # the Wan2.2-TI2V-5B DiT trains in stage 2
    # optimizer steps and samples per GPU: upstream's published steps are micro-batches of one sample
    assert [rows[s][1:3] for s in ("stage1-align", "stage2-img-vid", "stage3-img-vid-refvid")] == [
        ["30,000", "30,000"], ["10,000", "20,000"], ["5,000", "15,000"]]
    assert "samples: 65,000 per GPU, 65,000 over 1 GPU(s)" in one.output
    eight = CliRunner().invoke(cli, ["plan", "--gpus", "8", "--config", "kiwi-paper-refvid-only"])
    assert eight.exit_code == 0 and "stage3-refvid" in eight.output
    assert all(line.endswith("yes") for line in eight.output.splitlines() if line.startswith("stage") and
               not line.startswith("stage "))
    bad = CliRunner().invoke(cli, ["plan", "--clip", "720p"])
    assert bad.exit_code == 2 and "is not HxW" in bad.output
    assert CHECKPOINTED_BLOCK_BYTES == 34
