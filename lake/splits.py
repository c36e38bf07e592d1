"""Train / val / bench splits from a stable hash of `pair_id`: a row's split never changes, whatever is appended,
and each category gets the same proportions in expectation (the hash ignores everything but the id)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.90, "val": 0.05, "bench": 0.05}


def split_for(pair_id: str, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, salt: str = "") -> str:
    """The split of one pair: its hash as a number in [0, 1), cut at the cumulative fractions."""
    total = sum(fractions.values())
    if total <= 0 or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be non-negative with a positive sum, got {dict(fractions)}")
    digest = hashlib.blake2b(f"{salt}\x00{pair_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    edge = 0.0
    for name, fraction in fractions.items():
        edge += fraction / total
        if u < edge:
            return name
    return next(reversed(list(fractions)))
