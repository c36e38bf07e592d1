"""The released Kiwi-Edit training metadata (`linyq/kiwi_edit_training_data`) in one ingest.

    ROOT/image_edit_metadata/*.csv     image pairs, stage 1 (src_video,tgt_video,prompt; one-frame clips)
    ROOT/video_edit_metadata/*.csv     video pairs, stage 2 (the same columns; a ref_image column is kept)
    ROOT/refvie_477k/chunk_*.parquet   RefVIE quadruplets, stage 3 (iid,prompt,src_video,tgt_video,ref_image_bytes)

Media paths are relative to the folder holding the source datasets (upstream's `--dataset_base_path`) or
absolute inside an allowed root. Each part is one dataset (`kiwi-image`, `kiwi-video`, `refvie`, claimed in
`datasets` like any source); each file is ingested and then marked done with its size and mtime, so a rerun after
a kill skips the files already whole and resumes inside the one that was cut (rows already stored are kept)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lake import Lake
from refvie.datasets import Provenance, claim, file_done, file_origin, record_file_done
from refvie.ingest import IngestConfig, IngestSummary, ingest
from refvie.sources.kiwi_csv import KiwiCsvSource
from refvie.sources.refvie_parquet import RefvieParquetSource

HOMEPAGE = "https://huggingface.co/datasets/linyq/kiwi_edit_training_data"


@dataclass(frozen=True)
class ReleasePart:
    folder: str
    dataset: str
    pattern: str
    stage: str


PARTS = (
    ReleasePart("image_edit_metadata", "kiwi-image", "*.csv", "image"),
    ReleasePart("video_edit_metadata", "kiwi-video", "*.csv", "video"),
    ReleasePart("refvie_477k", "refvie", "*.parquet", "reference"),
)


@dataclass
class ReleaseSummary:
    files: list[tuple[str, IngestSummary | int]] = field(default_factory=list)  # int: rows of a file already done

    @property
    def read(self) -> int:
        return sum(s.read for _, s in self.files if isinstance(s, IngestSummary))

    def __str__(self) -> str:
        lines = []
        for name, outcome in self.files:
            if isinstance(outcome, int):
                lines.append(f"{name}: done before ({_rows(outcome)}), skipped")
            else:
                lines.append(f"{name}: " + str(outcome).removeprefix(f"ingest {outcome.dataset}: "))
        done = [s for _, s in self.files if isinstance(s, IngestSummary)]
        lines.append(f"kiwi-release: {len(self.files)} files, read {self.read}, accepted "
                     f"{sum(s.accepted for s in done)}, already in the lake {sum(s.unchanged for s in done)}, "
                     f"rejected {sum(s.rejected_total for s in done)}")
        return "\n".join(lines)


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def release_files(root: Path) -> list[tuple[ReleasePart, Path]]:
    """Every metadata file of the release, part by part; a ValueError naming ROOT when it holds none."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (the downloaded kiwi_edit_training_data)")
    found = [(part, f) for part in PARTS for f in sorted((root / part.folder).glob(part.pattern))]
    if not found:
        raise ValueError(f"{root}: none of {', '.join(p.folder + '/' + p.pattern for p in PARTS)} is there; "
                         "is this the kiwi_edit_training_data folder?")
    return found


def ingest_release(root: Path, db: Lake, base: Path, allowed_roots: tuple[Path, ...] = (),
                   config: IngestConfig | None = None, say: Callable[[str], None] = print) -> ReleaseSummary:
    """Ingest every file of the release under `root`, media resolved from `base`; one progress line per file."""
    root, base, config = Path(root), Path(base), config or IngestConfig()
    if not base.is_dir():
        raise ValueError(f"{base}: the dataset base folder (where the source datasets' videos lie) is not a folder")
    files = release_files(root)
    summary = ReleaseSummary()
    names: dict[str, str] = {}
    for part, path in files:
        if part.folder not in names:
            provenance = Provenance(origin=file_origin(root / part.folder), default_name=part.dataset,
                                    format="kiwi-release",
                                    roots=tuple(str(r.resolve()) for r in (base, *allowed_roots)),
                                    homepage=HOMEPAGE, meta={"release_part": part.stage})
            names[part.folder] = claim(db, provenance)
        dataset = names[part.folder]
        label = f"{part.folder}/{path.name}"
        rows = file_done(db, dataset, path)
        if rows is not None:
            summary.files.append((label, rows))
            say(f"{label}: done before ({_rows(rows)}), skipped")
            continue
        say(f"{label}: ingesting into dataset {dataset}")
        if part.stage == "reference":
            source = RefvieParquetSource(path, base, dataset=dataset, allowed_roots=allowed_roots)
        else:
            source = KiwiCsvSource(path, base, dataset=dataset, allowed_roots=allowed_roots)
        outcome = ingest(source, db, replace(config, progress=False), claim_name=False)
        record_file_done(db, dataset, path, outcome.read)
        summary.files.append((label, outcome))
    return summary
