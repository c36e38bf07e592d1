"""Importers for published bench layouts, into the lake's `bench_items` table (videos copied in as blobs).

- **RefVIE-Bench** (the Kiwi-Edit benchmark's YAML listing): a list of entries (or a mapping with an `items`
  list), each with an id, the source video, the reference image, the instruction and the subtask
  (`subject` or `background`); paths are relative to the YAML file's folder (or `root`). Categories are the two
  subtasks, `ref_subject` and `ref_background`, as the paper reports them.
- **OpenVE-Bench**: a manifest (JSON list, JSON lines or CSV) of source videos, instructions and categories.
  Only the five spatially aligned categories (global style, background change, local change, local remove,
  local add) count toward the overall score; subtitles, camera/multi-shot and creative edits are reported apart.

Published benches carry no ground-truth edited video, so they are scored by the judge (and the metrics that need
no target). A bad entry (missing or unreadable file, empty instruction, unknown category, a path outside the
bench's folder) goes to `rejects` with a reason; entries in = imported + rejected."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiwi.eval.bench import bench_item_id, bench_names
from lake import Lake, media
from lake.errors import MediaError

OPENVE_ALIGNED = {
    "global_style": "global_style",
    "background_change": "background_change",
    "local_change": "local_change",
    "local_remove": "local_remove",
    "local_add": "local_add",
}
OPENVE_APART = {"subtitles_edit", "camera_multi_shot_edit", "creative_edit"}
_OPENVE_ALIASES = {"style": "global_style", "global": "global_style", "background": "background_change",
                   "subtitle": "subtitles_edit", "subtitles": "subtitles_edit", "subtitle_edit": "subtitles_edit",
                   "camera": "camera_multi_shot_edit", "camera_multishot_edit": "camera_multi_shot_edit",
                   "camera_multi_shot": "camera_multi_shot_edit", "multi_shot": "camera_multi_shot_edit",
                   "creative": "creative_edit", "add": "local_add", "remove": "local_remove", "change": "local_change",
                   "replace": "local_change"}
_REFVIE_TASKS = {"subject": "ref_subject", "ref_subject": "ref_subject", "background": "ref_background",
                 "ref_background": "ref_background"}
STAGE = "bench_import"


@dataclass
class ImportReport:
    bench: str
    entries: int
    imported: int
    rejected: int

    def __str__(self) -> str:
        return f"{self.bench}: {self.entries} entries -> {self.imported} imported, {self.rejected} rejected"


class _Bad(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def normalise_category(name: str) -> str:
    key = re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")
    return _OPENVE_ALIASES.get(key, key)


def _first(entry: dict[str, Any], *names: str) -> Any:
    for n in names:
        if entry.get(n) not in (None, ""):
            return entry[n]
    return None


def _file(root: Path, value: Any, what: str) -> bytes:
    if value in (None, ""):
        raise _Bad("missing_field", f"no {what} path")
    path = (root / str(value)).resolve()
    if not path.is_relative_to(root.resolve()):
        raise _Bad("path_outside_root", f"{what} {value!r} is outside {root}")
    if not path.is_file():
        raise _Bad("missing_file", f"{what} {value!r} does not exist under {root}")
    return path.read_bytes()


def _video(root: Path, value: Any) -> bytes:
    data = _file(root, value, "video")
    try:
        media.count_frames(data, name=str(value))  # the whole video: a truncated one fails here, not mid-evaluation
    except MediaError as e:
        raise _Bad(e.reason, str(e)) from None
    return data


def _image(root: Path, value: Any) -> bytes:
    data = _file(root, value, "reference image")
    try:
        media.decode_image(data, name=str(value))
    except MediaError as e:
        raise _Bad(e.reason, str(e)) from None
    return data


def _write(db: Lake, bench: str, dataset: str, entries: list[dict], convert) -> ImportReport:
    if bench in bench_names(db):
        raise ValueError(f"bench {bench!r} already exists; benches are frozen, pick another name")
    rows, rejects = [], []
    for index, entry in enumerate(entries):
        item_id = str(_first(entry, "id", "iid", "item_id", "uid") or f"{index:05d}")
        try:
            row = convert(entry)
        except _Bad as e:
            rejects.append(dict(input_ref=f"{bench}/{item_id}", stage=STAGE, reason=e.reason, detail=e.detail,
                                dataset=dataset))
            continue
        rows.append(dict(bench_item_id=bench_item_id(bench, item_id), bench=bench, item_id=item_id, **row))
    if rows:
        db.upsert("bench_items", rows)
    if rejects:
        db.reject_many(rejects)
    return ImportReport(bench, len(entries), len(rows), len(rejects))


def import_refvie_bench(db: Lake, listing: str | Path, bench: str = "refvie-bench",
                        root: str | Path | None = None) -> ImportReport:
    import yaml

    listing = Path(listing)
    try:
        loaded = yaml.safe_load(listing.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{listing}: not a readable YAML listing ({e})") from None
    entries = loaded.get("items") if isinstance(loaded, dict) else loaded
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{listing}: expected a list of entries (or a mapping with an 'items' list)")
    base = Path(root) if root else listing.parent

    def convert(entry: dict) -> dict:
        task = _REFVIE_TASKS.get(str(_first(entry, "task", "subtask", "type") or "").strip().lower())
        if task is None:
            raise _Bad("unknown_category", f"task {entry.get('task')!r}: use subject or background")
        instruction = str(_first(entry, "prompt", "instruction", "text") or "").strip()
        if not instruction:
            raise _Bad("empty_instruction", "no instruction")
        return dict(category=task, task=task, instruction=instruction, counts_to_overall=True,
                    edit_type=entry.get("edit_type") or ("background_change" if task == "ref_background" else None),
                    source_video=_video(base, _first(entry, "src_video", "video", "source_video", "source")),
                    reference_image=_image(base, _first(entry, "ref_image", "image", "reference", "reference_image")),
                    origin=f"{listing}")

    return _write(db, bench, "refvie-bench", entries, convert)


def _read_manifest(path: Path) -> list[dict]:
    text = path.read_text()
    if path.suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if path.suffix in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    loaded = json.loads(text)
    return loaded.get("items", loaded) if isinstance(loaded, dict) else loaded


def import_openve_bench(db: Lake, manifest: str | Path, bench: str = "openve-bench",
                        root: str | Path | None = None) -> ImportReport:
    manifest = Path(manifest)
    try:
        entries = _read_manifest(manifest)
    except (OSError, ValueError) as e:
        raise ValueError(f"{manifest}: not a readable manifest (JSON, JSON lines or CSV): {e}") from None
    if not isinstance(entries, list):
        raise ValueError(f"{manifest}: expected a list of entries")
    base = Path(root) if root else manifest.parent

    def convert(entry: dict) -> dict:
        category = normalise_category(_first(entry, "category", "edit_category", "type") or "")
        if category not in OPENVE_ALIGNED and category not in OPENVE_APART:
            raise _Bad("unknown_category", f"category {entry.get('category')!r} is not an OpenVE-Bench category")
        instruction = str(_first(entry, "instruction", "prompt", "text") or "").strip()
        if not instruction:
            raise _Bad("empty_instruction", "no instruction")
        return dict(category=category, edit_type=OPENVE_ALIGNED.get(category, "other"), task="instruct",
                    instruction=instruction, counts_to_overall=category in OPENVE_ALIGNED,
                    source_video=_video(base, _first(entry, "video", "source_video", "src_video", "path")),
                    origin=f"{manifest}")

    return _write(db, bench, "openve-bench", entries, convert)
