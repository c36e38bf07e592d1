"""Automatic metrics that need no weights, each on uint8 (T, H, W, 3) videos of one size.

Higher is better for every metric except `temporal_change_ratio`'s distance from 1. PSNR of identical videos is
infinite; it is reported as `PSNR_CAP` dB so means stay finite (and such a perfect item is still visible)."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lake.embed import ImageDescriptor, cosine

PSNR_CAP = 100.0


def _check(name: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: videos differ in shape, {a.shape} vs {b.shape}")
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name}: expected (T, H, W, 3) frames, got {a.shape}")


def _capped_psnr(output: np.ndarray, reference: np.ndarray) -> float:
    if np.array_equal(output, reference):
        return PSNR_CAP
    return min(PSNR_CAP, float(peak_signal_noise_ratio(reference, output, data_range=255)))


def psnr(output: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio over the whole clip (one MSE over every pixel of every frame), in dB."""
    _check("psnr", output, target)
    return _capped_psnr(output, target)


def ssim(output: np.ndarray, target: np.ndarray) -> float:
    """Mean structural similarity over frames (colour, Gaussian-free 7x7 windows, or smaller for tiny frames)."""
    _check("ssim", output, target)
    side = min(output.shape[1:3])
    window = min(7, side if side % 2 else side - 1)
    return float(np.mean([structural_similarity(t, o, channel_axis=-1, data_range=255, win_size=window)
                          for o, t in zip(output, target, strict=True)]))


def fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A keyframe mask (H', W') resized to (H, W), as booleans (nearest neighbour keeps it binary)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0] if mask.shape[-1] in (1, 3, 4) else mask[0]
    resized = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return resized > 0


def masked_psnr(output: np.ndarray, source: np.ndarray, edit_mask: np.ndarray) -> float | None:
    """Preservation: PSNR against the *source* on the pixels outside the edit mask (every frame), i.e. how much of
    what should not change did not. None when the mask covers the whole frame (a global edit has no outside)."""
    _check("masked_psnr", output, source)
    keep = ~fit_mask(edit_mask, output.shape[1:3])
    if not keep.any():
        return None
    return _capped_psnr(output[:, keep], source[:, keep])


def edit_psnr(output: np.ndarray, target: np.ndarray, edit_mask: np.ndarray) -> float | None:
    """Edit quality where the edit is: PSNR against the *target* on the pixels inside the edit mask (every
    frame). A whole-frame PSNR is dominated by the untouched pixels of a small local edit; this is not. None
    when the mask is empty."""
    _check("edit_psnr", output, target)
    inside = fit_mask(edit_mask, output.shape[1:3])
    if not inside.any():
        return None
    return _capped_psnr(output[:, inside], target[:, inside])


def frame_change(video: np.ndarray) -> float:
    """Mean absolute change between consecutive frames, in grey levels."""
    if len(video) < 2:
        return 0.0
    return float(np.mean(np.abs(np.diff(video.astype(np.int16), axis=0))))


def temporal_change_ratio(output: np.ndarray, target: np.ndarray) -> float:
    """Frame-to-frame change of the output over the target's: 1 moves exactly as much as the truth, above 1
    flickers, below 1 freezes. (A static target gets a floor of one grey level so the ratio stays finite.)"""
    _check("temporal_change_ratio", output, target)
    return frame_change(output) / max(frame_change(target), 1.0)


def temporal_stability(output: np.ndarray, target: np.ndarray) -> float:
    """The ratio folded into a 0-1 score: exp(-|log ratio|), 1 when the output moves as much as the target."""
    ratio = temporal_change_ratio(output, target)
    return float(np.exp(-abs(np.log(max(ratio, 1e-6)))))


def region_crop(frame: np.ndarray, mask: np.ndarray, pad: int = 2) -> np.ndarray:
    """The bounding box of the mask in the frame (the whole frame when the mask is empty)."""
    m = fit_mask(mask, frame.shape[:2])
    if not m.any():
        return frame
    ys, xs = np.nonzero(m)
    y0, y1 = max(0, ys.min() - pad), min(frame.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(frame.shape[1], xs.max() + pad + 1)
    return frame[y0:y1, x0:x1]


def reference_fidelity(output: np.ndarray, reference: np.ndarray, edit_mask: np.ndarray | None, task: str,
                       embedder=None) -> float:
    """Cosine similarity between the reference image and what the output shows where it should appear: the edited
    region's crop (subject references) or the whole middle frame (background plates), mean over 3 frames.
    `embedder` maps a list of images to unit vectors (default: the lake's deterministic image descriptor; a CLIP
    embedder by local path is the model-backed option)."""
    embed = embedder or ImageDescriptor()
    frames = output[np.round(np.linspace(0, len(output) - 1, 3)).astype(int)]
    if task == "ref_subject" and edit_mask is not None:
        crops = [region_crop(f, edit_mask) for f in frames]
    else:
        crops = list(frames)
    vectors = embed(crops)
    ref = embed([reference])[0]
    return float(np.mean(cosine(vectors, ref[None])))
