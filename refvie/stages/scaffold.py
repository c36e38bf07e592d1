"""Stage 3, scaffold: synthesise the reference image that turns a pair into a RefVIE quadruplet.

- subject edits (local_add, local_change): the edited object cut from the target keyframe by the mask and
  re-posed on a white canvas (scale 0.7-1.0, maybe flipped, rotated a little) so a model cannot copy pixels;
- background edits: the target keyframe with the foreground (what did not change) removed and inpainted;
- style edits: an exemplar frame of the target, away from the keyframe.
A diffusers image-editing pipeline is the GPU backend behind the same `Scaffolder` protocol.

A reference the dataset gives (`pairs.given_reference`, e.g. the RefVIE release's) wins, as given labels do: it is
decoded for the filters and kept byte for byte (`reference_source = 'given'`); `resynthesise` makes a new one
anyway. A given reference that does not decode is a reject, never silently replaced."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes

from lake import media
from lake.errors import MediaError
from lake.taxonomy import EditType
from refvie.stages.batch import alive, ensure, missing, reject, timed


@dataclass(frozen=True)
class ScaffoldConfig:
    scale: tuple[float, float] = (0.7, 1.0)
    max_rotation_deg: float = 15.0
    flip_probability: float = 0.5
    inpaint_radius: int = 3
    min_subject_pixels: int = 16


class Scaffolder(Protocol):
    name: str  # recorded as the quadruplet's reference_source

    def reference(self, pair_id: str, edit_type: str, instruction: str, source: np.ndarray, target: np.ndarray,
                  mask: np.ndarray, keyframe: int) -> np.ndarray | None: ...


def rng_for(pair_id: str) -> np.random.Generator:
    """Deterministic per pair, so a rerun synthesises the same reference."""
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(pair_id.encode(), digest_size=8).digest(), "big"))


def cut_subject(frame: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object under `mask` (holes filled), cropped to its bounding box: (rgb, alpha)."""
    solid = binary_fill_holes(cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)))
    ys, xs = np.nonzero(solid)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return frame[y0:y1, x0:x1].copy(), solid[y0:y1, x0:x1]


def repose(rgb: np.ndarray, alpha: np.ndarray, height: int, width: int, rng: np.random.Generator,
           config: ScaffoldConfig = ScaffoldConfig()) -> np.ndarray:
    """Scale, flip and rotate the object, centred on a white (height, width) canvas. A pose too close to the
    original is nudged (flipped), so the reference is never a pixel copy of the target."""
    scale = float(rng.uniform(*config.scale))
    angle = float(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
    flip = bool(rng.random() < config.flip_probability)
    if not flip and abs(angle) < 3 and scale > 0.95:
        flip = True
    h, w = alpha.shape
    fit = min(1.0, 0.95 * height / h, 0.95 * width / w)
    scale *= fit
    if flip:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    centre = (width / 2, height / 2)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += np.array(centre) - np.array([w / 2, h / 2])
    warped = cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderValue=(255, 255, 255))
    cover = cv2.warpAffine(np.ascontiguousarray(alpha, dtype=np.uint8) * 255, matrix, (width, height),
                           flags=cv2.INTER_LINEAR) > 127
    canvas = np.full((height, width, 3), 255, np.uint8)
    canvas[cover] = warped[cover]
    return canvas


def background_plate(frame: np.ndarray, mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """The changed background with the unchanged foreground painted out (OpenCV Telea inpainting)."""
    foreground = cv2.dilate((~mask).astype(np.uint8), np.ones((5, 5), np.uint8))
    return cv2.inpaint(np.ascontiguousarray(frame), foreground, radius, cv2.INPAINT_TELEA)


@dataclass
class HeuristicScaffolder:
    config: ScaffoldConfig = ScaffoldConfig()
    name: str = "synthesised"

    def reference(self, pair_id, edit_type, instruction, source, target, mask, keyframe):
        height, width = target.shape[1:3]
        if edit_type in (EditType.LOCAL_ADD, EditType.LOCAL_CHANGE):
            if mask.sum() < self.config.min_subject_pixels:
                return None
            rgb, alpha = cut_subject(target[keyframe], mask)
            return repose(rgb, alpha, height, width, rng_for(pair_id), self.config)
        if edit_type == EditType.BACKGROUND_CHANGE:
            return background_plate(target[keyframe], mask, self.config.inpaint_radius)
        if edit_type == EditType.GLOBAL_STYLE:
            return target[0 if keyframe >= len(target) // 2 else len(target) - 1].copy()
        return None


@dataclass
class Scaffold:
    """Adds `reference` (uint8 H x W x 3, or None for instruction-only edits)."""

    scaffolder: Scaffolder | None = None
    resynthesise: bool = False  # make a new reference even where the dataset gave one

    def setup(self) -> None:
        self.scaffolder = self.scaffolder or HeuristicScaffolder()

    def __call__(self, batch: dict) -> dict:
        if self.scaffolder is None:
            self.setup()
        start = time.perf_counter()
        references, sources = ensure(batch, "reference"), ensure(batch, "reference_source")
        given = ensure(batch, "given_reference")
        for i in alive(batch):
            edit_type = batch["edit_type"][i]
            if not self.resynthesise and not missing(given[i]):
                try:
                    references[i] = media.decode_image(bytes(given[i]), name="given reference")
                except MediaError as e:
                    reject(batch, i, "scaffold", "bad_reference", f"the given reference: {e}")
                    continue
                sources[i] = "given"
                continue
            given[i] = b""  # resynthesised: the given file is not what the quadruplet holds
            ref = self.scaffolder.reference(batch["pair_id"][i], edit_type, batch["instruction"][i],
                                            batch["source"][i], batch["target"][i], batch["mask"][i],
                                            batch["keyframe"][i])
            if ref is None and EditType(edit_type).reference_task is not None:
                reject(batch, i, "scaffold", "no_subject", "the edited region is too small to cut a reference from")
                continue
            references[i] = ref
            sources[i] = None if ref is None else self.scaffolder.name
        timed(batch, "scaffold", start)
        return batch
