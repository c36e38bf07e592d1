"""Between the CPU stages and the model stage: turn arrays into what travels cheaply and lands in the lake
(PNG reference and mask, JPEG thumbnails, JSON scores), and drop the decoded frames."""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass

import numpy as np

from lake import media
from refvie.stages.batch import column, ensure, missing, size, timed

FRAME_COLUMNS = ("source", "target", "mask", "reference", "keyframe")


TEXT_COLUMNS = ("pair_id", "dataset", "instruction", "source_uri", "target_uri", "codec", "edit_type", "task",
                "reject_stage", "reject_reason", "reject_detail", "scores_json", "meta_json", "edit_type_source",
                "edit_type_predicted", "reference_source")
BYTES_COLUMNS = ("source_bytes", "target_bytes", "reference_png", "edit_mask_png", "thumb_source", "thumb_target")
NUMBER_COLUMNS = ("num_frames", "fps", "width", "height", "edit_type_confidence")


@dataclass
class Package:
    thumb_size: int = 128

    def setup(self) -> None:
        pass

    def __call__(self, batch: dict) -> dict:
        start = time.perf_counter()
        n = size(batch)
        for name in ("reference", "mask", "keyframe", "scores", "edit_type", "task", "given_reference",
                     "reference_source"):
            ensure(batch, name)
        out = {k: v for k, v in batch.items()
               if k not in FRAME_COLUMNS and k not in ("scores", "meta", "gt_edit_type", "given_reference")}
        out["reference_png"], out["edit_mask_png"] = column([None] * n), column([None] * n)
        out["thumb_source"], out["thumb_target"] = column([None] * n), column([None] * n)
        out["scores_json"] = column([json.dumps(s) if s else None for s in batch["scores"]])
        out["meta_json"] = column([json.dumps(m, default=str) if isinstance(m, dict) else m
                                   for m in ensure(batch, "meta")])
        for i in range(n):
            source, target, key = batch["source"][i], batch["target"][i], batch["keyframe"][i]
            if source is None:
                continue
            key = len(source) // 2 if key is None else key
            out["thumb_source"][i] = media.thumbnail(source[key], self.thumb_size)
            out["thumb_target"][i] = media.thumbnail(target[key], self.thumb_size)
            if batch["mask"][i] is not None:
                out["edit_mask_png"][i] = media.encode_mask_stack(batch["mask"][i])
            if batch["reference_source"][i] == "given":  # the dataset's own file, byte for byte
                out["reference_png"][i] = bytes(batch["given_reference"][i])
            elif batch["reference"][i] is not None:
                out["reference_png"][i] = media.encode_image(batch["reference"][i])
        timed(out, "package", start)
        return typed(out)


def typed(batch: dict) -> dict:
    """Every column non-null and of one type ("" / b"" / NaN for absent), so Ray Data's Arrow blocks unify
    across batches; `batch.missing` reads them back as absent."""
    n = size(batch)
    for name in TEXT_COLUMNS:
        values = batch.get(name, [None] * n)
        batch[name] = np.array(["" if v is None else str(v) for v in values], dtype=object)
    for name in BYTES_COLUMNS:
        values = batch.get(name, [None] * n)
        batch[name] = column([b"" if v is None else bytes(v) for v in values])
    for name in NUMBER_COLUMNS:
        values = batch.get(name, [None] * n)
        batch[name] = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    batch["needs_review"] = np.asarray(batch.get("needs_review", np.zeros(n, bool)), dtype=bool)
    return batch


PACKED_COLUMNS = ("source", "target", "mask", "reference", "meta", "scores")


@dataclass
class Pack:
    """Arrays and dicts to .npy / pickle bytes, so a batch can cross the object store between Ray operators
    (Arrow blocks cannot hold a column that mixes arrays of different shapes with None)."""

    def setup(self) -> None:
        pass

    def __call__(self, batch: dict) -> dict:
        for name in PACKED_COLUMNS:
            if name in batch:
                batch[name] = column([b"" if v is None else pickle.dumps(v, protocol=5) for v in batch[name]])
        for name in ("reject_stage", "reject_reason", "reject_detail", "edit_type", "task", "edit_type_source",
                     "edit_type_predicted", "gt_edit_type", "reference_source"):
            if name in batch:
                batch[name] = np.array(["" if v is None else str(v) for v in batch[name]], dtype=object)
        if "keyframe" in batch:
            batch["keyframe"] = np.array([-1 if v is None else int(v) for v in batch["keyframe"]], np.int64)
        return batch


@dataclass
class Unpack:
    def setup(self) -> None:
        pass

    def __call__(self, batch: dict) -> dict:
        for name in PACKED_COLUMNS:
            if name in batch:
                batch[name] = column([None if missing(v) else pickle.loads(bytes(v)) for v in batch[name]])
        for name in ("reject_stage", "reject_reason", "reject_detail"):
            if name in batch:
                batch[name] = column([None if missing(v) else str(v) for v in batch[name]])
        if "keyframe" in batch:
            batch["keyframe"] = column([None if int(v) < 0 else int(v) for v in batch["keyframe"]])
        return batch
