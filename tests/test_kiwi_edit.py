"""Kiwi-Edit assembled on tiny parts: a training step runs, gradients land where the stage says, and a fixed
batch's flow-matching loss falls."""

import numpy as np
import pytest
import torch

from kiwi.model.kiwi_edit import EditBatch, tiny
from tests.conftest import moving_square


def batch(task="instruct", n=2):
    source = np.stack([moving_square(i, frames=5, size=64) for i in range(n)])
    target = np.stack([moving_square(i + 10, frames=5, size=64) for i in range(n)])
    reference = np.stack([moving_square(i + 20, frames=1, size=64)[0] for i in range(n)]) if task.startswith("ref") \
        else None
    return EditBatch(["Add a red ball", "Turn the box blue"][:n], source, target, reference, task)


@pytest.fixture(scope="module")
def model():
    return tiny()


def test_context_width_and_zero_start(model):
    with torch.no_grad():
        ctx = model.context(batch("ref_subject"))
    assert ctx.shape == (2, 8 + 4, 32)  # 8 queries + 4 reference tokens, DiT width 32
    assert torch.count_nonzero(ctx) == 0  # zero-initialised connector outputs


@pytest.mark.parametrize("task", ["instruct", "ref_subject"])
def test_gradients_reach_the_trainable_parts_and_not_the_frozen_ones(model, task):
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):  # at step 0 the zero output layer blocks gradient to the queries; from step 1 it flows
        optimiser.zero_grad()
        loss = model.training_loss(batch(task), torch.Generator().manual_seed(0))
        loss.backward()
        optimiser.step()
    assert torch.isfinite(loss)
    assert model.mllm.queries[{"instruct": "video", "ref_subject": "reference"}[task]].grad.abs().sum() > 0
    assert model.query_connector[0].weight.grad.abs().sum() > 0
    assert model.transformer.source_embedder.weight.grad.abs().sum() > 0
    assert model.transformer.transformer.blocks[0].ffn.net[0].proj.weight.grad.abs().sum() > 0
    if task == "ref_subject":
        assert model.reference_connector[2].weight.grad.abs().sum() > 0
        assert model.transformer.reference_embedder.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.vae.parameters())
    assert all(p.grad is None for p in model.mllm.model.model.visual.parameters())
    model.eval()


def test_a_fixed_batch_loss_falls():
    model = tiny(seed=1)
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    fixed = batch("instruct")
    losses = []
    for _ in range(25):
        optimiser.zero_grad()
        loss = model.training_loss(fixed, torch.Generator().manual_seed(0))  # same noise and sigma each step
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    print(f"\nfixed-batch loss {losses[0]:.3f} -> {losses[-1]:.3f} in 25 AdamW steps")
    assert losses[-1] < 0.7 * losses[0], losses


def test_lora_on_the_language_model_attention():
    from kiwi.model.lora import add_lora, lora_parameters

    model = tiny(seed=2)
    lm = model.mllm.model.model.language_model
    add_lora(lm, rank=4)
    names = [n for n, _ in lm.named_parameters() if "lora_" in n]
    assert len(names) == 2 * 4 * 2  # A and B for q, k, v, o in each of 2 layers
    assert not any(p.requires_grad for n, p in lm.named_parameters() if "lora_" not in n)
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        optimiser.zero_grad()
        model.training_loss(batch("instruct"), torch.Generator().manual_seed(0)).backward()
        optimiser.step()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_parameters(lm))
    assert lm.embed_tokens.weight.grad is None  # frozen base weights


@pytest.mark.parametrize(("task", "frames", "with_reference"), [("image", 1, False), ("instruct", 9, False),
                                                                 ("ref_subject", 9, True)])
def test_edit_output_shapes_for_image_video_and_reference_tasks(model, task, frames, with_reference):
    import kiwi

    video = moving_square(3, frames=frames, size=64)
    reference = moving_square(4, frames=1, size=40)[0] if with_reference else None
    out = kiwi.edit(model, video, "Add a red ball", reference, task=task, steps=2)
    assert out.shape == (frames, 64, 64, 3) and out.dtype == np.uint8
    loss = model.training_loss(EditBatch(["Add a red ball"], video[None], video[None],
                                         None if reference is None else reference[None][:, :40, :40], task))
    assert torch.isfinite(loss)


def test_the_context_puts_the_reference_features_first_as_upstream(model):
    """Upstream concatenates [ref_connector(reference states), connector(query states)]."""
    b = batch("ref_subject")
    torch.manual_seed(3)
    saved = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("query_connector", "reference_c"))}
    try:
        for connector in (model.query_connector, model.reference_connector):
            torch.nn.init.normal_(connector[2].weight, std=0.5)
        with torch.no_grad():
            ctx = model.context(b)
            references = list(b.reference)
            encoded = model.mllm.encode(b.instructions, list(b.source), references, task="reference")
            ref = model.reference_connector(encoded.reference_features)
            queries = model.query_connector(encoded.query_features)
    finally:
        model.load_state_dict(saved, strict=False)
    assert torch.equal(ctx[:, :4], ref) and torch.equal(ctx[:, 4:], queries)


def test_the_mllm_reads_the_raw_reference_when_the_batch_carries_it(model):
    b = batch("ref_subject")
    raw = [np.full((30, 90, 3), 200, np.uint8), np.full((30, 90, 3), 20, np.uint8)]
    seen = []
    original = model.mllm.encode
    model.mllm.encode = lambda *a, **k: seen.append(a[2]) or original(*a, **k)
    try:
        with torch.no_grad():
            model.context(EditBatch(b.instructions, b.source, b.target, b.reference, b.task, mllm_reference=raw))
            model.context(b)
    finally:
        model.mllm.encode = original
    assert seen[0] is raw and seen[1][0].shape == (64, 64, 3)  # the canvas only when no raw image is given


def test_a_bf16_dit_sees_the_timestep_rounded_to_bf16_as_upstream():
    model = tiny(seed=2)
    sigma = torch.tensor([0.9371])
    assert model.timestep(sigma).item() == pytest.approx(937.1, abs=1e-3)  # fp32: unchanged
    model.transformer.transformer.to(torch.bfloat16)
    assert model.timestep(sigma).item() == 936.0  # what upstream's bf16 pipeline embeds


def test_prepare_video_caps_frames_and_pixels_and_crops_to_multiples_of_32():
    from kiwi.inference import frame_shape, prepare_video

    assert frame_shape(720, 1280) == (704, 1280)  # within 720x1280 already: floored to 32
    assert frame_shape(1080, 1920) == (704, 1280)  # scaled to 720x1280, floored
    clip = np.zeros((100, 100, 150, 3), np.uint8)
    clip[:, :, :10] = 255  # a white left border that the centre crop to 96x128 (from 100x133) removes
    out = prepare_video(clip, max_frames=81)
    assert out.shape == (81, 96, 128, 3)
    assert out[:, :, :2].mean() < 255 and prepare_video(clip, max_frames=None).shape[0] == 97


def test_an_image_is_edited_through_the_image_path_and_a_reference_is_refused(model):
    import kiwi

    image = moving_square(3, frames=1, size=64)
    seen = []
    original = model.mllm.encode
    model.mllm.encode = lambda *a, **k: seen.append(k["task"]) or original(*a, **k)
    try:
        out = kiwi.edit(model, image, "Turn the box blue", steps=2)
    finally:
        model.mllm.encode = original
    assert out.shape == (1, 64, 64, 3) and seen == ["image"]
    with pytest.raises(ValueError, match="no reference"):
        kiwi.edit(model, image, "Turn the box blue", image[0], steps=2)


def test_the_wan_vae_tiles_above_upstreams_tile_size(model):
    from kiwi.inference import VAE_TILE, tile_vae

    tile_vae(model)
    assert model.vae.use_tiling
    assert (model.vae.tile_sample_min_height, model.vae.tile_sample_min_width) == VAE_TILE


def test_the_full_shape_gpu_smoke_runs_its_path_at_toy_size_on_the_cpu():
    """bench/gpu_smoke.py --full-shapes (run when a GPU is lent): the same edit + checkpointed training step at toy
    size, so the GPU run does not fail on a path CI never took."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "gpu_smoke.py"
    spec = importlib.util.spec_from_file_location("gpu_smoke", path)
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    result = smoke.full_shapes(tiny=True, device="cpu", sampler_steps=2)
    assert result["frames"] == 9 and np.isfinite(result["loss"]) and result["trainable_params"] > 0


def test_training_losses_carry_the_flows_weight_and_held_out_losses_do_not():
    from kiwi.model.flow import FlowMatching

    model = tiny(seed=4).eval()
    b = batch("instruct")
    with torch.no_grad():
        plain = model.training_loss(b, torch.Generator().manual_seed(0), per_sample=True)
        model.flow = FlowMatching(weighting="bell")
        weighted = model.training_loss(b, torch.Generator().manual_seed(0), per_sample=True)
        fixed = torch.tensor([0.3, 0.8])
        held_out = model.training_loss(b, torch.Generator().manual_seed(0), per_sample=True, sigma=fixed)
        model.flow = FlowMatching()
        held_out_plain = model.training_loss(b, torch.Generator().manual_seed(0), per_sample=True, sigma=fixed)
    sampled = FlowMatching().sample_sigma(2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(weighted, plain * FlowMatching(weighting="bell").loss_weight(sampled))
    assert torch.equal(held_out, held_out_plain)
