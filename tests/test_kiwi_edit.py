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
