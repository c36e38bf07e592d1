"""The synthetic edit world: ground-truth video-edit pairs rendered procedurally, for every edit type.

Sample `i` of a world is a pure function of (seed, i): the same seed gives byte-identical samples, any sample can
be rendered on its own (random access, any number of parallel workers), and nothing is kept in memory."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lake.taxonomy import EDIT_TYPES, EditType
from refvie.synthetic import instructions as words
from refvie.synthetic.backgrounds import Background, background_frames, random_background
from refvie.synthetic.instructions import article
from refvie.synthetic.sprites import COLOURS, TEXTURES, Sprite, on_white, paste, random_sprite
from refvie.synthetic.styles import Style, apply_style, random_style

# The real pools lean on local edits (~70 %): this skew is the default, and what rebalancing has to fix.
DEFAULT_MIX: dict[str, float] = {
    "local_add": 0.25, "local_remove": 0.20, "local_change": 0.25, "background_change": 0.15, "global_style": 0.15,
}


@dataclass(frozen=True)
class SyntheticConfig:
    frames: int = 17
    height: int = 128
    width: int = 128
    fps: float = 8.0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    min_sprites: int = 1
    max_sprites: int = 3
    pan_probability: float = 0.5
    seed: int = 0
    dataset: str = "synthetic"

    def __post_init__(self):
        if not 1 <= self.frames <= 161:
            raise ValueError(f"frames={self.frames}: use 1..161")
        for name in ("height", "width"):
            value = getattr(self, name)
            if not 32 <= value <= 1024 or value % 2:
                raise ValueError(f"{name}={value}: use an even number of pixels in 32..1024")
        unknown = set(self.mix) - set(EDIT_TYPES)
        if unknown:
            raise ValueError(f"mix names unknown edit types {sorted(unknown)}; known: {', '.join(EDIT_TYPES)}")
        if "other" in self.mix and self.mix["other"] > 0:
            raise ValueError("the synthetic world renders no 'other' edits")
        if any(p < 0 for p in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"mix proportions must be non-negative with a positive sum, got {dict(self.mix)}")
        if not 1 <= self.min_sprites <= self.max_sprites <= 8:
            raise ValueError("need 1 <= min_sprites <= max_sprites <= 8")

    @property
    def proportions(self) -> dict[str, float]:
        total = sum(self.mix.values())
        return {k: v / total for k, v in self.mix.items() if v > 0}


@dataclass
class SyntheticSample:
    pair_id: str
    index: int
    edit_type: EditType
    instruction: str
    source: np.ndarray  # (T, H, W, 3) uint8
    target: np.ndarray  # (T, H, W, 3) uint8
    mask: np.ndarray  # (T, H, W) bool: the pixels the edit changes (all of them for a style edit)
    reference: np.ndarray | None  # (H, W, 3) uint8: subject on white, background plate or style exemplar
    meta: dict[str, Any]


class SyntheticWorld:
    """`world.sample(i)` renders sample i; `world.samples(n)` iterates lazily."""

    def __init__(self, config: SyntheticConfig | None = None, **overrides):
        base = config or SyntheticConfig()
        self.config = SyntheticConfig(**{**base.__dict__, **overrides}) if overrides else base
        props = self.config.proportions
        self._types = [EditType(k) for k in props]
        self._cumulative = np.cumsum(list(props.values()))

    def pair_id(self, index: int) -> str:
        return f"syn-{self.config.seed}-{index:08d}"

    def edit_type(self, index: int) -> EditType:
        """The edit type of sample `index`, without rendering it (its own random stream)."""
        u = np.random.default_rng([self.config.seed, index, 0]).random()
        return self._types[int(np.searchsorted(self._cumulative, u * self._cumulative[-1], side="right"))]

    def samples(self, n: int, start: int = 0) -> Iterator[SyntheticSample]:
        for index in range(start, start + n):
            yield self.sample(index)

    def sample(self, index: int) -> SyntheticSample:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, index, 1])
        edit = self.edit_type(index)
        T, H, W = cfg.frames, cfg.height, cfg.width
        pan = (0.0, 0.0)
        if rng.random() < cfg.pan_probability:
            pan = (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-1.0, 1.0)))
        background = random_background(rng)
        sprites = [random_sprite(rng, H, W, T) for _ in range(int(rng.integers(cfg.min_sprites, cfg.max_sprites + 1)))]
        plate = background_frames(background, T, H, W, pan)
        source = _compose(plate, sprites)
        meta: dict[str, Any] = {"background": background.__dict__, "pan": pan,
                                "sprites": [s.__dict__ for s in sprites]}

        render = {
            EditType.LOCAL_ADD: self._add, EditType.LOCAL_REMOVE: self._remove, EditType.LOCAL_CHANGE: self._change,
            EditType.BACKGROUND_CHANGE: self._background, EditType.GLOBAL_STYLE: self._style,
        }[edit]
        target, reference, instruction = render(rng, plate, sprites, source, background, pan, meta)
        if edit is EditType.GLOBAL_STYLE:
            mask = np.ones((T, H, W), bool)
        else:
            mask = np.any(source != target, axis=-1)
        return SyntheticSample(pair_id=self.pair_id(index), index=index, edit_type=edit, instruction=instruction,
                               source=source, target=target, mask=mask, reference=reference, meta=meta)

    # ---------------------------------------------------------------------------------- one method per edit
    def _add(self, rng, plate, sprites, source, background, pan, meta):
        T, H, W = plate.shape[:3]
        new = random_sprite(rng, H, W, T, exclude_colours=_colours_in_view(sprites, background))
        target = _compose(plate, [*sprites, new])
        meta["edited_sprite"] = new.__dict__
        where = words.where_phrase(new.y0 + new.size / 2, new.x0 + new.size / 2, H, W, rng)
        template = str(rng.choice(words.ADD))
        text = words.fill(template, obj=article(new.describe(rng)), where=where,
                          motion=str(rng.choice(words.MOTION_WORDS[new.motion])))
        return target, on_white(new, H, W), text

    def _remove(self, rng, plate, sprites, source, background, pan, meta):
        victim = int(rng.integers(len(sprites)))
        kept = [s for i, s in enumerate(sprites) if i != victim]
        meta["edited_sprite"] = sprites[victim].__dict__
        old = _distinct_name(sprites, victim, rng)
        return _compose(plate, kept), None, words.fill(str(rng.choice(words.REMOVE)), old=old)

    def _change(self, rng, plate, sprites, source, background, pan, meta):
        T, H, W = plate.shape[:3]
        top = len(sprites) - 1  # the top-most sprite: its replacement is fully visible in the target
        old_sprite, old = sprites[top], _distinct_name(sprites, top, rng)
        kind = str(rng.choice(["replace", "recolour", "retexture"]))
        in_view = _colours_in_view(sprites, background)
        others = [c for c in COLOURS if c not in in_view]
        if kind == "replace":
            fresh = random_sprite(rng, H, W, T, exclude_colours=in_view)
            new = old_sprite.with_look(shape=fresh.shape, colour=fresh.colour, texture=fresh.texture,
                                       accent=fresh.accent)
            if new.shape == old_sprite.shape and new.texture == old_sprite.texture:
                new = new.with_look(shape="star" if new.shape != "star" else "disc")
            text = words.fill(str(rng.choice(words.REPLACE)), old=old, new=article(new.describe(rng, with_size=False)))
        elif kind == "recolour":
            colour = str(rng.choice(others))
            new = old_sprite.with_look(colour=colour, accent=old_sprite.accent if old_sprite.accent != colour
                                       else old_sprite.colour)
            text = words.fill(str(rng.choice(words.RECOLOUR)), old=old, colour=colour)
        else:
            texture = str(rng.choice([t for t in TEXTURES if t not in (old_sprite.texture, "solid")]))
            new = old_sprite.with_look(texture=texture)
            text = words.fill(str(rng.choice(words.RETEXTURE)), old=old, texture=texture)
        meta["edited_sprite"], meta["change"] = new.__dict__, kind
        return _compose(plate, [*sprites[:top], new]), on_white(new, H, W), text

    def _background(self, rng, plate, sprites, source, background, pan, meta):
        T, H, W = plate.shape[:3]
        new_bg = random_background(rng, exclude_kind=background.kind)
        new_plate = background_frames(new_bg, T, H, W, pan)
        meta["new_background"] = new_bg.__dict__
        text = words.fill(str(rng.choice(words.BACKGROUND)), bg=new_bg.describe(rng))
        return _compose(new_plate, sprites), new_plate[0].copy(), text

    def _style(self, rng, plate, sprites, source, background, pan, meta):
        T, H, W = plate.shape[:3]
        style = random_style(rng)
        meta["style"] = style.__dict__
        exemplar_scene = _compose(background_frames(random_background(rng), 1, H, W, (0.0, 0.0)),
                                  [random_sprite(rng, H, W, 1) for _ in range(2)])
        exemplar = apply_style(style, exemplar_scene)[0]
        text = words.fill(str(rng.choice(words.STYLE)), style=style.describe(rng))
        return apply_style(style, source), exemplar, text


def _compose(plate: np.ndarray, sprites: list[Sprite]) -> np.ndarray:
    frames = plate.copy()
    for sprite in sprites:
        paste(frames, sprite)
    return frames


def _colours_in_view(sprites: list[Sprite], background: Background) -> tuple[str, ...]:
    """Palette colours already on screen: a new look avoids them, so every pixel of the edit really changes."""
    return tuple({*background.colours, *(c for s in sprites for c in (s.colour, s.accent))})


def _distinct_name(sprites: list[Sprite], index: int, rng: np.random.Generator) -> str:
    """Name a sprite so that it cannot be confused with the others: colour + shape, plus texture when needed."""
    me = sprites[index]
    clash = any(s.colour == me.colour and s.shape == me.shape for i, s in enumerate(sprites) if i != index)
    return me.describe(rng, with_size=False, with_texture=clash)



__all__ = ["DEFAULT_MIX", "SyntheticConfig", "SyntheticSample", "SyntheticWorld", "Background", "Style"]
