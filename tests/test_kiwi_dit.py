"""The Kiwi-Edit DiT wiring on a tiny random Wan transformer, and the published full shapes on the meta device."""

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

from kiwi.model import KiwiTransformer, count_parameters

CONFIGS = Path(__file__).resolve().parent.parent / "kiwi" / "configs"
TINY = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
            text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    base = WanTransformer3DModel(**TINY).eval()
    return base, KiwiTransformer(base).eval()


def inputs(frames=3, size=8, batch=2):
    g = torch.Generator().manual_seed(1)
    return dict(hidden_states=torch.randn(batch, 4, frames, size, size, generator=g),
                timestep=torch.tensor([500, 250][:batch]),
                encoder_hidden_states=torch.randn(batch, 6, 32, generator=g))


def test_without_conditioning_it_is_exactly_the_base_dit(tiny):
    base, kiwi = tiny
    x = inputs()
    with torch.no_grad():
        assert torch.equal(kiwi(**x), base(**x, return_dict=False)[0])


def test_zero_initialised_source_embedder_leaves_the_first_forward_bit_identical(tiny):
    base, kiwi = tiny
    x = inputs()
    source = torch.randn_like(x["hidden_states"])
    with torch.no_grad():
        out = kiwi(**x, source_latents=source, sigma=torch.tensor([0.9, 0.3]))
        assert torch.equal(out, base(**x, return_dict=False)[0])
        torch.nn.init.normal_(kiwi.source_embedder.weight, std=0.02)  # once trained, the source matters
        assert not torch.allclose(kiwi(**x, source_latents=source, sigma=torch.tensor([0.9, 0.3])), out)


@pytest.mark.parametrize("position", ["append", "prepend"])
def test_reference_tokens_act_only_through_self_attention_and_are_dropped(position):
    torch.manual_seed(0)
    base = WanTransformer3DModel(**TINY).eval()
    kiwi = KiwiTransformer(base, reference_position=position).eval()
    x = inputs()
    reference = torch.randn(2, 4, 1, 8, 8)
    with torch.no_grad():
        plain = base(**x, return_dict=False)[0]
        with_ref = kiwi(**x, reference_latents=reference)
        masked = kiwi(**x, reference_latents=reference, mask_reference=True)
    assert with_ref.shape == plain.shape  # reference tokens dropped before unpatchify
    assert not torch.allclose(with_ref, plain, atol=1e-4)  # zero embedder, yet modulation makes keys/values
    assert torch.allclose(masked, plain, atol=1e-6)  # no attention to them: the video output is the base one


def test_rotary_tables_match_the_model_and_the_reference_gets_the_next_frame(tiny):
    base, kiwi = tiny
    cos, sin = kiwi.rotary(3, 4, 4, torch.arange(3), "cpu")
    ref_cos, ref_sin = base.rope(torch.zeros(1, 4, 3, 8, 8))
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)
    next_cos, _ = kiwi.rotary(1, 4, 4, torch.tensor([3]), "cpu")
    four, _ = kiwi.rotary(4, 4, 4, torch.arange(4), "cpu")
    assert torch.equal(next_cos, four[:, 3 * 16 :])


@pytest.mark.parametrize("position", ["append", "prepend"])
def test_reference_rotary_frames_follow_the_sequence_as_upstream(position):
    """Upstream builds the rotary table of f + 1 frames in sequence order: appended, the reference is frame f;
    prepended (`ref_pad_first`), it is frame 0 and the video's frames are 1..f."""
    torch.manual_seed(0)
    base = WanTransformer3DModel(**TINY).eval()
    kiwi = KiwiTransformer(base, reference_position=position).eval()
    seen = []
    base.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[3]))
    with torch.no_grad():
        kiwi(**inputs(frames=3), reference_latents=torch.randn(2, 4, 1, 8, 8))
    cos, sin = seen[0]
    whole_cos, whole_sin = base.rope(torch.zeros(1, 4, 4, 8, 8))  # one more frame than the video's three
    assert torch.equal(cos, whole_cos) and torch.equal(sin, whole_sin)


def test_gradients_reach_both_embedders_after_one_step(tiny):
    _, kiwi = tiny
    kiwi.train()
    x = inputs()
    optimiser = torch.optim.AdamW(kiwi.parameters(), lr=1e-3)
    for _ in range(2):
        optimiser.zero_grad()
        out = kiwi(**x, source_latents=torch.randn_like(x["hidden_states"]), sigma=torch.tensor([0.5, 0.5]),
                   reference_latents=torch.randn(2, 4, 1, 8, 8))
        out.pow(2).mean().backward()
        optimiser.step()
    assert kiwi.source_embedder.weight.grad.abs().sum() > 0
    assert kiwi.reference_embedder.weight.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny):
    _, kiwi = tiny
    kiwi.train()
    x = inputs()
    reference = torch.randn(2, 4, 1, 8, 8)
    torch.nn.init.normal_(kiwi.reference_embedder.weight, std=0.02)
    grads = []
    for checkpointing in (False, True):
        kiwi.gradient_checkpointing = checkpointing
        kiwi.zero_grad()
        out = kiwi(**x, source_latents=torch.ones_like(x["hidden_states"]), sigma=torch.tensor([0.5, 0.7]),
                   reference_latents=reference)
        out.pow(2).mean().backward()
        grads.append((out.detach(), [p.grad.clone() for p in kiwi.parameters() if p.grad is not None]))
    kiwi.gradient_checkpointing = False
    kiwi.eval()
    assert torch.equal(grads[0][0], grads[1][0])
    assert len(grads[0][1]) == len(grads[1][1])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1], strict=True))


def test_published_full_shapes_on_the_meta_device():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        dit = WanTransformer3DModel(**json.loads((CONFIGS / "wan2.2-ti2v-5b.transformer.json").read_text()))
        vae = AutoencoderKLWan.from_config(json.loads((CONFIGS / "wan2.2.vae.json").read_text()))
        qwen = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(**json.loads((CONFIGS / "qwen2.5-vl-3b-instruct.json").read_text())))
        kiwi = KiwiTransformer(dit)
    assert count_parameters(dit) == 4_999_787_712
    assert count_parameters(vae) == 704_688_668
    assert count_parameters(qwen) == 3_754_622_976
    # the new modules: two patch embedders, 48 latent channels -> 3072 width over a 1x2x2 patch
    assert count_parameters(kiwi) - count_parameters(dit) == 2 * (48 * 3072 * 4 + 3072)
