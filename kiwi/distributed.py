"""Multi-worker training with Ray Train: `TorchTrainer` starts one process per worker (gloo on CPU, NCCL on GPU),
each runs the same `Trainer` on its rank's shard of the slice sequence, the model wrapped in DistributedDataParallel
or sharded with FSDP2.
One process (`kiwi.train.Trainer` alone) is the degenerate case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiwi.curriculum import RunConfig


def _worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    import lake
    from kiwi.model.io import from_pretrained
    from kiwi.model.kiwi_edit import tiny
    from kiwi.train import Trainer

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    model = from_pretrained(config["model_dir"]) if config["model_dir"] else tiny(seed=config["run"].seed)
    model.to(ray.train.torch.get_device())  # this worker's GPU under use_gpu, else the CPU
    db = lake.open(config["lake_uri"], storage_options=config["storage_options"])
    summary = Trainer(model, db, config["run"], config["out_dir"], rank=rank, world_size=world,
                      parallel=config["parallel"]).train(resume=config["resume"], stop_after=config["stop_after"])
    ray.train.report({"rank": rank, "steps": summary.steps, "finished": summary.finished})


def train_distributed(lake_uri: str, run: RunConfig, out_dir: str | Path, num_workers: int = 2, use_gpu: bool = False,
                      storage_options: dict | None = None, model_dir: str | None = None, resume: bool = True,
                      stop_after: int | None = None, parallel: str = "ddp"):
    """Run the curriculum on `num_workers` Ray Train workers (the Ray cluster must already be initialised);
    `stop_after` stops every rank with a checkpoint after that many steps, and a later call resumes from it.
    `parallel`: "ddp" (every rank holds the whole model) or "fsdp" (FSDP2: parameters, gradients and optimizer
    state sharded over the ranks, sharded checkpoints)."""
    from ray.train import RunConfig as RayRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _worker,
        train_loop_config=dict(lake_uri=lake_uri, storage_options=storage_options or {}, run=run,
                               out_dir=str(out_dir), model_dir=model_dir, resume=resume, stop_after=stop_after,
                               parallel=parallel),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": 1 if not use_gpu else 2}),
        run_config=RayRunConfig(name=f"kiwi-{run.name}", storage_path=str(Path(out_dir).resolve() / "ray")),
    )
    return trainer.fit()
