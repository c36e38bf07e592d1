"""Saving and loading Kiwi-Edit in diffusers/transformers conventions: one folder per component, each with its
config JSON and safetensors, plus `model_index.json` naming them.

    DIR/model_index.json
    DIR/mllm/          Qwen2.5-VL (save_pretrained) + tokenizer + image processor
    DIR/transformer/   WanTransformer3DModel (save_pretrained)
    DIR/vae/           AutoencoderKLWan (save_pretrained)
    DIR/kiwi/          config.json + model.safetensors: learnable queries, connectors, source/reference embedders"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kiwi.model.codec import PixelCodec
from kiwi.model.dit import KiwiTransformer
from kiwi.model.flow import FlowMatching
from kiwi.model.kiwi_edit import KiwiEdit
from kiwi.model.mllm import KiwiMLLM, QueryCounts
from kiwi.model.text_conditioner import TextConditioner

KIWI_PREFIXES = ("mllm.queries.", "query_connector.", "reference_connector.", "transformer.source_embedder.",
                 "transformer.reference_embedder.")


def _save_quietly(module, folder: Path) -> None:
    """transformers draws a "Writing model shards" bar for every save, even of one small shard: noise in a
    training command's output, so it is off for the save and restored after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        module.save_pretrained(folder)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_pretrained(model: KiwiEdit, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    conditioner, codec = isinstance(model.mllm, TextConditioner), isinstance(model.vae, PixelCodec)
    if not conditioner:
        _save_quietly(model.mllm.model, folder / "mllm")
        model.mllm.tokenizer.save_pretrained(folder / "mllm")
        model.mllm.image_processor.save_pretrained(folder / "mllm")
    model.transformer.transformer.save_pretrained(folder / "transformer")
    if not codec:
        model.vae.save_pretrained(folder / "vae")
    (folder / "kiwi").mkdir(exist_ok=True)
    own = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(KIWI_PREFIXES)}
    save_file(own, folder / "kiwi" / "model.safetensors")
    counts = model.mllm.counts
    config = {"queries": {"image": counts.image, "video": counts.video, "reference": counts.reference},
              "reference_position": model.transformer.reference_position, "flow_shift": model.flow.shift,
              "max_frames": model.mllm.max_frames, "flow_prediction": model.flow.prediction,
              "source_residual": model.source_residual, "source_gate": model.source_gate}
    if conditioner:  # the sentence-embedding conditioner's MLP is saved with the kiwi tensors (mllm.queries.*)
        config["conditioner"] = {"hidden_size": model.mllm.hidden_size, "tokens": model.mllm.tokens}
    if codec:
        config["codec"] = {"patch": model.vae.patch}
    (folder / "kiwi" / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "KiwiEdit",
         "mllm": ["kiwi", "TextConditioner"] if conditioner else ["transformers", "Qwen2_5_VLForConditionalGeneration"],
         "transformer": ["diffusers", "WanTransformer3DModel"],
         "vae": ["kiwi", "PixelCodec"] if codec else ["diffusers", "AutoencoderKLWan"],
         "kiwi": ["kiwi", "queries, connectors, embedders"]}, indent=1))
    return folder


def from_pretrained(folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> KiwiEdit:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder}: not a Kiwi-Edit model folder (no model_index.json); "
                                "create one with `kiwi init --config tiny --out DIR`")
    config = json.loads((folder / "kiwi" / "config.json").read_text())
    if "conditioner" in config:
        mllm = TextConditioner(**config["conditioner"])
    else:
        qwen = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder / "mllm", dtype=dtype)
        mllm = KiwiMLLM(qwen, AutoTokenizer.from_pretrained(folder / "mllm"),
                        AutoImageProcessor.from_pretrained(folder / "mllm"), QueryCounts(**config["queries"]),
                        max_frames=config["max_frames"])
    transformer = KiwiTransformer(WanTransformer3DModel.from_pretrained(folder / "transformer", dtype=dtype),
                                  reference_position=config["reference_position"])
    vae = (PixelCodec(**config["codec"]) if "codec" in config
           else AutoencoderKLWan.from_pretrained(folder / "vae", dtype=dtype))
    model = KiwiEdit(mllm, transformer, vae, FlowMatching(shift=config["flow_shift"],
                                                          prediction=config.get("flow_prediction", "velocity")),
                     source_residual=config.get("source_residual", False),
                     source_gate=config.get("source_gate", False))
    missing = model.load_state_dict(load_file(folder / "kiwi" / "model.safetensors"), strict=False)
    unexpected = [k for k in missing.unexpected_keys]
    if unexpected:
        raise ValueError(f"{folder}/kiwi/model.safetensors has unknown tensors: {unexpected[:3]}")
    return model.to(device).eval()


def fingerprint(folder: str | Path) -> str:
    """A short key of a model folder's current files (relative path, size, modification time): it changes when
    the folder is trained or saved into again, so results keyed by it never mix two models' weights. Cheap on
    full-size checkpoints, where hashing every byte would take minutes."""
    import hashlib

    folder = Path(folder)
    digest = hashlib.blake2b(digest_size=6)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\x00{stat.st_size}\x00{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()

