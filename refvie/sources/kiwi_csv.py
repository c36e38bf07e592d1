"""The Kiwi-Edit training CSV: `src_video,tgt_video,prompt[,ref_image]`, paths relative to a base folder.

Stage-1 rows are image pairs (told apart by extension); stage-3 rows carry a reference image."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from refvie.sources.base import PairRecord, RowProblem, media_field, stable_id

REQUIRED = ("src_video", "tgt_video", "prompt")


@dataclass
class KiwiCsvSource:
    csv_path: Path
    root: Path
    dataset: str = ""

    def __post_init__(self):
        self.csv_path, self.root = Path(self.csv_path), Path(self.root)
        self.dataset = self.dataset or self.csv_path.stem
        if not self.csv_path.is_file():
            raise ValueError(f"{self.csv_path}: no such CSV file")
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: the dataset root is not a folder")
        with self.csv_path.open(newline="") as f:
            header = next(csv.reader(f), [])
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{self.csv_path}: missing column(s) {missing}; a Kiwi-Edit CSV has "
                             "src_video,tgt_video,prompt[,ref_image]")

    def __iter__(self) -> Iterator[PairRecord]:
        with self.csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                line = reader.line_num
                record = PairRecord(input_ref=f"{self.csv_path.name}:{line}", dataset=self.dataset)
                try:
                    if None in row or any(row.get(c) is None for c in REQUIRED):
                        raise RowProblem("malformed_row", f"line {line} has {len(row) - (None in row)} fields, "
                                                          f"expected {len(reader.fieldnames or [])}")
                    record.instruction = row["prompt"]
                    record.pair_id = stable_id("kiwi", row["src_video"], row["tgt_video"], row["prompt"])
                    record.source = media_field(self.root, row["src_video"])
                    record.target = media_field(self.root, row["tgt_video"])
                    record.reference = media_field(self.root, row.get("ref_image"))
                    record.meta = {"src_video": row["src_video"], "tgt_video": row["tgt_video"]}
                except RowProblem as problem:
                    record.problem = problem
                yield record
