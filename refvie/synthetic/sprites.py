"""Sprites of the synthetic world: a shape, a texture and colours, a size and a motion, rendered with numpy only.

Every sprite knows how to describe itself in words ("a small striped blue star"), so instructions name exactly
what the pixels show."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220), "yellow": (240, 210, 40),
    "orange": (245, 140, 30), "purple": (140, 60, 190), "pink": (240, 120, 180), "cyan": (40, 200, 210),
    "white": (245, 245, 245), "black": (25, 25, 25), "brown": (130, 80, 40), "grey": (128, 128, 128),
}
SHAPES = ("disc", "square", "triangle", "star", "diamond", "ring", "cross")
SHAPE_WORDS = {
    "disc": ("disc", "circle", "ball"), "square": ("square", "box", "block"), "triangle": ("triangle",),
    "star": ("star",), "diamond": ("diamond", "rhombus"), "ring": ("ring", "hoop"), "cross": ("cross", "plus sign"),
}
TEXTURES = ("solid", "striped", "checkered", "dotted")
TEXTURE_WORDS = {"solid": ("", "plain", "solid"), "striped": ("striped",), "checkered": ("checkered", "chequered"),
                 "dotted": ("dotted", "spotted", "polka-dot")}
MOTIONS = ("linear", "sinusoidal", "bounce")


@dataclass(frozen=True)
class Sprite:
    shape: str
    colour: str
    texture: str
    accent: str  # the second colour of a texture
    size: int  # side of the square patch, pixels
    x0: float
    y0: float
    vx: float
    vy: float
    motion: str
    amplitude: float = 0.0
    frequency: float = 0.0
    phase: float = 0.0

    # ------------------------------------------------------------------ pixels
    def alpha(self) -> np.ndarray:
        return shape_mask(self.shape, self.size)

    def rgb(self) -> np.ndarray:
        return texture(self.texture, COLOURS[self.colour], COLOURS[self.accent], self.size)

    def positions(self, frames: int, height: int, width: int) -> np.ndarray:
        """Top-left corner (y, x) per frame, int, shape (frames, 2); bounce keeps the sprite inside the frame."""
        t = np.arange(frames, dtype=np.float64)
        x = self.x0 + self.vx * t
        y = self.y0 + self.vy * t
        if self.motion == "sinusoidal":
            y = y + self.amplitude * np.sin(self.frequency * t + self.phase)
        elif self.motion == "bounce":
            x = _reflect(x, width - self.size)
            y = _reflect(y, height - self.size)
        return np.stack([np.round(y), np.round(x)], axis=1).astype(np.int64)

    # ------------------------------------------------------------------ words
    def describe(self, rng: np.random.Generator, with_size: bool = True, with_texture: bool = True) -> str:
        texture_word = str(rng.choice(TEXTURE_WORDS[self.texture])) if with_texture else ""
        size_word = str(rng.choice(self.size_words())) if with_size else ""
        words = [w for w in (size_word, texture_word, self.colour, str(rng.choice(SHAPE_WORDS[self.shape]))) if w]
        return " ".join(words)

    def size_words(self) -> tuple[str, ...]:
        return ("tiny", "small") if self.size < 20 else ("", "medium-sized") if self.size < 32 else ("large", "big")

    def with_look(self, **changes) -> Sprite:
        return replace(self, **changes)


def random_sprite(rng: np.random.Generator, height: int, width: int, frames: int,
                  exclude_colours: tuple[str, ...] = ()) -> Sprite:
    side = min(height, width)
    size = int(rng.integers(max(8, side // 10), max(9, side // 3)))
    colours = [c for c in COLOURS if c not in exclude_colours]
    colour = str(rng.choice(colours))
    accent = str(rng.choice([c for c in colours if c != colour]))
    speed = side / max(frames, 2) * rng.uniform(0.2, 0.8)
    angle = rng.uniform(0, 2 * np.pi)
    return Sprite(
        shape=str(rng.choice(SHAPES)), colour=colour, texture=str(rng.choice(TEXTURES)), accent=accent, size=size,
        x0=float(rng.uniform(0, width - size)), y0=float(rng.uniform(0, height - size)),
        vx=float(speed * np.cos(angle)), vy=float(speed * np.sin(angle)), motion=str(rng.choice(MOTIONS)),
        amplitude=float(rng.uniform(2, side / 8)), frequency=float(rng.uniform(0.2, 0.8)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean (size, size) silhouette, from coordinates in [-1, 1]."""
    v, u = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    r = np.hypot(u, v)
    if shape == "disc":
        return r <= 0.95
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":
        return (v <= 0.85) & (np.abs(u) <= (v + 0.95) / 1.9 * 0.95)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 0.95
    if shape == "ring":
        return (r <= 0.95) & (r >= 0.55)
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if shape == "star":
        theta = np.arctan2(v, u) + np.pi / 2
        return r <= 0.42 + 0.53 * np.abs(np.cos(2.5 * theta)) ** 2
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def texture(kind: str, colour: tuple[int, int, int], accent: tuple[int, int, int], size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(4, size // 4)
    if kind == "solid":
        second = np.zeros((size, size), bool)
    elif kind == "striped":
        second = ((xx + yy) // (period // 2)) % 2 == 1
    elif kind == "checkered":
        second = ((xx // (period // 2)) + (yy // (period // 2))) % 2 == 1
    elif kind == "dotted":
        cy, cx = (yy % period) - period / 2, (xx % period) - period / 2
        second = np.hypot(cy, cx) <= period / 4
    else:
        raise ValueError(f"unknown texture {kind!r}; expected one of {TEXTURES}")
    out = np.empty((size, size, 3), np.uint8)
    out[:] = colour
    out[second] = accent
    return out


def paste(frames: np.ndarray, sprite: Sprite) -> np.ndarray:
    """Draw `sprite` onto frames (T, H, W, 3) in place; returns its visible silhouette per frame (T, H, W)."""
    n, height, width, _ = frames.shape
    rgb, alpha = sprite.rgb(), sprite.alpha()
    coverage = np.zeros((n, height, width), bool)
    for t, (y, x) in enumerate(sprite.positions(n, height, width)):
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + sprite.size, height), min(x + sprite.size, width)
        if y0 >= y1 or x0 >= x1:
            continue
        a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
        region = frames[t, y0:y1, x0:x1]
        region[a] = rgb[y0 - y : y1 - y, x0 - x : x1 - x][a]
        coverage[t, y0:y1, x0:x1] = a
    return coverage


def on_white(sprite: Sprite, height: int, width: int) -> np.ndarray:
    """The sprite alone, centred at its natural size on a white canvas: the true subject reference."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    size = min(sprite.size, height, width)
    y, x = (height - size) // 2, (width - size) // 2
    alpha = sprite.alpha()[:size, :size]
    canvas[y : y + size, x : x + size][alpha] = sprite.rgb()[:size, :size][alpha]
    return canvas


def _reflect(p: np.ndarray, span: float) -> np.ndarray:
    if span <= 0:
        return np.zeros_like(p)
    period = 2 * span
    q = np.mod(p, period)
    return span - np.abs(span - q)
