"""Rows a loader decoded, kept for later epochs: a small slice read for many epochs (the CPU experiments) decodes
each clip once, not once per epoch. Keyed by the lake, table, pinned version, geometry, task and row id, so a row
is only ever reused where it would decode to the same pixels; bounded in bytes, least recently used out."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class DecodedRows:
    """Rows of pinned table versions, decoded and preprocessed (everything but the per-epoch reference shrink),
    least recently used out beyond `budget` bytes. Thread-safe: the loader's worker threads share it."""

    def __init__(self, budget: int = 0):
        self.budget, self.used = budget, 0
        self._rows: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict | None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
            return row

    def put(self, key: tuple, row: dict) -> None:
        size = sum(v.nbytes for v in row.values() if isinstance(v, np.ndarray))
        with self._lock:
            if key in self._rows or size > self.budget // 8:
                return
            self._rows[key] = row
            self.used += size
            while self.used > self.budget and self._rows:
                _, old = self._rows.popitem(last=False)
                self.used -= sum(v.nbytes for v in old.values() if isinstance(v, np.ndarray))


DECODED = DecodedRows()  # one per process: every loader in it shares the budget
