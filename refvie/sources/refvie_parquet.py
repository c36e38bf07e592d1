"""The RefVIE parquet release: chunked parquet with `iid,prompt,src_video,tgt_video,ref_image_bytes`, where the
video columns are paths relative to a base folder of the original datasets. Read lazily, batch by batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from refvie.datasets import Provenance
from refvie.sources.base import MediaRef, PairRecord, RowProblem, file_provenance, media_field

REQUIRED = ("iid", "prompt", "src_video", "tgt_video", "ref_image_bytes")


@dataclass
class RefvieParquetSource:
    path: Path  # one parquet file, or a folder of chunks
    root: Path
    dataset: str = ""  # "" = claimed at ingest: "refvie", unless another release copy holds it
    batch_rows: int = 256
    allowed_roots: tuple[Path, ...] = ()  # absolute paths may also lie in these
    about: dict = None  # licence / homepage / meta recorded in `datasets`

    def __post_init__(self):
        self.path, self.root = Path(self.path), Path(self.root)
        self.allowed_roots = tuple(Path(r) for r in self.allowed_roots)
        self.requested = self.dataset or None
        self.dataset = self.dataset or "refvie"
        if self.path.is_dir():
            self.files = sorted(self.path.glob("*.parquet"))
        elif self.path.is_file():
            self.files = [self.path]
        else:
            raise ValueError(f"{self.path}: no such parquet file or folder")
        if not self.files:
            raise ValueError(f"{self.path}: the folder holds no .parquet chunks")
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: the dataset root is not a folder")
        for file in self.files:
            names = pq.read_schema(file).names
            missing = [c for c in REQUIRED if c not in names]
            if missing:
                raise ValueError(f"{file}: missing column(s) {missing}; the RefVIE release has {', '.join(REQUIRED)}")

    def provenance(self) -> Provenance:
        return file_provenance(self.path, "refvie-parquet", self.root, self.allowed_roots, default_name="refvie",
                               **(self.about or {}))

    def __iter__(self) -> Iterator[PairRecord]:
        for file in self.files:
            row_number = 0
            for batch in pq.ParquetFile(file).iter_batches(batch_size=self.batch_rows, columns=list(REQUIRED)):
                for row in batch.to_pylist():
                    record = PairRecord(input_ref=f"{file.name}:{row_number}", dataset=self.dataset)
                    row_number += 1
                    try:
                        if row["iid"] is None:
                            raise RowProblem("malformed_row", "iid is empty")
                        record.pair_id = f"{self.dataset}-{row['iid']}"
                        record.instruction = row["prompt"]
                        record.source = media_field(self.root, row["src_video"], self.allowed_roots)
                        record.target = media_field(self.root, row["tgt_video"], self.allowed_roots)
                        ref = row["ref_image_bytes"]
                        record.reference = MediaRef(uri=None, data=ref) if ref else None
                        record.meta = {"iid": row["iid"], "src_video": row["src_video"], "tgt_video": row["tgt_video"]}
                    except RowProblem as problem:
                        record.problem = problem
                    yield record
