"""Judge rubrics as data: each names its dimensions (scored 1-5), which of them caps the others, and the text the
judge reads as its system instruction.

Two kinds. The project's own rubrics (below) paraphrase the published criteria in a few lines; scores given
under them are *not comparable* with the paper's. The official rubrics are read from the user's copy of the
upstream evaluation scripts (`kiwi.eval.official`) and used verbatim, with the instruction filled into their
placeholder as upstream does; only those make a score comparable. Either way the dimension names are the ones
upstream's score parser reads: OpenVE-Bench's Instruction Compliance, Consistency & Detail Fidelity, Visual
Quality & Stability; RefVIE-Bench's three per subtask (subject / background)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

OPENVE_DIMENSIONS = ("Instruction Compliance", "Consistency & Detail Fidelity", "Visual Quality & Stability")
REFVIE_DIMENSIONS = {
    "ref_subject": ("Identity Consistency & Compliance", "Temporal Consistency & Texture Fidelity",
                    "Physical Integration & Tracking"),
    "ref_background": ("Reference Fidelity & Preservation", "Matting Quality & Temporal Stability",
                       "Visual Harmony & Perspective"),
}


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Rubric:
    name: str
    dimensions: tuple[str, ...]
    guidance: tuple[str, ...] = ()  # project rubrics: one line per dimension, what a 5 and a 1 look like
    capped_by: str | None = None  # the dimension the others may not exceed (asked of the judge; see `enforce`)
    uses_reference: bool = False
    template: str | None = None  # official rubrics: the upstream text, with `{placeholder}` for the instruction
    placeholder: str | None = None
    source: str = "project"  # or "<script path>::<CONSTANT>"

    @property
    def official(self) -> bool:
        return self.template is not None

    @property
    def version(self) -> str:
        """A hash of the rubric's text: a changed rubric never reuses cached verdicts or passes as another."""
        if self.template is not None:
            return fingerprint(self.template)
        return fingerprint("\n".join([self.name, *self.dimensions, *self.guidance, str(self.capped_by)]))

    def system_text(self, instruction: str) -> str:
        """What the judge is told: the official text formatted as upstream formats it, or the project's own."""
        if self.template is not None:
            return self.template.format(**{self.placeholder: instruction})
        order = "the REFERENCE image, then the SOURCE video, then the EDITED video" if self.uses_reference else \
            "the SOURCE video, then the EDITED video"
        lines = [f"You are grading a video edit. You are shown {order}.",
                 f"The edit instruction was: {instruction!r}.",
                 "Score each dimension from 1 (worst) to 5 (best):",
                 *[f"- {d}: {g}" for d, g in zip(self.dimensions, self.guidance, strict=True)]]
        if self.capped_by:
            others = ", ".join(d for d in self.dimensions if d != self.capped_by)
            lines.append(f"{others} may never score higher than {self.capped_by}.")
        lines.append("Answer with exactly one line per dimension, in the form 'Name: n', and nothing else.")
        return "\n".join(lines)

    prompt = system_text


OPENVE = Rubric(
    "openve", OPENVE_DIMENSIONS,
    ("5 = the edit does exactly what was asked, 1 = it ignores the instruction",
     "5 = everything the instruction did not mention is unchanged and details are kept, 1 = unrelated content "
     "changed",
     "5 = sharp, artefact-free and temporally stable, 1 = broken, flickering or corrupted"),
    capped_by="Instruction Compliance",
)
REFVIE_SUBJECT = Rubric(
    "refvie_subject", REFVIE_DIMENSIONS["ref_subject"],
    ("5 = the inserted subject is clearly the one in the reference and does what was asked, 1 = a different subject",
     "5 = the subject stays the same across frames with its texture kept, 1 = it changes or flickers",
     "5 = the subject sits in the scene with plausible scale, lighting and motion, 1 = pasted on"),
    capped_by=REFVIE_DIMENSIONS["ref_subject"][0], uses_reference=True,
)
REFVIE_BACKGROUND = Rubric(
    "refvie_background", REFVIE_DIMENSIONS["ref_background"],
    ("5 = the new background is the reference scene and the foreground is kept, 1 = unrelated",
     "5 = clean foreground edges with no halo or leaks, stable over time, 1 = the foreground is cut badly",
     "5 = foreground and background share light and perspective, 1 = a flat paste"),
    capped_by=REFVIE_DIMENSIONS["ref_background"][0], uses_reference=True,
)
RUBRICS = {r.name: r for r in (OPENVE, REFVIE_SUBJECT, REFVIE_BACKGROUND)}


@dataclass(frozen=True)
class RubricSet:
    """Which rubric judges which item: by the item's category first (OpenVE-Bench has one official rubric per
    category), then by its task (RefVIE's subject / background), then the instruction-edit default."""

    by_category: Mapping[str, Rubric] = field(default_factory=dict)
    by_task: Mapping[str, Rubric] = field(default_factory=dict)
    default: Rubric | None = None
    origin: str = "project"  # the scripts read, for reports

    @property
    def official(self) -> bool:
        rubrics = [*self.by_category.values(), *self.by_task.values()]
        return bool(rubrics) and all(r.official for r in rubrics)

    @property
    def fingerprint(self) -> str:
        """One hash over every rubric in the set and what it judges: recorded with each score."""
        lines = [f"category:{c}={r.version}" for c, r in sorted(self.by_category.items())]
        lines += [f"task:{t}={r.version}" for t, r in sorted(self.by_task.items())]
        lines.append(f"default={self.default.version if self.default else '-'}")
        return fingerprint("\n".join(lines))

    def for_item(self, category: str, task: str) -> Rubric | None:
        return self.by_category.get(category) or self.by_task.get(task) or (
            None if task.startswith("ref") else self.default)

    def merged(self, other: RubricSet) -> RubricSet:
        return RubricSet({**self.by_category, **other.by_category}, {**self.by_task, **other.by_task},
                         other.default or self.default, ", ".join(o for o in (self.origin, other.origin) if o))


PROJECT_RUBRICS = RubricSet(by_task={"ref_subject": REFVIE_SUBJECT, "ref_background": REFVIE_BACKGROUND},
                            default=OPENVE)


def rubric_for(task: str) -> Rubric:
    """The project rubric a bench item is judged by: RefVIE's for reference tasks, OpenVE's for instructions."""
    return PROJECT_RUBRICS.for_item("", task) or OPENVE
