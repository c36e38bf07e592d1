"""Checks a run before it is launched: every stage's slices exist and hold rows its task can read, at a geometry it
can train on. A misconfigured published-recipe run should fail in seconds on a laptop, not after an hour in a
cluster's queue.

Per task source of every stage: the slice resolves (by name or id) at its pinned table version; its rows have the
task's media (an image task: one-frame clips; video tasks: clips of more than one frame; reference tasks: a
reference image); the clips are large enough for the stage's pixel budget (32 pixels a side); and how many clips are
shorter than the stage's frame count (cut to 4k+1 frames, or with their last frame repeated, as the stage's frame
policy says) is reported."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiwi.curriculum import RunConfig
from lake import Lake
from lake.clips import cut_to_4k1
from lake.errors import LakeError
from lake.slices import load_slice


@dataclass
class SourceCheck:
    stage: str
    task: str
    slice: str
    rows: int = 0
    problems: list[str] = field(default_factory=list)  # the run cannot read these rows as the stage asks
    notes: list[str] = field(default_factory=list)  # it can, but the user should know

    def line(self) -> str:
        said = "; ".join(self.problems + self.notes) or "ok"
        return f"{self.stage:24s} {self.task:14s} {self.slice:28s} {self.rows:>8,d}  {said}"


def check_run(db: Lake, run: RunConfig) -> list[SourceCheck]:
    checks, tables = [], {}  # a slice read by several stages (the image slice: three) is scanned once
    for stage in run.stages:
        for source in stage.mixture:
            check = SourceCheck(stage.name, source.task, source.slice)
            checks.append(check)
            try:
                slice_ = load_slice(db, source.slice)
            except LakeError as e:
                check.problems.append(str(e))
                continue
            ids = [str(i) for i in slice_.ids]
            check.rows = len(ids)
            if not ids:
                check.problems.append("the slice is empty")
                continue
            key = (slice_.slice_id, slice_.table, slice_.table_version)
            if key not in tables:
                tables[key] = _rows(db, slice_.table, slice_.table_version, ids)
            rows = tables[key]
            frames = source.frames or stage.frames
            if source.task == "image":
                videos = sum((r["num_frames"] or 0) > 1 for r in rows)
                if videos == len(rows):
                    check.problems.append("every row is a video; an image task reads image pairs (one-frame clips)")
                elif videos:
                    check.notes.append(f"{videos} video row(s) read as their first frame")
            else:
                images = sum((r["num_frames"] or 0) <= 1 for r in rows)
                if images:
                    check.problems.append(f"{images} row(s) are images; the {source.task} task reads clips of "
                                          f"{frames} frames")
                short = [r["num_frames"] for r in rows if 1 < (r["num_frames"] or 0) < frames]
                if short:
                    policy = ("cut to 4k+1 frames (e.g. " + f"{min(short)} -> {cut_to_4k1(min(short))})"
                              if stage.frame_sampling == "prefix_cut" else "their last frame repeated")
                    check.notes.append(f"{len(short)} clip(s) shorter than {frames} frames: {policy}")
            if source.task.startswith("ref"):
                missing = sum(not r["has_reference"] for r in rows)
                if missing:
                    check.problems.append(f"{missing} row(s) have no reference image")
            tiny = sum(min(r["width"] or 0, r["height"] or 0) < 32 for r in rows)
            if tiny:
                check.problems.append(f"{tiny} row(s) are under 32 pixels a side")
    return checks


def _rows(db: Lake, table: str, version: int, ids: list[str]) -> list[dict]:
    """The slice's rows' geometry and whether each has a reference, by one scan of the table's metadata (a
    477K-row slice is no IN-list); reference bytes are never read, only which rows lack one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    key = db.spec(table).key[0]
    meta = db.read(table, columns=[key, "num_frames", "width", "height"], version=version)
    meta = meta.filter(pc.is_in(meta[key], value_set=pa.array(ids)))
    lacking = set(db.read(table, columns=[key], where="reference_image IS NULL", version=version)[key].to_pylist())
    return [{**row, "has_reference": row[key] not in lacking} for row in meta.to_pylist()]
