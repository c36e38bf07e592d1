"""The batch every stage reads and extends: a dict of equal-length numpy arrays (object arrays for frames, bytes
and dicts), the shape Ray Data's `batch_format="numpy"` hands to `map_batches`, and what a plain loop can build.

A stage never drops a row: it marks it rejected (`reject_stage`, `reject_reason`, `reject_detail`) and later
stages skip it, so the writer sees every input and `rows in = accepted + rejected` holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

REJECT_COLUMNS = ("reject_stage", "reject_reason", "reject_detail")


def column(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def size(batch: dict) -> int:
    return len(next(iter(batch.values())))


def ensure(batch: dict, name: str, default: Any = None) -> np.ndarray:
    if name not in batch:
        batch[name] = column([default] * size(batch))
    elif batch[name].dtype != object:
        batch[name] = column(list(batch[name]))
    return batch[name]


def missing(value: Any) -> bool:
    """None, "" , b"" or NaN: what an absent value becomes once Ray Data has carried it through Arrow."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    if isinstance(value, str | bytes):
        return len(value) == 0
    return False


def alive(batch: dict) -> Iterator[int]:
    """Indices of rows no stage has rejected yet."""
    reasons = ensure(batch, "reject_reason")
    return (i for i in range(size(batch)) if missing(reasons[i]))


def reject(batch: dict, i: int, stage: str, reason: str, detail: str = "") -> None:
    for name in REJECT_COLUMNS:
        ensure(batch, name)
    batch["reject_stage"][i], batch["reject_reason"][i], batch["reject_detail"][i] = stage, reason, detail or None


def add_scores(batch: dict, i: int, **scores: float | None) -> None:
    current = ensure(batch, "scores")
    merged = dict(current[i] or {})
    merged.update({k: (None if v is None else float(v)) for k, v in scores.items()})
    current[i] = merged


def timed(batch: dict, stage: str, start: float) -> None:
    """Charge the seconds since `start` to `stage`, spread over the batch's rows (column `t_<stage>`)."""
    n = size(batch)
    batch[f"t_{stage}"] = np.full(n, (time.perf_counter() - start) / max(n, 1), np.float64)
