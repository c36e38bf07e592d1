"""The training loop: stages of a curriculum, each streaming its slice; AdamW with warm-up, gradient accumulation
and clipping, bf16 autocast on GPU; checkpoints (safetensors + JSON) every N steps and at each stage end; resume
picks up mid-stage and replays exactly what an uninterrupted run would have done (the data order comes from the
sampler state, each sample's noise from a generator seeded by (seed, step, its place in the global batch), so w
ranks under DistributedDataParallel compute the gradient one process would on the whole batch). Metrics go to
TensorBoard, a JSON-lines file, and the lake's `runs` table with the run's lineage (slices, table versions, config,
code version, seed)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from kiwi.checkpoints import Checkpointing, RunMismatch, load_weights, recover_folder
from kiwi.curriculum import RunConfig, StageConfig
from kiwi.data import DataConfig, SliceLoader
from kiwi.feed import StageFeed
from kiwi.mixing import HeldOutProbe, record_weights
from kiwi.model.flow import keyed_generator
from kiwi.model.kiwi_edit import KiwiEdit
from kiwi.precision import PrecisionPolicy
from kiwi.sharding import shard_model
from kiwi.trainable import set_trainable
from lake import Lake
from lake.slices import load_slice
from lake.version import code_version


def open_metrics(path: Path, resumed_at: int):
    """The run's metrics log for appending, holding exactly the steps up to `resumed_at`: a fresh start begins an
    empty one, a resume drops what steps after its checkpoint wrote (a killed run redoes those steps)."""
    kept = []
    if resumed_at and path.exists():
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["global_step"] <= resumed_at]
    path.write_text("".join(line + "\n" for line in kept))
    return path.open("a")


@dataclass
class RunSummary:
    run_id: str
    steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    consumed: Counter = field(default_factory=Counter)
    finished: bool = False


def rank_batch(stage: StageConfig, ranks_at_start: int, ranks: int) -> int:
    """A rank's micro-batch: the stage's batch is per rank as the run started. A run resumed on another number of
    ranks keeps the global batch (batch x first ranks) and splits it over the ranks it has now, so it reads the
    same samples into the same optimizer steps; a global batch that does not divide is refused."""
    total = stage.batch_size * ranks_at_start
    if total % ranks:
        raise ValueError(f"stage {stage.name!r}: its global batch of {total} samples ({stage.batch_size} per rank x "
                         f"{ranks_at_start} ranks at the run's start) does not split over {ranks} ranks; resume on a "
                         f"number of ranks that divides {total}")
    return total // ranks


def sample_generators(seed: int, step: int, micro: int, size: int, rank: int = 0,
                      world_size: int = 1) -> list[torch.Generator]:
    """One generator per sample of this rank's micro-batch, keyed by the sample's place in the global batch (the
    sampler deals global positions round-robin: rank r's j-th sample is global sample j * world_size + r)."""
    return [keyed_generator(seed, step, micro, j * world_size + rank) for j in range(size)]


class Trainer(Checkpointing, PrecisionPolicy):
    def __init__(self, model: KiwiEdit, db: Lake, run: RunConfig, out_dir: str | Path, rank: int = 0,
                 world_size: int = 1, parallel: str = "ddp"):
        """With world_size > 1 (under Ray Train / torch.distributed), each rank reads its shard of the slice's
        sequence and gradients are averaged across ranks: `parallel="ddp"` wraps the model in
        DistributedDataParallel for each stage (rank 0 writes the weights), `"fsdp"` shards it once with FSDP2
        (`kiwi.sharding`; every rank writes its shards). Rank 0 writes the runs table, every rank its own loader
        state."""
        if parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', not {parallel!r}")
        self.model, self.db, self.run, self.out = model, db, run, Path(out_dir)
        self.rank, self.world_size = rank, world_size
        self.sharded = parallel == "fsdp" and world_size > 1
        self.ranks_at_start = world_size  # a resumed run keeps its first ranks' global batch (see rank_batch)
        self.run_id = hashlib.blake2b(json.dumps(run.to_dict(), sort_keys=True).encode(), digest_size=8).hexdigest()
        self.device = next(model.parameters()).device

    def rank_batch(self, stage: StageConfig) -> int:
        return rank_batch(stage, self.ranks_at_start, self.world_size)

    # ------------------------------------------------------------------------------------------- lineage
    def record(self, status: str, summary: RunSummary) -> None:
        if self.rank != 0:
            return
        # every stage's slices in order (a mixture's one per task source)
        slices = [load_slice(self.db, source.slice) for stage in self.run.stages for source in stage.mixture]
        now = datetime.now(UTC)
        last = summary.history[-1] if summary.history else {}
        self.db.upsert("runs", [dict(
            run_id=self.run_id, name=self.run.name, status=status, config=self.run.to_dict(),
            slice_ids=[s.slice_id for s in slices],
            lake_versions={s.slice_id: {"table": s.table, "version": s.table_version} for s in slices},
            code_version=code_version(), seed=self.run.seed, checkpoint_uri=str(self.out / "checkpoint"),
            metrics=dict(steps=summary.steps, last_loss=last.get("loss"), consumed=dict(summary.consumed),
                         starts_from=self.starts_from()),
            created_at=now, updated_at=now)])

    # ------------------------------------------------------------------------------------------- the loop
    def train(self, resume: bool = True, stop_after: int | None = None,
              should_stop: Callable[[], bool] | None = None, progress: bool = False,
              say: Callable[[str], None] | None = None) -> RunSummary:
        """Run every stage; `stop_after` (a step count) or `should_stop` (polled every step, e.g. a notebook's stop
        button) stop it with a checkpoint. A run killed without warning resumes from its last periodic checkpoint
        instead, redoing the steps since. `progress` shows a bar over all steps (with the running loss); `say`
        (for a log file or a job's log) gets a line every tenth of a stage and at its end instead."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        summary = RunSummary(self.run_id)
        if self.rank == 0:
            recover_folder(self.out / "checkpoint")
        self._barrier()
        state_file = self.out / "checkpoint" / "state.json"
        state = json.loads(state_file.read_text()) if resume and state_file.exists() else None
        if state and state.get("run_id", self.run_id) != self.run_id:
            raise RunMismatch(self.out, state, self.run)
        if state:
            self.ranks_at_start = state.get("ranks_at_start", self.world_size)
        self.out.mkdir(parents=True, exist_ok=True)
        log = open_metrics(self.out / ("metrics.jsonl" if self.rank == 0 else f"metrics.rank{self.rank}.jsonl"),
                           state["global_step"] if state else 0)
        writer = SummaryWriter(str(self.out / "tensorboard" / f"rank{self.rank}"))
        self._master_weights()
        if state is None:
            self._init_weights()
        if self.sharded:
            shard_model(self.model, bf16_compute=self.device.type == "cuda")
        if self.run.reference_position is not None:
            self.model.transformer.reference_position = self.run.reference_position
        self.record("running", summary)
        global_step = state["global_step"] if state else 0
        summary.steps = global_step
        if state and state["stage_index"] >= len(self.run.stages):  # already finished: report what it consumed
            summary.consumed.update(state["consumed"])
        bar = tqdm(total=sum(s.steps for s in self.run.stages), initial=global_step, unit="step", desc=self.run.name,
                   disable=not progress or self.rank != 0, leave=False)
        try:
            for index, stage in enumerate(self.run.stages):
                if state and index < state["stage_index"]:
                    continue
                params = set_trainable(self.model, stage.trains)
                self._mllm_budget(stage)
                forward = self._wrap(self.model)
                optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
                feed = self._feed(stage, say if self.rank == 0 else None)
                step = 0
                if state and index == state["stage_index"]:
                    self._restore(optimizer, feed, state, summary)
                    step = state["step"]
                    state = None
                probe = self._probe(stage, feed.primary)
                while step < stage.steps:
                    stop = should_stop is not None and should_stop()
                    if stop or (stop_after is not None and global_step >= stop_after):  # graceful: checkpoint first
                        self.checkpoint(index, step, global_step, optimizer, feed, summary)
                        self.record("stopped", summary)
                        return summary
                    started = time.perf_counter()
                    optimizer.zero_grad(set_to_none=True)
                    ids, types, losses = [], [], []
                    for micro in range(stage.grad_accumulation):
                        loaded = feed.next()
                        if stage.source_conditioning is not None:
                            loaded.batch.source_conditioning = stage.source_conditioning
                        generators = sample_generators(self.run.seed, global_step, micro, len(loaded.ids), self.rank,
                                                       self.world_size)
                        last = micro == stage.grad_accumulation - 1
                        with self._sync(forward, last), self._autocast():
                            per_sample = forward(loaded.batch, generators, per_sample=True)
                            (per_sample.mean() / stage.grad_accumulation).backward()
                        ids += loaded.ids
                        types += loaded.edit_types
                        losses += per_sample.detach().float().cpu().tolist()
                    torch.nn.utils.clip_grad_norm_(params, stage.max_grad_norm)
                    for group in optimizer.param_groups:  # a function of the step: resuming replays it exactly
                        group["lr"] = stage.lr_at(step)
                    optimizer.step()
                    step += 1
                    global_step += 1
                    summary.steps = global_step
                    summary.consumed.update(types)
                    per_type: dict[str, list[float]] = {}
                    for t, value in zip(types, losses, strict=True):
                        per_type.setdefault(t, []).append(value)
                    entry = dict(global_step=global_step, stage=stage.name, ids=ids, loss=sum(losses) / len(losses),
                                 per_type={t: sum(v) / len(v) for t, v in per_type.items()},
                                 per_type_samples={t: len(v) for t, v in per_type.items()},
                                 samples_per_s=len(ids) / (time.perf_counter() - started))
                    if probe is not None:
                        self._adapt(probe, feed.primary, stage, global_step, entry, writer)
                    summary.history.append(entry)
                    bar.update(1)
                    if say is not None and self.rank == 0 and (step % max(1, stage.steps // 10) == 0
                                                               or step == stage.steps):
                        say(f"{stage.name}: step {step}/{stage.steps} (run step {global_step}), loss "
                            f"{entry['loss']:.4f}, {entry['samples_per_s']:.1f} samples/s")
                    bar.set_postfix(loss=f"{entry['loss']:.4f}", refresh=False)
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    writer.add_scalar("loss/all", entry["loss"], global_step)
                    for t, value in entry["per_type"].items():
                        writer.add_scalar(f"loss/{t}", value, global_step)
                    writer.add_scalar("samples_per_s", entry["samples_per_s"], global_step)
                    if step == stage.steps:
                        self.checkpoint(index + 1, 0, global_step, optimizer, feed, summary, stage_start=True)
                        self.record("running", summary)
                    elif step % self.run.checkpoint_every == 0:
                        self.checkpoint(index, step, global_step, optimizer, feed, summary)
                        self.record("running", summary)
            summary.finished = True
            self.record("finished", summary)
            return summary
        finally:
            self._mllm_budget(None)
            bar.close()
            log.close()
            writer.close()

    def _mllm_budget(self, stage: StageConfig | None) -> None:
        """The MLLM's per-frame pixel budget for `stage` (its training budget), or back to the model's own (the
        inference budget the model was built or converted with) when `stage` is None."""
        mllm = self.model.mllm
        if not hasattr(mllm, "max_pixels"):  # the sentence-embedding conditioner reads no frames
            return
        if not hasattr(self, "_inference_pixels"):
            self._inference_pixels = mllm.max_pixels
        mllm.max_pixels = stage.mllm_frame_pixels if stage is not None and stage.mllm_frame_pixels else \
            self._inference_pixels

    def _feed(self, stage: StageConfig, say: Callable[[str], None] | None = None) -> StageFeed:
        """The stage's task sources, each from its own slice, interleaved as the stage's weights say."""
        sources = stage.mixture
        slices = [load_slice(self.db, source.slice) for source in sources]
        datas = []
        for source, slice_ in zip(sources, slices, strict=True):
            data = DataConfig(frames=source.frames or stage.frames, size=source.size or stage.size,
                              pin_memory=self.device.type == "cuda", sampling=stage.frame_sampling,
                              max_pixels=source.max_pixels or stage.max_pixels, raw_reference=stage.raw_reference)
            datas.append(self._with_latents(stage, slice_, data, say))

        def make_loader(index: int, epoch: int) -> SliceLoader:
            source, data = sources[index], datas[index]
            return SliceLoader(self.db, slices[index], data, self.rank_batch(stage), self.run.seed, source.task,
                               epoch=epoch, rank=self.rank, world_size=self.world_size, mode=stage.mode,
                               adaptive=stage.adaptive)

        return StageFeed(make_loader, [source.weight for source in sources])

    def _with_latents(self, stage: StageConfig, slice_, data: DataConfig, say) -> DataConfig:
        """`data` reading the slice's target clips as cached latents, where the run allows it and the lake holds
        them for every row (the run's VAE, this geometry, clips unchanged since); else `data` as it is, or a
        refusal that names the set wanted and the sets there are (`latents="require"`)."""
        from dataclasses import replace

        from lake.latents import clip_lengths, latent_sets, uncovered

        if self.run.latents == "off":
            return data
        wanted = None
        if not data.ray:
            wanted = self.model.latent_set(data.frames, data.sampling, data.size, data.max_pixels)
        if wanted is None:
            if self.run.latents == "require":
                raise ValueError(f"stage {stage.name}: latents='require', but this model has no VAE to cache "
                                 f"(the pixel codec) or the stage prepares batches on Ray Data")
            return data
        missing = uncovered(self.db, wanted.key, slice_.table, slice_.table_version, slice_.ids)
        if not missing and data.sampling == "prefix_cut" and self.rank_batch(stage) > 1:
            lengths = sorted(set(clip_lengths(self.db, wanted.key, sorted(set(slice_.ids)))))
            if len(lengths) > 1:  # a batch would mix latents of different lengths (decoding cuts it to its shortest)
                mixed = (f"the rows of slice {slice_.name or slice_.slice_id} were cut to {len(lengths)} lengths "
                         f"(prefix_cut: {', '.join(map(str, lengths))} frames), and batches of "
                         f"{self.rank_batch(stage)} per rank would mix them")
                if self.run.latents == "require":
                    raise ValueError(f"stage {stage.name}: {mixed}: train at one sample per rank (the published "
                                     f"recipe's) or with --latents auto, which decodes")
                if say is not None:
                    say(f"{stage.name}: clips decoded, not read as latents: {mixed}")
                return data
        if not missing:
            if say is not None:
                seen = self.model.source_frames_seen
                fewer = (f"; of the source's {data.frames} frames, only the {seen} the MLLM reads are converted"
                         if seen < data.frames else "")
                say(f"{stage.name}: source and target clips as cached latents ({wanted.key}){fewer}")
            return replace(data, latent_set=wanted.key, source_frames=self.model.source_frames_seen)
        if self.run.latents == "require":
            geometry = f"--size {data.size}" if data.max_pixels is None else f"--max-pixels {data.max_pixels}"
            there = "; ".join(f"{s.describe()}: {rows} rows" for s, rows in latent_sets(self.db)) or "none"
            raise ValueError(f"stage {stage.name}: {len(set(missing))} of {len(set(slice_.ids))} rows of slice "
                             f"{slice_.name or slice_.slice_id} have no fresh latents in {wanted.describe()}; "
                             f"latent sets in the lake: {there}. Make them with `refvie latents --vae DIR "
                             f"--frames {data.frames} --sampling {data.sampling} {geometry}`")
        return data

    def _init_weights(self) -> None:
        """A run's first stage starts from `init_from`: a training checkpoint's weights are loaded here; a model
        folder is what the caller built the model from (kiwi train --model), recorded as the run's origin."""
        origin = self.run.init_from
        if origin is None:
            return
        if (Path(origin) / "model.safetensors").is_file():
            load_weights(self.model, origin)
        elif not (Path(origin) / "model_index.json").is_file():
            raise FileNotFoundError(f"init_from {origin}: neither a training checkpoint (model.safetensors) nor a "
                                    f"model folder (model_index.json)")

    def starts_from(self) -> list[dict[str, str]]:
        """Each stage's starting weights, for the run's lineage: the first stage's origin (a fresh model, a model
        folder or a checkpoint), every later stage the stage before it."""
        first = self.run.init_from or "fresh model"
        return [dict(stage=stage.name, starts_from=first if i == 0 else f"stage {self.run.stages[i - 1].name}")
                for i, stage in enumerate(self.run.stages)]

    def _probe(self, stage: StageConfig, loader: SliceLoader) -> HeldOutProbe | None:
        if stage.adaptive is None:
            return None
        return HeldOutProbe(self.db, loader.slice, loader.config, stage.task, stage.probe_per_category)

    def _adapt(self, probe: HeldOutProbe, loader: SliceLoader, stage: StageConfig, global_step: int, entry: dict,
               writer) -> None:
        """At each block boundary the sampler crossed: probe the held-out loss per category and move the mix.
        Every rank probes the same rows with the same (synchronised) weights, so all make the same update."""
        sampler, block = loader.sampler, stage.adaptive.update_every
        consumed, span = sampler.position, self.rank_batch(stage) * self.world_size * stage.grad_accumulation
        if consumed // block == (consumed - span) // block:
            return
        losses = probe.losses(self.model)
        weights = sampler.update(losses, at_position=consumed)
        entry["mix"] = dict(position=sampler.history[-1]["position"], weights=weights, heldout_loss=losses)
        for category, weight in weights.items():
            writer.add_scalar(f"mix/{category}", weight, global_step)
        if self.rank == 0:
            record_weights(self.db, self.run_id, stage.name, global_step, sampler.history[-1]["position"], weights,
                           losses)

    def _wrap(self, model: KiwiEdit) -> torch.nn.Module:
        """DistributedDataParallel over this stage's trainable parameters when there are several ranks (DDP
        registers the parameters that require grad when it is built, so each stage wraps anew)."""
        if self.world_size == 1 or self.sharded:  # FSDP2 shards the model itself, once
            return model
        from torch.nn.parallel import DistributedDataParallel

        devices = [self.device.index] if self.device.type == "cuda" else None
        # Unused: e.g. the reference connector in an instruct stage
        return DistributedDataParallel(model, device_ids=devices, find_unused_parameters=True)

    @staticmethod
    def _sync(forward: torch.nn.Module, last_micro_batch: bool):
        """Gradients are all-reduced on the last micro-batch of an accumulation only."""
        if last_micro_batch or not hasattr(forward, "no_sync"):
            return contextlib.nullcontext()
        return forward.no_sync()
