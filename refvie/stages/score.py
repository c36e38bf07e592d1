"""Stage 4, score & filter: numbers that say whether a quadruplet is worth training on, and the thresholds
that reject the ones that are not (with the scores that failed, into `rejects`).

- edit_strength: mean CIELAB distance inside the mask at the keyframe (a faint edit teaches nothing);
- mask_area: the mask's share of the frame (a "local" edit that covers the frame is mislabelled or broken);
- ref_similarity: descriptor cosine between the reference and the edited region of the target keyframe,
  both cropped to their content (a reference that shows something else is useless);
- temporal_stability: how the target's frame-to-frame change compares with the source's, min(r, 1/r), 1 = same
  (flicker or a frozen target scores low);
- leakage: 1 - the best normalised squared difference of the reference's object found anywhere in the target
  keyframe (1 = the reference is a pixel copy, which teaches the model to copy-paste).
Duplicates (embedding cosine) are caught after the embed stage, by the writer."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from lake.embed import ImageDescriptor
from lake.taxonomy import EditScope, EditType
from refvie.stages.batch import add_scores, alive, reject, timed
from refvie.stages.localise import lab_distance


@dataclass(frozen=True)
class FilterConfig:
    min_edit_strength: float = 8.0
    min_mask_area: float = 0.001
    max_local_mask_area: float = 0.6
    min_ref_similarity: float = 0.5
    min_temporal_stability: float = 0.2
    max_leakage: float = 0.995
    duplicate_cosine: float = 0.995  # used by the writer on (instruction, target) embeddings


def crop_to_content(image: np.ndarray, mask: np.ndarray | None = None, white: int = 245) -> np.ndarray:
    """The bounding box of `mask` (or of the non-white pixels), so descriptors compare objects, not canvases."""
    region = mask if mask is not None else (image < white).any(axis=-1)
    if not region.any():
        return image
    ys, xs = np.nonzero(region)
    crop = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy()
    if mask is not None:
        crop[~region[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]] = 255
    return crop


def reference_similarity(reference: np.ndarray, target_frame: np.ndarray, mask: np.ndarray, edit_type: str,
                         descriptor: ImageDescriptor) -> float:
    if edit_type in (EditType.BACKGROUND_CHANGE, EditType.GLOBAL_STYLE) and reference.shape != target_frame.shape:
        # a given reference comes at its own size: compared as a whole picture, it is seen at the frame's
        reference = cv2.resize(reference, target_frame.shape[1::-1], interpolation=cv2.INTER_AREA)
    if edit_type == EditType.BACKGROUND_CHANGE:
        a, b = reference, np.where(mask[..., None], target_frame, reference)
    elif edit_type == EditType.GLOBAL_STYLE:
        a, b = reference, target_frame
    else:
        a, b = crop_to_content(reference), crop_to_content(target_frame, mask)
    va, vb = descriptor([a, b])
    return float(va @ vb)


def temporal_stability(source: np.ndarray, target: np.ndarray, noise: float = 12.0) -> float:
    """min(r, 1/r) for r = the target's frame-to-frame change over the source's, measured where the edit left
    the video alone (pixels source and target agree on in every frame), or over the whole frame when the edit
    touched nearly everything. A moving new object does not count against stability; flicker does.
    Measured on the green channel of a <= 64-pixel grid: motion statistics need no more, and it is ~10x cheaper."""
    if len(source) < 2:
        return 1.0
    step = max(1, max(source.shape[1:3]) // 64)
    src = source[:, ::step, ::step, 1].astype(np.int16)
    tgt = target[:, ::step, ::step, 1].astype(np.int16)
    preserved = (np.abs(src - tgt) <= noise).all(axis=0)
    region = preserved if preserved.mean() > 0.2 else np.ones_like(preserved)
    motion = lambda clip: float(np.abs(np.diff(clip, axis=0))[:, region].mean()) + 0.5  # noqa: E731
    ratio = motion(tgt) / motion(src)
    return min(ratio, 1 / ratio)


def leakage(reference: np.ndarray, target_frame: np.ndarray) -> float:
    """How exactly the reference's object appears, unchanged, somewhere in the target keyframe (0..1)."""
    patch = crop_to_content(reference)
    if patch.shape[0] > target_frame.shape[0] or patch.shape[1] > target_frame.shape[1] or patch.size < 12:
        return 0.0
    result = cv2.matchTemplate(np.ascontiguousarray(target_frame), np.ascontiguousarray(patch), cv2.TM_SQDIFF_NORMED)
    return float(1.0 - max(result.min(), 0.0))


@dataclass
class Score:
    """Adds `scores` (a dict per row) and rejects rows whose scores miss the thresholds (stage `filter`)."""

    config: FilterConfig = FilterConfig()
    descriptor: ImageDescriptor | None = None

    def setup(self) -> None:
        self.descriptor = self.descriptor or ImageDescriptor()

    def __call__(self, batch: dict) -> dict:
        if self.descriptor is None:
            self.setup()
        start = time.perf_counter()
        for i in alive(batch):
            edit_type, mask, key = batch["edit_type"][i], batch["mask"][i], batch["keyframe"][i]
            source, target, reference = batch["source"][i], batch["target"][i], batch["reference"][i]
            distance = lab_distance(source[key], target[key])
            scores = dict(
                edit_strength=float(distance[mask].mean()),
                mask_area=float(mask.mean()),
                temporal_stability=temporal_stability(source, target),
                ref_similarity=None if reference is None else reference_similarity(
                    reference, target[key], mask, edit_type, self.descriptor),
                leakage=None if reference is None or edit_type != EditType.LOCAL_ADD and
                edit_type != EditType.LOCAL_CHANGE else leakage(reference, target[key]),
            )
            add_scores(batch, i, **scores)
            failed = self._failures(EditType(edit_type), scores)
            if failed:
                reason, detail = failed[0]
                reject(batch, i, "filter", reason, detail)
        timed(batch, "filter", start)
        return batch

    def _failures(self, edit_type: EditType, s: dict) -> list[tuple[str, str]]:
        c, out = self.config, []
        if s["edit_strength"] < c.min_edit_strength:
            out.append(("weak_edit", f"edit_strength {s['edit_strength']:.2f} < {c.min_edit_strength}"))
        if s["mask_area"] < c.min_mask_area:
            out.append(("tiny_edit", f"mask_area {s['mask_area']:.4f} < {c.min_mask_area}"))
        if edit_type.scope is EditScope.LOCAL and s["mask_area"] > c.max_local_mask_area:
            out.append(("local_edit_too_large", f"mask_area {s['mask_area']:.3f} > {c.max_local_mask_area}"))
        if s["ref_similarity"] is not None and s["ref_similarity"] < c.min_ref_similarity:
            out.append(("reference_mismatch", f"ref_similarity {s['ref_similarity']:.3f} < {c.min_ref_similarity}"))
        if s["temporal_stability"] < c.min_temporal_stability:
            out.append(("unstable_target", f"temporal_stability {s['temporal_stability']:.3f}"))
        if s["leakage"] is not None and s["leakage"] > c.max_leakage:
            out.append(("copy_paste", f"leakage {s['leakage']:.4f} > {c.max_leakage}"))
        return out
