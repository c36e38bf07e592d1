"""The synthetic world as a pair source: encoded clips plus the ground truth (edit type, mask, reference)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

from lake import media
from refvie.datasets import Provenance
from refvie.sources.base import MediaRef, PairRecord
from refvie.synthetic import SyntheticConfig, SyntheticSample, SyntheticWorld


@dataclass
class SyntheticSource:
    n: int
    config: SyntheticConfig = field(default_factory=SyntheticConfig)
    start: int = 0
    codec: str = "h264"

    def __post_init__(self):
        self.world = SyntheticWorld(self.config)
        self.dataset = self.config.dataset
        self.requested = self.dataset

    def provenance(self) -> Provenance:
        c = self.config
        return Provenance(origin=f"synthetic:seed={c.seed},frames={c.frames},size={c.height}x{c.width}",
                          default_name=self.dataset, format="synthetic")

    def __iter__(self) -> Iterator[PairRecord]:
        """Cheap placeholders: rendering and encoding happen in `deferred`, only for rows the lake lacks."""
        for index in range(self.start, self.start + self.n):
            pair_id = self.world.pair_id(index)
            yield PairRecord(input_ref=f"synthetic:{pair_id}", dataset=self.dataset, pair_id=pair_id,
                             deferred=functools.partial(self.render, index))

    def render(self, index: int) -> PairRecord:
        return self.record(self.world.sample(index))

    def record(self, sample: SyntheticSample) -> PairRecord:
        fps = self.config.fps
        return PairRecord(
            input_ref=f"synthetic:{sample.pair_id}", dataset=self.dataset, pair_id=sample.pair_id,
            instruction=sample.instruction,
            source=MediaRef(uri=None, data=media.encode_video(sample.source, fps=fps, codec=self.codec)),
            target=MediaRef(uri=None, data=media.encode_video(sample.target, fps=fps, codec=self.codec)),
            edit_type=sample.edit_type.value,
            gt_mask=media.encode_mask_stack(sample.mask),
            gt_reference=None if sample.reference is None else media.encode_image(sample.reference),
            meta={"synthetic": {"seed": self.config.seed, "index": sample.index, **sample.meta}},
        )
