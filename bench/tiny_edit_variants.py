"""Which tiny-edit variant learns what, per edit category (and per style kind), against copying the source: the
default x0-prediction, `source_residual` and `source_gate`, at a given budget and learning-rate schedule. Trains in
memory on a uniform synthetic mix (each row on its own task, as the experiment's mixed stage), scores 100 held-out
clips from another seed with 1, 3 and 10 sampler steps.

    python bench/tiny_edit_variants.py [--steps 1200] [--cosine] [--gate | --residual] [--lr 1e-3] [--threads 1]
                                        [--patch 4] [--width 128] [--layers 4]
                                        [--refiner 1 [--plain-refiner | --refiner-condition context]] [--held-out 100]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT.parent)]
from kiwi.data import reference_on_white  # noqa: E402
from kiwi.inference import edit  # noqa: E402
from kiwi.model.kiwi_edit import MIXED, EditBatch, tiny_edit  # noqa: E402
from refvie.synthetic import SyntheticConfig, SyntheticWorld  # noqa: E402

UNIFORM = {e: 1.0 for e in ("local_add", "local_remove", "local_change", "background_change", "global_style")}
TASK = {"background_change": "ref_background", "local_add": "ref_subject", "local_change": "ref_subject"}


def clips(seed: int, n: int, size: int = 32):
    world = SyntheticWorld(SyntheticConfig(frames=5, height=size, width=size, seed=seed, mix=UNIFORM))
    return [world.sample(i) for i in range(n)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / max(float(((a.astype(float) - b.astype(float)) ** 2).mean()), 1e-10))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--cosine", action="store_true", help="cosine decay to a tenth (the experiment's default)")
    p.add_argument("--gate", action="store_true")
    p.add_argument("--residual", action="store_true")
    p.add_argument("--refiner", type=int, default=0, help="a source refiner of this kernel size (0: none)")
    p.add_argument("--plain-refiner", action="store_true", help="a refiner that does not see the instruction")
    p.add_argument("--refiner-condition", choices=("instruction", "context"), default="instruction",
                   help="what modulates the refiner: the instruction's sentence embedding or the pooled context")
    p.add_argument("--pairs", type=int, default=1500)
    p.add_argument("--held-out", type=int, default=100, help="held-out clips to score")
    p.add_argument("--patch", type=int, default=4, help="the pixel codec's patch (2: four times the DiT tokens)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    train, test = clips(0, a.pairs), clips(777, a.held_out)
    white = np.full((32, 32, 3), 255, np.uint8)
    model = tiny_edit(seed=0, width=a.width, layers=a.layers, patch=a.patch, source_residual=a.residual,
                      source_gate=a.gate, source_refiner=a.refiner,
                      refiner_condition=False if a.plain_refiner or not a.refiner else a.refiner_condition)
    optimiser = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=a.lr, weight_decay=0.01)
    rng, started = np.random.default_rng(0), time.perf_counter()
    for step in range(a.steps):
        if a.cosine:
            for group in optimiser.param_groups:
                group["lr"] = a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        rows = [train[i] for i in rng.choice(len(train), 8, replace=False)]
        batch = EditBatch([s.instruction for s in rows], np.stack([s.source for s in rows]),
                          np.stack([s.target for s in rows]),
                          np.stack([reference_on_white(s.reference, 32) if s.reference is not None else white
                                    for s in rows]), MIXED, [TASK.get(s.edit_type.value, "instruct") for s in rows])
        loss = model.training_loss(batch, torch.Generator().manual_seed(step))
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    variant = "gate" if a.gate else "residual" if a.residual else "x0"
    if a.refiner:
        variant += f" + refiner {a.refiner} ({'plain' if a.plain_refiner else 'by the ' + a.refiner_condition})"
    print(f"{variant} (patch {a.patch}, width {a.width}, {a.layers} layers), {a.steps} steps of batch 8, "
          f"lr {a.lr:g}{' cosine' if a.cosine else ''}: "
          f"trained in {time.perf_counter() - started:.0f} s, last loss {loss.item():.4f}")
    model.eval()
    for sampler_steps in (1, 3, 10):
        scores: dict[str, list[tuple[float, float]]] = {}
        for s in test:
            kind = s.edit_type.value
            task = TASK.get(kind, "instruct")
            out = edit(model, s.source, s.instruction, s.reference if task != "instruct" else None, task=task,
                       steps=sampler_steps)
            pair = (psnr(out, s.target), psnr(s.source, s.target))
            scores.setdefault(kind, []).append(pair)
            if kind == "global_style":
                scores.setdefault(f"  style: {s.meta['style']['kind']}", []).append(pair)
        print(f"\n{sampler_steps} sampler steps: PSNR vs the truth (copying the source), held-out clips")
        for kind, pairs in sorted(scores.items(), key=lambda kv: kv[0].strip()):
            model_db, copy_db = np.mean(pairs, axis=0)
            print(f"  {kind:24s} {model_db:6.2f} ({copy_db:5.2f})  n={len(pairs)}")


if __name__ == "__main__":
    main()
