"""Ditto-1M (QingyanBai/Ditto-1M, CC BY-NC-SA 4.0): a million synthetic video-editing triplets, 101 frames each.

    videos/source/                 the source clips         videos/local/                local edits
    videos/global_style1|2/        style edits              videos/global_freeform1|2|3/ freeform scene edits
    training_metadata/*.json       JSON arrays of {source_path, instruction, edited_path}
    csvs_for_DiffSynth/*.csv       the same triplets for DiffSynth-Studio: video (edited), vace_video (source), prompt

Paths are relative to `videos/` (the DiffSynth CSVs' base path); a path relative to the dataset folder itself is
accepted too. The subset an edited clip lies in is the dataset's own category: only the style subsets say which of
ours it is (label map `ditto-1m`); local and freeform edits are left to the classifier."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from refvie.datasets import Provenance
from refvie.sources.base import PairRecord, RowProblem, file_provenance, media_field
from refvie.sources.gpt_image_edit import iter_json_array

HOMEPAGE = "https://huggingface.co/datasets/QingyanBai/Ditto-1M"
LICENCE = "cc-by-nc-sa-4.0"
JSON_KEYS = ("source_path", "edited_path", "instruction")
CSV_KEYS = ("vace_video", "video", "prompt")  # source, edited, instruction
_NUMBERED = re.compile(r"\d+$")


def subset_of(edited: str) -> str:
    """`local/abc.mp4` -> 'local'; `videos/global_style2/abc.mp4` -> 'global_style2'."""
    parts = PurePosixPath(str(edited)).parts
    parts = parts[1:] if parts and parts[0] == "videos" else parts
    return parts[0] if len(parts) > 1 else ""


@dataclass
class DittoSource:
    path: Path  # the Ditto-1M folder, its training_metadata/ or csvs_for_DiffSynth/ folder, or one of their files
    root: Path | None = None  # the dataset folder (default: found from PATH)
    dataset: str = ""
    allowed_roots: tuple[Path, ...] = ()
    about: dict = None
    label_map: str = "ditto-1m"  # the shipped map of its own categories (refvie.labels.maps)

    def __post_init__(self):
        self.path = Path(self.path)
        if self.path.is_dir() and (self.path / "training_metadata").is_dir():
            self.files = sorted((self.path / "training_metadata").glob("*.json"))
            home = self.path
        elif self.path.is_dir():
            self.files = sorted([*self.path.glob("*.json"), *self.path.glob("*.csv")])
            home = self.path.parent
        elif self.path.is_file():
            self.files, home = [self.path], self.path.parent.parent
        else:
            raise ValueError(f"{self.path}: no such Ditto-1M folder or metadata file")
        if not self.files:
            raise ValueError(f"{self.path}: no metadata (Ditto-1M keeps its triplets in training_metadata/*.json)")
        self.root = Path(self.root) if self.root else home
        self.allowed_roots = tuple(Path(r) for r in self.allowed_roots)
        self.requested = self.dataset or None
        self.dataset = self.dataset or "ditto-1m"

    def provenance(self) -> Provenance:
        about = {"licence": LICENCE, "homepage": HOMEPAGE, **(self.about or {})}
        return file_provenance(self.path, "ditto-1m", self.root, self.allowed_roots, default_name="ditto-1m",
                               **about)

    def _media(self, value):
        text = str(value or "").strip()
        if text and not text.startswith(("videos/", "/")) and not (self.root / text).exists():
            text = f"videos/{text}"  # relative to videos/, as the card's loaders take them
        return media_field(self.root, text, self.allowed_roots)

    def _rows(self, file: Path) -> Iterator[tuple[int, object]]:
        if file.suffix.lower() == ".csv":
            with file.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = [k for k in CSV_KEYS if k not in (reader.fieldnames or [])]
                if missing:
                    raise ValueError(f"{file}: no column {missing[0]!r} (a Ditto-1M DiffSynth CSV has "
                                     f"{', '.join(CSV_KEYS)}; found {', '.join(reader.fieldnames or [])})")
                for number, row in enumerate(reader, start=2):
                    yield number, {"source_path": row["vace_video"], "edited_path": row["video"],
                                   "instruction": row["prompt"]}
        else:
            yield from enumerate(iter_json_array(file))

    def __iter__(self) -> Iterator[PairRecord]:
        for file in self.files:
            for index, row in self._rows(file):
                record = PairRecord(input_ref=f"{file.name}:{index}", dataset=self.dataset)
                try:
                    if not isinstance(row, dict):
                        raise RowProblem("malformed_row", "not an object")
                    missing = [k for k in JSON_KEYS if not row.get(k)]
                    if missing:
                        raise RowProblem("malformed_row", f"no {missing[0]!r} in this row")
                    edited = str(row["edited_path"])
                    subset = subset_of(edited)
                    record.instruction = row["instruction"]
                    record.source = self._media(row["source_path"])
                    record.target = self._media(edited)
                    record.edit_type = _NUMBERED.sub("", subset) or None
                    key = PurePosixPath(edited.removeprefix("videos/")).with_suffix("")
                    record.pair_id = f"{self.dataset}-{'-'.join(key.parts)}"
                    record.meta = {"ditto": {"subset": subset, "metadata_file": file.name},
                                   "source_path": row["source_path"], "edited_path": edited}
                except RowProblem as problem:
                    record.problem = problem
                yield record
