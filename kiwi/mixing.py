"""What drives adaptive rebalancing during training: a held-out probe (per-category flow-matching loss of a few
validation rows at fixed noise levels, the same every time) and the record of each update in the lake.

The probe reads rows of the `val` split of the datasets the stage's slice draws from, at the slice's pinned
version — never training rows, nor another dataset's (a bench's) — with the stage's frames, size and task, and
keyed noise, so two calls on the same weights agree exactly, on any rank, after any resume."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import torch

from kiwi.data import DataConfig, prepare_rows
from kiwi.model.flow import keyed_generator
from kiwi.model.kiwi_edit import EditBatch, KiwiEdit
from lake import Lake
from lake.db import in_filter
from lake.slices import Slice

PROBE_SIGMAS = (0.2, 0.5, 0.8)  # fixed noise levels: the loss depends on the level, so always the same ones


class HeldOutProbe:
    def __init__(self, db: Lake, slice_: Slice, data: DataConfig, task: str, per_category: int = 4,
                 split: str = "val"):
        categories = sorted(slice_.allocation.counts)
        # held-out rows of the datasets the slice trains on: never another dataset's (e.g. a bench's) rows
        datasets = sorted(set(db.read(slice_.table, columns=["dataset"], where=slice_.where,
                                      version=slice_.table_version)["dataset"].to_pylist()))
        rows = db.read(slice_.table, columns=["id", slice_.by], version=slice_.table_version,
                       where=f"{in_filter('split', [split])} AND {in_filter(slice_.by, categories)} AND "
                             f"{in_filter('dataset', datasets)}").to_pylist()
        chosen: dict[str, list[str]] = {}
        for row in sorted(rows, key=lambda r: r["id"]):
            chosen.setdefault(row[slice_.by], [])
            if len(chosen[row[slice_.by]]) < per_category:
                chosen[row[slice_.by]].append(row["id"])
        self.ids = [i for c in sorted(chosen) for i in chosen[c]]
        if not self.ids:
            raise ValueError(f"adaptive rebalancing needs held-out rows: {slice_.table}@{slice_.table_version} has "
                             f"no '{split}' rows in the slice's categories")
        probe = DataConfig(frames=data.frames, size=data.size, train=False)
        self.arrays = prepare_rows(db, slice_, self.ids, probe, task, seed=0, epoch=0)
        self.task = task

    @torch.no_grad()
    def losses(self, model: KiwiEdit) -> dict[str, float]:
        """Mean loss per category over the probe rows and the fixed noise levels."""
        was_training = model.training
        model.eval()
        a = self.arrays
        batch = EditBatch(a["instructions"], torch.from_numpy(a["source"]), torch.from_numpy(a["target"]),
                          None if a["reference"] is None else torch.from_numpy(a["reference"]), self.task,
                          a["tasks"])
        per_category: dict[str, list[float]] = {}
        for level in PROBE_SIGMAS:
            generators = [keyed_generator("probe", row_id, level) for row_id in self.ids]
            sigma = torch.full((len(self.ids),), level)
            # through forward: a sharded (FSDP2) model gathers its weights in forward hooks
            values = model(batch, generators, per_sample=True, sigma=sigma).float().cpu().tolist()
            for category, value in zip(a["edit_types"], values, strict=True):
                per_category.setdefault(category, []).append(value)
        model.train(was_training)
        return {c: float(np.mean(v)) for c, v in per_category.items()}


def record_weights(db: Lake, run_id: str, stage: str, global_step: int, position: int,
                   weights: dict[str, float], losses: dict[str, float]) -> None:
    """One `mix_weights` row per category, keyed by the update's global step (positions restart every epoch;
    idempotent: a resumed run rewrites the same keys)."""
    now = datetime.now(UTC)
    db.upsert("mix_weights", [dict(mix_id=f"{run_id}/{stage}/{global_step}/{c}", run_id=run_id, stage=stage,
                                   global_step=global_step, position=position, category=c, weight=float(w),
                                   heldout_loss=losses.get(c), created_at=now) for c, w in sorted(weights.items())])
