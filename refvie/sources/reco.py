"""ReCo-Data (HiDream-ai/ReCo-Data): 500K+ instruction-video pairs in four tasks, add, remove, replace and style.

    ReCo-Data/<task>/<task>_data_configs.json   a JSON array of pairs: src_video, tar_video (relative to ReCo-Data/,
                                                e.g. `add/src_videos/<id>.mp4`), instruction_final_refine, …
    ReCo-Data/<task>/src_videos/  tar_videos/   the clips (extracted from their tar shards)

The task is the dataset's own category (label map `reco`: add -> local_add, remove -> local_remove,
replace -> local_change, style -> global_style). The instruction is `instruction_final_refine`, the one ReCo's
own loaders train on; the pair's other scalar fields are kept in `meta.reco`. Read as a stream (a task's file holds
over 150,000 pairs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from refvie.datasets import Provenance
from refvie.sources.base import PairRecord, RowProblem, file_provenance, media_field
from refvie.sources.gpt_image_edit import iter_json_array

HOMEPAGE = "https://huggingface.co/datasets/HiDream-ai/ReCo-Data"
SUFFIX = "_data_configs.json"
INSTRUCTION = "instruction_final_refine"
REQUIRED = ("src_video", "tar_video", INSTRUCTION)
_KEPT_CHARS = 500  # meta keeps the pair's short scalar fields, not long captions


def task_of(file: Path) -> str:
    return file.name.removesuffix(SUFFIX)


@dataclass
class ReCoSource:
    path: Path  # the ReCo-Data folder, or one task's <task>_data_configs.json
    root: Path | None = None  # the folder the video paths are relative to (default: ReCo-Data/)
    dataset: str = ""
    allowed_roots: tuple[Path, ...] = ()
    about: dict = None
    label_map: str = "reco"  # the shipped map of its own categories (refvie.labels.maps)

    def __post_init__(self):
        self.path = Path(self.path)
        if self.path.is_dir():
            self.files = sorted({*self.path.glob(f"*/*{SUFFIX}"), *self.path.glob(f"*{SUFFIX}")})
            home = self.path
        elif self.path.is_file():
            if not self.path.name.endswith(SUFFIX):
                raise ValueError(f"{self.path}: not a ReCo task file (<task>{SUFFIX})")
            self.files, home = [self.path], self.path.parent.parent
        else:
            raise ValueError(f"{self.path}: no such ReCo-Data folder or task file")
        if not self.files:
            raise ValueError(f"{self.path}: no <task>/<task>{SUFFIX} here (ReCo-Data keeps one per task)")
        self.root = Path(self.root) if self.root else home
        self.allowed_roots = tuple(Path(r) for r in self.allowed_roots)
        self.requested = self.dataset or None
        self.dataset = self.dataset or "reco"

    def provenance(self) -> Provenance:
        about = {"homepage": HOMEPAGE, **(self.about or {})}
        return file_provenance(self.path, "reco", self.root, self.allowed_roots, default_name="reco", **about)

    def __iter__(self) -> Iterator[PairRecord]:
        for file in self.files:
            task = task_of(file)
            for index, row in enumerate(iter_json_array(file)):
                record = PairRecord(input_ref=f"{task}/{file.name}:{index}", dataset=self.dataset, edit_type=task)
                try:
                    if not isinstance(row, dict):
                        raise RowProblem("malformed_row", "not an object")
                    missing = [k for k in REQUIRED if not row.get(k)]
                    if missing:
                        raise RowProblem("malformed_row" if missing[0] != INSTRUCTION else "empty_instruction",
                                         f"no {missing[0]!r} in this pair")
                    record.instruction = row[INSTRUCTION]
                    record.source = media_field(self.root, row["src_video"], self.allowed_roots)
                    record.target = media_field(self.root, row["tar_video"], self.allowed_roots)
                    record.pair_id = f"{self.dataset}-{task}-{Path(str(row['tar_video'])).stem}"
                    kept = {k: v for k, v in row.items() if k not in REQUIRED
                            and isinstance(v, str | int | float | bool) and len(str(v)) <= _KEPT_CHARS}
                    record.meta = {"reco": {"task": task, **kept}, "src_video": row["src_video"],
                                   "tar_video": row["tar_video"]}
                except RowProblem as problem:
                    record.problem = problem
                yield record
