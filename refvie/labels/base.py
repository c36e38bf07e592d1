"""What every edit classifier returns: a `Label` with its category, a confidence and where it came from.

`source` is the provenance stored on each quadruplet (`edit_type_source`): `given` (the dataset said so), `rules`,
`text-model`, `endpoint`. Rules have no calibrated confidence (None); the learned classifiers' confidences are
calibrated probabilities, and a low one sets `needs_review`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lake.taxonomy import EditType, parse_edit_type


@dataclass(frozen=True)
class Label:
    edit_type: EditType
    confidence: float | None
    source: str
    needs_review: bool = False


class EditClassifier(Protocol):
    name: str

    def predict(self, instructions: list[str]) -> list[Label]: ...

    def classify(self, instructions: list[str]) -> list[EditType]: ...


def read_labelled(path: str | Path) -> tuple[list[str], list[EditType]]:
    """A `label<TAB>instruction` file (lines starting with # are comments) as (instructions, labels)."""
    texts, labels = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        label, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise ValueError(f"{path}:{number}: expected 'label<TAB>instruction', got {line[:60]!r}")
        labels.append(parse_edit_type(label.strip()))
        texts.append(text.strip())
    return texts, labels
