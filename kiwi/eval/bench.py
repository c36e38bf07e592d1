"""Benches: frozen sets of items to evaluate on, kept in the lake's `bench_items` table.

A bench is frozen by copy: `freeze_lake_bench` takes the `bench` split of `quadruplets` at a tagged (or numbered)
version, stratified per edit type, and copies the rows (videos included) under the bench's name, so compaction,
deletes or re-runs of the pipeline never change it. Importers (`kiwi.eval.importers`) write published benches into
the same table. `load_bench` gives the items; `item_media` decodes one item's pixels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from lake import Lake, media
from lake.sql import literal


@dataclass(frozen=True)
class BenchItem:
    bench: str
    item_id: str
    category: str
    edit_type: str | None
    task: str
    instruction: str
    counts_to_overall: bool
    suite: str | None = None  # the published bench imported (openve-bench, refvie-bench); None: frozen from the lake
    output_name: str | None = None  # the file name upstream's inference gives this item's edited video


@dataclass
class ItemMedia:
    source: np.ndarray  # (T, H, W, 3) uint8
    target: np.ndarray | None  # ground truth, where the bench has it
    reference: np.ndarray | None
    edit_mask: np.ndarray | None  # (H, W) bool, the keyframe's edited region
    source_file: bytes | None = None  # the source video as the bench gives it (what the official judges see)
    reference_file: bytes | None = None


def bench_item_id(bench: str, item_id: str) -> str:
    return f"{bench}/{item_id}"


def _where_bench(bench: str) -> str:
    return f"bench = {literal(bench)}"


def bench_names(db: Lake) -> list[str]:
    names = db.read("bench_items", columns=["bench"])["bench"].to_pylist()
    return sorted(set(names))


def load_bench(db: Lake, bench: str) -> list[BenchItem]:
    """The bench's items ordered by item id; a clear error when no bench has that name."""
    rows = db.read("bench_items", columns=["bench", "item_id", "category", "edit_type", "task", "instruction",
                                           "counts_to_overall", "suite", "output_name"],
                   where=_where_bench(bench)).to_pylist()
    if not rows:
        known = ", ".join(bench_names(db)) or "none yet (freeze one with `kiwi bench freeze`)"
        raise ValueError(f"no bench named {bench!r} in the lake at {db.uri}; benches: {known}")
    return sorted((BenchItem(**{**r, "counts_to_overall": r["counts_to_overall"] is not False}) for r in rows),
                  key=lambda i: i.item_id)


def item_media(db: Lake, item: BenchItem) -> ItemMedia:
    key = bench_item_id(item.bench, item.item_id)
    meta = db.take("bench_items", [key], columns=["reference_image", "edit_mask"]).to_pylist()[0]
    source, target = (db.read_blobs("bench_items", column, [key])[0] for column in ("source_video", "target_video"))
    name = f"bench_items/{key}"
    mask = None
    if meta["edit_mask"] is not None:
        decoded = media.decode_image(meta["edit_mask"], name=f"{name}/edit_mask")
        mask = (decoded[..., 0] if decoded.ndim == 3 else decoded) > 127
    return ItemMedia(
        source=media.decode_video(source, name=f"{name}/source_video"),
        target=None if target is None else media.decode_video(target, name=f"{name}/target_video"),
        reference=None if meta["reference_image"] is None else media.decode_image(meta["reference_image"],
                                                                                   name=f"{name}/reference"),
        edit_mask=mask,
        source_file=source,
        reference_file=meta["reference_image"],
    )


def bench_suite(items: list[BenchItem]) -> str | None:
    """The published bench these items were imported from, if they all come from one."""
    suites = {i.suite for i in items}
    return suites.pop() if len(suites) == 1 else None


def _rank(seed: int, item_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{item_id}".encode(), digest_size=8).digest()


def freeze_lake_bench(db: Lake, name: str, per_category: int = 8, version: int | str | None = None,
                      where: str = "split = 'bench'", table: str = "quadruplets", seed: int = 0) -> list[BenchItem]:
    """Copy up to `per_category` rows of each edit type (a seeded, stable choice) from `table` at `version` (a
    number, a tag, or the latest) into a bench named `name`. Refuses a name already used: a bench never changes."""
    if name in bench_names(db):
        raise ValueError(f"bench {name!r} already exists; benches are frozen, pick another name")
    number = db.resolve_version(table, version) if version is not None else db.versions(table)[-1].version
    rows = db.read(table, columns=["id", "edit_type", "task", "instruction", "reference_image", "edit_mask"],
                   where=where, version=number).to_pylist()
    if not rows:
        raise ValueError(f"{table}@{number} has no rows where {where}: nothing to freeze")
    chosen = []
    for edit_type in sorted({r["edit_type"] for r in rows}):
        members = sorted((r for r in rows if r["edit_type"] == edit_type), key=lambda r: _rank(seed, r["id"]))
        chosen += members[:per_category]
    ids = [r["id"] for r in chosen]
    sources = db.read_blobs(table, "source_video", ids, version=number)
    targets = db.read_blobs(table, "target_video", ids, version=number)
    db.upsert("bench_items", [dict(
        bench_item_id=bench_item_id(name, r["id"]), bench=name, item_id=r["id"], category=r["edit_type"],
        edit_type=r["edit_type"], task=r["task"], instruction=r["instruction"],
        counts_to_overall=r["edit_type"] != "other", source_video=s, target_video=t,
        reference_image=r["reference_image"], edit_mask=r["edit_mask"], origin=f"{table}@{number}:{r['id']}")
        for r, s, t in zip(chosen, sources, targets, strict=True)])
    return load_bench(db, name)
