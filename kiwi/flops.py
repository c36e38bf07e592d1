"""FLOPs per training sample, per component, counted — not estimated — with `torch.utils.flop_counter.FlopCounterMode`
on the model's real shapes (the published model on the meta device: nothing is allocated or computed).

Per task source of a stage, one sample at the stage's geometry:
- `vae`: the frozen VAE encodes the target clip, the source clip (when the stage conditions on it) and, for
  reference tasks, the reference image — forward only;
- `mllm`: the vision tower over the MLLM's frames (and the reference image), frozen, forward only; the language
  model over the whole prompt, forward, and backward when anything before or inside it trains (the learnable
  queries are its inputs, LoRA its weights);
- `dit`: the connectors and the DiT over the noisy target, source and reference latents, forward and backward.
A stage's figure is the mean over its task sources, weighted as its round-robin deals them. GPU-seconds per sample
follow from a stated model FLOPs utilisation and peak (defaults: 40 % of an H100's 989 dense bf16 TFLOP/s)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from kiwi.curriculum import StageConfig
from kiwi.model.kiwi_edit import KiwiEdit
from kiwi.trainable import set_trainable

H100_BF16_TFLOPS = 989.0
DEFAULT_MFU = 0.40
COMPONENTS = ("vae", "mllm", "dit")


@dataclass(frozen=True)
class Flops:
    forward: float = 0.0
    backward: float = 0.0

    @property
    def total(self) -> float:
        return self.forward + self.backward

    def __add__(self, other: Flops) -> Flops:
        return Flops(self.forward + other.forward, self.backward + other.backward)

    def scaled(self, k: float) -> Flops:
        return Flops(self.forward * k, self.backward * k)


@dataclass(frozen=True)
class StageFlops:
    stage: str
    components: dict[str, Flops] = field(default_factory=dict)  # per sample, mean over the stage's task sources

    @property
    def total(self) -> float:
        return sum(c.total for c in self.components.values())

    def share(self, component: str) -> float:
        return self.components[component].total / self.total if self.total else 0.0

    def gpu_seconds(self, mfu: float = DEFAULT_MFU, peak_tflops: float = H100_BF16_TFLOPS) -> float:
        return self.total / (mfu * peak_tflops * 1e12)


def counted(fn) -> Flops:
    """FLOPs of `fn()`'s forward, and of the backward of what it returns when that needs a gradient."""
    with FlopCounterMode(display=False) as forward:
        out = fn()
    if not (isinstance(out, torch.Tensor) and out.requires_grad):
        return Flops(float(forward.get_total_flops()))
    with FlopCounterMode(display=False) as backward:
        out.float().sum().backward()
    return Flops(float(forward.get_total_flops()), float(backward.get_total_flops()))


def stage_flops(model: KiwiEdit, stage: StageConfig, clip: tuple[int, int] = (720, 1280),
                cache: dict | None = None) -> StageFlops:
    """The stage's FLOPs per sample. The model must be on the meta device: FlopCounterMode counts attention there,
    and not the CPU's fused attention kernels (which would leave the DiT's largest term out)."""
    from kiwi.plan import stage_shape

    if _device(model).type != "meta":
        raise ValueError("count FLOPs on the meta device (kiwi.plan.published_model(), or model.to('meta')): on the "
                         "CPU, FlopCounterMode does not see the fused attention kernels")
    cache = {} if cache is None else cache
    set_trainable(model, stage.trains)
    weights = [source.weight for source in stage.mixture]
    total: dict[str, Flops] = {c: Flops() for c in COMPONENTS}
    for source, weight in zip(stage.mixture, weights, strict=True):
        frames = source.frames or stage.frames
        height, width = stage_shape(stage, source, clip)
        conditioned = stage.source_conditioning if stage.source_conditioning is not None else source.task != "image"
        parts = sample_flops(model, source.task, frames, height, width, conditioned, stage, cache)
        for name in COMPONENTS:
            total[name] = total[name] + parts[name].scaled(weight / sum(weights))
    return StageFlops(stage.name, total)


def run_flops(model: KiwiEdit, run, clip: tuple[int, int] = (720, 1280)) -> list[StageFlops]:
    """Every stage's FLOPs per sample; a task source shared by stages (same shapes, same trained parts) is counted
    once."""
    cache: dict = {}
    return [stage_flops(model, stage, clip, cache) for stage in run.stages]


def sample_flops(model: KiwiEdit, task: str, frames: int, height: int, width: int, source_conditioned: bool,
                 stage: StageConfig, cache: dict | None = None) -> dict[str, Flops]:
    """One sample's FLOPs per component (the model's parameters' requires_grad say what trains). `cache` keeps
    each component's count by what it depends on, so stages that share shapes count them once."""
    cache = {} if cache is None else cache
    reference = task.startswith("ref")
    grads = tuple(name for name, p in model.named_parameters() if p.requires_grad)
    trained = hash(grads)

    def once(key, fn):
        if key not in cache:
            cache[key] = fn()
        return cache[key]

    parts = {"vae": once(("vae", frames, height, width, source_conditioned, reference),
                         lambda: _vae(model, frames, height, width, source_conditioned, reference))}
    mllm, features = once(("mllm", task, frames, height, width, stage.mllm_frame_pixels, trained),
                          lambda: _mllm(model, task, frames, height, width, stage))
    parts["mllm"] = mllm
    parts["dit"] = once(("dit", task, frames, height, width, source_conditioned, trained),
                        lambda: _dit(model, task, frames, height, width, source_conditioned, features))
    return parts


def _device(model: KiwiEdit) -> torch.device:
    return next(model.parameters()).device


def _vae(model: KiwiEdit, frames: int, height: int, width: int, source: bool, reference: bool) -> Flops:
    vae, device = model.vae, _device(model)
    dtype = next(vae.parameters()).dtype

    def encode(t: int) -> Flops:
        clip = torch.zeros(1, 3, t, height, width, device=device, dtype=dtype)
        with torch.no_grad():
            return counted(lambda: _encode(vae, clip))

    out = encode(frames)  # the target
    if source:
        out = out + encode(frames)
    if reference:
        out = out + encode(1)
    return out


def _encode(vae, clip: torch.Tensor) -> torch.Tensor:
    encoded = vae.encode(clip)
    return encoded.latent_dist.mode() if hasattr(encoded, "latent_dist") else encoded


def latent_shape(model: KiwiEdit, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(channels, latent frames, height, width) of a clip's VAE latents."""
    from kiwi.plan import compression

    spatial, temporal = compression(model)
    channels = model.transformer.config.in_channels
    return channels, (frames - 1) // temporal + 1, height // spatial, width // spatial


def _mllm(model: KiwiEdit, task: str, frames: int, height: int, width: int, stage: StageConfig):
    """(FLOPs, the query and reference features the connectors read: meta tensors needing grad as training would)."""
    from kiwi.plan import mllm_tokens, reference_tokens

    mllm, device = model.mllm, _device(model)
    qwen = getattr(mllm, "model", None)
    language = getattr(getattr(qwen, "model", None), "language_model", None)
    counts = mllm.counts
    queries = {"image": counts.image, "instruct": counts.video}.get(task, counts.reference)
    if language is None:  # the sentence-embedding conditioner: no language model to count
        hidden = model.query_connector[0].in_features
        return Flops(), (torch.zeros(1, queries, hidden, device=device), None)
    hidden = language.config.hidden_size
    dtype = next(language.parameters()).dtype
    tokens = mllm_tokens(model, task, frames, height, width, frame_pixels=stage.mllm_frame_pixels)
    vision = _vision(model, task, frames, height, width, stage)
    needs_grad = any(p.requires_grad for p in language.parameters()) or any(
        p.requires_grad for p in mllm.queries.parameters())
    embeds = torch.zeros(1, tokens, hidden, device=device, dtype=dtype, requires_grad=needs_grad)
    positions = torch.arange(tokens, device=device)[None].expand(3, 1, -1)
    flops = counted(lambda: language(inputs_embeds=embeds, position_ids=positions).last_hidden_state)
    # the connectors read the query (and reference) states; the language model's own backward is counted above
    states = torch.zeros(1, tokens, hidden, device=device, dtype=dtype, requires_grad=needs_grad)
    query_states = states[:, -queries:]
    reference_states = states[:, :reference_tokens(height, width)] if task.startswith("ref") else None
    return vision + flops, (query_states, reference_states)


def _vision(model: KiwiEdit, task: str, frames: int, height: int, width: int, stage: StageConfig) -> Flops:
    from kiwi.model import mllm as budgets
    from kiwi.model.mllm import frame_size, image_size

    visual = model.mllm.model.model.visual
    device, dtype = _device(model), next(visual.parameters()).dtype
    grids = []
    if task == "image" or frames == 1:
        h, w = image_size(height, width, budgets.IMAGE_MIN_PIXELS, budgets.IMAGE_MAX_PIXELS)
        grids.append((1, h // 14, w // 14))
    else:
        h, w = frame_size(height, width, model.mllm.min_pixels, stage.mllm_frame_pixels or model.mllm.max_pixels)
        grids.append((math.ceil(min(frames, model.mllm.max_frames) / 2), h // 14, w // 14))
    if task.startswith("ref"):
        h, w = image_size(height, width, budgets.REFERENCE_MIN_PIXELS, budgets.REFERENCE_MAX_PIXELS)
        grids.append((1, h // 14, w // 14))
    out = Flops()
    rotary, permute = visual.rotary_pos_emb.forward, visual.permute_input_for_window_attn
    # the tower derives positions and window order from the grid on the CPU: moved next to the meta activations
    visual.rotary_pos_emb.forward = lambda x, pos: rotary(x, pos.to(x.device))
    visual.permute_input_for_window_attn = lambda t, index, seq_len: permute(t, index.to(t.device), seq_len=seq_len)
    try:
        for grid in grids:
            thw = torch.tensor([grid])
            pixels = torch.zeros(int(thw.prod()), 3 * 2 * 14 * 14, device=device, dtype=dtype)
            with torch.no_grad():
                out = out + counted(lambda thw=thw, pixels=pixels: visual(pixels, grid_thw=thw))
    finally:
        del visual.rotary_pos_emb.forward, visual.permute_input_for_window_attn
    return out


def _dit(model: KiwiEdit, task: str, frames: int, height: int, width: int, source: bool, features) -> Flops:
    query_states, reference_states = features
    channels, t, h, w = latent_shape(model, frames, height, width)
    device, dtype = _device(model), model.transformer.dtype
    noisy = torch.zeros(1, channels, t, h, w, device=device, dtype=dtype)
    source_latents = torch.zeros_like(noisy) if source else None
    reference = torch.zeros(1, channels, 1, h, w, device=device, dtype=dtype) if task.startswith("ref") else None

    def forward():
        parts = [model.query_connector(query_states.to(model.query_connector[0].weight.dtype))]
        if reference_states is not None:
            parts.insert(0, model.reference_connector(reference_states.to(model.reference_connector[0].weight.dtype)))
        context = torch.cat(parts, dim=1)
        sigma = torch.full((1,), 0.5, device=device)
        condition = (torch.zeros(1, model.refiner.condition_dim, device=device)
                     if model.refiner_condition == "instruction" else None)
        return model.predict(noisy, sigma, context, source_latents, reference, condition)

    return counted(forward)
