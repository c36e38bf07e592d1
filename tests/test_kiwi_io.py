"""Save / load round trip in diffusers/transformers conventions gives identical outputs."""

import json

import numpy as np
import torch

from kiwi.model.io import from_pretrained, save_pretrained
from kiwi.model.kiwi_edit import EditBatch, tiny
from tests.conftest import moving_square


def test_round_trip_gives_identical_outputs(tmp_path):
    model = tiny(seed=3)
    torch.nn.init.normal_(model.query_connector[2].weight, std=0.05)  # make the saved state non-trivial
    torch.nn.init.normal_(model.transformer.source_embedder.weight, std=0.05)
    folder = save_pretrained(model, tmp_path / "kiwi-tiny")
    assert {p.name for p in folder.iterdir()} == {"mllm", "transformer", "vae", "kiwi", "model_index.json"}
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "KiwiEdit"
    loaded = from_pretrained(folder)
    frames = np.stack([moving_square(1, frames=5, size=64)])
    batch = EditBatch(["Add a red ball"], frames, frames, np.stack([frames[0, 0]]), "ref_subject")
    with torch.no_grad():
        a = model.eval().training_loss(batch, torch.Generator().manual_seed(0))
        b = loaded.training_loss(batch, torch.Generator().manual_seed(0))
        ctx_a, ctx_b = model.context(batch), loaded.context(batch)
    assert torch.equal(ctx_a, ctx_b) and torch.equal(a, b)


def test_loading_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="not a Kiwi-Edit model folder"):
        from_pretrained(tmp_path)
