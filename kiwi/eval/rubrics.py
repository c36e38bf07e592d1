"""The published judge rubrics as data: each names its dimensions (scored 1-5), which of them cap the others,
and the instructions the judge reads. OpenVE-Bench: Instruction Compliance, Consistency & Detail Fidelity,
Visual Quality & Stability, the last two never above the first. RefVIE-Bench: subject references (identity,
temporal consistency, physical integration) and background references (reference similarity, matting, video
quality)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Rubric:
    name: str
    dimensions: tuple[str, ...]
    guidance: tuple[str, ...]  # one line per dimension: what a 5 and a 1 look like
    capped_by: str | None = None  # a dimension no other may exceed
    uses_reference: bool = False

    @property
    def version(self) -> str:
        """A short hash of the rubric text: a changed rubric never reuses cached verdicts."""
        text = "\n".join([self.name, *self.dimensions, *self.guidance, str(self.capped_by)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def prompt(self, instruction: str) -> str:
        lines = [
            "You are grading a video edit. The first images are frames of the SOURCE video, then frames of the "
            "EDITED video" + (", then the REFERENCE image the edit had to use." if self.uses_reference else "."),
            f"The edit instruction was: {instruction!r}.",
            "Score each dimension from 1 (worst) to 5 (best):",
            *[f"- {d}: {g}" for d, g in zip(self.dimensions, self.guidance, strict=True)],
        ]
        if self.capped_by:
            others = ", ".join(d for d in self.dimensions if d != self.capped_by)
            lines.append(f"{others} may never score higher than {self.capped_by}.")
        lines.append("Answer with exactly one line per dimension, in the form 'Name: n', and nothing else.")
        return "\n".join(lines)


OPENVE = Rubric(
    "openve",
    ("Instruction Compliance", "Consistency & Detail Fidelity", "Visual Quality & Stability"),
    ("5 = the edit does exactly what was asked, 1 = it ignores the instruction",
     "5 = everything the instruction did not mention is unchanged and details are kept, 1 = unrelated content "
     "changed",
     "5 = sharp, artefact-free and temporally stable, 1 = broken, flickering or corrupted"),
    capped_by="Instruction Compliance",
)
REFVIE_SUBJECT = Rubric(
    "refvie_subject",
    ("Identity", "Temporal Consistency", "Physical Integration"),
    ("5 = the inserted subject is clearly the one in the reference, 1 = a different subject",
     "5 = the subject stays the same across frames, 1 = it changes or flickers",
     "5 = the subject sits in the scene with plausible scale, lighting and motion, 1 = pasted on"),
    uses_reference=True,
)
REFVIE_BACKGROUND = Rubric(
    "refvie_background",
    ("Reference Similarity", "Matting", "Video Quality"),
    ("5 = the new background is the reference scene, 1 = unrelated",
     "5 = clean foreground edges with no halo or leaks, 1 = the foreground is cut badly",
     "5 = sharp, stable video, 1 = broken or flickering"),
    uses_reference=True,
)
RUBRICS = {r.name: r for r in (OPENVE, REFVIE_SUBJECT, REFVIE_BACKGROUND)}


def rubric_for(task: str) -> Rubric:
    """The rubric a bench item is judged by: RefVIE's for reference tasks, OpenVE's for instructions."""
    return {"ref_subject": REFVIE_SUBJECT, "ref_background": REFVIE_BACKGROUND}.get(task, OPENVE)
