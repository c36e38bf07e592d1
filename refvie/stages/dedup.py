"""Near-duplicate detection against everything written so far: exact, at a cost per row that grows slowly and
~140 bytes of memory per kept row.

A batch is compared first in a 32-dimensional orthonormal projection of the keys — projecting onto orthonormal
directions never lengthens a difference, so every true near-duplicate (cosine >= t, i.e. distance <= sqrt(2 - 2t))
is also near in the projection — and only those candidates are checked on the full keys. Rows are decided in
order, each against the bank and the batch's earlier kept rows: the same decisions as checking row by row.

Only the projections live in memory, in a preallocated array that doubles when full (stacking a new array per row
copied the whole bank each time: ~250 MB per row at 100k rows). The full keys (2.5 KB a row at 640 dimensions,
9 GB at the paper's 3.7M pairs) are appended to an unnamed temporary file and read back by offset for the few
candidates the prefilter lets through: from the page cache, outside the process's memory. Pairs are told apart by
a 64-bit hash of their id."""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

PROJECTED = 32  # dimensions of the prefilter: 20x less arithmetic than 640-dimensional keys
SLACK = 1e-4  # float32 rounding in the projected distances; a candidate too many costs one exact check


def pair_hash(pair: str) -> int:
    return int.from_bytes(hashlib.blake2b(str(pair).encode(), digest_size=8).digest(), "little")


class DuplicateBank:
    """Unit keys of the rows kept so far and the pair each came from (a pair is no duplicate of itself). `folder`:
    where the full keys' temporary file goes (default: the system's temporary folder); it is gone on close."""

    def __init__(self, capacity: int = 1024, seed: int = 0, folder: str | os.PathLike | None = None):
        self._capacity, self._seed, self._folder = capacity, seed, folder
        self._projected: np.ndarray | None = None
        self._pair_hashes = np.zeros(capacity, np.uint64)
        self._file = None  # the full keys, float32 rows in order
        self.projection: np.ndarray | None = None
        self.dim = 0
        self.size = 0
        self.exact_checks = 0  # full keys read back from the file (what the prefilter let through)

    @property
    def keys(self) -> np.ndarray:
        """Every banked key (read from the file: for inspection and tests, not for the check)."""
        return self._read(np.arange(self.size)) if self.size else np.zeros((0, self.dim), np.float32)

    @property
    def pair_hashes(self) -> np.ndarray:
        return self._pair_hashes[: self.size]

    @property
    def memory_bytes(self) -> int:
        """What the bank holds in memory (its arrays' capacity): the projections and the pair hashes."""
        return (self._projected.nbytes if self._projected is not None else 0) + self._pair_hashes.nbytes

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self):
        self.close()

    def _shape(self, dim: int) -> None:
        """The first keys fix the width, and the projection: orthonormal columns (QR of a seeded Gaussian)."""
        gaussian = np.random.default_rng(self._seed).normal(size=(dim, min(PROJECTED, dim)))
        self.projection = np.linalg.qr(gaussian)[0].astype(np.float32)
        self.dim = dim
        self._projected = np.zeros((self._capacity, self.projection.shape[1]), np.float32)
        self._file = tempfile.TemporaryFile(prefix="kiwi-dedup-", dir=self._folder)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """Full keys of banked rows, by offset (one read per row; candidates are few)."""
        width = self.dim * 4
        fd = self._file.fileno()
        out = np.empty((len(rows), self.dim), np.float32)
        for i, row in enumerate(rows):
            out[i] = np.frombuffer(os.pread(fd, width, int(row) * width), np.float32)
        return out

    def add(self, keys: np.ndarray, pairs) -> None:
        self._append(keys, np.array([pair_hash(p) for p in pairs], np.uint64))

    def _append(self, keys: np.ndarray, hashes: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys, np.float32)
        if not len(keys):
            return
        if self._projected is None:
            self._shape(keys.shape[1])
        if keys.shape[1] != self.dim:
            raise ValueError(f"keys of {keys.shape[1]} dimensions for a bank of {self.dim}")
        if self.size + len(keys) > len(self._projected):
            capacity = max(2 * len(self._projected), self.size + len(keys))
            for name in ("_projected", "_pair_hashes"):
                old = getattr(self, name)
                grown = np.zeros((capacity, *old.shape[1:]), old.dtype)
                grown[: self.size] = old[: self.size]
                setattr(self, name, grown)
        end = self.size + len(keys)
        os.pwrite(self._file.fileno(), keys.tobytes(), self.size * self.dim * 4)
        self._projected[self.size : end] = keys @ self.projection
        self._pair_hashes[self.size : end] = hashes
        self.size = end

    def check_and_add(self, keys: np.ndarray, pairs: list[str], threshold: float) -> np.ndarray:
        """Which rows of the batch are near-duplicates (cosine >= threshold, another pair) of a banked row or of
        an earlier row of the batch that was kept; the kept rows join the bank. Returns the duplicate mask."""
        keys = np.asarray(keys, np.float32)
        hashes = np.array([pair_hash(p) for p in pairs], np.uint64)
        duplicate = np.zeros(len(keys), bool)
        if self.size:
            rows, banked = self._candidates(keys @ self.projection, self._projected[: self.size], threshold)
            other = hashes[rows] != self._pair_hashes[banked]
            rows, banked = rows[other], banked[other]
            if len(rows):
                unique, where = np.unique(banked, return_inverse=True)
                self.exact_checks += len(unique)
                near = np.einsum("ij,ij->i", keys[rows], self._read(unique)[where]) >= threshold
                duplicate[rows[near]] = True
        within = (keys @ keys.T >= threshold) & (hashes[:, None] != hashes[None, :])
        for row in range(1, len(keys)):  # in order: a row is checked only against earlier rows that were kept
            if not duplicate[row] and (within[row, :row] & ~duplicate[:row]).any():
                duplicate[row] = True
        self._append(keys[~duplicate], hashes[~duplicate])  # each pair hashed once
        return duplicate

    @staticmethod
    def _candidates(query: np.ndarray, bank: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(query row, bank row) pairs whose projections lie within the near-duplicate distance."""
        radius2 = 2.0 - 2.0 * threshold + SLACK
        distance2 = (query * query).sum(1)[:, None] + (bank * bank).sum(1)[None, :] - 2.0 * (query @ bank.T)
        return np.nonzero(distance2 <= radius2)
