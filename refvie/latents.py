"""`refvie latents`: each quadruplet's source and target clips encoded once by a frozen VAE into the `latents`
table, on Ray Data — the VAE loaded once per actor (a GPU, or a fraction of one, each; CPU when there is none).

    quadruplet ids + clip stamps ──► [read blobs → decode → cut as training cuts → VAE encode]  actor pool
                                 ──► driver: batched upsert into `latents`, undecodable rows into `rejects`

Resumable and exactly-once like the build: rows are keyed by (latent set, quadruplet), written idempotently, and a
rerun takes only the rows the set lacks or holds stale (another clip stamp), so a run killed anywhere and rerun ends
with every selected row cached or rejected once. What the latents are and how the trainer finds them:
`lake.latents`."""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lake import Lake, media
from lake.clips import MAX_PIXELS, frames_read
from lake.latents import (
    STAMP_COLUMNS,
    LatentSet,
    cached_stamps,
    clip_stamp,
    encode_clips,
    latent_row,
    vae_fingerprint,
)

STAGE = "latents"


@dataclass(frozen=True)
class LatentsConfig:
    vae: str  # a diffusers AutoencoderKLWan folder (the released model's `vae/`, or `Wan2.2-TI2V-5B-Diffusers/vae`)
    frames: int = 81
    sampling: str = "prefix_cut"  # upstream's training reader (the kiwi-paper recipe's): the first frames
    size: int | None = None  # short side, cropped square; or
    max_pixels: int | None = MAX_PIXELS  # a pixel budget, aspect kept (upstream's --max_pixels)
    where: str | None = None  # which quadruplets (default: all)
    dtype: str = "auto"  # the VAE's dtype: bfloat16 on a GPU, float32 on a CPU ("auto"); the trainer's must match
    device: str = "auto"
    actors: int = 1
    gpus_per_actor: float = 1.0  # with a GPU: a fraction lets several actors share one
    rows_per_task: int = 2
    write_batch: int = 16  # latent rows per upsert (one table version each)
    stop_after_writes: int | None = None  # stop early (tests that kill a run)

    def resolved(self) -> tuple[str, str]:
        import torch

        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        dtype = ("bfloat16" if device.startswith("cuda") else "float32") if self.dtype == "auto" else self.dtype
        return device, dtype


@dataclass
class LatentsSummary:
    latent_set: str
    selected: int = 0
    cached_before: int = 0
    encoded: int = 0
    rejected: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"latent set {self.latent_set}: {self.selected} quadruplets selected, "
                 f"{self.cached_before} cached already, {self.encoded} encoded, {self.rejected} rejected "
                 f"in {self.seconds:.1f} s" + (" (stopped early)" if self.stopped_early else "")]
        lines += [f"  rejected {reason}: {n}" for reason, n in sorted(self.rejected_by_reason.items())]
        return "\n".join(lines)


def load_vae(folder: str, dtype: str, device: str):
    """The frozen VAE, as `kiwi` builds the full model's (diffusers AutoencoderKLWan, eval mode), from a local
    folder only."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a folder that is not one must say so, not ask the Hub
    import torch
    from diffusers import AutoencoderKLWan

    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"--vae {folder}: not a diffusers VAE folder (no config.json); give the model's "
                                "vae/ folder, e.g. a converted Kiwi-Edit model's or Wan2.2-TI2V-5B-Diffusers/vae")
    vae = AutoencoderKLWan.from_pretrained(folder, torch_dtype=getattr(torch, dtype))
    return vae.to(device).eval().requires_grad_(False)


def latent_set_for(config: LatentsConfig, vae) -> LatentSet:
    return LatentSet(vae_fingerprint(vae), config.frames, config.sampling,
                     size=config.size, max_pixels=None if config.size else config.max_pixels)


def pending(db: Lake, latent_set: LatentSet, where: str | None) -> tuple[list[dict], int, int]:
    """The quadruplets (metadata rows, at the latest version) whose latents the set lacks or holds stale; the
    version read; how many selected rows are cached already."""
    version = db.table("quadruplets").version
    rows = db.read("quadruplets", columns=STAMP_COLUMNS, where=where, version=version).to_pylist()
    cached = cached_stamps(db, latent_set.key)
    todo = [r for r in rows if cached.get(r["id"]) != clip_stamp(r)]
    return todo, version, len(rows) - len(todo)


class _Encoder:
    """A Ray Data actor: the lake opened and the VAE loaded once; a task's rows in, their latent rows out."""

    def __init__(self, uri: str, storage_options: dict, config: LatentsConfig, latent_set: LatentSet, version: int):
        import lake

        self.db = lake.open(uri, storage_options=storage_options, create=False)
        self.config, self.set, self.version = config, latent_set, version
        device, dtype = config.resolved()
        self.vae = load_vae(config.vae, dtype, device)
        if vae_fingerprint(self.vae) != latent_set.vae:  # another node's copy of the folder differs
            raise RuntimeError(f"the VAE at {config.vae} on this node is not the one the run was started with")

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        rows = json.loads(str(batch["rows"][0]))
        ids = [r["id"] for r in rows]
        sources = self.db.read_blobs("quadruplets", "source_video", ids, version=self.version)
        targets = self.db.read_blobs("quadruplets", "target_video", ids, version=self.version)
        written, rejects = [], []
        head = frames_read(self.set.frames, self.set.sampling)  # a prefix is all that is decoded
        for row, source, target in zip(rows, sources, targets, strict=True):
            try:
                clips = self.set.cut_pair(*(media.decode_video(blob, name=f"quadruplets/{row['id']}/{side}",
                                                               max_frames=head)
                                            for blob, side in ((source, "source"), (target, "target"))))
            except (media.MediaError, ValueError) as e:
                reason = getattr(e, "reason", "undecodable")
                rejects.append(dict(stage=STAGE, input_ref=row["id"], reason=reason, detail=str(e)[:500]))
                continue
            src, tgt = (encode_clips(self.vae, clip[None])[0] for clip in clips)
            written.append(latent_row(self.set, row, self.version, src, tgt, clip_frames=len(clips[0])))
        return {"payload": np.array([pickle.dumps((written, rejects))], dtype=object)}


def encode_latents(db: Lake, config: LatentsConfig, ray_address: str | None = None,
                   progress: bool = False) -> LatentsSummary:
    """Encode every selected quadruplet the set lacks; see the module docstring."""
    import ray

    from lake.progress import progress as progress_bar
    from lake.ray_runtime import NO_RESTARTS, init_ray, max_restarts_accepted

    started = time.perf_counter()
    config = replace(config, vae=str(Path(config.vae).expanduser().resolve()))  # actors run in other folders
    device, dtype = config.resolved()
    latent_set = latent_set_for(config, load_vae(config.vae, dtype, "cpu"))
    todo, version, cached = pending(db, latent_set, config.where)
    summary = LatentsSummary(latent_set.describe(), selected=len(todo) + cached, cached_before=cached)
    if not todo:
        summary.seconds = time.perf_counter() - started
        return summary
    if not ray.is_initialized():
        init_ray(ray_address)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    step = config.rows_per_task
    chunks = [json.dumps(todo[i : i + step], default=str) for i in range(0, len(todo), step)]
    gpus = config.gpus_per_actor if device.startswith("cuda") else 0
    with max_restarts_accepted():
        ds = ray.data.from_items([{"rows": c} for c in chunks], override_num_blocks=len(chunks)).map_batches(
            _Encoder, fn_constructor_args=(db.uri, db.storage_options, config, latent_set, version), batch_size=1,
            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=config.actors), num_gpus=gpus,
            num_cpus=0 if gpus else 1, **NO_RESTARTS)
    lines = progress_bar(len(todo), "latents", "row", enabled=progress)
    buffer, writes = [], 0
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
        written, rejects = pickle.loads(batch["payload"][0])
        buffer += written
        if rejects:
            db.reject_many(rejects)
            summary.rejected += len(rejects)
            for r in rejects:
                summary.rejected_by_reason[r["reason"]] = summary.rejected_by_reason.get(r["reason"], 0) + 1
        if len(buffer) >= config.write_batch:
            db.upsert("latents", buffer)
            summary.encoded += len(buffer)
            buffer, writes = [], writes + 1
            if config.stop_after_writes is not None and writes >= config.stop_after_writes:
                summary.stopped_early = True
                break
        if lines is not None:
            lines.update(len(written) + len(rejects))
    if lines is not None:
        lines.close()
    if buffer and not summary.stopped_early:
        db.upsert("latents", buffer)
        summary.encoded += len(buffer)
    summary.seconds = time.perf_counter() - started
    return summary
