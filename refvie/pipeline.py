"""The RefVIE generation pipeline on Ray Data: every ingested pair not yet built or rejected becomes a scored,
embedded quadruplet in the lake, or a `rejects` row saying which stage refused it and why.

    pair ids ──► [decode → classify → localise → scaffold → score → package]  CPU tasks, frames stay in-task
             ──► [embed]                                                        actor pool (models load once)
             ──► driver: dedup + batched upsert                                 one writer
    or, with `parallel_writes`:
             ──► [write fragments]  CPU tasks: rows written uncommitted, on every node
             ──► driver: dedup + one Append commit per batch

Streaming: Ray Data runs the graph with bounded queues; decoded frames never leave the task that decoded them.
Resumable: the driver writes each batch idempotently, and a rerun only takes pairs that are in neither table, so
a run killed at any point and rerun ends with every pair in exactly one of `quadruplets` or `rejects`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lake import Lake
from lake.ray_runtime import NO_RESTARTS, init_ray, max_restarts_accepted, node_id
from lake.splits import DEFAULT_FRACTIONS
from refvie.labels import make_classifier
from refvie.stages import (
    Classify,
    Decode,
    Embed,
    FilterConfig,
    Localise,
    LocaliseConfig,
    Package,
    Scaffold,
    ScaffoldConfig,
    Score,
    Write,
)
from refvie.stages.fragments import FragmentTarget, write_fragments_task
from refvie.stages.localise import DiffLocaliser
from refvie.stages.package import Pack, Unpack
from refvie.stages.scaffold import HeuristicScaffolder
from refvie.stages.write import STAGES, WRITTEN

PIPELINE_VERSION = "refvie-0.1"


@dataclass(frozen=True)
class PipelineConfig:
    batch_size: int = 8  # pairs per CPU task
    cpu_per_task: float = 1.0
    # reserved per CPU task: the worker's text classifier (~400 MiB measured) plus a batch of decoded clips; below
    # what a task really uses, Ray Data's issue detector warns on every build
    task_memory_bytes: int = 640 * 1024**2
    embed_actors: int = 1
    embed_cpus: float = 0.0  # actors hold their reservation for the whole run; 0 leaves every CPU to the tasks
    embed_gpus: float = 0.0  # fractional GPUs per embed actor when a CLIP model is used
    image_model_path: str | None = None
    scaffold_model_path: str | None = None  # a diffusers image-editing pipeline; None = heuristic scaffolds
    scaffold_actors: int = 1
    scaffold_cpus: float = 0.0
    scaffold_gpus: float = 0.0
    resynthesise: bool = False  # synthesise a reference even where the dataset gave one (given ones win otherwise)
    max_frames: int | None = None
    classifier: str = "text"  # rules · text · endpoint (a given label always wins; see refvie.labels)
    endpoint_url: str | None = None
    endpoint_model: str | None = None
    localise_model_path: str | None = None  # a CLIPSeg folder: text-grounded masks for real footage
    localise: LocaliseConfig = field(default_factory=LocaliseConfig)
    scaffold: ScaffoldConfig = field(default_factory=ScaffoldConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    pipeline_version: str = PIPELINE_VERSION
    write_batch: int = 32
    # workers write the quadruplets' bytes as uncommitted Lance fragments and the driver commits them (checking
    # near-duplicates first) instead of upserting every row itself: writes on every node, one commit per batch
    parallel_writes: bool = False
    write_cpus: float = 0.5  # per fragment-writing task (mostly encoding and I/O)
    index_min_rows: int = 5000  # build vector indexes once quadruplets has this many rows
    stop_after_writes: int | None = None  # stop (as if killed) after this many write batches: for resume tests


@dataclass
class BuildSummary:
    pending: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    rejected_by_stage: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    nodes: Counter = field(default_factory=Counter)
    write_nodes: Counter = field(default_factory=Counter)  # with parallel writes: rows written per node
    repaired: int = 0  # second rows under one key removed before building
    wall_seconds: float = 0.0
    stopped_early: bool = False
    taken: int = 0  # pending here, but settled by another build on the same lake first
    indexed: list[str] = field(default_factory=list)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def stage_table(self) -> list[dict]:
        """Per stage: rows in, rows out, rejected, seconds of work (summed over workers)."""
        rows, remaining = [], self.accepted + self.rejected_total
        for stage in STAGES:
            out = remaining - self.rejected_by_stage.get(stage, 0)
            rows.append(dict(stage=stage, rows_in=remaining, rows_out=out,
                             rejected=self.rejected_by_stage.get(stage, 0),
                             seconds=round(self.seconds.get(stage, 0.0), 2)))
            remaining = out
        return rows

    def __str__(self) -> str:
        head = (f"refvie build: {self.pending} pending, {self.accepted} quadruplets written, "
                f"{self.rejected_total} rejected, {self.wall_seconds:.1f}s"
                + (" (stopped early)" if self.stopped_early else ""))
        lines = [head, f"{'stage':<10} {'in':>6} {'out':>6} {'rejected':>9} {'seconds':>8}"]
        lines += [f"{r['stage']:<10} {r['rows_in']:>6} {r['rows_out']:>6} {r['rejected']:>9} {r['seconds']:>8.2f}"
                  for r in self.stage_table()]
        lines += [f"  rejected {reason:<22} {count}" for reason, count in self.rejected.most_common()]
        if self.taken:
            lines.append(f"  {self.taken} done by another build on this lake meanwhile")
        if len(self.nodes) > 1:
            lines.append("  pairs per node: " + ", ".join(f"{n[:8]}…={c}" for n, c in self.nodes.most_common()))
        if len(self.write_nodes) > 1:
            lines.append("  rows written per node: " + ", ".join(f"{n[:8]}…={c}"
                                                              for n, c in self.write_nodes.most_common()))
        if self.repaired:
            lines.append(f"  {self.repaired} second rows under one key removed first (two builds wrote a pair)")
        return "\n".join(lines)


def written_versions(db: Lake) -> dict[str, int]:
    """The versions of the tables a build writes: taken before listing pending pairs, they tell the writer whether
    another build has written since (and it must check each batch for pairs already settled)."""
    return {table: db.table(table).version for table in WRITTEN}


def pending_pairs(db: Lake, limit: int | None = None) -> list[str]:
    """Ingested pairs that are neither a quadruplet nor rejected by a pipeline stage, in a stable order."""
    done = set(db.read("quadruplets", columns=["pair_id"])["pair_id"].to_pylist())
    stages = ", ".join(f"'{s}'" for s in STAGES)
    done |= set(db.read("rejects", columns=["input_ref"], where=f"stage IN ({stages})")["input_ref"].to_pylist())
    todo = sorted(p for p in db.read("pairs", columns=["pair_id"])["pair_id"].to_pylist() if p not in done)
    return todo[:limit] if limit is not None else todo


def classifier(config: PipelineConfig):
    return make_classifier(config.classifier, config.endpoint_url, config.endpoint_model)


def localiser(config: PipelineConfig):
    if config.localise_model_path:
        from refvie.stages.localise_model import SegmentationLocaliser

        return SegmentationLocaliser(config.localise_model_path, fallback=DiffLocaliser(config.localise))
    return DiffLocaliser(config.localise)


def scaffolder(config: PipelineConfig, device: str = "cpu"):
    if config.scaffold_model_path:
        from refvie.stages.scaffold_diffusers import DiffusersScaffolder

        return DiffusersScaffolder(config.scaffold_model_path, device=device,
                                   fallback=HeuristicScaffolder(config.scaffold))
    return HeuristicScaffolder(config.scaffold)


def cpu_stages(lake_uri: str, storage_options: Mapping[str, str], config: PipelineConfig, part: str = "all") -> list:
    """The CPU stages, all of them, or the part before / after a model-backed scaffold ("pre" / "post")."""
    pre = [Decode(lake_uri, dict(storage_options), config.max_frames), Classify(classifier(config)),
           Localise(localiser(config))]
    post = [Score(config.filter), Package()]
    stages = {"pre": [*pre, Pack()], "post": [Unpack(), *post],
              "all": [*pre, Scaffold(scaffolder(config), config.resynthesise), *post]}[part]
    for stage in stages:
        stage.setup()
    return stages


_STAGE_CACHE: dict[tuple, list] = {}


def run_cpu_stages(batch: dict, lake_uri: str, storage_options: dict, config: PipelineConfig,
                   part: str = "all") -> dict:
    """CPU stages as a Ray task function (fused in one task, so frames stay in-process); built once per worker."""
    key = (lake_uri, tuple(sorted(storage_options.items())), config, part)
    if key not in _STAGE_CACHE:
        _STAGE_CACHE[key] = cpu_stages(lake_uri, storage_options, config, part)
    for stage in _STAGE_CACHE[key]:
        batch = stage(batch)
    if part != "post":
        batch["node"] = np.array([node_id()] * len(batch["pair_id"]), dtype=object)
    return batch


class ScaffoldActor:
    """The model-backed scaffold as a Ray actor: the diffusion pipeline loads once, on the actor's device."""

    def __init__(self, config: PipelineConfig):
        self.stages = [Unpack(), Scaffold(scaffolder(config, "cuda" if config.scaffold_gpus else "cpu"),
                                          config.resynthesise), Pack()]
        for stage in self.stages:
            stage.setup()

    def __call__(self, batch: dict) -> dict:
        for stage in self.stages:
            batch = stage(batch)
        return batch


def _graph(db: Lake, todo: list[str], config: PipelineConfig):
    """The Ray Data graph: fused CPU stages in tasks, the embedder (and a model scaffolder) on actor pools."""
    import ray.data

    blocks = max(1, min(len(todo) // config.batch_size, 64))
    ds = ray.data.from_items([{"pair_id": p} for p in todo], override_num_blocks=blocks)
    # The memory reservation (decoded frames live in the task) also keeps Ray from fusing these tasks into the
    # embed actors (fusion needs equal resource requests), which would run all CPU work on the small actor pool.
    cpu = dict(batch_size=config.batch_size, batch_format="numpy", num_cpus=config.cpu_per_task,
               memory=config.task_memory_bytes)
    where = dict(lake_uri=db.uri, storage_options=db.storage_options, config=config)
    if config.scaffold_model_path:  # frames travel (packed) to GPU actors and back: the price of a model scaffold
        ds = ds.map_batches(run_cpu_stages, fn_kwargs={**where, "part": "pre"}, **cpu)
        ds = ds.map_batches(ScaffoldActor, fn_constructor_kwargs=dict(config=config), batch_size=config.batch_size,
                            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=config.scaffold_actors),
                            **NO_RESTARTS,
                            num_cpus=config.scaffold_cpus, num_gpus=config.scaffold_gpus or None)
        ds = ds.map_batches(run_cpu_stages, fn_kwargs={**where, "part": "post"}, **cpu)
    else:
        ds = ds.map_batches(run_cpu_stages, fn_kwargs=where, **cpu)
    ds = ds.map_batches(Embed, batch_size=config.write_batch, batch_format="numpy", **NO_RESTARTS,
                        compute=ray.data.ActorPoolStrategy(size=config.embed_actors),
                        num_cpus=config.embed_cpus, num_gpus=config.embed_gpus or None,
                        fn_constructor_kwargs=dict(image_model_path=config.image_model_path,
                                                   device="cuda" if config.embed_gpus else "cpu"))
    if config.parallel_writes:
        ds = ds.map_batches(write_fragments_task, batch_size=config.write_batch, batch_format="numpy",
                            num_cpus=config.write_cpus,
                            fn_kwargs=dict(target=FragmentTarget.of(db, config.pipeline_version,
                                                                    DEFAULT_FRACTIONS)))
    return ds


def build(db: Lake, config: PipelineConfig = PipelineConfig(), ray_address: str | None = None,
          limit: int | None = None, progress: bool = True) -> BuildSummary:
    """Build quadruplets for every pending pair on Ray Data (local, or the cluster at `ray_address`)."""
    import ray

    started = time.perf_counter()
    listed_at = written_versions(db)
    todo = pending_pairs(db, limit)
    summary = BuildSummary(pending=len(todo))
    if not todo:
        return summary
    if not ray.is_initialized():
        init_ray(ray_address)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # the driver's bar counts written rows
    _check_fits(config)
    classifier(config)  # train and cache the text head once here, not in every worker at once
    with max_restarts_accepted():
        ds = _graph(db, todo, config)
    writer = Write(db, config.pipeline_version, config.filter.duplicate_cosine, expected_versions=listed_at)
    writer.setup()
    bar = _bar(progress, len(todo))
    # with parallel writes each block is one task's batch and its fragments, taken whole
    batches = ds.iter_batches(batch_size=None if config.parallel_writes else config.write_batch,
                              batch_format="numpy")
    for writes, batch in enumerate(batches, start=1):
        written = writer(batch)
        if bar is not None:
            bar.update(written["accepted"] + written["rejected"] + written["taken"])
        if config.stop_after_writes is not None and writes >= config.stop_after_writes:
            summary.stopped_early = True
            break
    if bar is not None:
        bar.close()
    if not summary.stopped_early:
        writer.finish()
    summary.accepted, summary.rejected, summary.taken = writer.accepted, writer.rejected, writer.taken
    summary.rejected_by_stage, summary.seconds, summary.nodes = writer.rejected_by_stage, writer.seconds, writer.nodes
    summary.write_nodes, summary.repaired = writer.write_nodes, writer.repaired
    if not summary.stopped_early:
        summary.indexed = index_vectors(db, config.index_min_rows)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _check_fits(config: PipelineConfig) -> None:
    """Actors keep their reservations while tasks queue: if no task can ever fit, say so instead of hanging."""
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    actors = config.embed_actors * config.embed_cpus
    if config.scaffold_model_path:
        actors += config.scaffold_actors * config.scaffold_cpus
    if total - actors < config.cpu_per_task:
        raise ValueError(f"the Ray cluster has {total:g} CPUs; actors reserve {actors:g} and each CPU task needs "
                         f"{config.cpu_per_task:g}, so no task could ever run: lower embed_cpus / scaffold_cpus "
                         "or cpu_per_task")


def index_vectors(db: Lake, min_rows: int) -> list[str]:
    """Vector indexes on the embedding columns once the table is large enough for IVF-PQ to pay off."""
    if db.count("quadruplets") < min_rows:
        return []
    return [c for c in ("target_emb", "instruction_emb", "reference_emb") if db.index_vectors("quadruplets", c)]


def build_local(db: Lake, config: PipelineConfig = PipelineConfig(), limit: int | None = None) -> BuildSummary:
    """The same stages in a plain loop, no Ray: for debugging a stage, and as the single-process baseline."""
    started = time.perf_counter()
    listed_at = written_versions(db)
    todo = pending_pairs(db, limit)
    summary = BuildSummary(pending=len(todo))
    stages = cpu_stages(db.uri, db.storage_options, config)
    embed = Embed(config.image_model_path)
    embed.setup()
    writer = Write(db, config.pipeline_version, config.filter.duplicate_cosine, expected_versions=listed_at)
    writer.setup()
    for start in range(0, len(todo), config.write_batch):
        batch = {"pair_id": np.array(todo[start : start + config.write_batch], dtype=object)}
        for stage in stages:
            batch = stage(batch)
        writer(embed(batch))
    writer.finish()
    summary.accepted, summary.rejected, summary.taken = writer.accepted, writer.rejected, writer.taken
    summary.rejected_by_stage, summary.seconds = writer.rejected_by_stage, writer.seconds
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _bar(progress: bool, total: int):
    from lake.progress import progress as progress_bar

    return progress_bar(total, "refvie build", "pair", enabled=progress)
