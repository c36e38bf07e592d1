"""Deterministic sampling of a slice: (slice, seed, epoch) -> one global sequence of rows, the same on any
number of workers. Rank r of w takes positions r, r+w, r+2w …, so the union over ranks is the single-rank
sequence (elastic), and a `state_dict` taken mid-epoch resumes exactly where it stopped.

Two modes:
- weighted:   i.i.d. draws with each row's weight: category proportions hold in expectation;
- stratified: every batch holds the target mix (largest-remainder counts per batch), rows of a category cycle
              through fresh permutations, so repeats are spread evenly."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.balance import largest_remainder

if TYPE_CHECKING:
    from lake.slices import Slice

MODES = ("weighted", "stratified")


class SliceSampler:
    """`batch_size` is the global batch (all ranks together). `buckets` (one key per slice row, e.g. the frame
    shape a clip is trained at) regroups the sequence so every global batch holds rows of one bucket
    (`bucket_batches`): still one global sequence, so resume and elasticity hold as without."""

    def __init__(self, slice_: Slice, seed: int, epoch: int = 0, rank: int = 0, world_size: int = 1,
                 mode: str = "weighted", batch_size: int = 32, buckets: np.ndarray | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown sampling mode {mode!r}; choose {' or '.join(MODES)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.slice, self.seed, self.epoch = slice_, int(seed), int(epoch)
        self.rank, self.world_size, self.mode, self.batch_size = rank, world_size, mode, int(batch_size)
        if buckets is not None and len(buckets) != len(slice_.ids):
            raise ValueError(f"buckets: {len(buckets)} keys for a slice of {len(slice_.ids)} rows")
        self.buckets = buckets
        self.position = 0  # global positions of this epoch already handed out (by all ranks together)
        self._cache: tuple[int, np.ndarray] | None = None

    # ------------------------------------------------------------------------------------------- sequence
    def sequence(self, epoch: int | None = None) -> np.ndarray:
        """The whole epoch's global sequence of row indices (into `slice.ids`)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch, stable_hash(self.slice.slice_id)])
        seq = self._weighted(rng) if self.mode == "weighted" else self._stratified(rng)
        if self.buckets is not None:
            seq = seq[bucket_batches(self.buckets[seq], self.batch_size)]
        self._cache = (epoch, seq)
        return seq

    def _weighted(self, rng: np.random.Generator) -> np.ndarray:
        weights = self.slice.weights
        return rng.choice(len(weights), size=self.slice.epoch_size, p=weights / weights.sum())

    def _stratified(self, rng: np.random.Generator) -> np.ndarray:
        """Batch b takes cumulative(b+1) - cumulative(b) rows of each category, where cumulative(k) is the
        largest-remainder split of k batches' worth: every batch is as close to the mix as its size allows, and
        categories too small for one slot per batch still get theirs in turn."""
        shares, size = self.slice.allocation.shares, self.batch_size
        batches = self.slice.epoch_size // size
        cumulative = [largest_remainder(shares, b * size) for b in range(batches + 1)]
        totals = cumulative[-1]
        members = {c: np.flatnonzero(self.slice.categories == c) for c in shares}
        streams = {c: _cycled_permutations(rng, idx, totals[c]) for c, idx in members.items() if totals[c]}
        out = np.empty(batches * size, np.int64)
        for b in range(batches):
            chunk = np.concatenate([streams[c][cumulative[b][c] : cumulative[b + 1][c]] for c in streams])
            out[b * size : (b + 1) * size] = rng.permutation(chunk)
        return out

    # ------------------------------------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[str]:
        """Row ids for this rank from the current position to the end of the epoch."""
        seq, ids = self.sequence(), self.slice.ids
        start = self.position + ((self.rank - self.position) % self.world_size)
        for i in range(start, len(seq), self.world_size):
            self.position = i - self.rank + self.world_size
            yield ids[seq[i]]
        self.position = len(seq)

    def remaining_ids(self) -> np.ndarray:
        """This rank's ids from the current position to the end of the epoch, as one array (what `list(self)`
        yields, ~20x faster for bulk use); the position moves to the end."""
        seq = self.sequence()
        start = self.position + ((self.rank - self.position) % self.world_size)
        self.position = len(seq)
        return self.slice.ids[seq[start :: self.world_size]]

    def __len__(self) -> int:
        remaining = max(len(self.sequence()) - self.position, 0)
        return len(range(self.rank, remaining, self.world_size)) if remaining else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = int(epoch), 0

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return dict(slice_id=self.slice.slice_id, table_version=self.slice.table_version, seed=self.seed,
                    epoch=self.epoch, position=self.position, mode=self.mode, batch_size=self.batch_size,
                    bucketed=self.buckets is not None)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume mid-epoch; refuses a state taken on another slice, table version, seed, mode, global batch or
        bucketing (each makes another sequence)."""
        mine = self.state_dict()
        state = {"bucketed": False, **state}  # states from before buckets
        for key in ("slice_id", "table_version", "seed", "mode", "batch_size", "bucketed"):
            if state.get(key) != mine[key]:
                raise ValueError(f"cannot resume: the saved sampler has {key}={state.get(key)!r}, "
                                 f"this one {key}={mine[key]!r}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def bucket_batches(keys: np.ndarray, batch: int) -> np.ndarray:
    """An order of positions 0..n-1 in which every run of `batch` holds one bucket key (aspect-ratio buckets, as
    SDXL-style trainers batch mixed shapes): walking the sequence, each row joins its bucket's queue, and a queue
    that fills a batch is emitted at once, so batches keep the sequence's order and mix. Rows left in unfilled
    queues at the end follow in sequence order, as mixed batches (the loader crops those to their first row's
    shape) and the epoch's last partial batch: nothing is dropped that the unbucketed sequence would keep."""
    order: list[int] = []
    queues: dict[Any, list[int]] = {}
    for position, key in enumerate(keys.tolist()):
        queue = queues.setdefault(key, [])
        queue.append(position)
        if len(queue) == batch:
            order += queue
            queue.clear()
    leftovers = sorted(p for queue in queues.values() for p in queue)
    return np.asarray(order + leftovers, np.int64)


def _cycled_permutations(rng: np.random.Generator, members: np.ndarray, length: int) -> np.ndarray:
    rounds = -(-length // len(members))
    return np.concatenate([rng.permutation(members) for _ in range(rounds)])[:length]


def stable_hash(text: str) -> int:
    """A process-independent 64-bit hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
