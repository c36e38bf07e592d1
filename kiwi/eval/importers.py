"""Importers for the published bench files, into the lake's `bench_items` table (videos copied in as blobs).

- **OpenVE-Bench** (`benchmark_videos.csv` in the bench folder): columns `prompt`, `edited_type`,
  `original_video`. Upstream opens `./benchmark/` + `original_video` with the CSV in `./benchmark/OpenVE-Bench/`,
  so the paths name the bench folder first (`OpenVE-Bench/videos/...`); paths relative to the bench folder itself
  are read too. The five spatially aligned categories (global_style, background_change, local_change,
  local_remove, local_add) make the overall score; `subtitle_edit`, `camera_edit` and `creative_edit`, which the
  official script skips, are kept and reported apart. Item ids are the row numbers (`0000`, ...); each item keeps
  the file name upstream gives its edited video (`<original>_edited.mp4`).
- **RefVIE-Bench** (`refvie_bench.yaml`): a list of entries with `src_video`, `instruction`, `ref_img` and
  `edit_type` (`subject` or `background`), paths relative to the YAML's folder. Categories are `ref_subject` and
  `ref_background`; the overall is pooled over every score, as upstream computes it. Item ids are the entry
  numbers; the output name is upstream's `<n>_<first 10 characters of the instruction>_<source file name>`.

Paths stay inside the bench folder (as ingest confines its roots). A bad entry (missing or unreadable file, empty
instruction, unknown category, a path outside the folder) goes to `rejects` with a reason; entries in = imported
+ rejected. Published benches carry no ground-truth edited video, so they are scored by the judge (and the
metrics that need no target)."""

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
OPENVE_APART = {"subtitle_edit", "camera_edit", "creative_edit"}  # as `edited_type` spells them
_OPENVE_ALIASES = {"style": "global_style", "global": "global_style", "background": "background_change",
                   "subtitle": "subtitle_edit", "subtitles": "subtitle_edit", "subtitles_edit": "subtitle_edit",
                   "camera": "camera_edit", "camera_multishot_edit": "camera_edit", "camera_multi_shot_edit":
                   "camera_edit", "camera_multi_shot": "camera_edit", "multi_shot": "camera_edit",
                   "creative": "creative_edit", "add": "local_add", "remove": "local_remove", "change": "local_change",
                   "replace": "local_change"}
OPENVE_LISTING, REFVIE_LISTING = "benchmark_videos.csv", "refvie_bench.yaml"
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


def _resolve(folder: Path, value: Any, what: str, bases: tuple[Path, ...] = ()) -> Path:
    """`value` under the first of `bases` (default: the folder) where it exists, confined to the folder."""
    if value in (None, ""):
        raise _Bad("missing_field", f"no {what} path")
    folder = folder.resolve()
    candidates = [(base / str(value)).resolve() for base in (bases or (folder,))]
    inside = [c for c in candidates if c.is_relative_to(folder)]
    if not inside:
        raise _Bad("path_outside_root", f"{what} {value!r} is outside {folder}")
    for path in inside:
        if path.is_file():
            return path
    raise _Bad("missing_file", f"{what} {value!r} does not exist under {folder}")


def _video(path: Path, value: Any) -> bytes:
    data = path.read_bytes()
    try:
        media.count_frames(data, name=str(value))  # the whole video: a truncated one fails here, not mid-evaluation
    except MediaError as e:
        raise _Bad(e.reason, str(e)) from None
    return data


def _image(path: Path, value: Any) -> bytes:
    data = path.read_bytes()
    try:
        media.decode_image(data, name=str(value))
    except MediaError as e:
        raise _Bad(e.reason, str(e)) from None
    return data


def _write(db: Lake, bench: str, suite: str, entries: list[dict], convert) -> ImportReport:
    if bench in bench_names(db):
        raise ValueError(f"bench {bench!r} already exists; benches are frozen, pick another name")
    rows, rejects = [], []
    for index, entry in enumerate(entries):
        item_id = str(_first(entry, "id", "iid", "item_id", "uid") or f"{index:04d}")
        try:
            row = convert(index, entry)
        except _Bad as e:
            rejects.append(dict(input_ref=f"{bench}/{item_id}", stage=STAGE, reason=e.reason, detail=e.detail,
                                dataset=bench))
            continue
        rows.append(dict(bench_item_id=bench_item_id(bench, item_id), bench=bench, item_id=item_id, suite=suite,
                         **row))
    if rows:
        db.upsert("bench_items", rows)
    if rejects:
        db.reject_many(rejects)
    return ImportReport(bench, len(entries), len(rows), len(rejects))


def _listing(path: str | Path, default_name: str) -> tuple[Path, Path]:
    """(the listing file, the bench folder) from a folder holding the published listing, or the file itself."""
    path = Path(path)
    if path.is_dir():
        found = path / default_name
        if not found.is_file():
            raise ValueError(f"{path}: no {default_name} in this folder (the published bench's listing)")
        return found, path
    if not path.is_file():
        raise ValueError(f"{path}: no such bench folder or listing file")
    return path, path.parent


def refvie_output_name(index: int, instruction: str, src_video: str) -> str:
    """The file name upstream's benchmark inference gives an item's edited video."""
    return f"{index}_{instruction[:10]}_{str(src_video).split('/')[-1]}"


def openve_output_name(original_video: str) -> str:
    return str(original_video).split("/")[-1].replace(".mp4", "_edited.mp4")


def import_refvie_bench(db: Lake, listing: str | Path, bench: str = "refvie-bench",
                        root: str | Path | None = None) -> ImportReport:
    """RefVIE-Bench from its folder (holding refvie_bench.yaml) or the YAML itself."""
    import yaml

    listing, folder = _listing(listing, REFVIE_LISTING)
    folder = Path(root) if root else folder
    try:
        loaded = yaml.safe_load(listing.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{listing}: not a readable YAML listing ({e})") from None
    entries = loaded.get("items") if isinstance(loaded, dict) else loaded
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{listing}: expected a list of entries with src_video, instruction, ref_img, edit_type")

    def convert(index: int, entry: dict) -> dict:
        subtask = str(_first(entry, "edit_type", "task", "subtask") or "").strip().lower()
        task = _REFVIE_TASKS.get(subtask)
        if task is None:
            raise _Bad("unknown_category", f"edit_type {subtask!r}: RefVIE-Bench has subject and background")
        instruction = str(_first(entry, "instruction", "prompt") or "")
        if not instruction.strip():
            raise _Bad("empty_instruction", "no instruction")
        src = _first(entry, "src_video", "source_video")
        ref = _first(entry, "ref_img", "ref_image", "reference_image")
        return dict(category=task, task=task, instruction=instruction, counts_to_overall=True,
                    edit_type="background_change" if task == "ref_background" else None,
                    source_video=_video(_resolve(folder, src, "src_video"), src),
                    reference_image=_image(_resolve(folder, ref, "ref_img"), ref),
                    output_name=refvie_output_name(index, instruction, src), origin=f"{listing}:{src}")

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
    """OpenVE-Bench from its folder (holding benchmark_videos.csv) or the listing itself (CSV, or JSON with the
    same fields)."""
    manifest, folder = _listing(manifest, OPENVE_LISTING)
    folder = Path(root) if root else folder
    try:
        entries = _read_manifest(manifest)
    except (OSError, ValueError) as e:
        raise ValueError(f"{manifest}: not a readable listing (CSV, JSON or JSON lines): {e}") from None
    if not isinstance(entries, list):
        raise ValueError(f"{manifest}: expected a list of entries")
    if entries and "original_video" not in entries[0] and "video" not in entries[0]:
        raise ValueError(f"{manifest}: no original_video column (columns: {', '.join(entries[0])}); "
                         "OpenVE-Bench lists prompt, edited_type, original_video")
    bases = (folder.resolve().parent, folder.resolve())  # upstream's ./benchmark/ + path, then the folder itself

    def convert(index: int, entry: dict) -> dict:
        raw = _first(entry, "edited_type", "category")
        category = normalise_category(raw or "")
        if category not in OPENVE_ALIGNED and category not in OPENVE_APART:
            raise _Bad("unknown_category", f"edited_type {raw!r} is not an OpenVE-Bench category")
        instruction = str(_first(entry, "prompt", "instruction") or "")
        if not instruction.strip():
            raise _Bad("empty_instruction", "no prompt")
        video = _first(entry, "original_video", "video")
        return dict(category=category, edit_type=OPENVE_ALIGNED.get(category, "other"), task="instruct",
                    instruction=instruction, counts_to_overall=category in OPENVE_ALIGNED,
                    source_video=_video(_resolve(folder, video, "original_video", bases), video),
                    output_name=openve_output_name(video), origin=f"{manifest}:{video}")

    return _write(db, bench, "openve-bench", entries, convert)
