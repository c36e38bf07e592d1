"""Tiny Kiwi-Edit on CPU: one training step (forward + backward) per sample, against the bare Wan DiT's own
forward + backward on the same latents measured in the same run (the ratio is what the MLLM encoder, connectors,
embedders and VAE encoding add).

    python bench/model_bench.py [--batch 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report, timeit  # noqa: E402

from kiwi.model.kiwi_edit import EditBatch, tiny  # noqa: E402


def clip(seed: int, frames: int = 5, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # "about a second on one CPU core" is the tiny config's design point
    model = tiny(seed=0).train()
    frames = np.stack([clip(i) for i in range(args.batch)])
    batch = EditBatch(["Add a red ball"] * args.batch, frames, frames, np.stack([f[0] for f in frames]),
                      "ref_subject")

    def kiwi_step():
        model.zero_grad()
        model.training_loss(batch, torch.Generator().manual_seed(0)).backward()

    latents = model.encode_video(frames)
    context = torch.randn(args.batch, 8, 32)
    dit = model.transformer.transformer

    def dit_step():
        dit.zero_grad()
        out = dit(latents, torch.full((args.batch,), 500), context, return_dict=False)[0]
        out.pow(2).mean().backward()

    ours, base = timeit(kiwi_step, repeat=args.repeat), timeit(dit_step, repeat=args.repeat)
    print(f"tiny Kiwi-Edit training step, 1 thread: {ours / args.batch * 1e3:.0f} ms per sample "
          f"(batch {args.batch}, 5x64x64 frames, reference task)")
    report("model_bench", [dict(what="tiny Kiwi-Edit forward+backward per sample", ours_s=ours / args.batch,
                                baseline="bare Wan DiT forward+backward on the same latents",
                                baseline_s=base / args.batch)], Path("bench/results/model_bench.json"))


if __name__ == "__main__":
    main()
