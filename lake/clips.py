"""Clip geometry, as upstream reads clips: which frames (the first ones in a row, or spread over the clip), and the
frame size (short side to a size and centre-cropped square, or scaled down to a pixel budget with the aspect kept,
sides floored to multiples of 32, centre-cropped to that shape, bicubic). In the lake because training, inference
and the latent cache (`refvie latents`) must cut a clip the same way: a latent is only reusable for the frames the
trainer would have encoded."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

# "prefix_cut": the first frames, and a clip shorter than asked cut to its longest 4k+1 prefix (upstream's training
# reader keeps the VAE's 4k+1 rule that way, where "prefix" repeats the last frame)
SAMPLINGS = ("prefix", "spread", "prefix_cut")
MAX_PIXELS = 720 * 1280  # upstream's budget for the released model (--max_pixels 921600)


def cut_to_4k1(frames: int) -> int:
    """The longest 4k+1 frame count a clip of `frames` frames holds (50 -> 49, 81 -> 81, 4 -> 1)."""
    return 4 * ((max(frames, 1) - 1) // 4) + 1


def frame_shape(height: int, width: int, max_pixels: int | None = MAX_PIXELS) -> tuple[int, int]:
    """The frame size a clip is sampled at: scaled down to `max_pixels` (aspect kept), sides floored to 32."""
    if max_pixels and height * width > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        height, width = int(height / scale), int(width / scale)
    return height // 32 * 32, width // 32 * 32


def fit_frames(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) frames centre-cropped to the aspect of `shape` = (height, width) and resized to it (bicubic)."""
    h, w = shape
    height, width = frames.shape[1:3]
    if (h, w) == (height, width):
        return frames
    if height / width < h / w:  # wider than the target: crop the sides
        keep = int(height / h * w)
        frames = frames[:, :, (width - keep) // 2: (width - keep) // 2 + keep]
    else:
        keep = int(width / w * h)
        frames = frames[:, (height - keep) // 2: (height - keep) // 2 + keep]
    if frames.shape[1:3] == (h, w):  # a crop was all it took (720p to 704x1280): PIL would only copy each frame
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


def frames_read(count: int, sampling: str) -> int | None:
    """How many frames of a clip taking `count` frames this way needs decoded, so that only those are read (81 of a
    101-frame Ditto clip); None when the sampling needs the whole clip ("spread")."""
    if sampling == "prefix" or (sampling == "prefix_cut" and count % 4 == 1):
        return count  # a 4k+1 count: a longer clip's cut is that count whatever its length
    return None


def take_frames(frames: np.ndarray, count: int, sampling: str = "spread") -> np.ndarray:
    """`count` frames: the first ones in a row ("prefix": a shorter clip repeats its last frame; "prefix_cut": a
    shorter clip gives its longest 4k+1 prefix, as upstream's training reader does) or evenly spaced over the clip
    ("spread", repeating frames of a short clip)."""
    if sampling == "prefix_cut":
        return frames[: min(count, cut_to_4k1(len(frames)))]
    if sampling in ("prefix", "spread") and len(frames) == count:  # every frame, in order: the clip itself, not a
        return frames                                               # copy (81 frames of 720p are 224 MB)
    if sampling == "prefix" and len(frames) > count:
        return frames[:count]
    if sampling == "prefix":
        index = np.minimum(np.arange(count), len(frames) - 1)
    elif sampling == "spread":
        index = np.round(np.linspace(0, len(frames) - 1, count)).astype(int)
    else:
        raise ValueError(f"frame sampling must be one of {SAMPLINGS}, not {sampling!r}")
    return frames[index]


def sample_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """`count` frames evenly spaced over the clip (repeating frames of a short clip)."""
    return take_frames(frames, count, "spread")


def resize_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) frames with the short side resized to `size` (area filter) and centre-cropped square."""
    h, w = frames.shape[1:3]
    if h == w == size:
        return frames
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames])
    y, x = (nh - size) // 2, (nw - size) // 2
    return out[:, y : y + size, x : x + size]
