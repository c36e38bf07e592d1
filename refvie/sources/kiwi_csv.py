"""The Kiwi-Edit training CSV: `src_video,tgt_video,prompt[,ref_image]`, paths relative to a base folder.

Stage-1 rows are image pairs (told apart by extension); stage-3 rows carry a reference image."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from refvie.datasets import Provenance
from refvie.sources.base import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    PairRecord,
    RowProblem,
    file_provenance,
    media_field,
    stable_id,
)

REQUIRED = ("src_video", "tgt_video", "prompt")


@dataclass
class KiwiCsvSource:
    csv_path: Path
    root: Path
    dataset: str = ""  # "" = claimed at ingest: the file stem, unless another source holds it
    strict: bool = False  # reject rows with unquoted commas in the prompt instead of repairing them
    allowed_roots: tuple[Path, ...] = ()  # absolute paths may also lie in these
    about: dict = None  # licence / homepage / meta recorded in `datasets`

    def __post_init__(self):
        self.csv_path, self.root = Path(self.csv_path), Path(self.root)
        self.allowed_roots = tuple(Path(r) for r in self.allowed_roots)
        self.requested = self.dataset or None
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

    def provenance(self) -> Provenance:
        return file_provenance(self.csv_path, "kiwi-csv", self.root, self.allowed_roots, **(self.about or {}))

    def __iter__(self) -> Iterator[PairRecord]:
        with self.csv_path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            for fields in reader:
                line = reader.line_num
                record = PairRecord(input_ref=f"{self.csv_path.name}:{line}", dataset=self.dataset)
                try:
                    row, repaired = self._row(header, fields, line)
                    record.instruction = row["prompt"]
                    record.pair_id = stable_id(self.dataset, row["src_video"], row["tgt_video"], row["prompt"])
                    record.source = media_field(self.root, row["src_video"], self.allowed_roots)
                    record.target = media_field(self.root, row["tgt_video"], self.allowed_roots)
                    record.reference = media_field(self.root, row.get("ref_image"), self.allowed_roots)
                    record.meta = {"src_video": row["src_video"], "tgt_video": row["tgt_video"]}
                    if repaired:
                        record.meta["repaired_from"] = repaired
                except RowProblem as problem:
                    record.problem = problem
                yield record

    def _row(self, header: list[str], fields: list[str], line: int) -> tuple[dict[str, str], str | None]:
        """The row as a dict, and the original line when it was repaired. Kiwi-Edit's own example CSVs hold
        prompts with unquoted commas: when every path column still ends in a media extension, the prompt takes
        the extra fields back (unambiguous: only one column is free text). `strict` rejects such rows instead."""
        if len(fields) == len(header):
            return dict(zip(header, fields, strict=True)), None
        problem = RowProblem("malformed_row", f"line {line} has {len(fields)} fields, expected {len(header)}")
        if len(fields) < len(header) or self.strict:
            raise problem
        start, extra = header.index("prompt"), len(fields) - len(header)
        values = [*fields[:start], ",".join(fields[start : start + extra + 1]), *fields[start + extra + 1 :]]
        row = dict(zip(header, values, strict=True))
        paths = [row[c] for c in header if c != "prompt" and row[c]]
        if not all(Path(p).suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS for p in paths):
            raise problem
        return row, ",".join(fields)
