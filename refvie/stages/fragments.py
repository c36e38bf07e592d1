"""Stage 6a of a build with parallel writes: a Ray task writes the quadruplets of its batch as uncommitted Lance
files on the node that made them, and hands the driver only what it decides with — pair ids, reject reasons, the
near-duplicate keys, timers — plus the fragments' metadata. The driver's `Write` then checks near-duplicates and
commits every batch's fragments in one Append (lake/fragments.py), instead of upserting every byte itself.

The driver stays the single place that decides (near-duplicates against the whole lake, pairs other builds
settled), so the decisions are those of the one-writer build; what moves to the workers is building the rows,
validating them and writing their bytes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lake.fragments import write_uncommitted
from lake.ray_runtime import node_id
from refvie.stages.batch import missing
from refvie.stages.write import quadruplet_row

# what the driver needs of each row once its bytes are written
LIGHT = ("pair_id", "reject_reason", "reject_stage", "reject_detail", "dataset", "scores_json", "instruction_emb",
         "target_emb", "node")


@dataclass(frozen=True)
class FragmentTarget:
    """Where a build's workers write: the `quadruplets` table's dataset, as the driver found it."""
    dataset_uri: str
    data_storage_version: str
    storage_options: Mapping[str, str]
    pipeline_version: str
    split_fractions: Mapping[str, float]

    @classmethod
    def of(cls, db, pipeline_version: str, split_fractions: Mapping[str, float]) -> FragmentTarget:
        dataset = db.dataset("quadruplets")
        return cls(dataset.uri, dataset.data_storage_version, dict(db.storage_options),
                   pipeline_version, dict(split_fractions))


def write_fragments_task(batch: dict, target: FragmentTarget) -> dict:
    """The accepted rows of `batch` written as uncommitted fragments; returns the batch's light columns, its timers,
    `fragments_json` (the same document on every row of the batch) and the writing node."""
    started = time.perf_counter()
    n = len(batch["pair_id"])
    rows = [quadruplet_row(batch, i, target.pipeline_version, dict(target.split_fractions))
            for i in range(n) if missing(batch["reject_reason"][i])]
    document = write_uncommitted(target.dataset_uri, "quadruplets", rows, target.storage_options,
                                 target.data_storage_version) if rows else "[]"
    light = {k: v for k, v in batch.items() if k in LIGHT or k.startswith("t_")}
    light["fragments_json"] = np.array([document] * n, dtype=object)
    light["write_node"] = np.array([node_id()] * n, dtype=object)
    light["t_write"] = np.full(n, (time.perf_counter() - started) / max(n, 1))
    return light
