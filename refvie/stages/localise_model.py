"""The model-backed localiser for real footage, where pixel differences lie (re-encodes, relighting, camera
shake): text-prompted segmentation (CLIPSeg, loaded from a local folder) grounded by the instruction's subject,
on the target keyframe for additions and changes and on the source for removals, optionally intersected with
the difference mask. Background and style edits keep the difference localiser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from lake.taxonomy import EditType
from refvie.stages.localise import DiffLocaliser

_VERB = re.compile(r"^\s*(please\s+)?(add|insert|put|place|introduce|include|drop|bring|remove|delete|erase|"
                   r"get rid of|take out|take away|eliminate|swap|replace|exchange|substitute|turn|change|make|"
                   r"recolou?r|paint|give|cover|transform)\s+", re.I)
_NEW_OBJECT = re.compile(r"\s(for|with|into|to)\s+(.+)$", re.I)
_SUBSTITUTE = re.compile(r"^\s*substitute\s+(.+?)\s+for\s+", re.I)


def subject_phrase(instruction: str, edit_type: str) -> str:
    """The words naming what the edit is about: the new object for additions and replacements, the old one
    for removals and attribute changes ("Swap the red star for a blue disc" -> "a blue disc")."""
    text = instruction.strip().rstrip(".")
    substitute = _SUBSTITUTE.match(text)
    if substitute:
        return substitute.group(1)
    rest = _VERB.sub("", text, count=1)
    if edit_type == EditType.LOCAL_CHANGE:
        new = _NEW_OBJECT.search(rest)
        if new and len(new.group(2).split()) > 1:  # "into a blue disc", not "to red"
            return new.group(2)
        return re.split(r"\s(to|into)\s", rest)[0]
    return rest


@dataclass
class SegmentationLocaliser:
    path: str
    device: str = "cpu"
    threshold: float = 0.5  # on the sigmoid of CLIPSeg's logits
    combine: str = "intersect"  # "model": the model's mask alone; "intersect": with the (dilated) difference mask
    fallback: DiffLocaliser = field(default_factory=DiffLocaliser)
    model: object = None
    processor: object = None

    def setup(self) -> None:
        import transformers
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        transformers.logging.set_verbosity_error()
        self.processor = CLIPSegProcessor.from_pretrained(self.path)
        self.model = CLIPSegForImageSegmentation.from_pretrained(self.path).to(self.device).eval()

    def localise(self, source: np.ndarray, target: np.ndarray, edit_type: str, keyframe: int,
                 instruction: str = "") -> np.ndarray:
        if edit_type not in (EditType.LOCAL_ADD, EditType.LOCAL_CHANGE, EditType.LOCAL_REMOVE) or not instruction:
            return self.fallback.localise(source, target, edit_type, keyframe, instruction)
        if self.model is None:
            self.setup()
        import torch

        frame = (source if edit_type == EditType.LOCAL_REMOVE else target)[keyframe]
        inputs = self.processor(text=[subject_phrase(instruction, edit_type)], images=[frame], padding=True,
                                truncation=True, return_tensors="pt").to(self.device)
        with torch.no_grad():
            logits = self.model(**inputs).logits.reshape(-1, *inputs["pixel_values"].shape[-2:])[0]
        height, width = frame.shape[:2]
        probability = cv2.resize(torch.sigmoid(logits).float().cpu().numpy(), (width, height))
        mask = probability > self.threshold
        if self.combine == "intersect":
            diff = self.fallback.localise(source, target, edit_type, keyframe, instruction)
            if diff.any():
                mask &= cv2.dilate(diff.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        return mask
