"""Global style edits: palette maps, posterisation, pencil sketch (edges + hatching), oil painting
(blur-and-sharpen). Vectorised numpy, OpenCV per frame where a filter needs it."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from refvie.synthetic.instructions import article

STYLES = ("palette", "posterise", "sketch", "painting")
PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "sepia": ((40, 26, 13), (112, 66, 20), (196, 160, 110), (255, 240, 210)),
    "neon": ((10, 0, 30), (120, 0, 200), (255, 30, 160), (80, 255, 240)),
    "pastel": ((120, 140, 180), (190, 170, 220), (250, 200, 210), (255, 250, 220)),
    "icy blue": ((5, 20, 60), (30, 90, 160), (120, 190, 230), (235, 250, 255)),
}


@dataclass(frozen=True)
class Style:
    kind: str
    palette: str | None = None
    levels: int = 3

    def describe(self, rng: np.random.Generator) -> str:
        if self.kind == "palette":
            return str(rng.choice([article(f"{self.palette} palette"), f"{self.palette} tones",
                                   article(f"{self.palette} colour scheme")]))
        if self.kind == "posterise":
            return str(rng.choice(["a posterised print", "a flat poster", "a screen print"]))
        if self.kind == "sketch":
            return str(rng.choice(["a pencil sketch", "a hatched ink drawing", "a line drawing"]))
        return str(rng.choice(["an oil painting", "a painterly canvas", "a watercolour painting"]))


def random_style(rng: np.random.Generator) -> Style:
    kind = str(rng.choice(STYLES))
    return Style(kind=kind, palette=str(rng.choice(list(PALETTES))) if kind == "palette" else None,
                 levels=int(rng.integers(2, 5)))


def apply_style(style: Style, frames: np.ndarray) -> np.ndarray:
    """Stylise (T, H, W, 3) uint8 frames; every frame changes."""
    if style.kind == "palette":
        stops = np.array(PALETTES[style.palette], np.float32)
        xs = np.linspace(0, 255, len(stops))
        lut = np.stack([np.interp(np.arange(256), xs, stops[:, c]) for c in range(3)], -1).astype(np.uint8)
        return lut[_luma(frames)]
    if style.kind == "posterise":
        step = 256 // style.levels
        scale = 255 / (style.levels - 1)
        return np.minimum((frames // step) * scale, 255).astype(np.uint8)
    if style.kind == "sketch":
        return _sketch(frames)
    if style.kind == "painting":
        return _painting(frames)
    raise ValueError(f"unknown style {style.kind!r}; expected one of {STYLES}")


def _luma(frames: np.ndarray) -> np.ndarray:
    return (frames @ np.array([0.299, 0.587, 0.114], np.float32)).clip(0, 255).astype(np.uint8)


def _sketch(frames: np.ndarray) -> np.ndarray:
    luma = _luma(frames).astype(np.float32)
    gy, gx = np.gradient(luma, axis=(1, 2))
    edges = np.hypot(gx, gy) > 18
    _, height, width = luma.shape
    yy, xx = np.mgrid[0:height, 0:width]
    hatch = (((xx + yy) % 5 == 0)[None] & (luma < 110)) | (((xx - yy) % 5 == 0)[None] & (luma < 60))
    paper = np.full(luma.shape, 245, np.uint8)
    paper[hatch] = 150
    paper[edges] = 40
    return np.repeat(paper[..., None], 3, axis=-1)


def _painting(frames: np.ndarray) -> np.ndarray:
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        smooth = cv2.medianBlur(frame, 5)
        blurred = cv2.GaussianBlur(smooth, (0, 0), 2.0)
        out[t] = cv2.addWeighted(smooth, 1.6, blurred, -0.6, 0)
    return (out // 24 * 24 + 12).astype(np.uint8)
