"""Saving and loading Kiwi-Edit in diffusers/transformers conventions: one folder per component, each with its
config JSON and safetensors, plus `model_index.json` naming them.

    DIR/model_index.json
    DIR/mllm/          Qwen2.5-VL (save_pretrained) + tokenizer + image processor
    DIR/mllm/lora/     its LoRA adapters, when it has them (peft's adapter_config.json + adapter_model.safetensors)
    DIR/transformer/   WanTransformer3DModel (save_pretrained)
    DIR/vae/           AutoencoderKLWan (save_pretrained)
    DIR/kiwi/          config.json + model.safetensors: learnable queries, connectors, source/reference embedders

Loading is strict: a tensor the model expects and a folder lacks (or one it does not know) is an error naming it,
never a silently re-initialised projection or a zero connector."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kiwi.model.codec import PixelCodec
from kiwi.model.dit import KiwiTransformer
from kiwi.model.flow import FlowMatching
from kiwi.model.kiwi_edit import KiwiEdit, cast_own_modules
from kiwi.model.lora import base_state_dict, has_lora, load_adapters, save_adapters
from kiwi.model.mllm import KiwiMLLM, QueryCounts
from kiwi.model.text_conditioner import TextConditioner

KIWI_PREFIXES = ("mllm.queries.", "query_connector.", "reference_connector.", "transformer.source_embedder.",
                 "transformer.reference_embedder.", "refiner.")


@contextlib.contextmanager
def _hf_bars_off():
    """transformers draws a bar for every save ("Writing model shards") and load ("Loading weights"), even of one
    small shard: noise in a command's output, so bars are off for the call and restored after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _save_quietly(module, folder: Path, state_dict: dict | None = None) -> None:
    with _hf_bars_off():
        module.save_pretrained(folder, state_dict=state_dict)


def save_pretrained(model: KiwiEdit, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    conditioner, codec = isinstance(model.mllm, TextConditioner), isinstance(model.vae, PixelCodec)
    if not conditioner:
        qwen = model.mllm.model
        lora = has_lora(qwen.model.language_model)
        _save_quietly(qwen, folder / "mllm", base_state_dict(qwen) if lora else None)
        if lora:
            save_adapters(qwen.model.language_model, folder / "mllm" / "lora")
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
              "flow_weighting": model.flow.weighting,
              "frame_pixels": [getattr(model.mllm, "min_pixels", 0), getattr(model.mllm, "max_pixels", 0)],
              "source_residual": model.source_residual, "source_gate": model.source_gate,
              "sampler_steps": model.sampler_steps,
              "source_refiner": model.refiner.kernel if model.refiner is not None else 0,
              # "context" / "instruction" / "" (folders that say true were saved with the context-modulated refiner)
              "refiner_condition": model.refiner_condition if model.refiner is not None else ""}
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
        with _hf_bars_off():
            qwen, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder / "mllm", dtype=dtype,
                                                                             output_loading_info=True)
        _refuse_missing(folder / "mllm", info)
        if (folder / "mllm" / "lora").is_dir():
            load_adapters(qwen.model.language_model, folder / "mllm" / "lora")
        mllm = KiwiMLLM(qwen, AutoTokenizer.from_pretrained(folder / "mllm"),
                        AutoImageProcessor.from_pretrained(folder / "mllm"), QueryCounts(**config["queries"]),
                        max_frames=config["max_frames"],
                        **dict(zip(("min_pixels", "max_pixels"), config.get("frame_pixels", ()), strict=False)))
    dit, info = WanTransformer3DModel.from_pretrained(folder / "transformer", dtype=dtype, output_loading_info=True)
    _refuse_missing(folder / "transformer", info)
    transformer = KiwiTransformer(dit, reference_position=config["reference_position"])
    if "codec" in config:
        vae = PixelCodec(**config["codec"])
    else:
        vae, info = AutoencoderKLWan.from_pretrained(folder / "vae", dtype=dtype, output_loading_info=True)
        _refuse_missing(folder / "vae", info)
    model = KiwiEdit(mllm, transformer, vae, FlowMatching(shift=config["flow_shift"],
                                                          prediction=config.get("flow_prediction", "velocity"),
                                                          weighting=config.get("flow_weighting", "none")),
                     source_residual=config.get("source_residual", False),
                     source_gate=config.get("source_gate", False), sampler_steps=config.get("sampler_steps", 8),
                     source_refiner=config.get("source_refiner", 0),
                     refiner_condition=config.get("refiner_condition", False))
    own = [k for k in model.state_dict() if k.startswith(KIWI_PREFIXES)]
    load_strictly(model, load_file(folder / "kiwi" / "model.safetensors"), folder / "kiwi" / "model.safetensors",
                  expected=own)
    return cast_own_modules(model, dtype).to(device).eval()


def load_strictly(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path,
                  expected: list[str] | None = None) -> None:
    """Load `tensors` into `model`, refusing with their names on any tensor of `expected` (default: all of the
    model's) that `source` lacks, or any it has that the model does not know."""
    result = model.load_state_dict(tensors, strict=False)
    wanted = set(model.state_dict()) if expected is None else set(expected)
    missing = sorted(wanted & set(result.missing_keys))
    if missing or result.unexpected_keys:
        raise ValueError(_mismatch(source, missing, list(result.unexpected_keys)))


def _refuse_missing(folder: Path, info: dict) -> None:
    missing = sorted(info.get("missing_keys") or [])
    mismatched = [f"{k} ({a} != {b})" for k, a, b in info.get("mismatched_keys") or []]
    if missing or mismatched:
        raise ValueError(_mismatch(folder, missing, mismatched, what="wrong shape"))


def _mismatch(source, missing: list[str], other: list[str], what: str = "unknown to the model") -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    if other:
        parts.append(f"{len(other)} {what}: {', '.join(other[:5])}{' …' if len(other) > 5 else ''}")
    return f"{source}: does not fit the model — " + "; ".join(parts)


def state_fingerprint(model: torch.nn.Module) -> str:
    """A short key of a model's weights themselves (every tensor's name and bytes): results keyed by it belong to
    these weights, whatever the run or the architecture was called. For models small enough to hash in a moment
    (the experiment's); a model folder on disk is keyed by `fingerprint`."""
    import hashlib

    digest = hashlib.blake2b(digest_size=6)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def architecture_fingerprint(model: torch.nn.Module) -> str:
    """A short key of a model's shape (every tensor's name, shape and dtype, not its values): a run folder named
    with it is never resumed into a model of another architecture."""
    import hashlib

    shapes = "\n".join(f"{name}\x00{tuple(t.shape)}\x00{t.dtype}" for name, t in sorted(model.state_dict().items()))
    return hashlib.blake2b(shapes.encode(), digest_size=4).hexdigest()


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

