"""Decoded synthetic pairs (through H.264 and back, as the pipeline sees them) shared by the stage tests."""

from __future__ import annotations

import functools

from lake import media
from refvie.synthetic import SyntheticConfig, SyntheticWorld

BALANCED = {k: 1.0 for k in ("local_add", "local_remove", "local_change", "background_change", "global_style")}


@functools.cache
def coded_samples(n: int = 100, seed: int = 5, size: int = 96, frames: int = 9):
    """(sample, decoded source, decoded target) for n samples of a balanced world."""
    world = SyntheticWorld(SyntheticConfig(seed=seed, frames=frames, height=size, width=size, mix=BALANCED))
    out = []
    for s in world.samples(n):
        src = media.decode_video(media.encode_video(s.source))
        tgt = media.decode_video(media.encode_video(s.target))
        out.append((s, src, tgt))
    return tuple(out)
