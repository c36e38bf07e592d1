"""Background plates: gradients, noise textures, tiled patterns and composed scenes, plus a slow camera pan."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from refvie.synthetic.sprites import COLOURS

KINDS = ("gradient", "noise", "stripes", "checker", "scene")
SCENES = {  # sky top, sky bottom, ground, celestial body
    "sunny hills": ((90, 160, 235), (190, 220, 250), (70, 150, 60), (250, 220, 70)),
    "sunset over the sea": ((250, 120, 60), (250, 200, 120), (30, 70, 140), (255, 240, 150)),
    "night over a desert": ((10, 15, 50), (40, 50, 100), (150, 120, 70), (230, 230, 210)),
    "snowy mountains": ((150, 180, 210), (220, 230, 240), (235, 240, 245), (255, 255, 230)),
}


@dataclass(frozen=True)
class Background:
    kind: str
    colours: tuple[str, ...]
    scene: str | None
    seed: int

    def describe(self, rng: np.random.Generator) -> str:
        a, b = self.colours[0], self.colours[-1]
        if self.kind == "gradient":
            return str(rng.choice([f"a {a}-to-{b} gradient", f"a smooth {a} and {b} gradient"]))
        if self.kind == "noise":
            return str(rng.choice([f"a mottled {a} texture", f"a cloudy {a} pattern", f"{a} noise"]))
        if self.kind == "stripes":
            return str(rng.choice([f"{a} and {b} stripes", f"a striped {a} and {b} wall"]))
        if self.kind == "checker":
            return str(rng.choice([f"a {a} and {b} checkerboard", f"{a} and {b} tiles"]))
        return str(rng.choice([f"a landscape of {self.scene}", f"a scene of {self.scene}", f"{self.scene}"]))


def random_background(rng: np.random.Generator, exclude_kind: str | None = None) -> Background:
    kind = str(rng.choice([k for k in KINDS if k != exclude_kind]))
    names = list(COLOURS)
    a = str(rng.choice(names))
    b = str(rng.choice([n for n in names if n != a]))
    scene = str(rng.choice(list(SCENES))) if kind == "scene" else None
    return Background(kind=kind, colours=(a, b), scene=scene, seed=int(rng.integers(0, 2**31)))


def render_plate(bg: Background, height: int, width: int) -> np.ndarray:
    """The background as one (height, width, 3) uint8 image, deterministic in `bg.seed`."""
    rng = np.random.default_rng(bg.seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c1, c2 = (np.array(COLOURS[c], np.float32) for c in bg.colours)
    if bg.kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        return _lerp(c1, c2, t)
    if bg.kind == "noise":
        coarse = rng.random((max(2, height // 16), max(2, width // 16))).astype(np.float32)
        t = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        return _lerp(c1 * 0.55, np.minimum(c1 * 1.25 + 30, 255), t)
    if bg.kind == "stripes":
        period = int(rng.integers(8, 24))
        t = (((xx * 0.8 + yy * 0.6) // period) % 2).astype(np.float32)
        return _lerp(c1, c2, t)
    if bg.kind == "checker":
        period = int(rng.integers(8, 24))
        t = (((xx // period) + (yy // period)) % 2).astype(np.float32)
        return _lerp(c1, c2, t)
    return _scene(bg, rng, yy, xx, height, width)


def _scene(bg: Background, rng, yy, xx, height: int, width: int) -> np.ndarray:
    top, bottom, ground, body = (np.array(c, np.float32) for c in SCENES[bg.scene])
    image = _lerp(top, bottom, yy / max(height - 1, 1)).astype(np.float32)
    cy, cx, radius = rng.uniform(0.1, 0.35) * height, rng.uniform(0.15, 0.85) * width, rng.uniform(0.06, 0.12) * height
    image[np.hypot(yy - cy, xx - cx) <= radius] = body
    horizon = height * (0.55 + 0.08 * np.sin(xx / width * rng.uniform(4, 9) + rng.uniform(0, 6)))
    below = yy >= horizon
    shade = 0.8 + 0.2 * (yy - horizon) / height
    image[below] = (ground * shade[below, None]).clip(0, 255)
    return image.astype(np.uint8)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (a * (1 - t[..., None]) + b * t[..., None]).clip(0, 255).astype(np.uint8)


def pan_offsets(frames: int, pan: tuple[float, float]) -> tuple[np.ndarray, int]:
    """Integer crop offsets (y, x) per frame for a pan of `pan` pixels per frame, and the margin the plate needs."""
    t = np.arange(frames)
    dy, dx = pan
    offsets = np.stack([np.round(t * abs(dy)), np.round(t * abs(dx))], axis=1).astype(np.int64)
    if dy < 0:
        offsets[:, 0] = offsets[-1, 0] - offsets[:, 0]
    if dx < 0:
        offsets[:, 1] = offsets[-1, 1] - offsets[:, 1]
    return offsets, int(offsets.max(initial=0))


def background_frames(bg: Background, frames: int, height: int, width: int, pan: tuple[float, float]) -> np.ndarray:
    """(frames, height, width, 3): the plate seen through a camera panning by `pan` pixels per frame."""
    offsets, margin = pan_offsets(frames, pan)
    plate = render_plate(bg, height + margin, width + margin)
    return np.stack([plate[y : y + height, x : x + width] for y, x in offsets])
