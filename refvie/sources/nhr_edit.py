"""NHR-Edit (iitolstykh/NHR-Edit, Apache-2.0): image editing triplets mined without human filtering.

    train/metadata.jsonl     one triplet per line: sample_id, source_file_name, edited_file_name, edit_instruction,
                             augmented_instructions, category, kind, style, img_width, img_height
    train/images/NN/         image_<id>_original.jpg, image_<id>_edited_<k>.jpg

File names are relative to train/ (a `train/` prefix, relative to the dataset folder, is accepted too). Each row is
an image pair (a one-frame clip, Kiwi-Edit's stage-1 task). The dataset's own `category` / `kind` / `style` are kept
in `meta`; they become given labels only through a label map (`--label-map`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from refvie.datasets import Provenance
from refvie.sources.base import PairRecord, RowProblem, file_provenance, media_field

HOMEPAGE = "https://huggingface.co/datasets/iitolstykh/NHR-Edit"
LICENCE = "apache-2.0"
REQUIRED = ("source_file_name", "edited_file_name", "edit_instruction")
KEPT = ("sample_id", "category", "kind", "style", "img_width", "img_height", "augmented_instructions")


@dataclass
class NhrEditSource:
    path: Path  # train/metadata.jsonl, or the dataset folder holding it
    root: Path | None = None  # the folder file names are relative to (default: the metadata file's folder)
    dataset: str = ""
    allowed_roots: tuple[Path, ...] = ()
    about: dict = None

    def __post_init__(self):
        self.path = Path(self.path)
        if self.path.is_dir():
            self.path = self.path / "train" / "metadata.jsonl" if (self.path / "train").is_dir() \
                else self.path / "metadata.jsonl"
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such file (NHR-Edit keeps its triplets in train/metadata.jsonl)")
        self.root = Path(self.root) if self.root else self.path.parent
        self.allowed_roots = tuple(Path(r) for r in self.allowed_roots)
        self.requested = self.dataset or None
        self.dataset = self.dataset or "nhr-edit"

    def provenance(self) -> Provenance:
        about = {"licence": LICENCE, "homepage": HOMEPAGE, **(self.about or {})}
        return file_provenance(self.path, "nhr-edit", self.root, self.allowed_roots, default_name="nhr-edit", **about)

    def _media(self, name: str):
        name = str(name)
        if name.startswith("train/") and not (self.root / name).exists():
            name = name.removeprefix("train/")
        return media_field(self.root, name, self.allowed_roots)

    def __iter__(self) -> Iterator[PairRecord]:
        with self.path.open() as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                record = PairRecord(input_ref=f"{self.path.name}:{number}", dataset=self.dataset)
                try:
                    try:
                        row = json.loads(line)
                    except ValueError as e:
                        raise RowProblem("malformed_row", f"not JSON: {e}") from None
                    if not isinstance(row, dict):
                        raise RowProblem("malformed_row", "not an object")
                    missing = [k for k in REQUIRED if not row.get(k)]
                    if missing:
                        raise RowProblem("malformed_row", f"no {missing[0]!r} in this row")
                    record.instruction = row["edit_instruction"]
                    record.source = self._media(row["source_file_name"])
                    record.target = self._media(row["edited_file_name"])
                    key = row.get("sample_id") or row["edited_file_name"]
                    record.pair_id = f"{self.dataset}-{key}"
                    record.meta = {"nhr": {k: row[k] for k in KEPT if k in row},
                                   "source_file_name": row["source_file_name"],
                                   "edited_file_name": row["edited_file_name"]}
                except RowProblem as problem:
                    record.problem = problem
                yield record
