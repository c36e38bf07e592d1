"""The CPU-sized Kiwi-Edit that learns edits: a lossless pixel codec, x0-prediction, a sentence-embedding
conditioner; saved and loaded like the others, and after a minute of reference-guided training it beats copying the
source where copying is wrong (background changes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kiwi.data import reference_on_white
from kiwi.inference import edit
from kiwi.model.codec import PixelCodec
from kiwi.model.flow import FlowMatching
from kiwi.model.io import from_pretrained, save_pretrained
from kiwi.model.kiwi_edit import EditBatch, KiwiConfig, KiwiEdit, tiny_edit
from refvie.synthetic import SyntheticConfig, SyntheticWorld


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / max(float(((a.astype(float) - b.astype(float)) ** 2).mean()), 1e-10))


def test_the_pixel_codec_is_lossless_and_refuses_odd_sizes():
    codec = PixelCodec(4)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 5, 32, 48))).float() / 127.5 - 1
    z = codec.encode_pixels(x)
    assert z.shape == (2, 48, 5, 8, 12)
    assert torch.equal(codec.decode_pixels(z), x)
    with pytest.raises(ValueError, match="not a multiple of the codec's 4-pixel patch"):
        codec.encode_pixels(x[..., :30])


def test_x0_prediction_trains_on_x0_and_samples_with_the_implied_velocity():
    flow = FlowMatching(prediction="x0")
    x0, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    sigma = torch.tensor([0.25, 0.75])
    assert torch.equal(flow.target(x0, noise), x0)
    x = flow.noisy(x0, noise, sigma)
    # a perfect x0 estimate gives the true velocity (noise - x0), so one Euler step lands on the path
    assert torch.allclose(flow.velocity(x0, x, sigma), noise - x0, atol=1e-5)
    assert torch.equal(FlowMatching().velocity(noise - x0, x, sigma), noise - x0)
    with pytest.raises(ValueError, match="prediction must be"):
        FlowMatching(prediction="eps")


def test_a_source_residual_model_starts_as_an_exact_copy_and_keeps_the_flag_on_disk(tmp_path):
    """x0_hat = source + output: with the output layer at zero the sampler lands exactly on the source, so a
    small DiT need not squeeze untouched pixels through its tokens to keep them."""
    model = tiny_edit(seed=1, source_residual=True)
    torch.nn.init.zeros_(model.transformer.transformer.proj_out.weight)
    torch.nn.init.zeros_(model.transformer.transformer.proj_out.bias)
    video = SyntheticWorld(SyntheticConfig(frames=5, height=32, width=32, seed=4)).sample(0).source
    assert np.array_equal(edit(model, video, "Make it look like a pencil sketch", steps=4), video)
    plain = tiny_edit(seed=1)
    plain.load_state_dict(model.state_dict())
    assert psnr(edit(plain, video, "Make it look like a pencil sketch", steps=4), video) < 20  # no copy without it
    loaded = from_pretrained(save_pretrained(model, tmp_path / "m"))
    assert loaded.source_residual and np.array_equal(edit(loaded, video, "Make it", steps=4), video)
    with pytest.raises(ValueError, match="source_residual / source_gate / source_refiner need x0-prediction"):
        KiwiEdit(model.mllm, model.transformer, model.vae, FlowMatching(), source_residual=True)


def test_a_source_gate_model_copies_where_its_gate_is_open_and_keeps_the_flag_on_disk(tmp_path):
    """x0_hat = g * source + (1 - g) * content: a gate saturated open is an exact copy whatever the content, a gate
    shut is the content alone; the flag survives saving."""
    model = tiny_edit(seed=2, source_gate=True)
    proj = model.transformer.transformer.proj_out
    channels = model.transformer.transformer.config.out_channels  # content + gate; features are (patch, channel)
    gate = torch.arange(proj.out_features) % channels >= channels // 2
    video = SyntheticWorld(SyntheticConfig(frames=5, height=32, width=32, seed=5)).sample(0).source
    with torch.no_grad():
        proj.weight[gate] = 0.0
        proj.bias[gate] = 30.0  # gate logits: sigmoid(30) = 1 to float precision
    assert np.array_equal(edit(model, video, "Replace the background with a beach", steps=4), video)
    with torch.no_grad():
        proj.bias[gate] = -30.0
    assert psnr(edit(model, video, "Replace the background with a beach", steps=4), video) < 20
    loaded = from_pretrained(save_pretrained(model, tmp_path / "m"))
    assert loaded.source_gate and not loaded.source_residual
    with pytest.raises(ValueError, match="choose one of source_residual and source_gate"):
        KiwiEdit(model.mllm, model.transformer, model.vae, FlowMatching(prediction="x0"), source_residual=True,
                 source_gate=True)


def test_tiny_edit_round_trips_through_save_and_load(tmp_path):
    model = KiwiConfig(size="tiny-edit", seed=3).build()
    with torch.no_grad():  # move the zero-initialised parts, so the round trip has something to lose
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    video = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    expected = edit(model, video, "Replace the background with a beach", steps=3)
    loaded = from_pretrained(save_pretrained(model, tmp_path / "m"))
    assert loaded.flow.prediction == "x0" and isinstance(loaded.vae, PixelCodec)
    assert np.array_equal(edit(loaded, video, "Replace the background with a beach", steps=3), expected)
    assert not (tmp_path / "m" / "vae").exists() and not (tmp_path / "m" / "mllm").exists()


def _clips(seed: int, n: int, mix: dict[str, float]):
    world = SyntheticWorld(SyntheticConfig(frames=5, height=32, width=32, seed=seed, mix=mix))
    return [world.sample(i) for i in range(n)]


def test_a_minute_of_training_beats_copying_the_source_on_background_changes():
    """Background changes are where doing nothing is worst (the whole plate differs): given the new background plate
    as its reference (RefVIE's ref_background task), the trained model must beat that baseline on held-out clips by
    several dB. 250 steps of batch 8 on background changes and local additions (with their subject references),
    under a minute on 2 cores, scored at one sampler step (the x0 model's conditional mean, as the experiment
    scores). Measured: 16.1 dB vs 8.2 dB for copying (400 steps and a 10-step sampler: 17.1 dB)."""
    torch.manual_seed(0)
    mix = {"background_change": 0.5, "local_add": 0.5}
    train, held_out = _clips(0, 400, mix), [s for s in _clips(99, 24, mix) if s.edit_type == "background_change"]
    model = tiny_edit(seed=0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    rng = np.random.default_rng(0)
    for step in range(250):
        rows = [train[i] for i in rng.choice(len(train), 8, replace=False)]
        batch = EditBatch([s.instruction for s in rows], np.stack([s.source for s in rows]),
                          np.stack([s.target for s in rows]),
                          np.stack([reference_on_white(s.reference, 32) for s in rows]), "ref_background")
        loss = model.training_loss(batch, torch.Generator().manual_seed(step))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    ours = [psnr(edit(model, s.source, s.instruction, s.reference, task="ref_background", steps=1), s.target)
            for s in held_out]
    copying = [psnr(s.source, s.target) for s in held_out]
    print(f"\nbackground_change on {len(held_out)} held-out clips: model {np.mean(ours):.1f} dB, "
          f"copying the source {np.mean(copying):.1f} dB (last loss {loss.item():.3f})")
    assert np.mean(ours) > np.mean(copying) + 5.0


def test_the_source_refiner_starts_as_the_identity_works_cell_by_cell_and_keeps_its_kernel_on_disk(tmp_path):
    """tiny-edit's default refiner: zero-initialised, so an untrained one changes nothing; kernel 1 maps each
    latent cell (4x4 pixels) from that cell's estimate and source alone, kernel 3 from its 3x3 neighbourhood."""
    from kiwi.model.refiner import SourceRefiner

    model, bare = tiny_edit(seed=4), tiny_edit(seed=4, source_refiner=0)
    assert model.refiner is not None and model.refiner.kernel == 1
    bare.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("refiner.")})
    video = SyntheticWorld(SyntheticConfig(frames=5, height=32, width=32, seed=6)).sample(0).source
    assert np.array_equal(edit(model, video, "Make it a flat poster", steps=3),
                          edit(bare, video, "Make it a flat poster", steps=3))
    for kernel, reach in ((1, 0), (3, 1)):
        refiner = SourceRefiner(48, kernel=kernel)
        torch.nn.init.normal_(refiner.net[-1].weight)
        estimate, source = torch.randn(1, 48, 2, 8, 8), torch.randn(1, 48, 2, 8, 8)
        moved = source.clone()
        moved[..., 1, 4, 4] += 1.0
        changed = (refiner(estimate, moved) - refiner(estimate, source)).abs().sum(dim=(0, 1)) > 0
        expected = torch.zeros(2, 8, 8, dtype=torch.bool)
        expected[1, 4 - reach: 5 + reach, 4 - reach: 5 + reach] = True
        assert torch.equal(changed, expected), kernel
    loaded = from_pretrained(save_pretrained(tiny_edit(seed=4, source_refiner=3), tmp_path / "m"))
    assert loaded.refiner.kernel == 3
    assert from_pretrained(save_pretrained(bare, tmp_path / "bare")).refiner is None


def test_an_instruction_conditioned_refiner_starts_as_the_identity_and_learns_a_map_per_instruction(tmp_path):
    """The same grey maps to sepia under one instruction and to neon under another: an unconditioned refiner can
    only learn their average; the FiLM-conditioned one learns both (it fails with the modulation removed)."""
    from kiwi.model.refiner import SourceRefiner
    from refvie.synthetic.styles import Style, apply_style

    model, bare = tiny_edit(seed=4, refiner_condition=True), tiny_edit(seed=4, source_refiner=0)
    bare.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("refiner.")})
    video = SyntheticWorld(SyntheticConfig(frames=5, height=32, width=32, seed=6)).sample(0).source
    assert np.array_equal(edit(model, video, "Give it a sepia palette", steps=3),
                          edit(bare, video, "Give it a sepia palette", steps=3))
    loaded = from_pretrained(save_pretrained(model, tmp_path / "m"))
    assert loaded.refiner.condition_dim == model.refiner.condition_dim > 0
    with pytest.raises(ValueError, match="conditioned on the instruction"):
        model.refiner(torch.zeros(1, 48, 1, 2, 2), None)

    codec, rng = PixelCodec(4), np.random.default_rng(0)
    palettes = ("sepia", "neon")

    def batch(n: int):
        frames = rng.integers(0, 256, (n, 1, 8, 8, 3), dtype=np.uint8)
        which = rng.integers(0, 2, n)
        target = np.stack([apply_style(Style("palette", palettes[k]), f) for f, k in zip(frames, which, strict=True)])
        as_latents = [codec.encode_pixels(torch.from_numpy(x).permute(0, 4, 1, 2, 3).float() / 127.5 - 1)
                      for x in (frames, target)]
        return (*as_latents, torch.nn.functional.one_hot(torch.from_numpy(which), 2).float())

    def trained_error(condition_dim: int) -> float:
        torch.manual_seed(0)
        refiner = SourceRefiner(48, kernel=1, condition_dim=condition_dim)
        optimiser = torch.optim.Adam(refiner.parameters(), lr=3e-3)
        for _ in range(300):
            source, target, which = batch(32)
            out = refiner(torch.zeros_like(source), source, which if condition_dim else None)
            loss = (out - target).pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        source, target, which = batch(256)
        with torch.no_grad():
            return float((refiner(torch.zeros_like(source), source, which if condition_dim else None) - target)
                         .pow(2).mean())

    conditioned, unconditioned = trained_error(2), trained_error(0)
    print(f"\npalette maps, latent MSE: conditioned {conditioned:.4f}, unconditioned {unconditioned:.4f}")
    assert conditioned < 0.25 * unconditioned


def test_tiny_edit_modulates_its_refiner_by_the_instructions_sentence_embedding(tmp_path):
    """The default refiner reads the frozen sentence embedding, where "sepia tones" and "neon tones" lie apart
    whatever the sentence around them (the pooled context the DiT reads blurs them early in training: the demo's
    styles beat copying by 2.0 dB with it, 5.7 dB with this). Saved folders keep which one they use; a folder saved
    with the context-modulated refiner (config `true`) loads as one."""
    import json

    from kiwi.model.io import architecture_fingerprint

    model = tiny_edit(seed=4)
    assert model.refiner_condition == "instruction" and model.refiner.condition_dim == model.mllm.embedding_dim
    context = KiwiConfig(size="tiny-edit-context").build()
    assert context.refiner_condition == "context" and context.refiner.condition_dim == 128
    assert architecture_fingerprint(model) != architecture_fingerprint(context)
    assert architecture_fingerprint(model) == architecture_fingerprint(tiny_edit(seed=5))  # not the values

    video = SyntheticWorld(SyntheticConfig(frames=5, height=32, width=32, seed=6)).sample(0).source
    torch.nn.init.normal_(model.refiner.net[-1].weight, std=0.1)
    torch.nn.init.normal_(model.refiner.film.weight, std=0.5)
    outputs = {text: edit(model, video, text, steps=2, seed=1) for text in
               ("Apply the style of sepia tones", "Apply the style of neon tones")}
    assert not np.array_equal(*outputs.values())  # the words reach the per-pixel map
    batch = EditBatch(["Apply the style of sepia tones"], video[None], video[None], None, "instruct")
    latents = model.encode_video(batch.source)
    with pytest.raises(ValueError, match="modulated by the instruction: pass condition"):
        model.predict(latents, torch.full((1,), 0.5), model.context(batch), latents, None)

    loaded = from_pretrained(save_pretrained(model, tmp_path / "m"))
    assert loaded.refiner_condition == "instruction"
    assert np.array_equal(edit(loaded, video, "Apply the style of neon tones", steps=2, seed=1),
                          outputs["Apply the style of neon tones"])
    old = save_pretrained(context, tmp_path / "old")
    config = json.loads((old / "kiwi" / "config.json").read_text())
    (old / "kiwi" / "config.json").write_text(json.dumps({**config, "refiner_condition": True}))
    assert from_pretrained(old).refiner_condition == "context"
