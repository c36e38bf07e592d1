"""Stage 1, classify: instruction -> edit type, task and the label's provenance.

A label the dataset gives (`pairs.gt_edit_type`, after its label map) wins; the classifier still runs, and its
answer and confidence are kept beside the given label so disagreements can be listed (`label_disagreements`).
Unlabelled pairs take the classifier's answer, flagged `needs_review` when its confidence is low."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lake.taxonomy import EditScope, EditType, Task
from refvie.labels import DEFAULT_CLASSIFIER, EditClassifier, RuleClassifier, make_classifier
from refvie.stages.batch import missing, size, timed


def task_for(edit_type: EditType, given_reference: bool = False) -> Task:
    """Subject reference for additions and changes, background plate for background changes, else instruction
    only. A pair that ships its own reference is a reference task whatever its edit: a background plate when the
    edit reaches beyond a region (background, style), else a subject."""
    if edit_type.reference_task or not given_reference:
        return edit_type.reference_task or Task.INSTRUCT
    return Task.REF_BACKGROUND if edit_type.scope in (EditScope.BACKGROUND, EditScope.GLOBAL) else Task.REF_SUBJECT


@dataclass
class Classify:
    """Ray Data / plain-loop stage: adds `edit_type`, `task`, `edit_type_source`, `edit_type_confidence`,
    `edit_type_predicted` and `needs_review`."""

    classifier: EditClassifier | None = None
    classifier_name: str = DEFAULT_CLASSIFIER

    def setup(self) -> None:
        self.classifier = self.classifier or make_classifier(self.classifier_name)

    def __call__(self, batch: dict) -> dict:
        if self.classifier is None:
            self.setup()
        start = time.perf_counter()
        n = size(batch)
        labels = self.classifier.predict([str(t) for t in batch["instruction"]])
        given = batch.get("gt_edit_type", [None] * n)
        final = [EditType(g) if not missing(g) else label.edit_type for g, label in zip(given, labels, strict=True)]
        batch["edit_type"] = np.array([t.value for t in final], dtype=object)
        given_refs = batch.get("given_reference", [None] * n)
        batch["task"] = np.array([task_for(t, not missing(r)).value for t, r in zip(final, given_refs, strict=True)],
                                 dtype=object)
        batch["edit_type_source"] = np.array(["given" if not missing(g) else label.source
                                              for g, label in zip(given, labels, strict=True)], dtype=object)
        batch["edit_type_predicted"] = np.array([label.edit_type.value for label in labels], dtype=object)
        batch["edit_type_confidence"] = np.array([np.nan if label.confidence is None else label.confidence
                                                  for label in labels], dtype=np.float64)
        batch["needs_review"] = np.array([missing(g) and label.needs_review
                                          for g, label in zip(given, labels, strict=True)], dtype=bool)
        timed(batch, "classify", start)
        return batch


__all__ = ["Classify", "RuleClassifier", "task_for"]
