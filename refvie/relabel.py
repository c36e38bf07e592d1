"""Relabel without rebuilding: new edit types, tasks and provenance for existing quadruplets, as one new table
version with a tag. Slices pinned to an older version keep reading it, so `lake slice diff` shows what moved.

Given labels stay (the classifier's answer is refreshed beside them); videos, references and scores are untouched.
A row whose category changes also changes task: a reference task follows the new category."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lake import Lake
from lake.taxonomy import EditType
from refvie.labels import EditClassifier
from refvie.stages.classify import task_for

COLUMNS = ("edit_type", "edit_scope", "task", "edit_type_source", "edit_type_confidence", "edit_type_predicted",
           "needs_review")


@dataclass
class RelabelSummary:
    rows: int = 0
    changed: Counter = field(default_factory=Counter)  # (old, new) -> rows
    needs_review: int = 0
    version: int | None = None
    previous_version: int | None = None
    tag: str | None = None

    def __str__(self) -> str:
        moved = sum(self.changed.values())
        lines = [f"refvie relabel: {self.rows} quadruplets read, {moved} changed category, "
                 f"{self.needs_review} need review"]
        if self.version is not None:
            lines.append(f"  version {self.previous_version} -> {self.version}, tagged {self.tag!r}")
        lines += [f"  {old:<18} -> {new:<18} {n}" for (old, new), n in self.changed.most_common()]
        return "\n".join(lines)


def relabel(db: Lake, classifier: EditClassifier, where: str | None = None, tag: str | None = None,
            batch_size: int = 512) -> RelabelSummary:
    summary = RelabelSummary(previous_version=db.table("quadruplets").version)
    rows = db.read("quadruplets", columns=["id", "instruction", "edit_type", "task", "edit_type_source"],
                   where=where).to_pylist()
    summary.rows = len(rows)
    updates = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        for row, label in zip(chunk, classifier.predict([r["instruction"] for r in chunk]), strict=True):
            given = row["edit_type_source"] == "given"
            new = EditType(row["edit_type"]) if given else label.edit_type
            if new.value != row["edit_type"]:
                summary.changed[(row["edit_type"], new.value)] += 1
            summary.needs_review += int(label.needs_review and not given)
            task = row["task"] if new.value == row["edit_type"] else task_for(new).value
            updates.append(dict(id=row["id"], edit_type=new.value, edit_scope=new.scope.value, task=task,
                                edit_type_source="given" if given else label.source,
                                edit_type_confidence=label.confidence, edit_type_predicted=label.edit_type.value,
                                needs_review=bool(label.needs_review and not given)))
    if not updates:
        return summary
    result = db.update_columns("quadruplets", updates, COLUMNS)
    summary.version = result.version
    summary.tag = tag or f"relabel-{getattr(classifier, 'name', 'classifier')}-v{result.version}"
    db.tag("quadruplets", summary.tag, result.version)
    return summary
