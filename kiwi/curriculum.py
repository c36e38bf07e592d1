"""A run is a list of stages; each names its slice and task (or a mixture of tasks, each from its own slice), what
trains, its learning rate, steps, frames and resolution: Kiwi-Edit's staged recipe, with slices chosen in SQL.
Upstream's stages 2 and 3 interleave image, video and reference samples 1:1(:1); a stage's `sources` say the same."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from lake.adaptive import AdaptiveConfig
from lake.clips import SAMPLINGS

TRAINABLE = ("queries", "query_connector", "reference_connector", "source_embedder", "reference_embedder", "dit",
             "lora")


TASKS = ("image", "instruct", "ref_subject", "ref_background", "mixed")


@dataclass(frozen=True)
class TaskSource:
    """One task of a stage's mixture, drawn from its own slice: `weight` micro-batches of it per round of the
    stage's weighted round-robin; `frames` / `size` override the stage's (an image task reads 1 frame)."""

    task: str
    slice: str
    weight: int = 1
    frames: int | None = None
    size: int | None = None
    max_pixels: int | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task source {self.slice!r}: unknown task {self.task!r}; choose from {TASKS}")
        if self.weight < 1:
            raise ValueError(f"task source {self.task}/{self.slice}: weight must be a positive integer, "
                             f"not {self.weight}")


@dataclass(frozen=True)
class StageConfig:
    name: str
    slice: str  # a saved slice's name or id
    task: str  # image | instruct | ref_subject | ref_background
    trains: tuple[str, ...]
    steps: int
    lr: float
    warmup_steps: int = 0
    # after warm-up: "constant" (the published recipe) or "cosine" down to lr * min_lr_ratio at the stage's last step
    # (short CPU runs end better on a decayed rate); a function of the step, so resuming replays it exactly
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.1
    batch_size: int = 2
    grad_accumulation: int = 1
    frames: int = 5
    size: int = 64
    max_grad_norm: float = 1.0
    mode: str = "weighted"
    # adaptive rebalancing (lake.adaptive): the category mix moves every `adaptive.update_every` samples from the
    # held-out loss of `probe_per_category` validation rows per category; None keeps the slice's static mix
    adaptive: AdaptiveConfig | None = None
    probe_per_category: int = 4
    # a mixture of tasks, each from its own slice, interleaved micro-batch by micro-batch (kiwi.feed); empty: the
    # stage's own (slice, task) alone
    sources: tuple[TaskSource, ...] = ()
    # whether image-task samples get source latents: not in stage 1's alignment (None: by task, images without),
    # always in upstream's stages 2-3 (True)
    source_conditioning: bool | None = None
    weight_decay: float = 0.01  # upstream's AdamW weight decay
    # frame policy (lake.clips): "spread" over the clip or the first frames in a row ("prefix", upstream); a pixel
    # budget keeps each clip's aspect (sides multiples of 32) instead of a `size` x `size` centre crop
    frame_sampling: str = "spread"
    max_pixels: int | None = None
    # the MLLM's per-frame pixel budget while the stage trains (None: the model's own, its inference budget);
    # upstream trains with Qwen's 768-token cap and infers at 512x512
    mllm_frame_pixels: int | None = None
    raw_reference: bool = False  # the MLLM sees the reference as given (upstream), the VAE its letterboxed canvas

    def __post_init__(self):
        if self.frame_sampling not in SAMPLINGS:
            raise ValueError(f"stage {self.name}: frame_sampling must be one of {SAMPLINGS}, "
                             f"not {self.frame_sampling!r}")
        if self.adaptive is not None and len(self.sources) > 1:
            raise ValueError(f"stage {self.name}: adaptive rebalancing moves one slice's category mix; it cannot "
                             f"run on a mixture of {len(self.sources)} task sources")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"stage {self.name}: lr_schedule must be 'constant' or 'cosine', not {self.lr_schedule!r}")
        unknown = set(self.trains) - set(TRAINABLE)
        if unknown:
            raise ValueError(f"stage {self.name}: unknown trainable parts {sorted(unknown)}; choose from {TRAINABLE}")

    @property
    def micro_batches(self) -> int:
        """Forward-backward passes per rank: `steps` counts optimizer steps, each of `grad_accumulation` passes
        (upstream's trainer counts these passes as its steps)."""
        return self.steps * self.grad_accumulation

    @property
    def samples_per_rank(self) -> int:
        return self.micro_batches * self.batch_size

    @property
    def mixture(self) -> tuple[TaskSource, ...]:
        """The stage's task sources (its own slice and task when it names no mixture)."""
        return self.sources or (TaskSource(self.task, self.slice),)

    def lr_at(self, step: int) -> float:
        """The learning rate of the stage's step `step` (0-based): linear warm-up, then constant or cosine."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        span = max(1, self.steps - self.warmup_steps - 1)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


LATENT_MODES = ("auto", "require", "off")


@dataclass(frozen=True)
class RunConfig:
    name: str
    stages: tuple[StageConfig, ...]
    seed: int = 0
    checkpoint_every: int = 10
    # where the first stage starts: a model folder or a training checkpoint (e.g. a converted release to fine-tune,
    # or another run's stage); each later stage starts from the stage before. Recorded in the run's lineage.
    init_from: str | None = None
    # the DiT's reference frame placement the run trains ("append" or "prepend"; None: the model's own). The
    # reference-only stage-3 release was trained with the reference first (upstream's ref_pad_first).
    reference_position: str | None = None
    # "fp32": trainable parameters kept in fp32 (master weights) and the forward run under bf16 autocast; a bare
    # bf16 AdamW step at lr 1e-5 rounds most updates away. None: the parameters' own dtype.
    master_weights: str | None = None
    # how the VAE's inputs are read: "auto" — each stage's target clips as cached latents (`refvie latents`) when
    # the lake holds them, fresh, for every row of its slice at its geometry and this model's VAE, else decoded and
    # encoded in the step; "require": refuse to train without them; "off": always decode. Not part of the run's
    # identity: both paths train on the same bits (tests/test_latents.py).
    latents: str = "auto"

    def __post_init__(self):
        if self.latents not in LATENT_MODES:
            raise ValueError(f"latents must be one of {LATENT_MODES}, not {self.latents!r}")
        if self.reference_position not in (None, "append", "prepend"):
            raise ValueError(f"reference_position must be 'append' or 'prepend', not {self.reference_position!r}")
        if self.master_weights not in (None, "fp32"):
            raise ValueError(f"master_weights must be 'fp32' or None, not {self.master_weights!r}")

    def to_dict(self) -> dict:
        config = asdict(self)
        config.pop("latents")  # how inputs are read, not what is trained
        return config


# upstream's trainable sets (scripts/run_wan2.2_ti2v_5b_qwen25vl_3b_stage*.sh, --trainable_models and
# --lora_base_model): LoRA on the language model's attention trains in every stage
STAGE1 = ("queries", "query_connector", "lora")  # image-only query alignment, DiT frozen, no source conditioning
STAGE2 = ("queries", "query_connector", "source_embedder", "dit", "lora")
STAGE3 = ("queries", "query_connector", "reference_connector", "source_embedder", "reference_embedder", "dit", "lora")
PAPER_VARIANTS = ("img-vid-refvid", "refvid-only")


UPSTREAM_STEPS = {"stage1-align": 30_000, "stage2-img-vid": 20_000, "stage3-img-vid-refvid": 15_000,
                  "stage3-refvid": 30_000}  # the published "Steps" column: upstream's trainer counts micro-batches
UPSTREAM_MLLM_FRAME_PIXELS = 768 * 28 * 28  # Qwen's video token cap, upstream's training default (no per-frame cap)


def kiwi_paper(image_slice: str, video_slice: str, reference_slice: str, variant: str = "img-vid-refvid",
               init_from: str | None = None) -> RunConfig:
    """The published recipe (upstream's Wan2.2-TI2V-5B scripts): stage 1 aligns the image queries, query connector
    and LoRA on images (30K steps, 1e-5); stage 2 interleaves image and video editing 1:1 with accumulation 2
    (20K, 1e-5); stage 3 image, video and reference editing 1:1:1 with accumulation 3 (15K, 5e-6) — or, as the
    `refvid-only` variant, reference editing alone for 30K steps with the reference frame first. Upstream's trainer
    counts a step per micro-batch (batch 1 per GPU), so a stage's optimizer steps here are its published steps over
    its accumulation and each rank sees the published number of samples (30K / 20K / 15K / 30K). AdamW weight
    decay 0.01, constant learning rate, the first 81 frames of each clip (a shorter clip cut to 4k+1 frames) at up
    to 720x1280 pixels with the aspect kept (1024x1024 for stage 1's images), images and videos in stages 2-3
    conditioned on their source, the MLLM at upstream's training budget (768 tokens a frame) and given the raw
    reference image, fp32 master weights under bf16 autocast."""
    if variant not in PAPER_VARIANTS:
        raise ValueError(f"unknown kiwi_paper variant {variant!r}; choose from {PAPER_VARIANTS}")
    images = TaskSource("image", image_slice, frames=1)
    videos = TaskSource("instruct", video_slice)
    references = TaskSource("ref_subject", reference_slice)
    inputs = dict(frame_sampling="prefix_cut", mllm_frame_pixels=UPSTREAM_MLLM_FRAME_PIXELS, raw_reference=True)
    common = dict(batch_size=1, frames=81, max_pixels=720 * 1280, **inputs)

    def steps(name: str, accumulation: int) -> int:
        return UPSTREAM_STEPS[name] // accumulation

    stage1 = StageConfig("stage1-align", image_slice, "image", STAGE1, steps("stage1-align", 1), 1e-5,
                         batch_size=1, frames=1, max_pixels=1024 * 1024, **inputs)
    stage2 = StageConfig("stage2-img-vid", video_slice, "instruct", STAGE2, steps("stage2-img-vid", 2), 1e-5,
                         grad_accumulation=2, sources=(images, videos), source_conditioning=True, **common)
    if variant == "refvid-only":
        stage3 = StageConfig("stage3-refvid", reference_slice, "ref_subject", STAGE3, steps("stage3-refvid", 1), 5e-6,
                             source_conditioning=True, **common)
    else:
        stage3 = StageConfig("stage3-img-vid-refvid", reference_slice, "ref_subject", STAGE3,
                             steps("stage3-img-vid-refvid", 3), 5e-6, grad_accumulation=3,
                             sources=(images, videos, references), source_conditioning=True, **common)
    return RunConfig(f"kiwi-paper-{variant}", (stage1, stage2, stage3), checkpoint_every=500, init_from=init_from,
                     reference_position="prepend" if variant == "refvid-only" else None, master_weights="fp32")


def tiny_edit(video_slice: str, reference_slice: str, steps: tuple[int, ...] = (1500, 300), seed: int = 0,
              lr: float = 1e-3, batch_size: int = 8) -> RunConfig:
    """For `kiwi.model.kiwi_edit.tiny_edit`, the model that learns edits on a CPU: instruction editing on the
    video slice, then reference editing, at 5 frames of 32x32, batch 8 (~0.1 s a step on 2 cores). Its text
    conditioner trains as `queries`; there is no MLLM to align, so there is no image stage."""
    if len(steps) != 2:
        raise ValueError(f"the tiny-edit recipe has two stages (instruct, reference); got {len(steps)} step counts")
    return RunConfig("tiny-edit", (
        StageConfig("instruct", video_slice, "instruct", ("queries", "query_connector", "source_embedder", "dit"),
                    steps[0], lr, batch_size=batch_size, frames=5, size=32),
        StageConfig("reference", reference_slice, "ref_subject", STAGE3[:-1], steps[1], lr, batch_size=batch_size,
                    frames=5, size=32),
    ), seed=seed, checkpoint_every=max(1, sum(steps) // 4))


def tiny(video_slice: str, reference_slice: str, steps: tuple[int, int, int] = (4, 8, 8), seed: int = 0,
         lr: float = 2e-3) -> RunConfig:
    """Minutes on a CPU: the same three stages at toy size (stage 1 on 1-frame crops of the video slice)."""
    if len(steps) != 3:
        raise ValueError(f"the tiny recipe has three stages (align, instruct, reference); got {len(steps)} step counts")
    return RunConfig("tiny", (
        StageConfig("stage1-align", video_slice, "image", STAGE1, steps[0], lr, frames=1),
        StageConfig("stage2-instruct", video_slice, "instruct", STAGE2, steps[1], lr),
        StageConfig("stage3-reference", reference_slice, "ref_subject", STAGE3, steps[2], lr),
    ), seed=seed, checkpoint_every=4)

