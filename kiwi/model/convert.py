"""Released Kiwi-Edit weights into this project's model folder (`kiwi.model.io` layout).

The diffusers-format releases (showlab's `KiwiEditPipeline` folders) hold, per component:

    transformer/        WanTransformer3DModel (diffusers names)            -> transformer/ as it is
    mllm_encoder/       Qwen2.5-VL shards (LoRA merged) + config.json of   -> mllm/ (weights, tokenizer, processor,
                        the MLLMEncoder (query counts, max_frames) +          config.json = qwen_config.json)
                        diffusion_pytorch_model.safetensors: image_queries,
                        video_queries, ref_queries, connector.*, ref_connector.*
    processor/          tokenizer + processor files, qwen_config.json
    source_embedder/    patch_embedding.* (ConditionalEmbedder)            -> kiwi/model.safetensors
    ref_embedder/       patch_embedding.*; config `ref_pad_first`          -> reference_position prepend/append
    vae/                the *original* Wan VAE names (not diffusers')      -> a diffusers AutoencoderKLWan folder is
                                                                               taken from `vae=` (e.g. the vae/ of
                                                                               Wan-AI/Wan2.2-TI2V-5B-Diffusers)
    scheduler/          FlowMatchEulerDiscreteScheduler config (shift)     -> kiwi/config.json flow_shift

Every tensor of the Kiwi-specific files is mapped or the conversion refuses, naming it; shapes are checked against
what the transformer's and the MLLM's configs imply before anything is written; the result loads strictly
(`from_pretrained`)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kiwi.model.kiwi_edit import FULL_SAMPLER_STEPS
from kiwi.model.mllm import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS

# upstream name in mllm_encoder/diffusion_pytorch_model.safetensors -> ours
MLLM_ENCODER_KEYS = {
    "image_queries": "mllm.queries.image",
    "video_queries": "mllm.queries.video",
    "ref_queries": "mllm.queries.reference",
    **{f"connector.{i}.{p}": f"query_connector.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")},
    **{f"ref_connector.{i}.{p}": f"reference_connector.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")},
}
EMBEDDERS = {"source_embedder": "transformer.source_embedder", "ref_embedder": "transformer.reference_embedder"}
QWEN_WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json")
PROCESSOR_SKIP = {"qwen_config.json", "config.json"}


class ConversionError(ValueError):
    pass


@dataclass
class Conversion:
    """What was mapped, for the command to print."""

    out: Path
    mapped: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # (theirs, ours, shape)
    copied: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # component -> checkpoint · base (DIR) · fresh init

    def __str__(self) -> str:
        lines = [f"converted into {self.out}:"]
        a = max((len(theirs) for theirs, _, _ in self.mapped), default=0)
        b = max((len(ours) for _, ours, _ in self.mapped), default=0)
        lines += [f"  {theirs:<{a}} -> {ours:<{b}} {list(shape)}" for theirs, ours, shape in self.mapped]
        lines += [f"  {name}" for name in self.copied]
        if self.origins:
            width = max(map(len, self.origins))
            lines.append("where each component came from:")
            lines += [f"  {name:<{width}}  {origin}" for name, origin in self.origins.items()]
        lines.append("  kiwi/config.json: " + json.dumps(self.config, sort_keys=True))
        return "\n".join(lines)


def convert_diffusers_release(src: str | Path, out: str | Path, vae: str | Path | None = None,
                              overwrite: bool = False) -> Conversion:
    """A diffusers-format Kiwi-Edit release folder -> a folder `kiwi.model.io.from_pretrained` loads."""
    src, out = Path(src), Path(out)
    for part in ("transformer", "mllm_encoder", "processor", "source_embedder", "ref_embedder"):
        if not (src / part).is_dir():
            raise ConversionError(f"{src}: no {part}/ — not a diffusers-format Kiwi-Edit release "
                                  "(expected transformer/, mllm_encoder/, processor/, source_embedder/, ref_embedder/)")
    vae_dir = _diffusers_vae(src, vae)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConversionError(f"{out} exists and is not empty (pass overwrite=True / --overwrite)")

    dit_config = read_json(src / "transformer" / "config.json")
    qwen_config = read_json(src / "processor" / "qwen_config.json")
    encoder_config = read_json(src / "mllm_encoder" / "config.json")
    hidden = (qwen_config.get("text_config") or {}).get("hidden_size") or qwen_config["hidden_size"]
    tensors, conversion = {}, Conversion(out)
    counts = {"image": encoder_config.get("num_image_queries", 256),
              "video": encoder_config.get("num_video_queries", 512),
              "reference": encoder_config.get("num_ref_queries", 768)}
    expected = expected_shapes(dit_config, hidden, counts)

    own = _read(src / "mllm_encoder" / "diffusion_pytorch_model.safetensors")
    unmapped = sorted(set(own) - set(MLLM_ENCODER_KEYS))
    if unmapped:
        raise ConversionError(f"{src}/mllm_encoder/diffusion_pytorch_model.safetensors: unmapped tensors {unmapped}")
    for theirs, value in own.items():
        tensors[MLLM_ENCODER_KEYS[theirs]] = value
        conversion.mapped.append((f"mllm_encoder/{theirs}", MLLM_ENCODER_KEYS[theirs], tuple(value.shape)))
    for folder, ours in EMBEDDERS.items():
        weights = _read(src / folder / "diffusion_pytorch_model.safetensors")
        unmapped = sorted(set(weights) - {"patch_embedding.weight", "patch_embedding.bias"})
        if unmapped:
            raise ConversionError(f"{src}/{folder}: unmapped tensors {unmapped}")
        for part in ("weight", "bias"):
            if f"patch_embedding.{part}" in weights:
                tensors[f"{ours}.{part}"] = weights[f"patch_embedding.{part}"]
                conversion.mapped.append((f"{folder}/patch_embedding.{part}", f"{ours}.{part}",
                                          tuple(weights[f"patch_embedding.{part}"].shape)))
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ConversionError(f"{src}: no tensor for {missing} (the release would load with them unfilled)")
    wrong = [f"{k}: {tuple(tensors[k].shape)} != {expected[k]}" for k in expected if tuple(tensors[k].shape)
             != expected[k]]
    if wrong:
        raise ConversionError(f"{src}: shapes that do not fit the transformer / MLLM configs: {wrong}")

    out.mkdir(parents=True, exist_ok=True)
    for name in ("transformer", "mllm", "vae", "kiwi"):
        shutil.rmtree(out / name, ignore_errors=True)
    shutil.copytree(src / "transformer", out / "transformer")
    shutil.copytree(vae_dir, out / "vae")
    conversion.copied += ["transformer/ (as released)", f"vae/ (from {vae_dir})"]
    _mllm_folder(src, out / "mllm", qwen_config)
    conversion.copied.append("mllm/ (Qwen2.5-VL shards from mllm_encoder/, tokenizer and processor from processor/)")

    ref_config = read_json(src / "ref_embedder" / "config.json")
    conversion.config = release_config(counts, bool(ref_config.get("ref_pad_first")), float(_scheduler_shift(src)),
                                       int(encoder_config.get("max_frames", 16)),
                                       int(encoder_config.get("max_pixels_per_frame") or VIDEO_MAX_PIXELS), src)
    write_kiwi_part(out, tensors, conversion)
    return conversion


def release_config(counts: dict[str, int], ref_pad_first: bool, shift: float, max_frames: int, max_pixels: int,
                   source: Path) -> dict:
    """kiwi/config.json of a converted release: velocity prediction, upstream's budgets and sampler steps."""
    return {"queries": counts,
            # upstream's ref_pad_first puts the reference latents before the video's
            "reference_position": "prepend" if ref_pad_first else "append", "flow_shift": shift,
            "max_frames": max_frames, "frame_pixels": [VIDEO_MIN_PIXELS, max_pixels], "flow_prediction": "velocity",
            "flow_weighting": "bell",
            "source_residual": False, "source_gate": False, "sampler_steps": FULL_SAMPLER_STEPS,
            "converted_from": str(source.resolve())}


def write_kiwi_part(out: Path, tensors: dict[str, torch.Tensor], conversion: Conversion) -> None:
    """kiwi/ (the Kiwi-specific tensors and config) and model_index.json, the last part of a converted folder."""
    (out / "kiwi").mkdir()
    save_file({k: v.contiguous() for k, v in tensors.items()}, out / "kiwi" / "model.safetensors")
    (out / "kiwi" / "config.json").write_text(json.dumps(conversion.config, indent=1))
    _write_index(out)


def _write_index(out: Path) -> None:
    (out / "model_index.json").write_text(json.dumps(
        {"_class_name": "KiwiEdit", "mllm": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
         "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"],
         "kiwi": ["kiwi", "queries, connectors, embedders"]}, indent=1))


def expected_shapes(dit: dict, hidden: int, counts: dict[str, int]) -> dict[str, tuple[int, ...]]:
    width = dit["num_attention_heads"] * dit["attention_head_dim"]
    patch = tuple(dit["patch_size"])
    shapes = {f"mllm.queries.{task}": (n, hidden) for task, n in counts.items()}
    for ours in ("query_connector", "reference_connector"):
        shapes.update({f"{ours}.0.weight": (width, hidden), f"{ours}.0.bias": (width,),
                       f"{ours}.2.weight": (width, width), f"{ours}.2.bias": (width,)})
    for ours in EMBEDDERS.values():
        shapes.update({f"{ours}.weight": (width, dit["in_channels"], *patch), f"{ours}.bias": (width,)})
    return shapes


def _mllm_folder(src: Path, dst: Path, qwen_config: dict) -> None:
    """Qwen2.5-VL as transformers saves it: the released shards, the Qwen config under its usual name, and the
    tokenizer / processor files (kept in processor/ upstream, so diffusers' own config.json does not clash)."""
    dst.mkdir(parents=True)
    shards = [p for p in (src / "mllm_encoder").iterdir() if p.name.startswith("model")
              and p.name.endswith(QWEN_WEIGHT_SUFFIXES)]
    if not shards:
        raise ConversionError(f"{src}/mllm_encoder: no Qwen2.5-VL shards (model*.safetensors)")
    for shard in shards:
        shutil.copy2(shard, dst / shard.name)
    for asset in (src / "processor").iterdir():
        if asset.is_file() and asset.name not in PROCESSOR_SKIP:
            shutil.copy2(asset, dst / asset.name)
    (dst / "config.json").write_text(json.dumps(qwen_config, indent=1))


def _diffusers_vae(src: Path, vae: str | Path | None) -> Path:
    candidates = [Path(vae)] if vae is not None else [src / "vae"]
    for folder in candidates:
        config = folder / "config.json"
        if config.is_file() and read_json(config).get("_class_name") == "AutoencoderKLWan":
            return folder
    if vae is not None:
        raise ConversionError(f"--vae {vae}: not a diffusers AutoencoderKLWan folder (config.json with "
                              "_class_name AutoencoderKLWan)")
    raise ConversionError(f"{src}/vae holds the original Wan VAE, not diffusers' AutoencoderKLWan: pass --vae with "
                          "a diffusers Wan VAE folder (e.g. the vae/ of Wan-AI/Wan2.2-TI2V-5B-Diffusers)")


def _scheduler_shift(src: Path) -> float:
    config = src / "scheduler" / "scheduler_config.json"
    return read_json(config).get("shift", 5.0) if config.is_file() else 5.0


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConversionError(f"{path}: missing")
    return load_file(path)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConversionError(f"{path}: missing")
    return json.loads(path.read_text())
