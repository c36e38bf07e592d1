"""What one arm of the rebalancing experiment costs with the `tiny-edit` model: seconds per training sample
through the real path (lake slice -> SliceLoader -> Trainer, 5 frames of 32x32, batch 8, 2 threads), against the
bare model steps on the same batches already decoded in memory (a fresh model of the same seed, the same trainable
groups, optimiser, generators and 2 threads; its instruction cache as cold as the trainer's), so the difference is
what the data path and the loop add; and evaluation samples per second (`kiwi.eval` inference, 10 sampler steps,
lossless outputs stored) against the bare sampler.

    python bench/experiment_bench.py [--pairs 200] [--steps 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT.parent)]
from common import report, timeit  # noqa: E402

from kiwi.curriculum import RunConfig, StageConfig  # noqa: E402
from kiwi.data import DataConfig, SliceLoader  # noqa: E402
from kiwi.eval.bench import freeze_lake_bench, load_bench  # noqa: E402
from kiwi.eval.runner import EvalConfig, evaluate  # noqa: E402
from kiwi.inference import edit  # noqa: E402
from kiwi.model.kiwi_edit import tiny_edit  # noqa: E402
from kiwi.train import Trainer, sample_generators  # noqa: E402
from kiwi.trainable import set_trainable  # noqa: E402
from lake.balance import Strategy  # noqa: E402
from lake.slices import build_slice, load_slice, save_slice  # noqa: E402
from tests.conftest import synthetic_quadruplet_lake  # noqa: E402


def bare_steps(db, stage: StageConfig, slice_id: str) -> float:
    """Seconds for `stage.steps` bare optimiser steps of a fresh model of the same seed, on the batches the trainer
    saw (its sampler's order, decoded beforehand, outside the clock)."""
    batches, epoch = [], 0
    while len(batches) < stage.steps:
        loader = SliceLoader(db, load_slice(db, slice_id), DataConfig(frames=stage.frames, size=stage.size),
                             stage.batch_size, seed=0, task=stage.task, epoch=epoch)
        batches += [loaded.batch for loaded in loader][: stage.steps - len(batches)]
        epoch += 1
    model = tiny_edit(seed=0)
    model.mllm.embed(["warm up"])
    params = set_trainable(model, stage.trains)
    optimiser = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        optimiser.zero_grad(set_to_none=True)
        model.training_loss(batch, sample_generators(0, step, 0, len(batch.instructions)), per_sample=True) \
            .mean().backward()
        torch.nn.utils.clip_grad_norm_(params, stage.max_grad_norm)
        optimiser.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="experiment-bench-"))
    db = synthetic_quadruplet_lake(work / "lake", args.pairs, seed=4, frames=9, size=32)
    train = save_slice(db, build_slice(db, where="split = 'train'", strategy=Strategy("uniform"), name="train"))
    stage = StageConfig("instruct", train, "instruct", ("queries", "query_connector", "source_embedder", "dit"),
                        args.steps, 1e-3, batch_size=8, frames=5, size=32)
    warm = RunConfig("warm", (StageConfig(**{**stage.__dict__, "steps": 2}),), seed=1)
    Trainer(tiny_edit(seed=0), db, warm, work / "warm").train()  # imports, MiniLM load: not part of the figure
    model = tiny_edit(seed=0)
    model.mllm.embed(["warm up"])  # loads MiniLM outside the clock (on both sides); the data's texts stay uncached
    start = time.perf_counter()
    Trainer(model, db, RunConfig("bench", (stage,), seed=0, checkpoint_every=10**6), work / "run").train()
    trained_s = (time.perf_counter() - start) / (args.steps * 8)
    bare_s = bare_steps(db, stage, train) / (args.steps * 8)
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 255, (8, 5, 32, 32, 3), dtype=np.uint8)

    freeze_lake_bench(db, "b", per_category=4, where="split != 'train'")
    items = len(load_bench(db, "b"))
    config = EvalConfig(frames=5, size=32, steps=10, instruct_only=True)
    start = time.perf_counter()
    evaluate(db, model, "b", "bench-model", config)
    eval_s = (time.perf_counter() - start) / items
    sampler_s = timeit(lambda: edit(model, clips[0], "Replace the background with a beach", steps=10), repeat=5)

    print(f"\ntiny-edit: {trained_s * 1e3:.1f} ms per training sample through the lake ({1 / trained_s:.0f}/s), "
          f"{bare_s * 1e3:.1f} ms for the bare steps on the same batches in memory;\nevaluation "
          f"{1 / eval_s:.1f} items/s ({items} items), bare sampler "
          f"{1 / sampler_s:.1f}/s")
    report("experiment_bench", [
        dict(what="tiny-edit training, per sample (lake -> loader -> trainer)", ours_s=trained_s,
             baseline="the same model steps on the same batches, decoded in memory", baseline_s=bare_s),
        dict(what="evaluation, per item (inference + metrics + lossless output in the lake)", ours_s=eval_s,
             baseline="bare sampler, 10 steps", baseline_s=sampler_s),
    ], ROOT / "results" / "experiment_bench.json")


if __name__ == "__main__":
    main()
