"""GPT-Image-Edit-1.5M (UCSC-VLAA): OmniEdit, HQ-Edit and UltraEdit pairs regenerated with GPT-Image.

Images ship as `gpt-edit/<family>/<family>.tar.gz.partNNN`, extracted under `gpt-edit/<family>/`; the pairs are the
training JSON files (UCSC-VLAA/gpt-image-edit-training, `training_json/`), each a JSON array of LLaVA-style records:
`image: [input, output]` (relative to the component's folder below) and `conversations` (the human turn holds the
instruction, with `<image>` placeholders).

    hqedit_gpt_edit.json       -> hqedit/edit             omniedit_gpt.json, omniedit_gpt_rewrite.json -> omniedit
    hqedit_gpt_generate.json   -> hqedit/generate         complexedit_gpt.json -> omniedit/complex-edit
    ultraedit_gpt.json         -> ultraedit

Read as a stream (the OmniEdit file holds over a million records); every row is an image pair."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refvie.datasets import Provenance
from refvie.sources.base import PairRecord, RowProblem, file_provenance, media_field

HOMEPAGE = "https://huggingface.co/datasets/UCSC-VLAA/GPT-Image-Edit-1.5M"
COMPONENTS = {
    "hqedit_gpt_edit.json": "hqedit/edit",
    "hqedit_gpt_generate.json": "hqedit/generate",
    "omniedit_gpt.json": "omniedit",
    "omniedit_gpt_rewrite.json": "omniedit",
    "complexedit_gpt.json": "omniedit/complex-edit",
    "ultraedit_gpt.json": "ultraedit",
}
_SEPARATORS = frozenset(", \t\r\n]")
_PLACEHOLDER = re.compile(r"<image>", re.IGNORECASE)


def iter_json_array(path: Path, chunk: int = 1 << 20) -> Iterator[Any]:
    """The elements of a top-level JSON array, decoded one at a time without reading the file whole. An element is
    taken only once a separator follows it (a number cut by a read would otherwise decode short)."""
    decoder, buffer, started, ended = json.JSONDecoder(), "", False, False
    with path.open(encoding="utf-8") as f:
        while True:
            buffer = buffer.lstrip()
            if not started and buffer:
                if buffer[0] != "[":
                    raise ValueError(f"{path}: not a JSON array")
                buffer, started = buffer[1:].lstrip(), True
            if started:
                buffer = buffer.removeprefix(",").lstrip()
                if buffer.startswith("]"):
                    return
                try:
                    item, end = decoder.raw_decode(buffer)
                except json.JSONDecodeError:
                    end = 0
                if end and (ended or (end < len(buffer) and buffer[end] in _SEPARATORS)):
                    yield item
                    buffer = buffer[end:]
                    continue
            if ended:
                raise ValueError(f"{path}: the JSON array is cut short")
            more = f.read(chunk)
            ended = not more
            buffer += more


def instruction_of(record: dict) -> str | None:
    for turn in record.get("conversations") or []:
        if isinstance(turn, dict) and turn.get("from") in ("human", "user"):
            return " ".join(_PLACEHOLDER.sub(" ", str(turn.get("value", ""))).split()) or None
    return None


@dataclass
class GptImageEditSource:
    path: Path  # training_json/ (every known file in it) or one of its files
    root: Path  # gpt-edit/, holding hqedit/ omniedit/ ultraedit/
    dataset: str = ""
    allowed_roots: tuple[Path, ...] = ()
    about: dict = None

    def __post_init__(self):
        self.path, self.root = Path(self.path), Path(self.root)
        if self.path.is_dir():
            self.files = [self.path / name for name in COMPONENTS if (self.path / name).is_file()]
        elif self.path.is_file():
            self.files = [self.path]
        else:
            raise ValueError(f"{self.path}: no such training_json folder or file")
        if not self.files:
            raise ValueError(f"{self.path}: none of {', '.join(COMPONENTS)} is there")
        unknown = [f.name for f in self.files if f.name not in COMPONENTS]
        if unknown:
            raise ValueError(f"{unknown[0]}: not a GPT-Image-Edit training file ({', '.join(COMPONENTS)})")
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: the gpt-edit image folder is not a folder")
        self.allowed_roots = tuple(Path(r) for r in self.allowed_roots)
        self.requested = self.dataset or None
        self.dataset = self.dataset or "gpt-image-edit"

    def provenance(self) -> Provenance:
        about = {"homepage": HOMEPAGE, **(self.about or {})}
        return file_provenance(self.path, "gpt-image-edit", self.root, self.allowed_roots,
                               default_name="gpt-image-edit", **about)

    def __iter__(self) -> Iterator[PairRecord]:
        for file in self.files:
            prefix = COMPONENTS[file.name]
            for index, row in enumerate(iter_json_array(file)):
                record = PairRecord(input_ref=f"{file.name}:{index}", dataset=self.dataset)
                try:
                    if not isinstance(row, dict):
                        raise RowProblem("malformed_row", "not an object")
                    images = row.get("image")
                    if not isinstance(images, list) or len(images) != 2:
                        raise RowProblem("malformed_row", "image must hold the input and the output path")
                    record.instruction = instruction_of(row)
                    record.source = media_field(self.root, f"{prefix}/{images[0]}", self.allowed_roots)
                    record.target = media_field(self.root, f"{prefix}/{images[1]}", self.allowed_roots)
                    record.pair_id = f"{self.dataset}-{file.stem}-{index}"
                    record.meta = {"component": file.name, "image": images}
                except RowProblem as problem:
                    record.problem = problem
                yield record
