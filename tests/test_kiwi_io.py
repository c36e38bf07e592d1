"""Save / load round trip in diffusers/transformers conventions gives identical outputs."""

import json

import numpy as np
import torch

from kiwi.model.io import from_pretrained, save_pretrained
from kiwi.model.kiwi_edit import EditBatch, tiny
from kiwi.model.lora import base_state_dict
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
    assert torch.equal(ctx_a, ctx_b)
    # the DiT's output matches to float rounding only: a fresh diffusers model and the same weights loaded from
    # safetensors take different kernels (measured up to 4e-7 on identical parameters, before this project's code)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_loading_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="not a Kiwi-Edit model folder"):
        from_pretrained(tmp_path)


def test_full_builder_loads_released_style_folders_by_path(tmp_path):
    """The `full` loading code on three separately saved folders shaped like the released ones (tiny weights,
    and a tokenizer that lacks the query token, as Qwen's does)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from kiwi.model.kiwi_edit import full
    from kiwi.model.mllm import QUERY_TOKEN, SPECIAL_TOKENS

    model = tiny(seed=4)
    model.mllm.model.save_pretrained(tmp_path / "qwen")
    model.mllm.image_processor.save_pretrained(tmp_path / "qwen")
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    without_query = [t for t in SPECIAL_TOKENS if t != QUERY_TOKEN]
    bpe.train_from_iterator(["Add a red ball", "Remove the cat"] * 5, trainers.BpeTrainer(
        vocab_size=len(model.mllm.tokenizer) - 1, special_tokens=without_query,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                            additional_special_tokens=without_query[1:]).save_pretrained(tmp_path / "qwen")
    model.transformer.transformer.save_pretrained(tmp_path / "wan")
    model.vae.save_pretrained(tmp_path / "vae")
    loaded = full(str(tmp_path / "qwen"), str(tmp_path / "wan"), str(tmp_path / "vae"),
                  queries=model.mllm.counts, lora_rank=4, dtype=torch.float32)
    assert loaded.mllm.tokenizer.convert_ids_to_tokens(loaded.mllm.query_id) == QUERY_TOKEN
    assert any("lora_" in n for n, _ in loaded.mllm.model.named_parameters())
    frames = np.stack([moving_square(1, frames=5, size=64)])
    loss = loaded.training_loss(EditBatch(["Add a red ball"], frames, frames), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_model_sizes_are_dataclass_configs():
    import pytest

    from kiwi.model.kiwi_edit import KiwiConfig

    model = KiwiConfig.tiny_config(seed=5).build()
    assert model.mllm.counts.video == 8
    full = KiwiConfig.full_config("/models/qwen", "/models/wan", "/models/vae")
    assert (full.queries.image, full.queries.video, full.queries.reference, full.lora_rank) == (256, 512, 768, 64)
    with pytest.raises(ValueError, match="needs local paths"):
        KiwiConfig("full").build()


def _lora_model(seed: int):
    """The tiny model with rank-4 LoRA on its language model's attention, adapters non-zero."""
    from kiwi.model.lora import add_lora

    model = tiny(seed=seed)
    add_lora(model.mllm.model.model.language_model, rank=4)
    torch.manual_seed(seed)
    torch.nn.init.normal_(model.query_connector[2].weight, std=0.05)  # zero-initialised: the context would be 0
    for name, parameter in model.mllm.model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: make the adapters change the outputs
            torch.nn.init.normal_(parameter, std=0.05)
    return model


def test_a_model_with_lora_round_trips_with_identical_outputs(tmp_path):
    """peft's injected layers rename the attention weights (`q_proj.base_layer.weight`); saved as they are, a load
    re-initialised every attention projection at random. Now the base model is saved in its own names and the
    adapters apart, in peft's format."""
    model = _lora_model(6)
    folder = save_pretrained(model, tmp_path / "with-lora")
    assert {p.name for p in (folder / "mllm" / "lora").iterdir()} == {"adapter_config.json",
                                                                      "adapter_model.safetensors"}
    loaded = from_pretrained(folder)
    assert sum("lora_" in n for n, _ in loaded.mllm.model.named_parameters()) > 0
    frames = np.stack([moving_square(1, frames=5, size=64)])
    batch = EditBatch(["Add a red ball"], frames, frames, np.stack([frames[0, 0]]), "ref_subject")
    without = tiny(seed=6).eval()  # the same base and Kiwi tensors without the adapters answer otherwise
    without.mllm.model.load_state_dict(base_state_dict(loaded.mllm.model))
    without.load_state_dict({k: v for k, v in loaded.state_dict().items() if not k.startswith("mllm.model.")},
                            strict=False)
    with torch.no_grad():
        assert torch.equal(model.eval().context(batch), loaded.context(batch))
        assert not torch.allclose(without.context(batch), loaded.context(batch), atol=1e-4)


def test_a_folder_missing_a_tensor_refuses_to_load_naming_it(tmp_path):
    import pytest
    from safetensors.torch import load_file, save_file

    folder = save_pretrained(_lora_model(7), tmp_path / "m")
    own = load_file(folder / "kiwi" / "model.safetensors")
    save_file({k: v for k, v in own.items() if not k.startswith("query_connector.")},
              folder / "kiwi" / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors: does not fit .* missing: .*query_connector\.0\.weight"):
        from_pretrained(folder)
    save_file(own, folder / "kiwi" / "model.safetensors")
    adapters = load_file(folder / "mllm" / "lora" / "adapter_model.safetensors")
    dropped = sorted(adapters)[0]
    save_file({k: v for k, v in adapters.items() if k != dropped},
              folder / "mllm" / "lora" / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="adapter_model.safetensors does not fit the model: missing"):
        from_pretrained(folder)
    save_file(adapters, folder / "mllm" / "lora" / "adapter_model.safetensors")
    shards = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    save_file({k: v for k, v in shards.items() if k != "proj_out.weight"},
              folder / "transformer" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match=r"transformer: does not fit .* missing: proj_out\.weight"):
        from_pretrained(folder)


def test_a_training_checkpoint_missing_a_tensor_refuses_to_load(tmp_path):
    import pytest
    from safetensors.torch import save_file

    from kiwi.checkpoints import NOT_CHECKPOINTED, load_weights

    model = tiny(seed=8)
    weights = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith(NOT_CHECKPOINTED)}
    save_file(weights, tmp_path / "model.safetensors")
    load_weights(tiny(seed=9), tmp_path)  # the frozen VAE and vision tower are not in a checkpoint: fine
    save_file({k: v for k, v in weights.items() if not k.startswith("reference_connector.")},
              tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing: .*reference_connector\."):
        load_weights(tiny(seed=9), tmp_path)
