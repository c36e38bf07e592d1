"""OpenVE-3M (Lewandofski/OpenVE-3M): three million instruction-guided video edits in eight categories.

Its pairs are DiffSynth-Studio CSVs, one per category (`local_add.csv`, `background_change.csv`, …), with the
columns `video` (the edited clip), `original_video` (the source) and `prompt`, separated by `;` (a `,` file is read
too), paths relative to the videos folder (`videos/`). The file's name is the category, translated by the shipped
`openve` label map (subtitle, camera multi-shot and creative edits are `other`).

Read as the published loaders read it: every CSV under the folder given (the videos folder excepted)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from refvie.datasets import Provenance
from refvie.sources.base import PairRecord, RowProblem, file_provenance, media_field

HOMEPAGE = "https://huggingface.co/datasets/Lewandofski/OpenVE-3M"
COLUMNS = ("video", "original_video", "prompt")


def delimiter_of(file: Path) -> str:
    """`;` as OpenVE-3M writes its CSVs (its prompts are full of commas), `,` when the header says so."""
    with file.open(encoding="utf-8", newline="") as f:
        header = f.readline()
    return ";" if header.count(";") >= header.count(",") else ","


@dataclass
class OpenVeSource:
    path: Path  # the OpenVE-3M folder, a folder of its CSVs, or one CSV
    root: Path | None = None  # the videos folder the paths are relative to (default: PATH's videos/)
    dataset: str = ""
    allowed_roots: tuple[Path, ...] = ()
    about: dict = None
    label_map: str = "openve"  # the shipped map of its own categories (refvie.labels.maps)

    def __post_init__(self):
        self.path = Path(self.path)
        home = self.path if self.path.is_dir() else self.path.parent
        if not self.path.exists():
            raise ValueError(f"{self.path}: no such OpenVE-3M folder or CSV")
        default_root = next((d / "videos" for d in (home, home.parent) if (d / "videos").is_dir()), home)
        self.root = Path(self.root) if self.root else default_root
        if self.path.is_file():
            self.files = [self.path]
        else:
            videos = self.root.resolve()
            self.files = sorted(f for f in self.path.rglob("*.csv") if not f.resolve().is_relative_to(videos))
        if not self.files:
            raise ValueError(f"{self.path}: no CSV here (OpenVE-3M keeps its pairs in one CSV per category)")
        self.allowed_roots = tuple(Path(r) for r in self.allowed_roots)
        self.requested = self.dataset or None
        self.dataset = self.dataset or "openve-3m"

    def provenance(self) -> Provenance:
        about = {"homepage": HOMEPAGE, **(self.about or {})}
        return file_provenance(self.path, "openve-3m", self.root, self.allowed_roots, default_name="openve-3m",
                               **about)

    def __iter__(self) -> Iterator[PairRecord]:
        for file in self.files:
            with file.open(encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f, delimiter=delimiter_of(file))
                missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise ValueError(f"{file}: no column {missing[0]!r} (an OpenVE-3M CSV has "
                                     f"{', '.join(COLUMNS)}; found {', '.join(reader.fieldnames or [])})")
                name = file.relative_to(self.path).with_suffix("") if self.path.is_dir() else Path(file.stem)
                for number, row in enumerate(reader, start=2):
                    record = PairRecord(input_ref=f"{name.as_posix()}.csv:{number}", dataset=self.dataset,
                                        edit_type=file.stem)
                    try:
                        if None in row:  # more cells than columns: a prompt with an unquoted delimiter
                            raise RowProblem("malformed_row", f"{len(row) - 1 + len(row[None])} cells for "
                                                              f"{len(COLUMNS)} columns")
                        record.instruction = row["prompt"]
                        record.source = media_field(self.root, row["original_video"], self.allowed_roots)
                        record.target = media_field(self.root, row["video"], self.allowed_roots)
                        key = Path(str(row["video"] or number)).with_suffix("").as_posix().replace("/", "-")
                        record.pair_id = f"{self.dataset}-{file.stem}-{key}"
                        record.meta = {"openve": {"category": file.stem, "file": f"{name.as_posix()}.csv"},
                                       "video": row["video"], "original_video": row["original_video"]}
                    except RowProblem as problem:
                        record.problem = problem
                    yield record
