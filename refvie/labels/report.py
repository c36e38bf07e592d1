"""Accuracy, per-category precision / recall and the confusion matrix of a classifier on a labelled set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lake.taxonomy import EDIT_TYPES, EditType


@dataclass
class LabelReport:
    accuracy: float
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: np.ndarray  # rows: truth, columns: predicted, in EDIT_TYPES order
    n: int

    def __str__(self) -> str:
        short = [e.replace("local_", "l_").replace("background_change", "bg").replace("global_style", "style")
                 for e in EDIT_TYPES]
        lines = [f"accuracy {self.accuracy:.3f} on {self.n} instructions",
                 f"{'category':<18} {'precision':>9} {'recall':>7}   confusion (rows: truth) " + " ".join(
                     f"{s:>6}" for s in short)]
        for i, e in enumerate(EDIT_TYPES):
            lines.append(f"{e:<18} {self.precision[e]:>9.2f} {self.recall[e]:>7.2f}   {'':<24}"
                         + " ".join(f"{int(v):>6}" for v in self.confusion[i]))
        return "\n".join(lines)


def score(truth: list[EditType], predicted: list[EditType]) -> LabelReport:
    index = {e: i for i, e in enumerate(EDIT_TYPES)}
    confusion = np.zeros((len(EDIT_TYPES), len(EDIT_TYPES)), int)
    for t, p in zip(truth, predicted, strict=True):
        confusion[index[t], index[p]] += 1
    diagonal = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(diagonal / confusion.sum(axis=0))
        recall = np.nan_to_num(diagonal / confusion.sum(axis=1))
    return LabelReport(float(diagonal.sum() / max(1, confusion.sum())),
                       dict(zip(EDIT_TYPES, precision.tolist(), strict=True)),
                       dict(zip(EDIT_TYPES, recall.tolist(), strict=True)), confusion, int(confusion.sum()))
