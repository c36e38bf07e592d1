"""A generic manifest (JSONL, CSV or Parquet) with a column mapping, for datasets with a layout of their own.

Fields: `instruction`, `source`, `target` (required), `id`, `reference`, `edit_type` (optional). The mapping says
which column holds each field (`{"instruction": "prompt", "source": "src_path"}`); unmapped fields use their own
name. Media cells are paths under the root, or bytes (Parquet) for inline images."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from refvie.datasets import Provenance
from refvie.sources.base import PairRecord, RowProblem, file_provenance, media_field, stable_id

FIELDS = ("id", "instruction", "source", "target", "reference", "edit_type")
REQUIRED_FIELDS = ("instruction", "source", "target")


@dataclass
class ManifestSource:
    path: Path
    root: Path
    mapping: Mapping[str, str] = field(default_factory=dict)
    dataset: str = ""  # "" = claimed at ingest: the file stem, unless another source holds it
    allowed_roots: tuple[Path, ...] = ()  # absolute paths may also lie in these
    about: dict = None  # licence / homepage / meta recorded in `datasets`
    format_name: str = "manifest"

    def __post_init__(self):
        self.path, self.root = Path(self.path), Path(self.root)
        self.allowed_roots = tuple(Path(r) for r in self.allowed_roots)
        self.requested = self.dataset or None
        self.dataset = self.dataset or self.path.stem
        unknown = set(self.mapping) - set(FIELDS)
        if unknown:
            raise ValueError(f"--map names unknown field(s) {sorted(unknown)}; fields are {', '.join(FIELDS)}")
        self.columns = {f: self.mapping.get(f, f) for f in FIELDS}
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such manifest file")
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: the dataset root is not a folder")
        self.format = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}.get(
            self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"{self.path}: use a .jsonl, .csv or .parquet manifest")
        header = self._header()
        if header is not None:
            missing = [self.columns[f] for f in REQUIRED_FIELDS if self.columns[f] not in header]
            if missing:
                raise ValueError(f"{self.path}: no column(s) {missing} (columns: {', '.join(header)}); "
                                 "map fields with --map field=column")

    def provenance(self) -> Provenance:
        return file_provenance(self.path, self.format_name, self.root, self.allowed_roots, **(self.about or {}))

    def _header(self) -> list[str] | None:
        if self.format == "csv":
            with self.path.open(newline="") as f:
                return next(csv.reader(f), [])
        if self.format == "parquet":
            return pq.read_schema(self.path).names
        return None  # JSONL rows are checked one by one

    def _rows(self) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
        """(line or row number, row or None when malformed, detail)."""
        if self.format == "jsonl":
            with self.path.open() as f:
                for line_number, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError as e:
                        yield line_number, None, f"not JSON: {e}"
                        continue
                    yield (line_number, row, "") if isinstance(row, dict) else (line_number, None, "not an object")
        elif self.format == "csv":
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                for row in reader:
                    bad = None in row or any(v is None for v in row.values())
                    yield reader.line_num, (None if bad else row), "wrong number of fields"
        else:
            number = 0
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=256):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row, ""

    def __iter__(self) -> Iterator[PairRecord]:
        c = self.columns
        for number, row, detail in self._rows():
            record = PairRecord(input_ref=f"{self.path.name}:{number}", dataset=self.dataset)
            try:
                if row is None:
                    raise RowProblem("malformed_row", detail)
                missing = [c[f] for f in REQUIRED_FIELDS if c[f] not in row]
                if missing:
                    raise RowProblem("malformed_row", f"no {missing[0]!r} in this row")
                record.instruction = row[c["instruction"]]
                record.source = media_field(self.root, row[c["source"]], self.allowed_roots)
                record.target = media_field(self.root, row[c["target"]], self.allowed_roots)
                record.reference = media_field(self.root, row.get(c["reference"]), self.allowed_roots)
                given_id = row.get(c["id"])
                record.pair_id = (f"{self.dataset}-{given_id}" if given_id not in (None, "") else
                                  stable_id(self.dataset, row[c["source"]], row[c["target"]], record.instruction))
                record.edit_type = row.get(c["edit_type"]) or None  # translated and checked by ingest
                record.meta = {k: v for k, v in row.items() if not isinstance(v, bytes | bytearray)}
            except RowProblem as problem:
                record.problem = problem
            yield record
