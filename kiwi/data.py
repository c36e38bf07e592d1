"""Streaming a curated slice into training: the slice's deterministic sampler gives row ids of the pinned table
version; rows are taken by id (Lance random access, video blobs read as whole payloads, lazily per batch),
decoded and preprocessed, and delivered as `EditBatch`es of torch uint8 tensors (pinned for a GPU), with a bounded
prefetch on worker threads.

Preprocessing follows Kiwi-Edit: 4k+1 frames sampled evenly, resize so the short side is `size` (a multiple of
32) and centre-crop square, reference letterboxed on white with a random 0.7-1.0 shrink in training (seeded by
(seed, epoch, row), so a resumed run sees the same pixels). Resuming at step k yields exactly the batches an
uninterrupted run would have seen: the position lives in the sampler's state."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset

from kiwi import decoded_rows
from kiwi.model.kiwi_edit import MIXED, EditBatch
from kiwi.model.mllm import frame_indices
from lake import Lake, media
from lake.adaptive import AdaptiveConfig, AdaptiveSampler
from lake.clips import SAMPLINGS, fit_frames, frame_shape, frames_read, resize_crop, take_frames
from lake.sampler import SliceSampler
from lake.schema import spec_for
from lake.slices import Slice
from lake.taxonomy import Task


@dataclass(frozen=True)
class DataConfig:
    frames: int = 5  # 4k+1
    size: int = 64  # multiple of 32
    reference_shrink: tuple[float, float] = (0.7, 1.0)
    train: bool = True
    prefetch: int = 2  # batches prepared ahead
    workers: int = 2  # threads preparing them (PyAV and OpenCV release the GIL); order is kept
    ray: bool = False  # prepare batches in Ray Data tasks across the cluster instead of local threads
    pin_memory: bool = False  # page-locked tensors, for fast asynchronous copies to a GPU
    # which frames: "spread" over the clip, or the first ones in a row ("prefix", upstream's training reader)
    sampling: str = "spread"
    # None: short side to `size`, centre-cropped square; a pixel budget: aspect kept (upstream's --max_pixels),
    # sides multiples of 32 — a batch takes its first row's shape, the other rows centre-cropped to it
    max_pixels: int | None = None
    # with a pixel budget and batches of more than one: batches grouped by the frame shape each clip trains at
    # (aspect-ratio buckets, from the table's width / height), so no row is cropped to another's shape
    bucket_by_shape: bool = True
    # the MLLM sees the reference image as the dataset gives it (upstream's training input); the VAE always gets
    # the letterboxed white canvas. False: the MLLM gets the canvas too.
    raw_reference: bool = False
    # rows decoded and resized once, kept in memory (least recently used out) up to this many MiB per process: a
    # small slice read for many epochs (the CPU experiments) decodes each clip once, not once per epoch; clips
    # bigger than an eighth of it (published-size clips) are never kept. 0: decode every time.
    decoded_cache_mb: int = 256
    # a latent set (lake.latents) holding every row's source and target latents for this geometry and the run's VAE:
    # the target clip is then read as latents instead of decoded (the source still is, for the MLLM). The trainer
    # sets it (StageConfig.latents) after checking that the set covers the slice.
    latent_set: str | None = None
    # with a latent set: how many of the source's `frames` the model's MLLM reads (spread over them, as
    # kiwi.model.mllm.frame_indices picks them). Only those are converted to RGB and handed over: the target and
    # the source reach the DiT as latents, so no other frame is used. The trainer sets it; None: all `frames`.
    source_frames: int | None = None

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling={self.sampling!r}: use one of {SAMPLINGS}")
        if self.max_pixels is not None and self.max_pixels < 32 * 32:
            raise ValueError(f"max_pixels={self.max_pixels}: at least 32x32 = 1024 pixels")
        if (self.frames - 1) % 4:
            raise ValueError(f"frames={self.frames}: use 4k+1 (1, 5, 9, … 81)")
        if self.latent_set is not None and self.ray:
            raise ValueError("cached latents are read on the trainer's threads: use ray=False")
        if self.source_frames is not None and (self.latent_set is None or self.source_frames < 1):
            raise ValueError(f"source_frames={self.source_frames}: a positive count, and only with a latent set "
                             "(without one the VAE encodes every source frame)")
        if self.size % 32:
            raise ValueError(f"size={self.size}: use a multiple of 32")


@dataclass
class LoadedBatch:
    step: int
    ids: list[str]
    edit_types: list[str]
    batch: EditBatch


def reference_on_white(image: np.ndarray, size: int | tuple[int, int], shrink: float = 1.0) -> np.ndarray:
    """The reference fitted inside a size x size (or (height, width)) canvas, scaled by `shrink`, centred on
    white: the letterboxing Kiwi-Edit applies at inference (shrink 1) and, with a random shrink, in training."""
    height, width = (size, size) if isinstance(size, int) else size
    scale = shrink * min(height / image.shape[0], width / image.shape[1])
    h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    canvas = np.full((height, width, 3), 255, np.uint8)
    y, x = (height - h) // 2, (width - w) // 2
    canvas[y : y + h, x : x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return canvas


def _shrink(seed: int, epoch: int, row_id: str, low: float, high: float) -> float:
    digest = hashlib.blake2b(f"{seed}\x00{epoch}\x00{row_id}".encode(), digest_size=8).digest()
    return low + (high - low) * int.from_bytes(digest, "big") / 2**64


class SliceLoader(IterableDataset):
    """Batches of one task from a slice, in the sampler's order; `state_dict()` after a batch resumes after it.
    A torch IterableDataset that yields whole batches (use it directly, or in a DataLoader with batch_size=None)."""

    def __init__(self, db: Lake, slice_: Slice, config: DataConfig, batch_size: int, seed: int, task: str,
                 epoch: int = 0, rank: int = 0, world_size: int = 1, mode: str = "weighted",
                 adaptive: AdaptiveConfig | None = None):
        super().__init__()
        self.db, self.slice, self.config, self.batch_size, self.task = db, slice_, config, batch_size, task
        self.sampler: SliceSampler | AdaptiveSampler
        if (config.latent_set is not None and config.max_pixels is not None and batch_size * world_size > 1
                and not config.bucket_by_shape):
            raise ValueError("cached latents are made at each clip's own frame shape: with a pixel budget and "
                             "batches of more than one, batches must be bucketed by shape (bucket_by_shape=True)")
        if adaptive is not None:
            if config.max_pixels is not None and config.bucket_by_shape and batch_size * world_size > 1:
                raise ValueError("adaptive sampling does not bucket batches by frame shape: use batch 1 (upstream's), "
                                 "no pixel budget, or DataConfig(bucket_by_shape=False)")
            lookahead = (config.prefetch + 1) * batch_size * world_size
            if config.ray or adaptive.update_every < lookahead:
                raise ValueError(f"adaptive sampling needs the thread loader and update_every >= {lookahead} "
                                 f"samples ((prefetch + 1) x batch x ranks), so prefetched batches never cross "
                                 f"an update; got update_every={adaptive.update_every}, ray={config.ray}")
            self.sampler = AdaptiveSampler(slice_, seed, adaptive, epoch=epoch, rank=rank, world_size=world_size)
        else:
            buckets = None
            if config.max_pixels is not None and config.bucket_by_shape and batch_size * world_size > 1:
                buckets = shape_buckets(db, slice_, config.max_pixels)
            self.sampler = slice_.sampler(seed=seed, epoch=epoch, rank=rank, world_size=world_size, mode=mode,
                                          batch_size=batch_size * world_size, buckets=buckets)
        self.step = 0

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.step = int(state["step"])

    def __iter__(self) -> Iterator[LoadedBatch]:
        """Batches until the epoch ends (a last partial batch is dropped, so every rank sees full batches)."""
        if isinstance(self.sampler, AdaptiveSampler):
            yield from self._adaptive_batches()
            return
        start_position = self.sampler.position  # a multiple of the global batch: rank r's ids start at it + r
        span = self.batch_size * self.sampler.world_size
        full = (len(self.sampler.sequence()) - start_position) // span  # whole global batches left this epoch
        ids = list(self.sampler.remaining_ids())  # moves the position to the end; set back batch by batch below
        # every rank stops after the same number of batches (a rank with a micro-batch of the partial global batch
        # would otherwise step once more than the others)
        chunks = [ids[i * self.batch_size : (i + 1) * self.batch_size] for i in range(full)]
        prepared = self._ray_prepared(chunks) if self.config.ray else self._thread_prepared(chunks)
        for i, arrays in enumerate(prepared):
            self.step += 1
            self.sampler.position = start_position + (i + 1) * span
            yield LoadedBatch(self.step, chunks[i], arrays["edit_types"], self._batch(arrays))

    def _adaptive_batches(self) -> Iterator[LoadedBatch]:
        """The adaptive sampler's batches: each batch's ids are asked for only when it is prefetched, so weight
        updates made meanwhile (`sampler.update`) shape the batches after them."""
        span = self.batch_size * self.sampler.world_size
        start = self.sampler.position
        count = (self.slice.epoch_size - start) // span
        chunks: dict[int, list[str]] = {}

        def chunk(i: int) -> list[str]:
            chunks[i] = [str(x) for x in self.sampler.rank_ids(start + i * span, start + (i + 1) * span)]
            return chunks[i]

        for i, arrays in enumerate(self._thread_prepared(chunk, count)):
            self.step += 1
            self.sampler.position = start + (i + 1) * span
            yield LoadedBatch(self.step, chunks.pop(i), arrays["edit_types"], self._batch(arrays))

    def _thread_prepared(self, chunks, count: int | None = None) -> Iterator[dict]:
        """Worker threads (PyAV and OpenCV release the GIL), `prefetch` batches ahead, in order. `chunks` is a
        list of id lists, or a function of the batch index (called when that batch is prefetched)."""
        get = chunks if callable(chunks) else chunks.__getitem__
        count = len(chunks) if count is None else count
        with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
            pending = [pool.submit(self._prepare, get(i)) for i in range(min(self.config.prefetch, count))]
            for i in range(count):
                arrays = pending.pop(0).result()
                if i + self.config.prefetch < count:
                    pending.append(pool.submit(self._prepare, get(i + self.config.prefetch)))
                yield arrays

    def _ray_prepared(self, chunks: list[list[str]]) -> Iterator[dict]:
        """Ray Data tasks across the cluster (the lake opened by URI on each worker), `prefetch` batches ahead,
        order preserved: the same arrays the threads make, from machines other than the trainer's."""
        import ray

        if not chunks:
            return
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        dataset = ray.data.from_items([{"chunk": i} for i in range(len(chunks))], override_num_blocks=len(chunks))
        prepare = _RayPrepare(self.db.uri, self.db.storage_options, self.slice, self.config, self.task,
                              self.sampler.seed, self.sampler.epoch, chunks)
        dataset = dataset.map_batches(prepare, batch_size=1, batch_format="numpy", num_cpus=1)
        for row in dataset.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=self.config.prefetch):
            arrays = {k: v[0] for k, v in row.items()}
            arrays["instructions"] = json.loads(str(arrays["instructions"]))
            arrays["edit_types"] = json.loads(str(arrays["edit_types"]))
            arrays["tasks"] = json.loads(str(arrays["tasks"]))
            arrays["mllm_reference"] = _unpack_images(str(arrays["mllm_reference"]))
            if not arrays.pop("has_reference"):
                arrays["reference"] = None
            yield arrays

    def _prepare(self, ids: list[str]) -> dict:
        return prepare_rows(self.db, self.slice, ids, self.config, self.task, self.sampler.seed, self.sampler.epoch)

    def _batch(self, arrays: dict) -> EditBatch:
        latents = arrays.get("latents")
        if latents is not None and self.config.pin_memory:
            latents = {k: v.pin_memory() for k, v in latents.items()}
        return EditBatch(arrays["instructions"], self._tensor(arrays["source"]), self._tensor(arrays["target"]),
                         None if arrays["reference"] is None else self._tensor(arrays["reference"]), self.task,
                         arrays.get("tasks"), mllm_reference=arrays.get("mllm_reference"), latents=latents)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        if not array.flags.writeable:  # Ray Data hands out read-only views of its object store
            array = array.copy()
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.pin_memory() if self.config.pin_memory else tensor


_BUCKETS: dict[tuple, np.ndarray] = {}


def shape_buckets(db: Lake, slice_: Slice, max_pixels: int) -> np.ndarray:
    """Each slice row's bucket: the frame shape its clip trains at under the pixel budget, as one integer
    (height * 2**16 + width; -1 where the table does not know the clip's size). Read once per slice and budget."""
    key = (db.uri, slice_.slice_id, slice_.table_version, max_pixels)
    if key not in _BUCKETS:
        id_column = spec_for(slice_.table).key[0]
        sizes = db.sql(f'SELECT "{id_column}" AS id, width, height FROM {slice_.table}',
                       version={slice_.table: slice_.table_version}).to_pandas().set_index("id")
        sizes = sizes.reindex(list(slice_.ids))
        keys = np.full(len(sizes), -1, np.int64)
        for i, (width, height) in enumerate(zip(sizes["width"], sizes["height"], strict=True)):
            if width == width and height == height:  # not NaN
                h, w = frame_shape(int(height), int(width), max_pixels)
                keys[i] = h * 2**16 + w
        if len(_BUCKETS) >= 8:  # a few slices' worth: a run reopens the same ones every epoch
            _BUCKETS.clear()
        _BUCKETS[key] = keys
    return _BUCKETS[key]


def prepare_rows(db: Lake, slice_: Slice, ids: list[str], config: DataConfig, task: str, seed: int,
                 epoch: int) -> dict:
    """One batch's rows taken by id at the slice's pinned version, decoded and preprocessed: numpy arrays
    (source, target, reference or None) and lists (instructions, edit_types). Rows decoded before at the same
    version and geometry come from `kiwi.decoded_rows.DECODED` (see DataConfig.decoded_cache_mb)."""
    table, version = slice_.table, slice_.table_version
    cacheable = config.decoded_cache_mb > 0 and config.max_pixels is None
    cache = decoded_rows.DECODED
    cache.budget = max(cache.budget, config.decoded_cache_mb << 20) if cacheable else cache.budget
    geometry = (db.uri, table, version, config.frames, config.sampling, config.size, task, config.latent_set,
                config.source_frames)
    rows = {i: cache.get((*geometry, i)) for i in ids} if cacheable else {}
    missing = list(dict.fromkeys(i for i in ids if rows.get(i) is None))
    if missing:
        for row in _decode_rows(db, table, version, missing, config, task):
            rows[row["id"]] = row
            if cacheable:
                cache.put((*geometry, row["id"]), row)
    src, tgt, refs, tasks, raw_refs = [], [], [], [], []
    shape = None  # with a pixel budget: the batch's frame shape, from its first row
    for row_id in ids:
        row = rows[row_id]
        for frames, out in ((row["source"], src), (row["target"], tgt)):
            if config.max_pixels is None:
                out.append(frames)
                continue
            shape = shape or frame_shape(*frames.shape[1:3], config.max_pixels)
            if 0 in shape:
                raise ValueError(f"{table}/{row_id}: frames of {frames.shape[2]}x{frames.shape[1]} are smaller "
                                 f"than 32 pixels")
            out.append(fit_frames(frames, shape) if len(frames) else np.zeros((0, *shape, 3), np.uint8))
        row_task = row["row_task"]
        tasks.append(row_task)
        if row_task.startswith("ref"):
            shrink = _shrink(seed, epoch, row_id, *config.reference_shrink) if config.train else 1.0
            refs.append(reference_on_white(row["reference"], shape or config.size, shrink))
            raw_refs.append(row["reference"])
        elif task == MIXED:  # a white placeholder keeps the batch one array; the row's task says it is unused
            refs.append(np.full((*(shape or (config.size, config.size)), 3), 255, np.uint8))
            raw_refs.append(refs[-1])
    # clips cut to different 4k+1 lengths: the batch takes the shortest (cached latents were cut per row: rows of
    # different lengths cannot share a batch, `_stacked` says so)
    if config.sampling == "prefix_cut" and config.latent_set is None:
        length = min(len(clip) for clip in src + tgt)
        src, tgt = [clip[:length] for clip in src], [clip[:length] for clip in tgt]
    latents = None
    if config.latent_set is not None:
        latents = {side: _stacked([rows[i]["latents"][k] for i in ids], f"{table} {side} latents", config)
                   for k, side in enumerate(("source", "target"))}
    return dict(instructions=[rows[i]["instruction"] for i in ids], edit_types=[rows[i]["edit_type"] for i in ids],
                source=_rows(src), target=_rows(tgt), reference=_rows(refs) if refs else None,
                tasks=tasks if task == MIXED else None,
                mllm_reference=raw_refs if config.raw_reference and refs else None, latents=latents)


def _rows(arrays: list[np.ndarray]) -> np.ndarray:
    """A batch of the rows' arrays: a batch of one is a view of its row (no copy of a 224 MB clip)."""
    return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)


def _stacked(tensors: list[torch.Tensor], what: str, config: DataConfig) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        fix = ("clips cut to different lengths (prefix_cut): train at one sample per rank, as the published recipe "
               "does, or sample 'prefix'") if config.sampling == "prefix_cut" else "bucket batches by shape"
        raise ValueError(f"{what} of different shapes {sorted(shapes)} in one batch: {fix}")
    return torch.stack(tensors)


# A clip at least this many times longer than the frames taken is read in ranges (only what the prefix takes): at
# 81 of Ditto-1M's 101 frames the whole blob costs no more bytes and far fewer requests.
RANGED_READ_LENGTH = 1.5


def mllm_source_indices(config: DataConfig, length: int, count: int) -> np.ndarray:
    """Which of a clip's `count` decoded frames the MLLM reads on the latent path: the frames the stage takes
    (`take_frames`, then the `length` its pair was cut to), then `source_frames` of them spread as the MLLM
    spreads them."""
    taken = take_frames(np.arange(count), config.frames, config.sampling)[:length]
    return taken[frame_indices(len(taken), config.source_frames)]


def _decode_rows(db: Lake, table: str, version: int, ids: list[str], config: DataConfig, task: str) -> list[dict]:
    """Rows read by id and decoded: their frames sampled (and, without a pixel budget, resized and cropped), the
    reference image decoded; what does not change from epoch to epoch."""
    columns = ["id", "instruction", "edit_type", "reference_image"] + (["task"] if task == MIXED else [])
    meta = db.take(table, ids, columns=[*columns, "num_frames"], version=version).to_pylist()
    head = frames_read(config.frames, config.sampling)  # a prefix sampling decodes only what it takes
    long = {r["id"] for r in meta if head is not None and (r["num_frames"] or 0) >= RANGED_READ_LENGTH * head}

    def clips_of(keys: list[str], column: str, keep=None) -> list[np.ndarray]:
        """Whole payloads in one planned read; ranged reads for the clips much longer than what is taken."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for ranged, group in ((False, [i for i in unique if i not in long]), (True, [i for i in unique if i in long])):
            decoded = db.read_videos(table, column, group, version, max_frames=head, ranged=ranged,
                                     keep=keep) if group else []
            found.update(zip(group, decoded, strict=True))
        return [found[i] for i in keys]

    cached, lengths, only_seen = None, [None] * len(ids), False
    if config.latent_set is None:
        sources, targets = clips_of(ids, "source_video"), clips_of(ids, "target_video")
    else:  # the target as latents: its clip is never read
        from lake.latents import read_cached

        # a pair cut shorter (prefix_cut) is taken as it was cut
        cached, lengths = read_cached(db, config.latent_set, ids)
        targets = [None] * len(ids)
        if config.source_frames is None:
            sources = clips_of(ids, "source_video")
        else:  # only the MLLM's frames, of the length the pair was cut to (one read per length)
            only_seen, found = True, {}
            for length in set(lengths):
                group = [i for i, n in zip(ids, lengths, strict=True) if n == length]
                keep = functools.partial(mllm_source_indices, config, length)
                found.update(zip(group, clips_of(group, "source_video", keep), strict=True))
            sources = [found[i] for i in ids]
    rows = []
    for n, (row, s, t) in enumerate(zip(meta, sources, targets, strict=True)):
        cut = []
        for decoded in (s, t):
            if decoded is None:  # the target of a cached row: an empty clip of the source's frame size
                cut.append(cut[0][:0])
                continue
            # the source on the latent path came decoded as the MLLM's frames alone
            frames = decoded if only_seen else take_frames(decoded, config.frames, config.sampling)[:lengths[n]]
            cut.append(resize_crop(frames, config.size) if config.max_pixels is None else frames)
        row_task = row_task_of(row["task"], row["reference_image"] is not None) if task == MIXED else task
        reference = None
        if row_task.startswith("ref"):
            if row["reference_image"] is None:
                raise ValueError(f"{row['id']} has no reference image but the stage's task is {task}")
            reference = media.decode_image(row["reference_image"])
        rows.append(dict(id=row["id"], instruction=row["instruction"], edit_type=row["edit_type"],
                         row_task=row_task, source=cut[0], target=cut[1], reference=reference,
                         latents=None if cached is None else cached[n]))
    return rows


def _pack_images(images: list[np.ndarray] | None) -> str:
    """Raw reference images (sizes differ) through Ray Data: PNG, base64, one JSON string."""
    if images is None:
        return "null"
    return json.dumps([base64.b64encode(media.encode_image(image, "png")).decode() for image in images])


def _unpack_images(text: str) -> list[np.ndarray] | None:
    items = json.loads(text)
    return None if items is None else [media.decode_image(base64.b64decode(item)) for item in items]


def row_task_of(task: str | None, has_reference: bool) -> str:
    """A mixed stage's task for one row: the row's own task (the RefVIE pipeline gives background changes with a
    plate `ref_background`, added or changed subjects with a cut-out `ref_subject`), instruction editing when it
    names none or its reference image is missing."""
    known = {str(t) for t in Task}
    return task if task in known and (not task.startswith("ref") or has_reference) else "instruct"


@functools.lru_cache(maxsize=4)
def _worker_lake(uri: str, storage_options: str) -> Lake:
    """One open lake per worker process (opening checks every table's schema: not per batch)."""
    import lake

    return lake.open(uri, storage_options=json.loads(storage_options), create=False)


class _RayPrepare:
    """`prepare_rows` as a Ray Data batch function: chunk numbers in, one prepared batch out (typed columns:
    lists travel as JSON strings, a missing reference as a flag)."""

    def __init__(self, uri: str, storage_options: dict, slice_: Slice, config: DataConfig, task: str, seed: int,
                 epoch: int, chunks: list[list[str]]):
        self.uri, self.storage_options, self.slice, self.config = uri, storage_options, slice_, config
        self.task, self.seed, self.epoch, self.chunks = task, seed, epoch, chunks

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        db = _worker_lake(self.uri, json.dumps(self.storage_options, sort_keys=True))
        arrays = prepare_rows(db, self.slice, self.chunks[int(batch["chunk"][0])], self.config, self.task,
                              self.seed, self.epoch)
        reference = arrays["reference"]
        return dict(source=arrays["source"][None], target=arrays["target"][None],
                    reference=(reference if reference is not None else np.zeros((1, 1, 1, 3), np.uint8))[None],
                    has_reference=np.array([reference is not None]),
                    instructions=np.array([json.dumps(arrays["instructions"])]),
                    edit_types=np.array([json.dumps(arrays["edit_types"])]),
                    tasks=np.array([json.dumps(arrays["tasks"])]),
                    mllm_reference=np.array([_pack_images(arrays["mllm_reference"])]))
