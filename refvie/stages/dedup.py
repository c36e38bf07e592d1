"""Near-duplicate detection against everything written so far: exact, ~150 bytes of memory per kept row, and a
cost per checked row that grows far slower than the bank.

A batch is compared first in a 32-dimensional orthonormal projection of the keys — projecting onto orthonormal
directions never lengthens a difference, so every true near-duplicate (cosine >= t, i.e. distance <= sqrt(2 - 2t))
is also near in the projection — and only those candidates are checked on the full keys. Rows are decided in
order, each against the bank and the batch's earlier kept rows: the same decisions as checking row by row.

Only the projections live in memory, in a preallocated array that doubles when full (stacking a new array per row
copied the whole bank each time: ~250 MB per row at 100k rows). The full keys (2.5 KB a row at 640 dimensions,
9 GB at the paper's 3.7M pairs) are appended to an unnamed temporary file and read back by offset for the few
candidates the prefilter lets through: from the page cache, outside the process's memory. Pairs are told apart by
a 64-bit hash of their id.

Comparing each batch with every banked projection made the check linear in the bank (8 ms a row at 1M rows). Once
the bank holds `CELLS_FROM` rows, its keys are split into cells around k-means centroids (each row in the cell of
its nearest centroid), and a query is compared only with the rows of the cells whose centroid c satisfies
|q - c| <= |q - c_q| + 2r (c_q: the query's nearest centroid, r: the near-duplicate distance). No near-duplicate x
is left out: |q - c_x| <= |q - x| + |x - c_x| <= r + |x - c_q| <= 2r + |q - c_q|. The cells are remade (from
the keys on disk) whenever the bank has grown fourfold, with more of them, so their cost amortises."""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

PROJECTED = 32  # dimensions of the prefilter: 20x less arithmetic than 640-dimensional keys
SLACK = 1e-4  # float32 rounding in the projected distances; a candidate too many costs one exact check
CELLS_FROM = 4096  # below this many banked rows every query scans the whole bank
REGROW = 4  # the cells are remade when the bank has grown this many times since they were made
KMEANS_ITERATIONS = 8
MAX_CELLS = 1024  # remaking the cells assigns every banked key to its nearest centroid: bank x cells x dim work
FULL_SCAN_SHARE = 0.4  # probing more of the bank than this, a batch scans it whole (one product, no gathers)


def pair_hash(pair: str) -> int:
    return int.from_bytes(hashlib.blake2b(str(pair).encode(), digest_size=8).digest(), "little")


class DuplicateBank:
    """Unit keys of the rows kept so far and the pair each came from (a pair is no duplicate of itself). `folder`:
    where the full keys' temporary file goes (default: the system's temporary folder); it is gone on close."""

    def __init__(self, capacity: int = 1024, seed: int = 0, folder: str | os.PathLike | None = None):
        self._capacity, self._seed, self._folder = capacity, seed, folder
        self._projected: np.ndarray | None = None
        self._pair_hashes = np.zeros(capacity, np.uint64)
        self._norms2 = np.zeros(capacity, np.float32)  # squared lengths of the projections, kept, not recomputed
        self._file = None  # the full keys, float32 rows in order
        self.projection: np.ndarray | None = None
        self.dim = 0
        self.size = 0
        self.exact_checks = 0  # full keys read back from the file (what the prefilter let through)
        self.rows_scanned = 0  # banked projections compared with a query (the prefilter's work)
        self._centroids: np.ndarray | None = None  # (cells, dim) in the full key space
        self._centroid_norms2 = np.zeros(0, np.float32)
        self._members: list[np.ndarray] = []  # per cell, its banked rows (grown by doubling, `_member_counts` used)
        self._member_counts = np.zeros(0, np.int64)
        self._cells_made_at = 0

    @property
    def keys(self) -> np.ndarray:
        """Every banked key (read from the file: for inspection and tests, not for the check)."""
        return self._read(np.arange(self.size)) if self.size else np.zeros((0, self.dim), np.float32)

    @property
    def pair_hashes(self) -> np.ndarray:
        return self._pair_hashes[: self.size]

    @property
    def memory_bytes(self) -> int:
        """What the bank holds in memory (its arrays' capacity): projections, their lengths, pair hashes, cells."""
        members = sum(m.nbytes for m in self._members)
        centroids = self._centroids.nbytes if self._centroids is not None else 0
        return (self._projected.nbytes if self._projected is not None else 0) + self._pair_hashes.nbytes \
            + self._norms2.nbytes + members + centroids

    @property
    def cells(self) -> int:
        """How many cells the bank is split into (0: too small yet, every query scans it whole)."""
        return 0 if self._centroids is None else len(self._centroids)

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
            for name in ("_projected", "_pair_hashes", "_norms2"):
                old = getattr(self, name)
                grown = np.zeros((capacity, *old.shape[1:]), old.dtype)
                grown[: self.size] = old[: self.size]
                setattr(self, name, grown)
        end = self.size + len(keys)
        os.pwrite(self._file.fileno(), keys.tobytes(), self.size * self.dim * 4)
        projected = keys @ self.projection
        self._projected[self.size : end] = projected
        self._norms2[self.size : end] = (projected * projected).sum(1)
        self._pair_hashes[self.size : end] = hashes
        start, self.size = self.size, end
        if self.size >= max(CELLS_FROM, REGROW * self._cells_made_at):
            self._make_cells()  # files every banked row, these included
        elif self._centroids is not None:
            self._file_rows(np.arange(start, end), self._nearest(keys))

    # ------------------------------------------------------------------------------------------ cells

    def _nearest(self, keys: np.ndarray) -> np.ndarray:
        return np.argmin(self._centroid_distances(keys), axis=1).astype(np.int32)

    def _centroid_distances(self, keys: np.ndarray) -> np.ndarray:
        squared = (keys * keys).sum(1)[:, None] + self._centroid_norms2[None, :] - 2.0 * (keys @ self._centroids.T)
        return np.sqrt(np.maximum(squared, 0.0))

    def _make_cells(self) -> None:
        """k-means centroids from a sample of the banked keys (read back from the file), then every banked row
        into the cell of its nearest centroid, read in chunks: O(bank) work each time the bank grows fourfold."""
        count = int(min(MAX_CELLS, max(16, 2 * np.sqrt(self.size))))
        rng = np.random.default_rng(self._seed)
        sample = self._read(np.sort(rng.choice(self.size, size=min(self.size, 8 * count), replace=False)))
        self._centroids = sample[rng.choice(len(sample), size=count, replace=False)].copy()
        for _ in range(KMEANS_ITERATIONS):
            self._centroid_norms2 = (self._centroids * self._centroids).sum(1)
            nearest = self._nearest(sample)
            sums = np.zeros_like(self._centroids)
            np.add.at(sums, nearest, sample)
            sizes = np.bincount(nearest, minlength=count)
            filled = sizes > 0  # an empty cell keeps its centroid
            self._centroids[filled] = sums[filled] / sizes[filled, None]
        self._centroid_norms2 = (self._centroids * self._centroids).sum(1)
        self._members = [np.zeros(16, np.int32) for _ in range(count)]
        self._member_counts = np.zeros(count, np.int64)
        chunk = 16384
        for first in range(0, self.size, chunk):
            rows = np.arange(first, min(self.size, first + chunk))
            self._file_rows(rows, self._nearest(self._read_range(first, len(rows))))
        self._cells_made_at = self.size

    def _file_rows(self, rows: np.ndarray, cells: np.ndarray) -> None:
        for cell in np.unique(cells):
            new = rows[cells == cell]
            count = self._member_counts[cell]
            if count + len(new) > len(self._members[cell]):
                grown = np.zeros(max(2 * len(self._members[cell]), count + len(new)), np.int32)
                grown[:count] = self._members[cell][:count]
                self._members[cell] = grown
            self._members[cell][count : count + len(new)] = new
            self._member_counts[cell] = count + len(new)

    def _read_range(self, start: int, count: int) -> np.ndarray:
        width = self.dim * 4
        data = os.pread(self._file.fileno(), width * count, start * width)
        return np.frombuffer(data, np.float32).reshape(count, self.dim)

    def _probe(self, keys: np.ndarray, threshold: float) -> np.ndarray:
        """(queries, cells): the cells that can hold a near-duplicate of each query (the module's docstring says
        why none is missed); rows banked since the cells were made are filed in them too."""
        reach = 2.0 * np.sqrt(max(2.0 - 2.0 * threshold, 0.0)) + SLACK
        distances = self._centroid_distances(keys)
        return distances <= distances.min(axis=1, keepdims=True) + reach

    def _cell_rows(self, cells: np.ndarray) -> np.ndarray:
        return np.concatenate([self._members[c][: self._member_counts[c]] for c in np.flatnonzero(cells)])

    def check_and_add(self, keys: np.ndarray, pairs: list[str], threshold: float) -> np.ndarray:
        """Which rows of the batch are near-duplicates (cosine >= threshold, another pair) of a banked row or of
        an earlier row of the batch that was kept; the kept rows join the bank. Returns the duplicate mask."""
        keys = np.asarray(keys, np.float32)
        hashes = np.array([pair_hash(p) for p in pairs], np.uint64)
        duplicate = np.zeros(len(keys), bool)
        if self.size:
            rows, banked = self._search(keys, threshold)
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

    def _search(self, keys: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(query row, bank row) candidate pairs: against the whole bank's projections, or the probed cells' rows."""
        projected = keys @ self.projection
        probe = self._probe(keys, threshold) if self._centroids is not None else None
        # keys without clusters (or a loose threshold) probe most cells: then one product with the whole bank is
        # cheaper than a gather per query
        if probe is None or (probe @ self._member_counts).sum() > FULL_SCAN_SHARE * len(keys) * self.size:
            self.rows_scanned += len(keys) * self.size
            return self._candidates(projected, self._projected[: self.size], self._norms2[: self.size], threshold)
        queries, banked = [], []
        for i, cells in enumerate(probe):
            rows = self._cell_rows(cells)
            self.rows_scanned += len(rows)
            _, near = self._candidates(projected[i : i + 1], self._projected[rows], self._norms2[rows], threshold)
            queries.append(np.full(len(near), i, np.int64))
            banked.append(rows[near])
        return np.concatenate(queries), np.concatenate(banked)

    @staticmethod
    def _candidates(query: np.ndarray, bank: np.ndarray, bank_norms2: np.ndarray,
                    threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(query row, bank row) pairs whose projections lie within the near-duplicate distance:
        |q - b|^2 <= r^2, written as q.b >= (|q|^2 + |b|^2 - r^2) / 2 so the only pass over the bank is q @ bank.T."""
        radius2 = 2.0 - 2.0 * threshold + SLACK
        bound = 0.5 * ((query * query).sum(1)[:, None] + (bank_norms2[None, :] - radius2))
        return np.nonzero(query @ bank.T >= bound)
