"""Ingest: pair sources into the lake's `pairs` table. Every row read ends up accepted, unchanged (already in
the lake) or in `rejects` with a reason code — `read == accepted + unchanged + rejected`, always.

Each video is decoded in full (truncation only shows at the end), probed for its shape, and stored as a Lance
blob. Work runs on a small thread pool: PyAV releases the GIL while decoding."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

from lake import Lake, media
from lake.db import reject_id
from lake.errors import MediaError
from refvie.datasets import claim
from refvie.labels.maps import LabelMap, parse_label_map
from refvie.sources.base import MediaRef, PairRecord, RowProblem, Source

STAGE = "ingest"
_CONTROL_OK = {"\n", "\t", "\r"}


@dataclass(frozen=True)
class IngestConfig:
    min_frames: int = 2  # a clip needs this many frames; image pairs are one-frame clips by design
    allow_image_pairs: bool = True
    max_instruction_chars: int = 2000
    store_bytes: bool = True  # False: keep only the *_uri columns (large datasets on shared storage)
    batch_size: int = 32
    workers: int = 2
    skip_existing: bool = True
    progress: bool = True
    label_map: LabelMap = field(default_factory=LabelMap)  # the dataset's own categories onto ours


@dataclass
class IngestSummary:
    dataset: str
    read: int = 0
    accepted: int = 0
    unchanged: int = 0
    rejected: Counter = field(default_factory=Counter)
    repaired: int = 0  # accepted after a repair (e.g. a CSV prompt with unquoted commas); the original is in meta

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def balanced(self) -> bool:
        return self.read == self.accepted + self.unchanged + self.rejected_total

    def __str__(self) -> str:
        lines = [f"ingest {self.dataset}: read {self.read}, accepted {self.accepted}, "
                 f"already in the lake {self.unchanged}, rejected {self.rejected_total}"
                 + (f" ({self.repaired} accepted after a repair; see meta.repaired_from)" if self.repaired else "")]
        lines += [f"  rejected {reason:<22} {count}" for reason, count in self.rejected.most_common()]
        return "\n".join(lines)


def ingest(source: Source, db: Lake, config: IngestConfig = IngestConfig(), claim_name: bool = True) -> IngestSummary:
    """Every row of `source` into `pairs` or `rejects`, under the dataset name its origin holds in `datasets`
    (claimed first: a name another origin holds is refused, never shared). `claim_name=False`: the caller has
    claimed `source.dataset` for a larger origin (a release folder) already."""
    if claim_name:
        source.dataset = claim(db, source.provenance(), getattr(source, "requested", None) or None)
    own = getattr(source, "label_map", None)  # a format's shipped map of its own categories, by name
    config = replace(config, label_map=config.label_map.under(parse_label_map(own) if own else None))
    summary = IngestSummary(dataset=source.dataset)
    existing = _existing_pair_ids(db) if config.skip_existing else set()
    earlier = db.read("rejects", columns=["reject_id", "dataset"], where=f"stage = '{STAGE}'")
    rejected_before = dict(zip(earlier["reject_id"].to_pylist(), earlier["dataset"].to_pylist(), strict=True))
    seen: set[str] = set()
    progress = _progress(config, source)
    with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:
        for batch in _batches(source, config.batch_size):
            summary.read += len(batch)
            todo: list[PairRecord] = []
            rejects: list[dict[str, Any]] = []
            for record in batch:
                duplicate = record.pair_id is not None and record.pair_id in seen
                if record.pair_id is not None:
                    seen.add(record.pair_id)
                if record.problem is None and duplicate:
                    record.problem = RowProblem("duplicate_id", f"{record.pair_id} appeared earlier in this source")
                if record.problem is not None:
                    rejects.append(_reject(record, record.problem.reason, record.problem.detail))
                elif record.pair_id in existing:
                    summary.unchanged += 1
                else:
                    todo.append(record)
            rows = []
            for record, outcome in zip(todo, pool.map(lambda r: _prepare(r, config), todo), strict=True):
                if isinstance(outcome, RowProblem):
                    rejects.append(_reject(record, outcome.reason, outcome.detail))
                else:
                    rows.append(outcome)
            if rows:
                db.upsert("pairs", rows)
            _forget_old_rejects(db, todo, rejected_before)
            if rejects:
                db.reject_many(rejects)
            summary.accepted += len(rows)
            refused = {j["input_ref"] for j in rejects}
            summary.repaired += sum("repaired_from" in (r.meta or {}) for r in todo if r.input_ref not in refused)
            summary.rejected.update(r["reason"] for r in rejects)
            if progress is not None:
                progress.update(len(batch))
    if progress is not None:
        progress.close()
    assert summary.balanced(), summary
    return summary


def check_instruction(text: str | None, max_chars: int) -> str:
    """The instruction, whitespace-normalised; RowProblem when it is empty, absurdly long or holds control codes."""
    if text is None or not str(text).strip():
        raise RowProblem("empty_instruction", "the instruction is empty")
    text = str(text)
    if any(unicodedata.category(ch) == "Cc" and ch not in _CONTROL_OK for ch in text):
        raise RowProblem("control_characters", repr(text[:60]))
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > max_chars:
        raise RowProblem("instruction_too_long", f"{len(text)} characters (limit {max_chars})")
    return text


def _prepare(record: PairRecord, config: IngestConfig) -> dict[str, Any] | RowProblem:
    try:
        if record.deferred is not None:
            record = record.deferred()
            if record.problem is not None:
                return record.problem
        instruction = check_instruction(record.instruction, config.max_instruction_chars)
        edit_type = config.label_map.apply(record.edit_type)
        if record.source is None or record.target is None:
            raise RowProblem("missing_path", f"no {'source' if record.source is None else 'target'} video")
        if record.source.is_image != record.target.is_image:
            raise RowProblem("mixed_media", "one side is an image and the other a video")
        image_pair = record.source.is_image
        if image_pair and not config.allow_image_pairs:
            raise RowProblem("too_few_frames", "image pairs are not allowed by this ingest")
        source_bytes, src = _load(record.source, "source", image_pair, config)
        target_bytes, tgt = _load(record.target, "target", image_pair, config)
        reference = None
        if record.reference is not None:
            reference = record.reference.read()
            try:
                media.decode_image(reference)
            except MediaError as e:
                raise RowProblem("bad_reference", str(e)) from None
        meta = {"input_ref": record.input_ref, "target_frames": tgt["frames"]}
        if edit_type is not None and edit_type != record.edit_type:
            meta["given_label"] = record.edit_type  # the dataset's own word, before the label map
        meta = {**meta,
                "target_size": [tgt["width"], tgt["height"]], "image_pair": image_pair, **record.meta}
        return dict(
            pair_id=record.pair_id, dataset=record.dataset, instruction=instruction,
            source_video=source_bytes if config.store_bytes else None,
            target_video=target_bytes if config.store_bytes else None,
            source_uri=_uri(record.source, config), target_uri=_uri(record.target, config),
            num_frames=src["frames"], fps=src["fps"], width=src["width"], height=src["height"], codec=src["codec"],
            given_reference=reference, gt_edit_type=edit_type, gt_mask=record.gt_mask,
            gt_reference=record.gt_reference, meta=meta,
        )
    except RowProblem as problem:
        return problem


def _uri(ref: MediaRef, config: IngestConfig) -> str | None:
    """Where the media came from. Without stored bytes it is the only way back to them, so it must resolve from any
    process: the absolute file:// URI of the file (inline media cannot be referenced)."""
    if config.store_bytes:
        return ref.uri
    if ref.path is None:
        raise RowProblem("missing_path", "--no-bytes keeps only a path, and this row's media is inline (no file)")
    return ref.path.resolve().as_uri()


def _load(ref: MediaRef, side: str, image: bool, config: IngestConfig) -> tuple[bytes, dict[str, Any]]:
    data = ref.read()
    name = f"{side} {ref.uri or '(inline)'}"
    try:
        if image:
            frame = media.decode_image(data, name=name)
            return data, dict(frames=1, fps=0.0, width=frame.shape[1], height=frame.shape[0],
                              codec=_image_codec(data))
        frames = media.count_frames(data, min_frames=config.min_frames, name=name)  # every frame checked, none kept
        info = media.probe_video(data, name=name)
        return data, dict(frames=frames, fps=info.fps, width=info.width, height=info.height, codec=info.codec)
    except MediaError as e:
        raise RowProblem(e.reason, str(e)) from None


def _image_codec(data: bytes) -> str:
    return "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg" if data[:2] == b"\xff\xd8" else "image"


def _reject(record: PairRecord, reason: str, detail: str) -> dict[str, Any]:
    return dict(stage=STAGE, input_ref=record.input_ref, reason=reason, detail=detail or None,
                dataset=record.dataset)


def _forget_old_rejects(db: Lake, records: list[PairRecord], rejected_before: dict[str, str | None]) -> None:
    """A row of this dataset that failed before is forgotten (it passes now, or its reject is written again):
    never counted twice, and never another dataset's record of the same file and line. Records written before
    the dataset was part of the key are matched by their dataset column."""
    stale = [rid for r in records
             for rid in (reject_id(STAGE, r.input_ref, r.dataset), reject_id(STAGE, r.input_ref))
             if rid in rejected_before and rejected_before[rid] in (r.dataset, None)]
    if stale:
        db.delete("rejects", "reject_id IN (" + ", ".join(f"'{rid}'" for rid in stale) + ")")


def _existing_pair_ids(db: Lake) -> set[str]:
    return set(db.read("pairs", columns=["pair_id"])["pair_id"].to_pylist())


def _batches(records: Iterable[PairRecord], size: int) -> Iterator[list[PairRecord]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def _progress(config: IngestConfig, source: Source):
    from lake.progress import progress

    return progress(getattr(source, "n", None), f"ingest {source.dataset}", "pair", enabled=config.progress)
