"""The latent cache's contract: which latents a trainer may reuse, and how they are encoded and stored.

A frozen VAE encodes the same clip to the same latents in every epoch of every run, and at the published geometry
those encodes are a third of a training step's FLOPs (`kiwi plan --flops`). `refvie latents` encodes each
quadruplet's source and target once into the `latents` table; the trainer reads them back instead of encoding when
its VAE and its clip geometry are the ones they were made with. Both sides build the same `LatentSet`, cut the clip
with `lake.clips` and encode it with `encode_clips`, so a cached latent is bit for bit what the trainer would
have computed. A latent is keyed by its set and its quadruplet, and carries the quadruplet's `clip_stamp`: a row
rebuilt since (other videos) no longer matches, and is encoded again rather than served stale.

The reference image is not cached: training letterboxes it with a random shrink per (seed, epoch, row), so its
latents differ every epoch (and it is one frame against a clip's 81)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from lake.clips import SAMPLINGS, fit_frames, frame_shape, resize_crop, take_frames

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LatentSet:
    """Everything a latent depends on besides its clip: the VAE (its fingerprint) and how the clip is cut —
    frames and their sampling, and the frame size (`size`: short side, cropped square) or pixel budget."""

    vae: str
    frames: int
    sampling: str = "spread"
    size: int | None = None
    max_pixels: int | None = None

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"frame sampling {self.sampling!r} is not one of {SAMPLINGS}")
        if (self.size is None) == (self.max_pixels is None):
            raise ValueError("a latent set has either a size (short side, cropped square) or a pixel budget")
        if (self.frames - 1) % 4:
            raise ValueError(f"frames={self.frames}: use 4k+1 (1, 5, 9, … 81)")

    @property
    def key(self) -> str:
        digest = hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(), digest_size=8).hexdigest()
        return f"lat-{digest}"

    def describe(self) -> str:
        shape = f"{self.size}x{self.size}" if self.size else f"<= {self.max_pixels} pixels"
        frames = f"{self.frames} frame{'s' if self.frames != 1 else ''}"
        return f"{self.key} (VAE {self.vae}, {frames} {self.sampling}, {shape})"

    def cut(self, frames: np.ndarray) -> np.ndarray:
        """A decoded clip (T, H, W, 3) cut as the trainer cuts it for this geometry."""
        return self._fit(take_frames(frames, self.frames, self.sampling))

    def cut_pair(self, source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A quadruplet's two clips cut as the trainer cuts them: with "prefix_cut" each to its longest 4k+1
        prefix up to `frames`, then both to the shorter of the two, as a batch of one is (kiwi.data)."""
        source, target = (take_frames(c, self.frames, self.sampling) for c in (source, target))
        length = min(len(source), len(target))
        return self._fit(source[:length]), self._fit(target[:length])

    def _fit(self, frames: np.ndarray) -> np.ndarray:
        if self.size is not None:
            return resize_crop(frames, self.size)
        return fit_frames(frames, frame_shape(*frames.shape[1:3], self.max_pixels))


def vae_fingerprint(vae) -> str:
    """A short key of a VAE as it runs: its class, config, and every tensor's name, dtype and bytes (so the same
    weights in bf16 and in fp32 — which encode differently — are two VAEs)."""
    import torch

    digest = hashlib.blake2b(digest_size=8)
    digest.update(type(vae).__name__.encode())
    config = {k: v for k, v in dict(getattr(vae, "config", None) or {}).items() if not k.startswith("_")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())  # not where it was loaded from
    for name, tensor in sorted(vae.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\x00{tensor.dtype}\x00{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encode_clips(vae, frames):
    """uint8 clips (B, T, H, W, 3) (numpy or torch) -> the VAE's latents (B, C, T', H', W'), the mode of its
    posterior, in the VAE's dtype and on its device, before any normalisation."""
    import torch

    parameter = next(vae.parameters())
    pixels = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    x = pixels.to(parameter.device, non_blocking=True).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    with torch.no_grad():
        return vae.encode(x.to(parameter.dtype)).latent_dist.mode()


STAMP_COLUMNS = ["id", "created_at", "source_uri", "target_uri", "num_frames", "width", "height", "pipeline_version"]


def clip_stamp(row: dict) -> str:
    """What a quadruplet's clips were when encoded, from its metadata (`STAMP_COLUMNS`, no video read): a rebuilt
    row gets a new creation time, a re-pointed one new URIs or shape."""
    text = "\x00".join(str(row.get(f)) for f in STAMP_COLUMNS)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def latent_id(latent_set: str, row_id: str) -> str:
    return f"{latent_set}/{row_id}"


def pack(tensor) -> tuple[bytes, str, list[int]]:
    """A latent tensor (C, T', H', W') as blob bytes, dtype name and shape."""
    import torch

    tensor = tensor.detach().cpu().contiguous()
    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise ValueError(f"latents of dtype {dtype}: use one of {DTYPES}")
    return tensor.reshape(-1).view(torch.uint8).numpy().tobytes(), dtype, list(tensor.shape)


def unpack(data: bytes, dtype: str, shape: Sequence[int]):
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(getattr(torch, dtype)).reshape(tuple(shape))


def latent_row(latent_set: LatentSet, row: dict, table_version: int, source, target,
               clip_frames: int | None = None) -> dict:
    """One `latents` row from a quadruplet's metadata row and its two encoded clips, cut to `clip_frames` frames
    (the set's frames unless a "prefix_cut" made them fewer)."""
    (src, dtype, src_shape), (tgt, _, tgt_shape) = pack(source), pack(target)
    return dict(latent_id=latent_id(latent_set.key, row["id"]), latent_set=latent_set.key, id=row["id"],
                clip_stamp=clip_stamp(row), table_version=table_version, vae=latent_set.vae,
                frames=latent_set.frames, sampling=latent_set.sampling, size=latent_set.size,
                max_pixels=latent_set.max_pixels, dtype=dtype, source_shape=src_shape, target_shape=tgt_shape,
                clip_frames=latent_set.frames if clip_frames is None else clip_frames, source_latents=src,
                target_latents=tgt)


def cached_stamps(db, latent_set: str) -> dict[str, str]:
    """id -> clip stamp of every row the set has latents for."""
    if db.count("latents", f"latent_set = '{latent_set}'") == 0:
        return {}
    frame = db.read("latents", columns=["id", "clip_stamp"], where=f"latent_set = '{latent_set}'")
    return dict(zip(frame["id"].to_pylist(), frame["clip_stamp"].to_pylist(), strict=True))


def latent_sets(db) -> list[tuple[LatentSet, int]]:
    """The sets in the lake, each with its row count (for error messages)."""
    if db.count("latents") == 0:
        return []
    rows = db.sql("SELECT any_value(vae) AS vae, any_value(frames) AS frames, any_value(sampling) AS sampling, "
                  "any_value(size) AS size, any_value(max_pixels) AS max_pixels, count(*) AS rows FROM latents "
                  "GROUP BY latent_set ORDER BY latent_set").to_pylist()
    return [(LatentSet(**{k: v for k, v in row.items() if k != "rows"}), row["rows"]) for row in rows]


def clip_lengths(db, latent_set: str, ids: Sequence[str]) -> list[int]:
    """The frames each id's clips were cut to before encoding (fewer than the set's for a short clip under
    "prefix_cut"), in order; a row written before lengths were kept has its set's frames."""
    rows = db.take("latents", [latent_id(latent_set, i) for i in ids], columns=["frames", "clip_frames"]).to_pylist()
    return [_cut_length(r) for r in rows]


def _cut_length(row: dict) -> int:
    return row["frames"] if row["clip_frames"] is None else row["clip_frames"]


def read_latents(db, latent_set: str, ids: Sequence[str]) -> list[tuple]:
    """(source, target) latent tensors for each id, in order."""
    return read_cached(db, latent_set, ids)[0]


def read_cached(db, latent_set: str, ids: Sequence[str]) -> tuple[list[tuple], list[int]]:
    """(source, target) latent tensors for each id and the frames its pair was cut to (`clip_lengths`), in
    order, from one lookup of the rows."""
    keys = [latent_id(latent_set, i) for i in ids]
    meta = db.take("latents", keys, columns=["latent_id", "dtype", "source_shape", "target_shape", "frames",
                                             "clip_frames"]).to_pylist()
    sources = db.read_blobs("latents", "source_latents", keys)
    targets = db.read_blobs("latents", "target_latents", keys)
    latents = [(unpack(s, m["dtype"], m["source_shape"]), unpack(t, m["dtype"], m["target_shape"]))
               for m, s, t in zip(meta, sources, targets, strict=True)]
    return latents, [_cut_length(m) for m in meta]


def uncovered(db, latent_set: str, table: str, version: int, ids: Sequence[str]) -> list[str]:
    """The ids (of `table` at `version`) the set has no fresh latents for: missing, or made from other clips."""
    if table != "quadruplets":
        return list(dict.fromkeys(ids))
    cached = cached_stamps(db, latent_set)
    wanted = list(dict.fromkeys(ids))
    if not cached:
        return wanted
    rows = db.take(table, wanted, columns=STAMP_COLUMNS, version=version).to_pylist()
    return [r["id"] for r in rows if cached.get(r["id"]) != clip_stamp(r)]
