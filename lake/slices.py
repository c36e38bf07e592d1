"""Slices: a curated, rebalanced selection of a table's rows, saved as data with its full lineage.

A slice pins the table version it read, so rows appended later never leak in; it is identified by a hash of
everything that defines it, so building the same slice twice saves it once."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from lake.balance import Allocation, Strategy, allocate
from lake.errors import LakeError
from lake.schema import spec_for
from lake.version import code_version

if TYPE_CHECKING:
    from lake.db import Lake, Version
    from lake.sampler import SliceSampler


@dataclass
class Slice:
    slice_id: str
    name: str
    table: str
    table_version: int
    where: str | None
    by: str
    strategy: Strategy
    seed: int
    allocation: Allocation
    ids: np.ndarray  # row keys, sorted
    categories: np.ndarray  # category of each row
    code_version: str = field(default_factory=code_version)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def epoch_size(self) -> int:
        return self.allocation.epoch_size

    @property
    def weights(self) -> np.ndarray:
        """Sampling probability of each row: its category's share spread evenly over the category's rows."""
        shares, counts = self.allocation.shares, self.allocation.counts
        encoded = pa.array(self.categories, pa.string()).dictionary_encode()
        per_category = np.array([shares[c] / counts[c] for c in encoded.dictionary.to_pylist()], np.float64)
        return per_category[encoded.indices.to_numpy()]

    def report(self) -> list[dict]:
        return self.allocation.report()

    def sampler(self, seed: int | None = None, epoch: int = 0, rank: int = 0, world_size: int = 1,
                mode: str = "weighted", batch_size: int = 32, buckets: np.ndarray | None = None) -> SliceSampler:
        from lake.sampler import SliceSampler

        return SliceSampler(self, self.seed if seed is None else seed, epoch, rank, world_size, mode, batch_size,
                            buckets)


def build_slice(db: Lake, table: str = "quadruplets", by: str = "edit_type", strategy: Strategy | None = None,
                where: str | None = None, version: Version | None = None, seed: int = 0,
                epoch_size: int | None = None, name: str | None = None) -> Slice:
    """Select rows (at a pinned version, optionally filtered) and rebalance their categories."""
    strategy = strategy or Strategy("natural")
    spec = spec_for(table)
    if ";" in by or (where and ";" in where):
        raise LakeError("by / where must be single SQL expressions")
    pinned = db.table(table).version if version is None else db.resolve_version(table, version)
    key = spec.key[0]
    rows = db.sql(f'SELECT "{key}" AS id, CAST({by} AS VARCHAR) AS category FROM {table}'
                  + (f" WHERE {where}" if where else "") + " ORDER BY id", version={table: pinned})
    ids = np.asarray(rows["id"].to_pylist(), dtype=object)
    category_column = pa.compute.fill_null(rows["category"], "null")
    categories = np.asarray(category_column.to_pylist(), dtype=object)
    counted = pa.compute.value_counts(category_column).to_pylist()
    if not counted:
        total = db.count(table, version=pinned)
        hint = {"quadruplets": "build them with `refvie build` (after `refvie ingest …`)",
                "pairs": "ingest some with `refvie ingest …`"}.get(table, "fill it first")
        raise LakeError(f"{table}@{pinned} is empty: {hint}" if total == 0 else
                        f"no {table} row of the {total} at version {pinned} matches WHERE {where}")
    allocation = allocate({c["values"]: c["counts"] for c in counted}, strategy, epoch_size)
    slice_id = _slice_id(table, pinned, where, by, strategy, seed, allocation.epoch_size)
    return Slice(slice_id=slice_id, name=name or f"{table}-{strategy.name}-{slice_id[:6]}", table=table,
                 table_version=pinned, where=where, by=by, strategy=strategy, seed=seed, allocation=allocation,
                 ids=ids, categories=categories)


def save_slice(db: Lake, s: Slice) -> str:
    """Write the slice and its rows (once: a slice id that exists is not written again). The `slices` row is
    written last, as the commit: rows left by a save killed before it are removed and written again."""
    if db.count("slices", where=f"slice_id = '{s.slice_id}'"):
        return s.slice_id
    weights = s.weights
    db.delete("slice_rows", f"slice_id = '{s.slice_id}'")
    db.append("slice_rows", pa.table({"slice_id": pa.array([s.slice_id] * len(s.ids)), "id": pa.array(list(s.ids)),
                                      "category": pa.array(list(s.categories)), "weight": pa.array(weights)}))
    db.upsert("slices", [dict(
        slice_id=s.slice_id, name=s.name, table=s.table, table_version=s.table_version, where=s.where, by=s.by,
        strategy=s.strategy.name, params=json.dumps(s.strategy.params, sort_keys=True), seed=s.seed,
        code_version=s.code_version, counts_before=json.dumps(s.allocation.counts, sort_keys=True),
        counts_after=json.dumps(s.allocation.samples(), sort_keys=True), epoch_size=s.epoch_size,
        created_at=s.created_at)])
    return s.slice_id


def load_slice(db: Lake, id_or_name: str) -> Slice:
    """A saved slice by id (or unique id prefix) or by name (the newest with that name)."""
    meta = db.read("slices").to_pylist()
    matches = [m for m in meta if m["slice_id"] == id_or_name or m["name"] == id_or_name]
    matches = matches or [m for m in meta if m["slice_id"].startswith(id_or_name)]
    if not matches:
        known = ", ".join(sorted({m["name"] for m in meta})) or "none"
        raise LakeError(f"no slice {id_or_name!r} (saved slices: {known})")
    m = max(matches, key=lambda r: r["created_at"])
    rows = db.read("slice_rows", columns=["id", "category"], where=f"slice_id = '{m['slice_id']}'")
    order = np.argsort(np.asarray(rows["id"].to_pylist(), dtype=object))
    params = json.loads(m["params"] or "{}")
    strategy = Strategy(m["strategy"], **params)
    counts = json.loads(m["counts_before"])
    allocation = allocate(counts, strategy, m["epoch_size"])
    return Slice(slice_id=m["slice_id"], name=m["name"], table=m["table"], table_version=m["table_version"],
                 where=m["where"], by=m["by"], strategy=strategy, seed=m["seed"], allocation=allocation,
                 ids=np.asarray(rows["id"].to_pylist(), dtype=object)[order],
                 categories=np.asarray(rows["category"].to_pylist(), dtype=object)[order],
                 code_version=m["code_version"], created_at=m["created_at"])


def list_slices(db: Lake) -> pa.Table:
    return db.sql("SELECT slice_id, name, \"table\", table_version, strategy, params, \"where\", \"by\", epoch_size, "
                  "created_at FROM slices ORDER BY created_at")


def diff_slices(a: Slice, b: Slice) -> list[dict[str, Any]]:
    """Per category: share and rows in each slice, and the change."""
    cats = sorted(set(a.allocation.counts) | set(b.allocation.counts))
    out = []
    for c in cats:
        sa, sb = a.allocation.shares.get(c, 0.0), b.allocation.shares.get(c, 0.0)
        out.append(dict(category=c, rows_a=a.allocation.counts.get(c, 0), rows_b=b.allocation.counts.get(c, 0),
                        share_a=round(sa, 4), share_b=round(sb, 4), change=round(sb - sa, 4)))
    return out


def _slice_id(table, version, where, by, strategy: Strategy, seed, epoch_size) -> str:
    spec = json.dumps(dict(table=table, version=version, where=where, by=by, strategy=strategy.name,
                           params=strategy.params, seed=seed, epoch_size=epoch_size), sort_keys=True)
    return hashlib.blake2b(spec.encode(), digest_size=10).hexdigest()
