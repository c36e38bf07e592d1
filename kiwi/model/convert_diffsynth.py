"""A raw Kiwi-Edit training checkpoint (DiffSynth-Studio, as upstream's train.py saves a stage) into this project's
model folder.

Such a checkpoint holds only what the stage trained, in DiffSynth's names (a `pipe.` / `dit.` prefix may lead):

    blocks.{i}.self_attn.q.weight, head.head.weight, ...      the Wan DiT in the original Wan names (full fine-tune)
    blocks.{i}.self_attn.q.lora_A.default.weight, ...         or LoRA on it (merged into the base DiT)
    mllm.image_queries.q / video_queries.q / ref_queries.q    the learnable queries
    mllm.connetor.{0,2}.* (upstream's spelling), mllm.ref_connector.{0,2}.*
    mllm.model.model.language_model....lora_A.default.weight  LoRA on Qwen2.5-VL (merged into its weights)
    vae_condition.patch_embedding.*, ref_vae_condition.patch_embedding.*   the source / reference embedders

The rest comes from the base models the stage started from, as local folders: `wan` (diffusers
Wan2.2-TI2V-5B: transformer/ and vae/) and `qwen` (Qwen2.5-VL-3B-Instruct). LoRA is merged as upstream's own
converter merges it (W + B @ A, alpha 1). Every tensor is mapped or the conversion refuses, naming it."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kiwi.model.connector import Connector
from kiwi.model.convert import (
    EMBEDDERS,
    Conversion,
    ConversionError,
    expected_shapes,
    read_json,
    release_config,
    write_kiwi_part,
)
from kiwi.model.mllm import VIDEO_MAX_PIXELS, QueryCounts

# the original Wan DiT names (as DiffSynth keeps them) -> diffusers' WanTransformer3DModel names
WAN_BLOCK_KEYS = {
    **{f"self_attn.{a}.{p}": f"attn1.{b}.{p}" for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"),
                                                          ("o", "to_out.0")) for p in ("weight", "bias")},
    **{f"cross_attn.{a}.{p}": f"attn2.{b}.{p}" for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"),
                                                           ("o", "to_out.0")) for p in ("weight", "bias")},
    **{f"{attn}.norm_{x}.weight": f"{ours}.norm_{x}.weight" for attn, ours in (("self_attn", "attn1"),
                                                                               ("cross_attn", "attn2"))
       for x in ("q", "k")},
    **{f"ffn.0.{p}": f"ffn.net.0.proj.{p}" for p in ("weight", "bias")},
    **{f"ffn.2.{p}": f"ffn.net.2.{p}" for p in ("weight", "bias")},
    **{f"norm3.{p}": f"norm2.{p}" for p in ("weight", "bias")},
    "modulation": "scale_shift_table",
}
WAN_TOP_KEYS = {
    **{f"text_embedding.{i}.{p}": f"condition_embedder.text_embedder.linear_{j}.{p}" for i, j in ((0, 1), (2, 2))
       for p in ("weight", "bias")},
    **{f"time_embedding.{i}.{p}": f"condition_embedder.time_embedder.linear_{j}.{p}" for i, j in ((0, 1), (2, 2))
       for p in ("weight", "bias")},
    **{f"time_projection.1.{p}": f"condition_embedder.time_proj.{p}" for p in ("weight", "bias")},
    **{f"patch_embedding.{p}": f"patch_embedding.{p}" for p in ("weight", "bias")},
    "head.modulation": "scale_shift_table",
    **{f"head.head.{p}": f"proj_out.{p}" for p in ("weight", "bias")},
}
MLLM_KEYS = {
    "mllm.image_queries.q": "mllm.queries.image",
    "mllm.video_queries.q": "mllm.queries.video",
    "mllm.ref_queries.q": "mllm.queries.reference",
    **{f"mllm.{theirs}.{i}.{p}": f"{ours}.{i}.{p}" for theirs, ours in (("connetor", "query_connector"),
                                                                       ("connector", "query_connector"),
                                                                       ("ref_connector", "reference_connector"))
       for i in (0, 2) for p in ("weight", "bias")},
}
EMBEDDER_KEYS = {f"{theirs}.patch_embedding.{p}": f"{ours}.{p}"
                 for theirs, ours in (("vae_condition", EMBEDDERS["source_embedder"]),
                                      ("ref_vae_condition", EMBEDDERS["ref_embedder"])) for p in ("weight", "bias")}
FRESH = "fresh"  # --base fresh: what the checkpoint lacks starts as `kiwi init` starts it
# where each Kiwi-specific component's tensors are named, for the per-component origin report
COMPONENTS = {
    "image queries": "mllm.queries.image", "video queries": "mllm.queries.video",
    "reference queries": "mllm.queries.reference", "query connector": "query_connector.",
    "reference connector": "reference_connector.", "source embedder": EMBEDDERS["source_embedder"] + ".",
    "reference embedder": EMBEDDERS["ref_embedder"] + ".",
}
LORA = re.compile(r"^(?P<target>.+)\.lora_(?P<half>[AB])(\.default)?\.weight$")


def wan_key(theirs: str) -> str | None:
    """A DiffSynth (original Wan) DiT key in diffusers' names, or None when it is not a DiT key."""
    if theirs in WAN_TOP_KEYS:
        return WAN_TOP_KEYS[theirs]
    match = re.match(r"^blocks\.(\d+)\.(.+)$", theirs)
    if match and match.group(2) in WAN_BLOCK_KEYS:
        return f"blocks.{match.group(1)}.{WAN_BLOCK_KEYS[match.group(2)]}"
    return None


def normalized(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DiffSynth's save prefixes removed (`pipe.` on everything, `dit.` on the DiT), as upstream's converter does."""
    out = {}
    for key, value in checkpoint.items():
        key = key.removeprefix("pipe.").removeprefix("dit.")
        out[key] = value
    return out


def convert_diffsynth_checkpoint(checkpoint: str | Path, out: str | Path, wan: str | Path | None = None,
                                 qwen: str | Path | None = None, ref_pad_first: bool | None = None,
                                 overwrite: bool = False, base: str | Path | None = None) -> Conversion:
    """A stage checkpoint into a model folder. The models the stage started from are `wan` + `qwen` (the published
    parts), or `base`: a converted earlier stage (its DiT, Qwen and VAE, and the Kiwi tensors this stage did not
    train). `base="fresh"` with `wan` + `qwen` initialises what the checkpoint lacks as `kiwi init` does. Without a
    base, a checkpoint that lacks a Kiwi tensor (stage 1 trains no reference queries) is refused, naming it."""
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise ConversionError(f"{checkpoint}: missing")
    fresh = base is not None and str(base) == FRESH
    base_dir = None if base is None or fresh else Path(base)
    if base_dir is not None:
        if wan is not None or qwen is not None:
            raise ConversionError("--base DIR brings the models the stage started from; leave out --wan / --qwen")
        for part in ("transformer/config.json", "vae/config.json", "mllm/config.json", "kiwi/model.safetensors",
                     "kiwi/config.json"):
            if not (base_dir / part).is_file():
                raise ConversionError(f"--base {base_dir}: no {part} (expected a model folder written by kiwi "
                                      "convert / kiwi init / kiwi train)")
        dit_dir, vae_dir, qwen = base_dir / "transformer", base_dir / "vae", base_dir / "mllm"
    else:
        if wan is None or qwen is None:
            raise ConversionError("a stage checkpoint needs the models it started from: --wan and --qwen (the "
                                  "published parts), or --base DIR (a converted earlier stage)")
        wan, qwen = Path(wan), Path(qwen)
        dit_dir, vae_dir = wan / "transformer", wan / "vae"
        for folder, what in ((dit_dir, "--wan"), (vae_dir, "--wan"), (qwen, "--qwen")):
            if not (folder / "config.json").is_file():
                raise ConversionError(f"{what} {folder}: no config.json (expected a diffusers Wan2.2-TI2V-5B "
                                      "folder with transformer/ and vae/, and a Qwen2.5-VL-3B-Instruct folder)")
    qwen = Path(qwen)
    if read_json(vae_dir / "config.json").get("_class_name") != "AutoencoderKLWan":
        raise ConversionError(f"{vae_dir}: not a diffusers AutoencoderKLWan folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConversionError(f"{out} exists and is not empty (pass overwrite=True / --overwrite)")
    state = normalized(load_file(checkpoint) if checkpoint.suffix == ".safetensors"
                       else torch.load(checkpoint, map_location="cpu", weights_only=True))
    conversion, own, dit_full, loras = Conversion(out), {}, {}, {}
    for key, value in state.items():
        lora = LORA.match(key)
        if lora:
            loras.setdefault(lora.group("target"), {})[lora.group("half")] = (key, value)
        elif key in MLLM_KEYS or key in EMBEDDER_KEYS:
            ours = MLLM_KEYS.get(key) or EMBEDDER_KEYS[key]
            own[ours] = value
            conversion.mapped.append((key, ours, tuple(value.shape)))
        elif wan_key(key):
            dit_full[wan_key(key)] = value
            conversion.mapped.append((key, f"transformer/{wan_key(key)}", tuple(value.shape)))
        else:
            raise ConversionError(f"{checkpoint}: unmapped tensor {key!r}")

    dit_config = read_json(dit_dir / "config.json")
    qwen_config = read_json(qwen / "config.json")
    hidden = (qwen_config.get("text_config") or {}).get("hidden_size") or qwen_config["hidden_size"]
    base_config = read_json(base_dir / "kiwi" / "config.json") if base_dir is not None else {}
    default_counts = base_config.get("queries") or (dataclasses.asdict(QueryCounts()) if fresh else {})
    counts = {task: tuple(own[f"mllm.queries.{task}"].shape)[0] if f"mllm.queries.{task}" in own
              else int(default_counts.get(task, 0)) for task in ("image", "video", "reference")}
    expected = expected_shapes(dit_config, hidden, counts)
    missing = sorted(set(expected) - set(own))
    conversion.origins = {component: "checkpoint" for component in COMPONENTS}
    if missing and base is None:
        raise ConversionError(f"{checkpoint}: no tensor for {missing} (the model would load with them unfilled); a "
                              "stage checkpoint holds only what its stage trained: pass --base DIR (a converted "
                              "earlier stage) or --base fresh to fill the rest")
    if missing:
        filler = (_fresh_tensors(expected, counts, hidden) if fresh
                  else load_file(base_dir / "kiwi" / "model.safetensors"))
        lacking = [k for k in missing if k not in filler]
        if lacking:
            raise ConversionError(f"--base {base_dir}: has no {lacking} either")
        for key in missing:
            own[key] = filler[key]
            conversion.origins[component_of(key)] = "fresh initialisation" if fresh else f"base ({base_dir})"
    wrong = [f"{k}: {tuple(own[k].shape)} != {expected[k]}" for k in expected if tuple(own[k].shape) != expected[k]]
    if wrong:
        raise ConversionError(f"{checkpoint}: shapes that do not fit the Wan / Qwen configs: {wrong}")
    if ref_pad_first is None:
        ref_pad_first = base_config.get("reference_position") == "prepend"
    started_from = f"base ({base_dir})" if base_dir is not None else "published parts"
    conversion.origins.update({"transformer": f"{started_from}, the checkpoint's DiT tensors over it",
                               "mllm": f"{started_from}, the checkpoint's LoRA merged", "vae": started_from})

    dit = _folder_tensors(dit_dir)
    unknown = sorted(set(dit_full) - set(dit))
    if unknown:
        raise ConversionError(f"{checkpoint}: DiT tensors the base transformer does not have: {unknown[:5]}")
    dit.update(dit_full)
    qwen_tensors = _folder_tensors(qwen)
    for target, halves in sorted(loras.items()):
        if set(halves) != {"A", "B"}:
            raise ConversionError(f"{checkpoint}: LoRA {target} lacks its lora_{'A' if 'B' in halves else 'B'}")
        if target.startswith("mllm."):
            # upstream's rule: the encoder's `model.` attribute folded into Qwen's own `model.` gives the in-memory
            # name (model.language_model.layers...); the published files keep the older model.layers...
            name = target.removeprefix("mllm.").replace("model.model", "model", 1) + ".weight"
            if name not in qwen_tensors:
                name = name.replace("model.language_model.", "model.", 1)
            tensors, where = qwen_tensors, "Qwen2.5-VL"
        else:
            name, tensors, where = wan_key(target + ".weight"), dit, "the Wan DiT"
        if name is None or name not in tensors:
            raise ConversionError(f"{checkpoint}: LoRA target {target} is not a weight of {where}")
        b, a = halves["B"][1], halves["A"][1]
        tensors[name] = (tensors[name].float() + b.float() @ a.float()).to(tensors[name].dtype)
        conversion.mapped.append((f"{target}.lora_B @ lora_A", f"merged into {name}", tuple(tensors[name].shape)))

    out.mkdir(parents=True, exist_ok=True)
    for name in ("transformer", "mllm", "vae", "kiwi"):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "transformer").mkdir()
    shutil.copy2(dit_dir / "config.json", out / "transformer" / "config.json")
    save_file({k: v.contiguous() for k, v in dit.items()}, out / "transformer" / "diffusion_pytorch_model.safetensors")
    shutil.copytree(vae_dir, out / "vae")
    (out / "mllm").mkdir()
    for asset in qwen.iterdir():
        if asset.is_file() and not _is_weight_file(asset.name):
            shutil.copy2(asset, out / "mllm" / asset.name)
    save_file({k: v.contiguous() for k, v in qwen_tensors.items()}, out / "mllm" / "model.safetensors")
    conversion.copied += [f"transformer/ ({dit_dir}, the checkpoint's DiT tensors over it)",
                          f"vae/ (from {vae_dir})", f"mllm/ ({qwen}, LoRA merged)"]
    conversion.config = release_config(counts, ref_pad_first, 5.0, 16, VIDEO_MAX_PIXELS, checkpoint)
    write_kiwi_part(out, own, conversion)
    return conversion


def component_of(key: str) -> str:
    return next(name for name, prefix in COMPONENTS.items() if key == prefix or key.startswith(prefix))


def _fresh_tensors(expected: dict[str, tuple[int, ...]], counts: dict[str, int], hidden: int,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """The Kiwi tensors as a new model has them: queries ~ N(0, 0.02), connectors with a zero output layer,
    zero embedders (the DiT starts unchanged), drawn from a fixed seed so a conversion is reproducible."""
    generator = torch.Generator().manual_seed(seed)
    width = expected["query_connector.0.bias"][0]
    out = {f"mllm.queries.{task}": torch.randn(n, hidden, generator=generator) * 0.02 for task, n in counts.items()}
    for name in ("query_connector", "reference_connector"):
        with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
            torch.manual_seed(seed)
            out.update({f"{name}.{k}": v for k, v in Connector(hidden, width).state_dict().items()})
    for ours in EMBEDDERS.values():
        out[f"{ours}.weight"] = torch.zeros(expected[f"{ours}.weight"])
        out[f"{ours}.bias"] = torch.zeros(expected[f"{ours}.bias"])
    return out


def _is_weight_file(name: str) -> bool:
    return name.endswith((".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json"))


def _folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a transformers / diffusers folder's safetensors shards."""
    shards = sorted(p for p in folder.iterdir() if p.name.endswith(".safetensors"))
    if not shards:
        raise ConversionError(f"{folder}: no .safetensors weights")
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        tensors.update(load_file(shard))
    return tensors
