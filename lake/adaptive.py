"""Adaptive rebalancing: category weights that move during training toward what the model finds hard.

The update is DoReMi's exponentiated-gradient step on the category weights (Xie et al., 2023, "DoReMi: Optimizing
Data Mixtures Speeds Up Language Model Pretraining", Alg. 1), driven online by the training run's own held-out loss
as in online data mixing (Albalak et al., 2023) instead of a separate proxy model:

    excess_c  = loss_c / first_loss_c         the share of its first held-out loss a category still has
    w'_c      ∝ w_c * exp(step_size * (excess_c - mean excess))
    w_c       = (1 - smoothing) * w'_c + smoothing / C
    then capped so no category's rows repeat more than `max_repeats` times an epoch (UniMax water-filling).

Dividing by the category's first loss removes its scale; the caller measures the loss at fixed noise levels (the
flow-matching loss depends on the level), the same for every category and every update.

The sampler keeps every promise of `SliceSampler`: the epoch's global sequence is built in blocks of
`update_every` positions, block k drawn with the weights in force at its start, from a generator keyed by (seed,
epoch, block, slice); the weight history is part of the state, so a resumed sampler (on any number of ranks)
rebuilds the same sequence, and rank r of w takes every w-th position. All ranks must feed `update` the same
losses (all-reduced) at the same position."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.balance import largest_remainder, normalise
from lake.sampler import stable_hash

if TYPE_CHECKING:
    from lake.slices import Slice


@dataclass(frozen=True)
class AdaptiveConfig:
    update_every: int = 64  # global positions (samples) per block; weights change only between blocks
    step_size: float = 1.0  # DoReMi's eta
    smoothing: float = 0.1  # mix with uniform, so no category starves
    max_repeats: float | None = 4.0  # at most this many passes over a category's rows per epoch

    def __post_init__(self):
        if self.update_every <= 0 or self.step_size < 0 or not 0 <= self.smoothing <= 1:
            raise ValueError("adaptive: update_every > 0, step_size >= 0 and 0 <= smoothing <= 1")


def capped(weights: Mapping[str, float], counts: Mapping[str, int], epoch_size: int,
           max_repeats: float | None) -> dict[str, float]:
    """Weights with no category above max_repeats * n_c / E, the excess handed to the others in proportion
    (water-filling); unchanged when no cap binds or when the cap cannot be met by anyone."""
    w = {c: float(v) for c, v in weights.items()}
    if not max_repeats:
        return normalise(w)
    limit = {c: max_repeats * counts[c] / epoch_size for c in w}
    if sum(limit.values()) < 1:  # even capping everything cannot fill an epoch: keep the weights
        return normalise(w)
    fixed: dict[str, float] = {}
    while True:
        free = {c: v for c, v in w.items() if c not in fixed}
        mass = 1.0 - sum(fixed.values())
        scaled = {c: mass * v / sum(free.values()) for c, v in free.items()}
        over = {c for c, v in scaled.items() if v > limit[c] + 1e-12}
        if not over:
            return {**fixed, **scaled}
        fixed.update({c: limit[c] for c in over})


class AdaptiveSampler:
    def __init__(self, slice_: Slice, seed: int, config: AdaptiveConfig = AdaptiveConfig(), epoch: int = 0,
                 rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.slice, self.seed, self.config, self.epoch = slice_, int(seed), config, int(epoch)
        self.rank, self.world_size = rank, world_size
        self.categories = sorted(slice_.allocation.counts)
        self.counts = dict(slice_.allocation.counts)
        start = capped(slice_.allocation.shares, self.counts, slice_.epoch_size, config.max_repeats)
        self.history: list[dict[str, Any]] = [dict(position=0, epoch=self.epoch, weights=start, losses=None)]
        self.first_losses: dict[str, float] | None = None
        self.position = 0
        self._members = {c: np.flatnonzero(slice_.categories == c) for c in self.categories}
        self._taken: dict[int, dict[str, int]] = {0: dict.fromkeys(self.categories, 0)}
        self._permutations: dict[tuple[str, int], np.ndarray] = {}

    # ------------------------------------------------------------------------------------------- weights
    @property
    def weights(self) -> dict[str, float]:
        return dict(self.history[-1]["weights"])

    def weights_at(self, position: int, epoch: int | None = None) -> dict[str, float]:
        """The weights in force at a global position of an epoch (the last update made at or before it)."""
        epoch = self.epoch if epoch is None else epoch
        current = self.history[0]["weights"]
        for entry in self.history:
            if (entry["epoch"], entry["position"]) <= (epoch, position):
                current = entry["weights"]
        return dict(current)

    def update(self, losses: Mapping[str, float], at_position: int | None = None) -> dict[str, float]:
        """New weights from per-category held-out losses (same noise levels every time). They take effect at the
        first block boundary at least one block after `at_position` (default: the sampler's position) — later
        than any block a loader has prefetched, so where they apply does not depend on timing. Categories
        without a loss keep their relative weight."""
        known = {c: float(v) for c, v in losses.items() if c in self.counts and np.isfinite(v) and v > 0}
        if self.first_losses is None:
            self.first_losses = dict(known)
        excess = {c: known[c] / self.first_losses[c] for c in known if c in self.first_losses}
        w = self.weights
        if excess:
            mean = float(np.mean(list(excess.values())))
            w = {c: v * float(np.exp(self.config.step_size * (excess[c] - mean))) if c in excess else v
                 for c, v in w.items()}
        w = normalise(w)
        k = self.config.smoothing
        w = {c: (1 - k) * v + k / len(w) for c, v in w.items()}
        w = capped(w, self.counts, self.slice.epoch_size, self.config.max_repeats)
        block = self.config.update_every
        at = self.position if at_position is None else int(at_position)
        boundary = -(-(at + block) // block) * block
        self.history.append(dict(position=boundary, epoch=self.epoch, weights=w, losses=dict(known)))
        self._taken = {k: v for k, v in self._taken.items() if k * block <= boundary}
        return w

    # ------------------------------------------------------------------------------------------- sequence
    def block(self, k: int) -> np.ndarray:
        """Row indices of block k of this epoch: counts per category from the weights in force at its start
        (largest remainder, so every block holds the mix), rows from per-category permutation streams."""
        size, epoch_size = self.config.update_every, self.slice.epoch_size
        length = min(size, epoch_size - k * size)
        if length <= 0:
            return np.empty(0, np.int64)
        rng = np.random.default_rng([self.seed, self.epoch, k, stable_hash(self.slice.slice_id)])
        counts = largest_remainder(self.weights_at(k * size), length)
        taken = self._taken_before(k)
        parts = []
        for c in self.categories:
            if counts[c]:
                parts.append(self._stream(c, taken[c], counts[c]))
        return rng.permutation(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    def _taken_before(self, k: int) -> dict[str, int]:
        """Rows of each category used by blocks 0..k-1 (from the weight history: derived, never stored)."""
        size = self.config.update_every
        start = max(i for i in self._taken if i <= k)
        taken = dict(self._taken[start])
        for j in range(start, k):
            length = min(size, self.slice.epoch_size - j * size)
            for c, n in largest_remainder(self.weights_at(j * size), length).items():
                taken[c] += n
            self._taken[j + 1] = dict(taken)
        return taken

    def _stream(self, category: str, offset: int, count: int) -> np.ndarray:
        """Positions offset .. offset+count of the category's endless stream of fresh permutations of its rows."""
        members = self._members[category]
        n = len(members)
        out = []
        for i in range(offset, offset + count):
            round_, at = divmod(i, n)
            key = (category, self.epoch, round_)
            if key not in self._permutations:
                rng = np.random.default_rng([self.seed, self.epoch, round_, stable_hash(category),
                                             stable_hash(self.slice.slice_id)])
                self._permutations[key] = members[rng.permutation(n)]
            out.append(self._permutations[key][at])
        return np.array(out, np.int64)

    # ------------------------------------------------------------------------------------------- iteration
    def positions(self, start: int, stop: int) -> np.ndarray:
        """Row indices (into `slice.ids`) at global positions [start, stop) of this epoch, all ranks'. A block
        is built from the weights in force at its start, so ask only for positions an update can no longer
        reach (up to one block past the last `at_position`): what a loader prefetches."""
        size = self.config.update_every
        stop = min(stop, self.slice.epoch_size)
        if start >= stop:
            return np.empty(0, np.int64)
        blocks = [self.block(k) for k in range(start // size, (stop - 1) // size + 1)]
        offset = (start // size) * size
        return np.concatenate(blocks)[start - offset : stop - offset]

    def rank_ids(self, start: int, stop: int) -> np.ndarray:
        """This rank's row ids among global positions [start, stop): positions congruent to its rank."""
        first = start + ((self.rank - start) % self.world_size)
        return self.slice.ids[self.positions(start, stop)[first - start :: self.world_size]]

    def __iter__(self) -> Iterator[str]:
        """Row ids for this rank from the current position on, one block at a time, so weights updated meanwhile
        apply from the block they were meant for. The epoch ends after `epoch_size` positions."""
        size = self.config.update_every
        while self.position < self.slice.epoch_size:
            start = self.position
            stop = min((start // size + 1) * size, self.slice.epoch_size)
            ids = self.rank_ids(start, stop)
            first = start + ((self.rank - start) % self.world_size)
            for n, row in enumerate(ids):
                self.position = first + n * self.world_size - self.rank + self.world_size
                yield row
            self.position = max(self.position, stop)  # the rest of the block is other ranks' positions

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = int(epoch), 0
        self.history.append(dict(position=0, epoch=self.epoch, weights=self.weights, losses=None))
        self._taken, self._permutations = {0: dict.fromkeys(self.categories, 0)}, {}

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return dict(slice_id=self.slice.slice_id, table_version=self.slice.table_version, seed=self.seed,
                    epoch=self.epoch, position=self.position, mode="adaptive",
                    config=dict(update_every=self.config.update_every, step_size=self.config.step_size,
                                smoothing=self.config.smoothing, max_repeats=self.config.max_repeats),
                    history=[dict(e) for e in self.history], first_losses=self.first_losses)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume mid-epoch with the weight history; refuses another slice, version, seed or configuration."""
        mine = self.state_dict()
        for key in ("slice_id", "table_version", "seed", "mode", "config"):
            if state.get(key) != mine[key]:
                raise ValueError(f"cannot resume: the saved sampler has {key}={state.get(key)!r}, "
                                 f"this one {key}={mine[key]!r}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.history = [dict(e) for e in state["history"]]
        self.first_losses = state["first_losses"]
        self._taken, self._permutations = {0: dict.fromkeys(self.categories, 0)}, {}
