"""Will a recipe fit? Per stage and per GPU: parameter, gradient and optimizer memory from the model's real shapes
(built on the meta device: no weights, no memory), and activation memory from the token counts of the stage's
clips, under fully sharded data parallelism (FSDP2) over N GPUs.

The memory model, stated so it can be checked:
- every parameter but the VAE's is sharded over the GPUs; the VAE (frozen, run without gradients) is replicated;
  trained parameters take 4 bytes with fp32 master weights (else their own dtype), frozen ones 2 (bf16);
- gradients and AdamW's two moments: one and two copies of the trained parameters in their dtype, sharded;
- the largest sharded unit (a DiT block or a language-model layer) is gathered whole, twice (FSDP2 prefetches the
  next one), in bf16;
- activations, per sample, with gradient checkpointing on every block (as upstream trains): each block keeps its
  input (2 bytes x tokens x width) and one block at a time is recomputed whole, ~34 bytes x tokens x width with
  fused attention (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models");
  the DiT's tokens come from the VAE's compression and the DiT's patch, the language model's from the MLLM's
  frame, reference and query budgets. The VAE's encoder runs without gradients, tiled: not counted."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from kiwi.curriculum import RunConfig, StageConfig
from kiwi.model.kiwi_edit import KiwiEdit
from kiwi.trainable import trainable_groups

GIB = 2**30
CHECKPOINTED_BLOCK_BYTES = 34  # per token per width unit, one block recomputed (fused attention)
OVERHEAD_GIB = 1.5  # CUDA context, allocator fragmentation, NCCL buffers: a working margin


@dataclass(frozen=True)
class StagePlan:
    stage: str
    trained_params: int
    frozen_params: int
    dit_tokens: int
    mllm_tokens: int
    weights_gib: float
    gradients_gib: float
    optimizer_gib: float
    gathered_gib: float
    activations_gib: float
    total_gib: float
    fits: bool

    def as_dict(self) -> dict:
        return asdict(self)


def dit_tokens(model: KiwiEdit, frames: int, height: int, width: int, reference: bool) -> int:
    """Tokens the DiT attends over: latent frames (and one reference frame) x latent cells / the DiT's patch."""
    spatial, temporal = compression(model)
    patch_t, patch_h, patch_w = model.transformer.config.patch_size
    latent_frames = (frames - 1) // temporal + 1 + (1 if reference else 0)
    return (latent_frames // patch_t) * (height // spatial // patch_h) * (width // spatial // patch_w)


def compression(model: KiwiEdit) -> tuple[int, int]:
    vae = model.vae
    if hasattr(vae, "patch"):  # the pixel codec: space-to-depth, time kept
        return vae.patch, 1
    return int(vae.config.scale_factor_spatial), int(vae.config.scale_factor_temporal)


def mllm_tokens(model: KiwiEdit, task: str, frames: int, height: int, width: int, prompt_tokens: int = 96,
                frame_pixels: int | None = None) -> int:
    """The language model's sequence: vision tokens of the source (frame pairs, or one image), the reference's,
    the task's queries and the prompt's words. `frame_pixels`: the stage's MLLM frame budget (else the model's)."""
    from kiwi.model import mllm as qwen_budgets
    from kiwi.model.mllm import frame_size, image_size

    mllm, counts = model.mllm, model.mllm.counts
    if not hasattr(mllm, "max_frames"):  # the sentence-embedding conditioner: no language model sequence
        return 0
    per_merge = 28 * 28  # a 2x2 merge of 14-pixel patches
    if task == "image" or frames == 1:
        h, w = image_size(height, width, qwen_budgets.IMAGE_MIN_PIXELS, qwen_budgets.IMAGE_MAX_PIXELS)
        vision, queries = h * w // per_merge, counts.image
    else:
        h, w = frame_size(height, width, mllm.min_pixels, frame_pixels or mllm.max_pixels)
        pairs = math.ceil(min(frames, mllm.max_frames) / 2)
        vision, queries = pairs * h * w // per_merge, counts.video
    if task.startswith("ref"):
        vision, queries = vision + reference_tokens(height, width), counts.reference
    return vision + queries + prompt_tokens


def reference_tokens(height: int, width: int) -> int:
    """Vision tokens of the reference image the MLLM reads (Qwen's resize at the reference budget, 2x2 merges)."""
    from kiwi.model import mllm as qwen_budgets
    from kiwi.model.mllm import image_size

    h, w = image_size(height, width, qwen_budgets.REFERENCE_MIN_PIXELS, qwen_budgets.REFERENCE_MAX_PIXELS)
    return h * w // (28 * 28)


def _largest_unit(model: KiwiEdit) -> int:
    """Parameters of the largest block FSDP2 gathers at once (a DiT block or a language-model layer)."""
    units = list(model.transformer.transformer.blocks)
    language = getattr(getattr(getattr(model.mllm, "model", None), "model", None), "language_model", None)
    if language is not None:
        units += list(language.layers)
    return max((sum(p.numel() for p in unit.parameters()) for unit in units), default=0)


def plan_stage(model: KiwiEdit, run: RunConfig, stage: StageConfig, gpus: int, gpu_memory_gib: float,
               clip: tuple[int, int] = (720, 1280)) -> StagePlan:
    """`clip`: the source clips' (height, width) before the stage's resize (upstream trains on 720p)."""
    groups = trainable_groups(model)
    trained = {id(p): p for name in stage.trains for p in groups[name]}
    vae = {id(p) for p in model.vae.parameters()}
    every = {id(p): p for p in model.parameters()}
    trained_n = sum(p.numel() for p in trained.values())
    frozen_n = sum(p.numel() for i, p in every.items() if i not in trained and i not in vae)
    vae_n = sum(p.numel() for p in model.vae.parameters())
    master = 4 if run.master_weights == "fp32" else 2
    weights = (trained_n * master + frozen_n * 2) / gpus + vae_n * 2
    gradients = trained_n * master / gpus
    optimizer = 2 * trained_n * master / gpus
    gathered = 2 * 2 * _largest_unit(model) if gpus > 1 else 0

    tokens = []
    for source in stage.mixture:
        frames, shape = source.frames or stage.frames, stage_shape(stage, source, clip)
        tokens.append((dit_tokens(model, frames, *shape, source.task.startswith("ref")),
                       mllm_tokens(model, source.task, frames, *shape, frame_pixels=stage.mllm_frame_pixels)))
    # micro-batches of the mixture run one after another: the largest one sets the peak
    activations = max(_activation_bytes(model, *t) for t in tokens) * stage.batch_size
    total = (weights + gradients + optimizer + gathered + activations) / GIB + OVERHEAD_GIB
    return StagePlan(stage.name, trained_n, frozen_n + vae_n, max(t[0] for t in tokens), max(t[1] for t in tokens),
                     weights / GIB, gradients / GIB, optimizer / GIB, gathered / GIB, activations / GIB, total,
                     total <= gpu_memory_gib)


def stage_shape(stage: StageConfig, source, clip: tuple[int, int]) -> tuple[int, int]:
    from lake.clips import frame_shape

    budget = source.max_pixels or stage.max_pixels
    return frame_shape(*clip, budget) if budget else (source.size or stage.size,) * 2


def _activation_bytes(model: KiwiEdit, dit: int, mllm: int) -> float:
    """Checkpointed blocks: every block's input kept, one block recomputed whole (see the module's docstring)."""
    config = model.transformer.config
    width, layers = config.num_attention_heads * config.attention_head_dim, config.num_layers
    total = dit * width * (2 * layers + CHECKPOINTED_BLOCK_BYTES)
    language = getattr(getattr(model.mllm, "model", None), "config", None)
    if mllm and language is not None:
        text = getattr(language, "text_config", language)
        total += mllm * text.hidden_size * (2 * text.num_hidden_layers + CHECKPOINTED_BLOCK_BYTES)
    return float(total)


def plan(model: KiwiEdit, run: RunConfig, gpus: int, gpu_memory_gib: float,
         clip: tuple[int, int] = (720, 1280)) -> list[StagePlan]:
    return [plan_stage(model, run, stage, gpus, gpu_memory_gib, clip) for stage in run.stages]


def published_model(device: str | torch.device = "meta", dtype: torch.dtype = torch.bfloat16,
                    lora_rank: int = 64) -> KiwiEdit:
    """The released architecture (Qwen2.5-VL-3B + Wan2.2-TI2V-5B and its VAE) from the published configs in
    kiwi/configs, with random weights — on the meta device by default (shapes only, nothing allocated)."""
    import json
    from pathlib import Path

    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from kiwi.model.dit import KiwiTransformer
    from kiwi.model.kiwi_edit import FULL_SAMPLER_STEPS, cast_own_modules
    from kiwi.model.lora import add_lora
    from kiwi.model.mllm import SPECIAL_TOKENS, KiwiMLLM, QueryCounts, tiny_tokenizer

    configs = Path(__file__).resolve().parent / "configs"
    tokenizer = tiny_tokenizer(["Replace the background with a beach"])  # Qwen's own files cannot be fetched
    qwen_config = json.loads((configs / "qwen2.5-vl-3b-instruct.json").read_text())
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    qwen_config.update(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                       vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    with torch.device(device):
        qwen = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**qwen_config)).to(dtype)
        dit = WanTransformer3DModel(**json.loads((configs / "wan2.2-ti2v-5b.transformer.json").read_text()))
        vae = AutoencoderKLWan.from_config(json.loads((configs / "wan2.2.vae.json").read_text()))
        to_dtype_keeping_fp32(dit, dtype)
        to_dtype_keeping_fp32(vae, dtype)
        processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=3136,
                                             max_pixels=12845056)
        mllm = KiwiMLLM(qwen, tokenizer, processor, QueryCounts())
        if lora_rank:
            add_lora(qwen.model.language_model, rank=lora_rank)
        model = KiwiEdit(mllm, KiwiTransformer(dit), vae, sampler_steps=FULL_SAMPLER_STEPS)
    return cast_own_modules(model, dtype)


def to_dtype_keeping_fp32(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A diffusers model built from its config, cast as `from_pretrained(dtype=…)` would: everything to `dtype`
    but the parts the library keeps in fp32 on purpose (`_keep_in_fp32_modules`: Wan's rotary tables, time
    embedder, norms, modulation table)."""
    torch.nn.Module.to(model, dtype)  # the bare cast, without diffusers' warning about what we restore next
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if keep & set(name.split(".")) and tensor.is_floating_point():
            tensor.data = tensor.data.float()
    return model
