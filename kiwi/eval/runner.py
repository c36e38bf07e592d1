"""`evaluate`: run a model on every item of a bench, store each output in the lake (`eval_outputs`, the video as a
blob, under the evaluation's run id), then score the outputs with each scorer into `eval_results`.

Both phases resume: an item whose output is stored is not run again, and a (item, scorer) pair with rows is not
scored again, so a killed evaluation picks up where it stopped and a rerun costs nothing. The run id is a hash of
(model, bench, inference settings), so the same evaluation always lands in the same rows.

Two protocols, whose results never share a run: `quick` (a few frames spread over each clip, a small square crop,
outputs stored lossless) for CPU work, and `published` — the benchmarks' own inference as upstream runs it: the
first 81 frames (cut to 4k+1), frames scaled down with the aspect kept to at most 720x1280 pixels and floored to
multiples of 32 (a 1280x720 clip runs at 1280x704), 50 sampler steps, seed 0, the output written as a 15 fps
H.264 MP4 and stored as that file, which is what the judge is shown (with the source file as the bench gives it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from kiwi.data import reference_on_white
from kiwi.eval.bench import BenchItem, ItemMedia, item_media, load_bench
from kiwi.eval.scorers import AutomaticScorer, Case, Scorer
from kiwi.model.flow import keyed_generator
from lake import Lake, media
from lake.clips import MAX_PIXELS, resize_crop, sample_frames
from lake.sql import literal

PROTOCOLS = ("quick", "published")
_QUICK_ONLY, _PUBLISHED_ONLY = ("frames", "size"), ("protocol", "max_frames", "max_pixels", "fps")


@dataclass(frozen=True)
class EvalConfig:
    frames: int = 5  # quick: 4k+1, sampled evenly from each item's source (and target)
    size: int = 64  # quick: multiple of 32, centre crop of the short side
    steps: int = 8  # sampler steps
    seed: int = 0
    instruct_only: bool = False  # every item as an instruction edit (references unused): a model without stage 3
    protocol: str = "quick"  # or "published": the benchmark's own geometry (below) and stored MP4 outputs
    max_frames: int = 81  # published: the first frames of each clip
    max_pixels: int = MAX_PIXELS  # published: 720x1280, aspect kept, sides floored to multiples of 32
    fps: float = 15.0  # published: the outputs' frame rate

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")

    @classmethod
    def published(cls, steps: int = 50, seed: int = 0, instruct_only: bool = False) -> EvalConfig:
        """Upstream's benchmark inference (test_benchmark.py): 81 frames, 720p budget, 50 steps, seed 0."""
        return cls(steps=steps, seed=seed, instruct_only=instruct_only, protocol="published")

    @property
    def is_published(self) -> bool:
        return self.protocol == "published"

    def run_id(self, model_name: str, bench: str) -> str:
        fields = asdict(self)
        for name in _QUICK_ONLY if self.is_published else _PUBLISHED_ONLY:  # quick runs keep their ids
            fields.pop(name)
        text = json.dumps(dict(model=model_name, bench=bench, **fields), sort_keys=True)
        return "eval-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def conform(pixels: ItemMedia, config: EvalConfig) -> ItemMedia:
    """An item's videos at the evaluation geometry with the mask brought alike, so outputs, targets, sources and
    masks line up pixel for pixel: quick, frames sampled and centre-cropped to a square; published, the first
    frames at upstream's benchmark shape (`kiwi.inference.prepare_video`)."""
    from kiwi.inference import prepare_video

    def video(frames):
        if frames is None:
            return None
        if config.is_published:
            return prepare_video(frames, config.max_frames, config.max_pixels)
        return resize_crop(sample_frames(frames, config.frames), config.size)

    mask = None
    if pixels.edit_mask is not None:
        as_image = np.repeat(pixels.edit_mask.astype(np.uint8)[None, ..., None] * 255, 3, axis=-1)
        if config.is_published:
            mask = prepare_video(as_image, 1, config.max_pixels)[0, ..., 0] > 127
        else:
            mask = resize_crop(as_image, config.size)[0, ..., 0] > 127
    return ItemMedia(video(pixels.source), video(pixels.target), pixels.reference, mask, pixels.source_file,
                     pixels.reference_file)


def store_output(output: np.ndarray | bytes, pixels: ItemMedia, config: EvalConfig,
                 name: str = "output") -> tuple[bytes, str]:
    """(the video file to keep, its hash). Published: frames become a 15 fps H.264 MP4 and a given file is kept
    as it is; the hash is the file's, since the file is what the judge sees. Quick: frames are kept lossless
    (stored frames == frames) and hashed; a given file is decoded and brought to the quick geometry first."""
    if config.is_published:
        data = output if isinstance(output, bytes) else media.encode_video(output, fps=config.fps)
        return data, hashlib.sha256(data).hexdigest()
    frames = output
    if isinstance(output, bytes):
        frames = resize_crop(sample_frames(media.decode_video(output, name=name), config.frames), config.size)
    return media.encode_video(frames, codec="ffv1"), output_hash(frames)


def output_hash(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


@dataclass
class EvalRun:
    run_id: str
    bench: str
    model: str
    inferred: int  # items run this time (0 on a finished rerun)
    scored: dict[str, int]  # items scored this time, per scorer
    failures: list[tuple[str, str]]


def _done_outputs(db: Lake, run_id: str) -> set[str]:
    rows = db.read("eval_outputs", columns=["item_id"], where=f"run_id = {literal(run_id)}")
    return set(rows["item_id"].to_pylist())


def _done_scores(db: Lake, run_id: str, scorer: str) -> set[str]:
    rows = db.read("eval_results", columns=["item_id"],
                   where=f"run_id = {literal(run_id)} AND scorer = {literal(scorer)}")
    return set(rows["item_id"].to_pylist())


def _result_id(run_id: str, item_id: str, scorer: str, metric: str) -> str:
    return hashlib.blake2b(f"{run_id}\x00{item_id}\x00{scorer}\x00{metric}".encode(), digest_size=12).hexdigest()


Editor = Callable[[BenchItem, ItemMedia, EvalConfig], np.ndarray | bytes]  # frames, or an encoded video file


def model_editor(model) -> Editor:
    """A Kiwi-Edit model as an editor: `kiwi.edit` on the conformed source (and reference, for reference tasks)."""
    from kiwi.inference import edit

    def run(item: BenchItem, pixels: ItemMedia, config: EvalConfig) -> np.ndarray:
        task = "instruct" if config.instruct_only or pixels.reference is None else item.task
        return edit(model, pixels.source, item.instruction, pixels.reference if task.startswith("ref") else None,
                    task=task, steps=config.steps, seed=config.seed)

    return run


def copy_source(item: BenchItem, pixels: ItemMedia, config: EvalConfig) -> np.ndarray:
    """The do-nothing baseline: the output is the source. Any model worth keeping beats it where edits are
    small, and it marks how much of a metric is plain preservation."""
    return pixels.source


def evaluate(db: Lake, model, bench: str, model_name: str, config: EvalConfig = EvalConfig(),
             scorers: Sequence[Scorer] | None = None, run_id: str | None = None, progress: bool = False,
             limit: int | None = None) -> EvalRun:
    """Run and score. `model` is a KiwiEdit or any editor `(item, pixels, config) -> frames` (e.g. copy_source);
    `limit` stops after that many new inferences (what an interrupted run looks like)."""
    editor = model if callable(model) and not isinstance(model, torch.nn.Module) else model_editor(model)
    items = load_bench(db, bench)
    run_id = run_id or config.run_id(model_name, bench)
    scorers = list(scorers) if scorers is not None else [AutomaticScorer()]
    done = _done_outputs(db, run_id)
    todo = [i for i in items if i.item_id not in done]
    bar = tqdm(total=len(todo), desc="inference", unit="item", disable=not progress)
    inferred = 0
    missing: list[tuple[str, str]] = []
    for item in todo:
        if limit is not None and inferred >= limit:
            break
        pixels = conform(item_media(db, item), config)
        try:
            output = editor(item, pixels, config)
        except FileNotFoundError as e:  # a folder of another model's outputs without this item's file
            missing.append((item.item_id, str(e)))
            bar.update(1)
            continue
        video, digest = store_output(output, pixels, config, name=item.item_id)
        db.upsert("eval_outputs", [dict(output_id=f"{run_id}/{item.item_id}", run_id=run_id, bench=bench,
                                        item_id=item.item_id, model=model_name, video=video,
                                        output_hash=digest, meta=asdict(config))])
        inferred += 1
        bar.update(1)
    bar.close()
    scored: dict[str, int] = {}
    failures: list[tuple[str, str]] = []
    if limit is None or inferred < limit:
        scored, failures = _score(db, run_id, bench, model_name, items, scorers, config)
    if failures:
        db.reject_many([dict(input_ref=f"{run_id}/{item_id}", stage="eval_judge", reason="judge_failed",
                             detail=error) for item_id, error in failures])
    if missing:
        db.reject_many([dict(input_ref=f"{run_id}/{item_id}", stage="eval_outputs", reason="missing_output",
                             detail=error) for item_id, error in missing])
    return EvalRun(run_id, bench, model_name, inferred, scored, failures + missing)


def _score(db: Lake, run_id: str, bench: str, model_name: str, items: list[BenchItem], scorers: list[Scorer],
           config: EvalConfig, chunk: int = 16) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Each scorer on the items it has not scored yet; an item's pixels and output are read and decoded once per
    chunk, whatever the number of scorers. Returns items scored per scorer and the judge's failures."""
    todo = {scorer.name: {i.item_id for i in items} - _done_scores(db, run_id, scorer.name) for scorer in scorers}
    needed = [i for i in items if any(i.item_id in ids for ids in todo.values())]
    counts = {scorer.name: 0 for scorer in scorers}
    failures: list[tuple[str, str]] = []
    for start in range(0, len(needed), chunk):
        part = needed[start : start + chunk]
        keys = [f"{run_id}/{i.item_id}" for i in part]
        hashes = db.take("eval_outputs", keys, columns=["output_hash"])["output_hash"].to_pylist()
        videos = db.read_blobs("eval_outputs", "video", keys)
        cases = [Case(i, conform(item_media(db, i), config), media.decode_video(v, name=k), h,
                      v if config.is_published else None, config.protocol)
                 for i, k, v, h in zip(part, keys, videos, hashes, strict=True)]
        rows = []
        for scorer in scorers:
            mine = [c for c in cases if c.item.item_id in todo[scorer.name]]
            if not mine:
                continue
            known = len(getattr(scorer, "failures", []))
            for case, scores in zip(mine, scorer.score(mine), strict=True):
                item = case.item
                rows += [dict(result_id=_result_id(run_id, item.item_id, scorer.name, s.metric), run_id=run_id,
                              bench=bench, item_id=item.item_id, edit_type=item.edit_type, task=item.task,
                              category=item.category, scorer=scorer.name, metric=s.metric, value=s.value,
                              model=model_name, detail=s.detail) for s in scores]
                counts[scorer.name] += bool(scores)
            failures += getattr(scorer, "failures", [])[known:]  # this call's, not an earlier evaluation's
        if rows:
            db.upsert("eval_results", rows)
    return counts, failures


def results(db: Lake, run_id: str | None = None, bench: str | None = None) -> pd.DataFrame:
    """eval_results rows (optionally one run's or one bench's) with each item's `counts_to_overall`."""
    where = [f"{c} = {literal(v)}" for c, v in (("run_id", run_id), ("bench", bench)) if v is not None]
    frame = db.read("eval_results", where=" AND ".join(where) or None).to_pandas()
    if frame.empty:
        return frame.assign(counts_to_overall=pd.Series(dtype=bool))
    benches = sorted(frame["bench"].unique())
    flags = db.read("bench_items", columns=["bench", "item_id", "counts_to_overall"],
                    where=f"bench IN ({', '.join(literal(b) for b in benches)})").to_pandas()
    return frame.merge(flags, on=["bench", "item_id"], how="left")


def excluded_categories(frame: pd.DataFrame) -> set[str]:
    """Categories whose items do not count toward the overall score."""
    if frame.empty or "counts_to_overall" not in frame:
        return set()
    flags = frame.groupby("category")["counts_to_overall"].apply(lambda s: bool(s.fillna(True).all()))
    return {c for c, counts in flags.items() if not counts}


HELDOUT_SIGMAS = (0.25, 0.5, 0.75)


def heldout_loss(db: Lake, model, bench: str, model_name: str, config: EvalConfig = EvalConfig(),
                 run_id: str | None = None, sigmas: Sequence[float] = HELDOUT_SIGMAS, chunk: int = 8) -> int:
    """The flow-matching loss on bench items with ground truth, at fixed noise levels and seeded noise: what the
    model has learnt per category in latent space, independent of the sampler and of the VAE's decoder (the tiny
    model's VAE is random, so its decoded pixels say little), on each item's task as `evaluate` runs it. Rows:
    scorer `heldout`, metric `flow_loss` (lower is better), resumable like `evaluate`. Returns the number of items
    scored now."""
    from kiwi.model.kiwi_edit import EditBatch

    run_id = run_id or config.run_id(model_name, bench)
    done = _done_scores(db, run_id, "heldout")
    items = [i for i in load_bench(db, bench) if i.item_id not in done]
    model.eval()
    count = 0
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        pixels = [conform(item_media(db, i), config) for i in part]
        usable = [(i, p) for i, p in zip(part, pixels, strict=True) if p.target is not None]
        rows = []
        for item, p in usable:
            task = "instruct" if config.instruct_only or p.reference is None else item.task
            reference = reference_on_white(p.reference, p.source.shape[1:3])[None] if task.startswith("ref") else None
            batch = EditBatch([item.instruction], p.source[None], p.target[None], reference, task)
            losses = []
            for k, s in enumerate(sigmas):
                with torch.no_grad():
                    losses.append(float(model.training_loss(batch, [keyed_generator(config.seed, item.item_id, k)],
                                                            per_sample=True,
                                                            sigma=torch.tensor([s]))[0]))
            rows.append(dict(result_id=_result_id(run_id, item.item_id, "heldout", "flow_loss"), run_id=run_id,
                             bench=bench, item_id=item.item_id, edit_type=item.edit_type, task=item.task,
                             category=item.category, scorer="heldout", metric="flow_loss",
                             value=float(np.mean(losses)), model=model_name,
                             detail=dict(sigmas=list(sigmas), per_sigma=losses)))
        if rows:
            db.upsert("eval_results", rows)
            count += len(rows)
    return count
