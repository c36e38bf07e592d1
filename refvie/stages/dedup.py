"""Near-duplicate detection against everything written so far, exact, at a cost per row that grows slowly.

The bank keeps every kept row's unit key in one preallocated float32 array that doubles when full (amortised O(1)
per row added; stacking a new array per row copied the whole bank each time: ~250 MB per row at 100k rows). A
batch is compared first in a 32-dimensional orthonormal projection of the keys — projecting onto orthonormal
directions never lengthens a difference, so every true near-duplicate (cosine >= t, i.e. distance <= sqrt(2 - 2t))
is also near in the projection — and only those candidates are checked on the full keys. Rows are decided in
order, each against the bank and the batch's earlier kept rows: the same decisions as checking row by row."""

from __future__ import annotations

import numpy as np

PROJECTED = 32  # dimensions of the prefilter: 20x less arithmetic than 640-dimensional keys
SLACK = 1e-4  # float32 rounding in the projected distances; a candidate too many costs one exact check


class DuplicateBank:
    """Unit keys of the rows kept so far and the pair each came from (a pair is no duplicate of itself)."""

    def __init__(self, capacity: int = 1024, seed: int = 0):
        self._capacity, self._seed = capacity, seed
        self._keys = self._projected = None
        self._pairs = np.empty(capacity, dtype=object)
        self.projection: np.ndarray | None = None
        self.size = 0

    @property
    def keys(self) -> np.ndarray:
        return self._keys[: self.size] if self._keys is not None else np.zeros((0, 0), np.float32)

    @property
    def pairs(self) -> np.ndarray:
        return self._pairs[: self.size]

    def _shape(self, dim: int) -> None:
        """The first keys fix the width, and the projection: orthonormal columns (QR of a seeded Gaussian)."""
        gaussian = np.random.default_rng(self._seed).normal(size=(dim, min(PROJECTED, dim)))
        self.projection = np.linalg.qr(gaussian)[0].astype(np.float32)
        self._keys = np.zeros((self._capacity, dim), np.float32)
        self._projected = np.zeros((self._capacity, self.projection.shape[1]), np.float32)

    def add(self, keys: np.ndarray, pairs) -> None:
        keys = np.asarray(keys, np.float32)
        if not len(keys):
            return
        if self._keys is None:
            self._shape(keys.shape[1])
        if self.size + len(keys) > len(self._keys):
            capacity = max(2 * len(self._keys), self.size + len(keys))
            for name in ("_keys", "_projected", "_pairs"):
                old = getattr(self, name)
                grown = np.zeros((capacity, *old.shape[1:]), old.dtype) if old.dtype != object \
                    else np.empty(capacity, dtype=object)
                grown[: self.size] = old[: self.size]
                setattr(self, name, grown)
        end = self.size + len(keys)
        self._keys[self.size : end] = keys
        self._projected[self.size : end] = keys @ self.projection
        self._pairs[self.size : end] = list(pairs)
        self.size = end

    def check_and_add(self, keys: np.ndarray, pairs: list[str], threshold: float) -> np.ndarray:
        """Which rows of the batch are near-duplicates (cosine >= threshold, another pair) of a banked row or of
        an earlier row of the batch that was kept; the kept rows join the bank. Returns the duplicate mask."""
        keys = np.asarray(keys, np.float32)
        pairs_array = np.asarray(pairs, dtype=object)
        duplicate = np.zeros(len(keys), bool)
        if self.size:
            rows, banked = self._candidates(keys @ self.projection, self._projected[: self.size], threshold)
            near = np.einsum("ij,ij->i", keys[rows], self._keys[banked]) >= threshold
            hits = rows[near & (pairs_array[rows] != self.pairs[banked])]
            duplicate[hits] = True
        within = (keys @ keys.T >= threshold) & (pairs_array[:, None] != pairs_array[None, :])
        for row in range(1, len(keys)):  # in order: a row is checked only against earlier rows that were kept
            if not duplicate[row] and (within[row, :row] & ~duplicate[:row]).any():
                duplicate[row] = True
        self.add(keys[~duplicate], pairs_array[~duplicate])
        return duplicate

    @staticmethod
    def _candidates(query: np.ndarray, bank: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(query row, bank row) pairs whose projections lie within the near-duplicate distance."""
        radius2 = 2.0 - 2.0 * threshold + SLACK
        distance2 = (query * query).sum(1)[:, None] + (bank * bank).sum(1)[None, :] - 2.0 * (query @ bank.T)
        return np.nonzero(distance2 <= radius2)
