"""Can the tiny model's source refiner represent the palette maps, given the palette? The refiner alone (no DiT:
its estimate is zero), conditioned on a one-hot palette, trained on the synthetic world's palette maps of real
synthetic clips and scored on 100 other clips. Separates "the refiner cannot" from "the model sees too few palette
samples" (palettes are ~4-5 % of the experiment's mixes).

    python bench/refiner_capacity.py [--steps 150 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]
from kiwi.model.codec import PixelCodec  # noqa: E402
from kiwi.model.refiner import SourceRefiner  # noqa: E402
from refvie.synthetic import SyntheticConfig, SyntheticWorld  # noqa: E402
from refvie.synthetic.styles import PALETTES, Style, apply_style  # noqa: E402

NAMES = list(PALETTES)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, nargs="+", default=[150, 1000])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    world = SyntheticWorld(SyntheticConfig(frames=5, height=32, width=32, seed=0))
    clips = np.stack([world.sample(i).source for i in range(400)])
    codec = PixelCodec(4)

    def latents(frames: np.ndarray) -> torch.Tensor:
        return codec.encode_pixels(torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1)

    def batch(rng: np.random.Generator, rows: np.ndarray):
        which = rng.integers(0, len(NAMES), len(rows))
        target = np.stack([apply_style(Style("palette", NAMES[k]), clips[i]) for i, k in zip(rows, which, strict=True)])
        onehot = torch.nn.functional.one_hot(torch.from_numpy(which), len(NAMES)).float()
        return latents(clips[rows]), latents(target), onehot, which

    for steps in a.steps:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        refiner = SourceRefiner(48, kernel=1, condition_dim=len(NAMES))
        optimiser = torch.optim.AdamW(refiner.parameters(), lr=1e-3, weight_decay=0.01)
        for _ in range(steps):
            source, target, onehot, _ = batch(rng, rng.integers(0, 300, 8))
            loss = (refiner(torch.zeros_like(source), source, onehot) - target).pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        source, target, onehot, which = batch(rng, np.arange(300, 400))
        with torch.no_grad():
            out = refiner(torch.zeros_like(source), source, onehot).clamp(-1, 1)
        mse = (out - target).pow(2).flatten(1).mean(1) * 127.5**2
        psnr = 10 * torch.log10(255**2 / mse)
        per = ", ".join(f"{name} {psnr[torch.from_numpy(which == k)].mean():.1f}" for k, name in enumerate(NAMES))
        print(f"{steps:5d} steps of batch 8: palette maps {psnr.mean():.1f} dB on 100 held-out clips ({per})")


if __name__ == "__main__":
    main()
