"""Kiwi-Edit assembled: MLLM encoder -> dual connector -> conditioned Wan DiT, with the Wan VAE, trained by
flow matching. `tiny()` builds every part at toy width from configs (random weights), for tests of the full
architecture; `tiny_edit()` is the CPU-sized model that really learns edits (pixel codec, sentence-embedding
conditioner, x0-prediction), for the rebalancing experiment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kiwi.model.codec import PixelCodec
from kiwi.model.connector import Connector
from kiwi.model.dit import KiwiTransformer
from kiwi.model.flow import FlowMatching
from kiwi.model.mllm import KiwiMLLM, QueryCounts
from kiwi.model.refiner import SourceRefiner
from kiwi.model.text_conditioner import TextConditioner
from lake.latents import LatentSet, encode_clips, vae_fingerprint

TASK_QUERIES = {"instruct": "video", "image": "image", "ref_subject": "reference", "ref_background": "reference"}
FULL_SAMPLER_STEPS = 50  # upstream's default for the released model
MIXED = "mixed"  # a stage whose rows each keep their own task: the reference task when they have one, else instruct


Frames = np.ndarray | torch.Tensor


@dataclass
class EditBatch:
    """One task's batch. Pixel arrays are uint8, channels last, as numpy arrays or torch tensors (the training
    loader delivers tensors, pinned when the model is on a GPU)."""

    instructions: list[str]
    source: Frames  # (B, T, H, W, 3) uint8
    target: Frames  # (B, T, H, W, 3) uint8
    reference: Frames | None = None  # (B, H, W, 3) uint8, for reference tasks: the VAE's letterboxed canvas
    task: str = "instruct"  # or "mixed": each row's own task in `tasks`
    tasks: list[str] | None = None
    mllm_reference: list[np.ndarray] | None = None  # the raw reference images, for the MLLM (upstream's input)
    # source latents for the DiT: None = by task (every task but "image": stage 1 aligns images without them);
    # True = every task, as upstream's stages 2-3 (--extra_input source_input) condition images on their source too
    source_conditioning: bool | None = None
    # the VAE's latents of "source" and "target" (B, C, T', H', W'), read from the lake's latent cache instead of
    # encoded here (the frames of `target` are then not decoded: an empty (B, 0, H, W, 3) array)
    latents: dict[str, torch.Tensor] | None = None

    def conditions_on_source(self) -> bool:
        return self.source_conditioning if self.source_conditioning is not None else self.task != "image"

    def by_task(self) -> list[tuple[list[int], EditBatch]]:
        """(row indices, single-task sub-batch) per task: a mixed batch split, anything else as itself. The
        conditioning differs by task (queries, reference tokens), so each part runs on its own."""
        if self.task != MIXED:
            return [(list(range(len(self.instructions))), self)]
        if self.tasks is None or len(self.tasks) != len(self.instructions):
            raise ValueError("a mixed batch needs one task per row in `tasks`")
        groups: dict[str, list[int]] = {}
        for i, task in enumerate(self.tasks):
            groups.setdefault(task, []).append(i)
        return [(rows, EditBatch([self.instructions[i] for i in rows], self.source[rows], self.target[rows],
                                 self.reference[rows] if task.startswith("ref") else None, task,
                                 mllm_reference=[self.mllm_reference[i] for i in rows]
                                 if task.startswith("ref") and self.mllm_reference is not None else None,
                                 source_conditioning=self.source_conditioning,
                                 latents=None if self.latents is None else
                                 {k: v[rows] for k, v in self.latents.items()}))
                for task, rows in groups.items()]


def _numpy(frames: Frames) -> np.ndarray:
    return frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)


class KiwiEdit(nn.Module):
    def __init__(self, mllm: KiwiMLLM | TextConditioner, transformer: KiwiTransformer, vae,
                 flow: FlowMatching | None = None, source_residual: bool = False, source_gate: bool = False,
                 sampler_steps: int = 8, source_refiner: int = 0, refiner_condition: bool | str = False):
        """Two ways (x0-prediction only) to let a small DiT keep what it should not change, which it cannot
        reproduce through its narrow tokens otherwise (the tiny-edit model; the full model predicts velocity):
        `source_residual`: the network outputs the change, x0_hat = source + output (a zero output is an exact copy);
        `source_gate`: the network outputs content and a per-latent gate, x0_hat = g * source + (1 - g) * content,
        g = sigmoid(gate) — copy where nothing changes, free content where everything does (a new background,
        a palette), without having to cancel the source first. `source_refiner` (a kernel size, 0 = none): a small
        convolution over the estimate and the source at the latents' resolution (`kiwi.model.refiner`), for edits
        finer than the DiT's tokens; `refiner_condition`: the refiner is modulated so that its per-pixel map can
        depend on the words — "context" (or True): by the pooled context (the instruction and, for reference tasks,
        the reference); "instruction": by the text conditioner's frozen sentence embedding of the instruction,
        which keeps apart what the jointly trained context blurs early on (which palette: "sepia tones" and
        "neon tones" map the same grey differently).
        `sampler_steps`: the default number of Euler steps at inference (upstream
        samples the released model with 50)."""
        super().__init__()
        if (source_residual or source_gate or source_refiner) and (flow is None or flow.prediction != "x0"):
            raise ValueError("source_residual / source_gate / source_refiner need x0-prediction: "
                             "FlowMatching(prediction='x0')")
        if source_residual and source_gate:
            raise ValueError("choose one of source_residual and source_gate")
        self.mllm, self.transformer, self.vae = mllm, transformer, vae
        self.flow = flow or FlowMatching()
        self.source_residual, self.source_gate = source_residual, source_gate
        self.sampler_steps = sampler_steps
        if refiner_condition is True:
            refiner_condition = "context"
        if refiner_condition not in (False, "", "context", "instruction"):
            raise ValueError(f"refiner_condition must be 'context' or 'instruction', not {refiner_condition!r}")
        if refiner_condition and not source_refiner:
            raise ValueError("refiner_condition needs a source refiner (source_refiner > 0)")
        if refiner_condition == "instruction" and not isinstance(mllm, TextConditioner):
            raise ValueError("refiner_condition='instruction' needs the text conditioner's sentence embedding")
        self.refiner_condition = refiner_condition or ""
        hidden = mllm.hidden_size
        width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        condition_dim = {"": 0, "context": width}.get(self.refiner_condition, getattr(mllm, "embedding_dim", 0))
        self.refiner = SourceRefiner(transformer.config.in_channels, kernel=source_refiner,
                                     condition_dim=condition_dim) if source_refiner else None
        self.query_connector = Connector(hidden, width)
        self.reference_connector = Connector(hidden, width)
        vae.requires_grad_(False)
        mllm.freeze_vision()

    # ------------------------------------------------------------------------------------------- pieces
    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> normalised latents (B, C, T', H', W') of the VAE (or the pixel codec)."""
        device = next(self.transformer.parameters()).device
        if isinstance(frames, torch.Tensor):
            pixels = frames
        else:
            array = np.ascontiguousarray(frames)
            pixels = torch.from_numpy(array if array.flags.writeable else array.copy())  # decoded images: read-only
        if isinstance(self.vae, PixelCodec):
            return self.vae.encode_pixels(pixels.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).float() / 127.5
                                          - 1)
        # the VAE in its own dtype (bf16 on a GPU), as `refvie latents` runs it: cached latents are these bits
        return self.normalise_latents(encode_clips(self.vae, pixels))

    def normalise_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The VAE's raw latents (its own dtype, as `encode_clips` gives them and the latent cache keeps them) ->
        the normalised fp32 latents the flow works in."""
        device = next(self.transformer.parameters()).device
        latents = latents.to(device, non_blocking=True).float()
        mean = torch.tensor(self.vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
        return (latents - mean) / std

    def latent_set(self, frames: int, sampling: str, size: int | None, max_pixels: int | None) -> LatentSet | None:
        """The latent cache set this model's VAE would make of clips cut so (None for the pixel codec, which has
        nothing to cache). The VAE is frozen: its fingerprint is computed once per dtype it is cast to."""
        if isinstance(self.vae, PixelCodec):
            return None
        dtype = next(self.vae.parameters()).dtype
        if getattr(self, "_vae_key", (None, None))[0] != dtype:
            self._vae_key = (dtype, vae_fingerprint(self.vae))
        return LatentSet(self._vae_key[1], frames, sampling, size=size if max_pixels is None else None,
                         max_pixels=max_pixels)

    @property
    def source_frames_seen(self) -> int:
        """How many source frames the conditioning reads, spread over the clip (the MLLM's max_frames; one for a
        sentence-embedding conditioner, which reads none): on cached latents no other frame is needed."""
        return int(getattr(self.mllm, "max_frames", 1))

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents (B, C, T', H', W') -> uint8 frames (B, T, H, W, 3)."""
        if isinstance(self.vae, PixelCodec):
            video = self.vae.decode_pixels(latents)
        else:
            mean = torch.tensor(self.vae.config.latents_mean, device=latents.device).view(1, -1, 1, 1, 1)
            std = torch.tensor(self.vae.config.latents_std, device=latents.device).view(1, -1, 1, 1, 1)
            video = self.vae.decode((latents * std + mean).to(self.vae.dtype)).sample  # (B, 3, T, H, W), [-1, 1]
        return ((video.permute(0, 2, 3, 4, 1).float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()

    def context(self, batch: EditBatch) -> torch.Tensor:
        """Reference features (reference tasks) and query features through their connectors, concatenated in
        upstream's order: reference first. The MLLM reads the raw reference when the batch carries it (as
        upstream), else the VAE's canvas."""
        references = None
        if batch.reference is not None:
            references = batch.mllm_reference if batch.mllm_reference is not None else list(_numpy(batch.reference))
        encoded = self.mllm.encode(batch.instructions, list(_numpy(batch.source)), references,
                                   task=TASK_QUERIES[batch.task])
        dtype = self.query_connector[0].weight.dtype
        parts = [self.query_connector(encoded.query_features.to(dtype))]
        if encoded.reference_features is not None:
            parts.insert(0, self.reference_connector(encoded.reference_features.to(dtype)))
        return torch.cat(parts, dim=1)

    def refiner_input(self, batch: EditBatch) -> torch.Tensor | None:
        """What modulates the source refiner besides the context: the instruction's sentence embedding
        (refiner_condition="instruction"), else None."""
        if self.refiner_condition != "instruction":
            return None
        return self.mllm.embed(list(batch.instructions))

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The DiT's timestep, 1000 * sigma, in the DiT's dtype: upstream casts it to bf16 before embedding, so a
        bf16 model sees 936 where sigma says 937.1 (fp32 models are unaffected)."""
        return self.flow.timestep(sigma).to(self.transformer.dtype)

    def predict(self, noisy: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, source: torch.Tensor | None,
                reference: torch.Tensor | None, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output in the flow's parameterisation (velocity or x0) at noise level `sigma`.
        `condition`: `refiner_input(batch)`, where the refiner is modulated by the instruction."""
        dtype = self.transformer.dtype  # the DiT in its own dtype (bf16 on a GPU); the flow's arithmetic in fp32
        output = self.transformer(noisy.to(dtype), self.timestep(sigma), context.to(dtype),
                                  source_latents=None if source is None else source.to(dtype), sigma=sigma,
                                  reference_latents=None if reference is None else reference.to(dtype),
                                  context_projected=True).to(noisy.dtype)
        if self.source_gate:
            content, gate = output.chunk(2, dim=1)
            if source is None:
                return self._refine(content, None, context, condition)
            g = torch.sigmoid(gate.float()).to(content.dtype)
            output = g * source + (1 - g) * content
        elif self.source_residual and source is not None:
            output = output + source
        return self._refine(output, source, context, condition)

    def _refine(self, estimate: torch.Tensor, source: torch.Tensor | None, context: torch.Tensor,
                condition: torch.Tensor | None) -> torch.Tensor:
        if self.refiner is None:
            return estimate
        if self.refiner_condition == "context":
            condition = context.mean(dim=1)
        elif self.refiner_condition == "instruction" and condition is None:
            raise ValueError("this model's refiner is modulated by the instruction: pass "
                             "condition=model.refiner_input(batch) to predict")
        return self.refiner(estimate, source, condition if self.refiner_condition else None)

    # ------------------------------------------------------------------------------------------- training
    def forward(self, batch: EditBatch, generator: torch.Generator | Sequence[torch.Generator] | None = None,
                per_sample: bool = False, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss: `forward` so that DistributedDataParallel can wrap the model and sync gradients."""
        return self.training_loss(batch, generator, per_sample, sigma)

    def training_loss(self, batch: EditBatch, generator: torch.Generator | Sequence[torch.Generator] | None = None,
                      per_sample: bool = False, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching loss of a batch (a scalar), or one loss per sample with `per_sample=True`. With one
        generator per sample, each sample's noise level and noise depend on its own generator alone, so a batch
        split across ranks draws exactly what the whole batch would on one. A given `sigma` (one per sample)
        replaces the sampled noise levels: a held-out loss at fixed levels. A mixed batch runs per task and its
        losses are put back in row order."""
        if batch.task == MIXED:
            parts, order = [], []
            for rows, part in batch.by_task():
                generators = [generator[i] for i in rows] if isinstance(generator, Sequence) else generator
                parts.append(self._loss(part, generators, sigma[rows] if sigma is not None else None))
                order += rows
            losses = torch.cat(parts)[torch.argsort(torch.tensor(order))]
            return losses if per_sample else losses.mean()
        losses = self._loss(batch, generator, sigma)
        return losses if per_sample else losses.mean()

    def _loss(self, batch: EditBatch, generator, sigma: torch.Tensor | None) -> torch.Tensor:
        """Per-sample flow-matching losses of a single-task batch."""
        cached = batch.latents or {}
        x0 = self.normalise_latents(cached["target"]) if "target" in cached else self.encode_video(batch.target)
        source = None
        if batch.conditions_on_source():
            source = self.normalise_latents(cached["source"]) if "source" in cached else self.encode_video(batch.source)
        reference = self.encode_video(batch.reference[:, None]) if batch.reference is not None else None
        if isinstance(generator, Sequence):
            if len(generator) != x0.shape[0]:
                raise ValueError(f"{len(generator)} generators for a batch of {x0.shape[0]}")
            sampled = torch.cat([self.flow.sample_sigma(1, g) for g in generator]).to(x0.device)
            noise = torch.cat([torch.randn((1, *x0.shape[1:]), generator=g) for g in generator]).to(x0.device)
        else:
            sampled = self.flow.sample_sigma(x0.shape[0], generator, device=x0.device)
            noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device)
        # training draws its noise levels and weights them as the recipe says; a held-out loss at given levels
        # stays unweighted, comparable across models
        weight = self.flow.loss_weight(sampled) if sigma is None else torch.ones_like(sampled)
        sigma = sampled if sigma is None else sigma.to(x0.device, x0.dtype)
        prediction = self.predict(self.flow.noisy(x0, noise, sigma), sigma, self.context(batch), source, reference,
                                  self.refiner_input(batch))
        error = (prediction.float() - self.flow.target(x0, noise).float()).pow(2).flatten(1).mean(1)
        return error * weight.to(error.device)


TINY_QUERIES = QueryCounts(image=4, video=8, reference=8)


def tiny(seed: int = 0, queries: QueryCounts = TINY_QUERIES, patch: int = 2, rope_max_seq_len: int = 32) -> KiwiEdit:
    """Every part at toy width (MLLM hidden 64, DiT width 32, VAE z=4), random weights: ~1 s a step on CPU.
    A larger DiT `patch` and rope table run it at the benchmarks' 81 frames of 720p in seconds."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from kiwi.model.mllm import TINY_MIN_PIXELS, tiny_qwen_config, tiny_tokenizer

    torch.manual_seed(seed)
    corpus = ["Add a red ball", "Remove the cat", "Replace the background with a beach", "Swap the star for a disc",
              "Make the video look like a painting", "Turn the box blue"] * 8
    tokenizer = tiny_tokenizer(corpus)
    qwen = Qwen2_5_VLForConditionalGeneration(tiny_qwen_config(tokenizer))
    processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=56 * 56,
                                         max_pixels=56 * 56)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    dit = WanTransformer3DModel(patch_size=(1, patch, patch), num_attention_heads=2, attention_head_dim=16,
                                in_channels=4, out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2,
                                cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                rope_max_seq_len=rope_max_seq_len)
    return KiwiEdit(KiwiMLLM(qwen, tokenizer, processor, queries, min_pixels=TINY_MIN_PIXELS), KiwiTransformer(dit),
                    vae)


def tiny_edit(seed: int = 0, width: int = 128, layers: int = 4, patch: int = 4, tokens: int = 8,
              source_residual: bool = False, source_gate: bool = False, source_refiner: int = 1,
              refiner_condition: bool | str = "instruction", rope_max_seq_len: int = 64) -> KiwiEdit:
    """The CPU-sized model that learns to edit in minutes: a lossless pixel codec instead of the random tiny VAE, a
    frozen MiniLM + MLP instead of the tiny random MLLM, x0-prediction instead of velocity prediction (see
    `kiwi.model.flow`), and a from-scratch Wan DiT (width 128, 4 layers, ~2M parameters) with Kiwi's source and
    reference embedders, and a pointwise source refiner (`source_refiner=1`, kiwi.model.refiner; 0 for none)
    modulated by the instruction's frozen sentence embedding (`refiner_condition="instruction"`; "context", the
    pooled context the DiT reads, tells palettes apart worse: the demo's styles beat copying by 2.0 dB with it,
    5.7 dB without it — docs/model.md).
    Frames must be multiples of 2 * patch pixels (the codec's patch, then the DiT's 2x2)."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    channels = 3 * patch * patch
    dit = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=width // 4,
                                in_channels=channels, out_channels=channels * (2 if source_gate else 1),
                                text_dim=32, freq_dim=64,
                                ffn_dim=4 * width, num_layers=layers, cross_attn_norm=True,
                                qk_norm="rms_norm_across_heads", rope_max_seq_len=rope_max_seq_len)
    return KiwiEdit(TextConditioner(hidden_size=width, tokens=tokens), KiwiTransformer(dit), PixelCodec(patch),
                    FlowMatching(prediction="x0"), source_residual=source_residual, source_gate=source_gate,
                    source_refiner=source_refiner, refiner_condition=refiner_condition if source_refiner > 0 else False)


def full(mllm_path: str, transformer_path: str, vae_path: str, queries: QueryCounts | None = None,
         lora_rank: int = 64, dtype: torch.dtype = torch.bfloat16) -> KiwiEdit:
    """The released shape: Qwen2.5-VL-3B-Instruct, Wan2.2-TI2V-5B transformer and VAE from local folders (nothing
    downloads), 256 / 512 / 768 queries, LoRA rank 64 on the language model's attention. The query placeholder is
    Qwen's `<|object_ref_start|>` (as upstream); a tokenizer without it gets it registered (one more row)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from kiwi.model.lora import add_lora
    from kiwi.model.mllm import QUERY_TOKEN, query_token

    tokenizer = AutoTokenizer.from_pretrained(mllm_path)
    qwen = Qwen2_5_VLForConditionalGeneration.from_pretrained(mllm_path, dtype=dtype)
    if query_token(tokenizer) is None:
        tokenizer.add_special_tokens({"additional_special_tokens": [QUERY_TOKEN]})
        qwen.resize_token_embeddings(len(tokenizer))
    mllm = KiwiMLLM(qwen, tokenizer, AutoImageProcessor.from_pretrained(mllm_path), queries or QueryCounts())
    if lora_rank:
        add_lora(qwen.model.language_model, rank=lora_rank)
    transformer = KiwiTransformer(WanTransformer3DModel.from_pretrained(transformer_path, dtype=dtype))
    return cast_own_modules(KiwiEdit(mllm, transformer, AutoencoderKLWan.from_pretrained(vae_path, dtype=dtype),
                                     FlowMatching(weighting="bell"), sampler_steps=FULL_SAMPLER_STEPS), dtype)


def cast_own_modules(model: KiwiEdit, dtype: torch.dtype) -> KiwiEdit:
    """Kiwi's own modules (queries, connectors, embedders) to `dtype`, explicitly: a bare model.to(bf16) would also
    cast what the libraries keep in fp32 on purpose (Wan's rotary tables)."""
    for module in (model.query_connector, model.reference_connector, model.transformer.source_embedder,
                   model.transformer.reference_embedder, model.mllm.queries):
        module.to(dtype)
    return model


@dataclass(frozen=True)
class KiwiConfig:
    """A model size as data: `KiwiConfig.tiny()` (random init, toy widths) or `KiwiConfig.full(paths…)`
    (released components from local folders); `build()` makes the model."""

    size: str = "tiny"
    queries: QueryCounts = TINY_QUERIES
    lora_rank: int = 0
    seed: int = 0
    mllm_path: str | None = None
    transformer_path: str | None = None
    vae_path: str | None = None

    @classmethod
    def tiny_config(cls, seed: int = 0) -> KiwiConfig:
        return cls("tiny", TINY_QUERIES, 0, seed)

    @classmethod
    def full_config(cls, mllm_path: str, transformer_path: str, vae_path: str) -> KiwiConfig:
        return cls("full", QueryCounts(), 64, 0, mllm_path, transformer_path, vae_path)

    def build(self) -> KiwiEdit:
        if self.size == "tiny":
            return tiny(seed=self.seed, queries=self.queries)
        if self.size == "tiny-edit":
            return tiny_edit(seed=self.seed)
        if self.size == "tiny-edit-context":  # the refiner modulated by the pooled context (docs/experiment.md)
            return tiny_edit(seed=self.seed, refiner_condition="context")
        if self.size == "full":
            if not (self.mllm_path and self.transformer_path and self.vae_path):
                raise ValueError("the full config needs local paths for the MLLM, the transformer and the VAE")
            return full(self.mllm_path, self.transformer_path, self.vae_path, self.queries, self.lora_rank)
        raise ValueError(f"unknown size {self.size!r}; use tiny, tiny-edit, tiny-edit-context or full")
