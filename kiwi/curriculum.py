"""A run is a list of stages; each names its slice, its task, what trains, its learning rate, steps, frames and
resolution (Kiwi-Edit's staged recipe, with slices chosen in SQL instead of a fixed round-robin of sources)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from lake.adaptive import AdaptiveConfig

TRAINABLE = ("queries", "query_connector", "reference_connector", "source_embedder", "reference_embedder", "dit",
             "lora")


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

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"stage {self.name}: lr_schedule must be 'constant' or 'cosine', not {self.lr_schedule!r}")
        unknown = set(self.trains) - set(TRAINABLE)
        if unknown:
            raise ValueError(f"stage {self.name}: unknown trainable parts {sorted(unknown)}; choose from {TRAINABLE}")

    def lr_at(self, step: int) -> float:
        """The learning rate of the stage's step `step` (0-based): linear warm-up, then constant or cosine."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        span = max(1, self.steps - self.warmup_steps - 1)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class RunConfig:
    name: str
    stages: tuple[StageConfig, ...]
    seed: int = 0
    checkpoint_every: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


STAGE1 = ("queries", "query_connector")  # image-only query alignment, DiT frozen, no source conditioning
STAGE2 = ("queries", "query_connector", "source_embedder", "dit", "lora")
STAGE3 = ("queries", "query_connector", "reference_connector", "source_embedder", "reference_embedder", "dit", "lora")


def kiwi_paper(image_slice: str, video_slice: str, reference_slice: str) -> RunConfig:
    """The published recipe: 30K / 20K / 15K steps at LR 1e-5 / 1e-5 / 5e-6, 81 frames."""
    return RunConfig("kiwi-paper", (
        StageConfig("stage1-align", image_slice, "image", STAGE1, 30_000, 1e-5, frames=1, size=512),
        StageConfig("stage2-instruct", video_slice, "instruct", STAGE2, 20_000, 1e-5, frames=81, size=480),
        StageConfig("stage3-reference", reference_slice, "ref_subject", STAGE3, 15_000, 5e-6, frames=81, size=480),
    ))


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

