"""The synthetic world as a Ray Data source: sample indices are the only thing in the plan, so a dataset of
millions of samples is rendered block by block on whatever workers the cluster has, never held in memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from refvie.synthetic.world import SyntheticConfig

if TYPE_CHECKING:
    import ray.data


class RenderBatch:
    """A Ray Data batch stage: sample indices in, encoded pairs with ground truth out (one row per sample)."""

    def __init__(self, config: SyntheticConfig, codec: str = "h264"):
        self.config, self.codec = config, codec
        self.source = None

    def setup(self) -> None:
        from refvie.sources.synthetic import SyntheticSource

        self.source = SyntheticSource(n=0, config=self.config, codec=self.codec)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.source is None:
            self.setup()
        records = [self.source.render(int(i)) for i in batch["id"]]
        return {
            "index": np.asarray(batch["id"], np.int64),
            "pair_id": [r.pair_id for r in records],
            "edit_type": [r.edit_type for r in records],
            "instruction": [r.instruction for r in records],
            "source_video": [r.source.data for r in records],
            "target_video": [r.target.data for r in records],
            "gt_mask": [r.gt_mask for r in records],
            "gt_reference": [r.gt_reference for r in records],
        }


def synthetic_dataset(config: SyntheticConfig, n: int, start: int = 0, batch_size: int = 16,
                      blocks: int | None = None) -> ray.data.Dataset:
    import ray.data

    indices = ray.data.range(n, override_num_blocks=blocks)
    if start:
        indices = indices.map_batches(lambda b: {"id": b["id"] + start}, batch_format="numpy")
    return indices.map_batches(RenderBatch(config), batch_size=batch_size, batch_format="numpy")
