"""FLOPs per sample per component, counted with FlopCounterMode on the meta device, against hand counts on the tiny
model (the full model is the same code at the published shapes: `kiwi plan --flops`)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from kiwi.curriculum import STAGE1, STAGE3, StageConfig
from kiwi.flops import Flops, StageFlops, counted, latent_shape, sample_flops, stage_flops
from kiwi.model.kiwi_edit import tiny
from kiwi.plan import reference_tokens
from kiwi.trainable import set_trainable


@pytest.fixture(scope="module")
def model():
    return tiny(seed=0).to("meta")


def test_counted_is_exact_on_a_linear_layer():
    layer = torch.nn.Linear(16, 8).to("meta")
    x = torch.zeros(4, 16, device="meta", requires_grad=True)
    both = counted(lambda: layer(x))
    assert (both.forward, both.backward) == (2 * 4 * 16 * 8, 2 * 2 * 4 * 16 * 8)  # dX and dW
    layer.requires_grad_(False)
    only_input = counted(lambda: layer(x))
    assert only_input.backward == 2 * 4 * 16 * 8  # a frozen layer still passes the gradient on
    with torch.no_grad():
        assert counted(lambda: layer(x)).backward == 0


def hand_dit_forward(model, frames: int, size: int) -> int:
    """The DiT's matmuls by hand: connectors, patch / source / reference embedders, per block self- and
    cross-attention projections and scores, the feed-forward, the output projection and the time embedder."""
    c = model.transformer.config
    channels, t, h, w = latent_shape(model, frames, size, size)
    pt, ph, pw = c.patch_size
    d = c.num_attention_heads * c.attention_head_dim
    video, ref = (t // pt) * (h // ph) * (w // pw), (h // ph) * (w // pw)
    s = video + ref
    queries, ref_tokens = model.mllm.counts.reference, reference_tokens(size, size)
    length = queries + ref_tokens
    hidden = model.query_connector[0].in_features
    patch = channels * pt * ph * pw
    connectors = 2 * length * (hidden * d + d * d)
    embedders = 2 * video * patch * d * 2 + 2 * ref * patch * d
    block = (4 * 2 * s * d * d + 4 * s * s * d                            # self-attention: q k v o, scores
             + 2 * 2 * s * d * d + 2 * 2 * length * d * d + 4 * s * length * d   # cross-attention
             + 2 * 2 * s * d * c.ffn_dim)                                 # feed-forward
    return connectors + embedders + c.num_layers * block + 2 * s * d * patch + 2 * (c.freq_dim * d + 7 * d * d)


def test_the_dit_count_matches_a_hand_count(model):
    stage = StageConfig("s", "x", "ref_subject", STAGE3, 1, 1e-3, frames=5, size=64)
    set_trainable(model, stage.trains)
    parts = sample_flops(model, "ref_subject", 5, 64, 64, True, stage)
    hand = hand_dit_forward(model, 5, 64)
    assert abs(parts["dit"].forward - hand) / hand < 0.01
    assert parts["dit"].backward == pytest.approx(2 * parts["dit"].forward, rel=0.05)  # the DiT trains: dX + dW
    assert parts["vae"].backward == 0  # frozen, no gradient wanted


def test_the_vae_counts_each_encode_the_step_makes(model):
    stage = StageConfig("s", "x", "instruct", ("dit",), 1, 1e-3, frames=5, size=64)
    set_trainable(model, stage.trains)
    plain = sample_flops(model, "instruct", 5, 64, 64, False, stage)["vae"].forward
    conditioned = sample_flops(model, "instruct", 5, 64, 64, True, stage)["vae"].forward
    assert conditioned == pytest.approx(2 * plain)  # target, then the source the same size
    reference = sample_flops(model, "ref_subject", 5, 64, 64, True, stage)["vae"].forward
    one_frame = sample_flops(model, "image", 1, 64, 64, False, stage)["vae"].forward
    assert reference == pytest.approx(conditioned + one_frame)  # and the one-frame reference


def test_the_language_model_runs_backward_only_when_something_in_or_before_it_trains(model):
    frozen = StageConfig("s", "x", "instruct", ("dit",), 1, 1e-3, frames=5, size=64)
    set_trainable(model, frozen.trains)
    assert sample_flops(model, "instruct", 5, 64, 64, True, frozen)["mllm"].backward == 0
    aligning = StageConfig("s", "x", "instruct", STAGE1, 1, 1e-3, frames=5, size=64)
    set_trainable(model, aligning.trains)
    mllm = sample_flops(model, "instruct", 5, 64, 64, True, aligning)["mllm"]
    assert 0 < mllm.backward


def test_a_stage_is_its_sources_mean_and_gpu_time_follows(model):
    from kiwi.curriculum import TaskSource

    stage = StageConfig("mix", "x", "instruct", STAGE3, 1, 1e-3, frames=5, size=64, source_conditioning=True,
                        sources=(TaskSource("image", "a", frames=1), TaskSource("instruct", "b", weight=3)))
    flops = stage_flops(model, stage)
    set_trainable(model, stage.trains)
    image = sample_flops(model, "image", 1, 64, 64, True, stage)
    video = sample_flops(model, "instruct", 5, 64, 64, True, stage)
    for part in ("vae", "mllm", "dit"):
        assert flops.components[part].total == pytest.approx((image[part].total + 3 * video[part].total) / 4)
    made = StageFlops("x", {"vae": Flops(1e12), "mllm": Flops(1e12, 1e12), "dit": Flops(2e12, 3e12)})
    assert made.share("vae") == pytest.approx(1 / 8)
    assert made.gpu_seconds(mfu=0.5, peak_tflops=800) == pytest.approx(8e12 / 4e14)
    with pytest.raises(ValueError, match="meta device"):
        stage_flops(tiny(seed=0), stage)


@pytest.mark.slow
def test_kiwi_plan_prints_flops_per_component_at_the_published_shapes():
    from kiwi.cli import cli

    result = CliRunner().invoke(cli, ["plan", "--flops"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()
            if line.startswith("stage") and "/" in line and "%" in line}
    assert set(rows) == {"stage1-align", "stage2-img-vid", "stage3-img-vid-refvid"}
    assert all(20 <= int(row[5].rstrip("%")) <= 45 for name, row in rows.items() if name != "stage1-align")  # VAE share
