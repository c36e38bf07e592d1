"""Rebalancing strategies: from per-category row counts to per-category shares of an epoch, with explicit
semantics (Kiwi-Edit mixed its sources round-robin and lost background-edit quality; here the mix is chosen).

- natural:            p_c = n_c / N
- uniform:            p_c = 1 / C
- temperature(alpha): p_c ∝ n_c^alpha   (alpha=1 natural, alpha=0 uniform)
- target(props):      p_c = props[c] (normalised; categories left out get 0)
- cap(max_repeats):   UniMax: as uniform as the epoch allows without repeating any category's rows more than
                      max_repeats times (water-filling, smallest categories first)
- cap(max_rows):      at most max_rows samples of any category per epoch, never a repeat

The epoch size defaults to the number of rows available; expected repeats of a row = E * p_c / n_c."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

STRATEGIES = ("natural", "uniform", "temperature", "target", "cap")


@dataclass(frozen=True)
class Strategy:
    name: str
    alpha: float | None = None
    proportions: Mapping[str, float] = field(default_factory=dict)
    max_repeats: float | None = None
    max_rows: int | None = None

    def __post_init__(self):
        if self.name not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.name!r}; choose one of {', '.join(STRATEGIES)}")
        if self.name == "temperature" and (self.alpha is None or self.alpha < 0):
            raise ValueError("temperature needs alpha >= 0 (1 = natural, 0 = uniform)")
        if self.name == "target" and (not self.proportions or any(v < 0 for v in self.proportions.values())
                                      or sum(self.proportions.values()) <= 0):
            raise ValueError("target needs non-negative proportions with a positive sum, e.g. local_add=0.2,...")
        if self.name == "cap" and (self.max_repeats is None) == (self.max_rows is None):
            raise ValueError("cap needs exactly one of max_repeats or max_rows")
        if self.max_repeats is not None and self.max_repeats <= 0:
            raise ValueError("max_repeats must be positive")
        if self.max_rows is not None and self.max_rows <= 0:
            raise ValueError("max_rows must be positive")

    @property
    def label(self) -> str:
        """For titles and legends: 'temperature α=0.3', 'cap ≤2 repeats', 'target local_add 50% · …'."""
        if self.name == "temperature":
            return f"temperature α={self.alpha:g}"
        if self.name == "cap":
            limit = f"{self.max_repeats:g} repeats" if self.max_repeats is not None else f"{self.max_rows} rows"
            return f"cap ≤{limit}"
        if self.name == "target":
            total = sum(self.proportions.values())
            return "target " + " · ".join(f"{k} {v / total:.0%}" for k, v in sorted(self.proportions.items()))
        return self.name

    @property
    def params(self) -> dict:
        out = {k: v for k, v in (("alpha", self.alpha), ("max_repeats", self.max_repeats),
                                 ("max_rows", self.max_rows)) if v is not None}
        if self.proportions:
            out["proportions"] = dict(sorted(self.proportions.items()))
        return out


@dataclass(frozen=True)
class Allocation:
    """Per category: rows available, share before and after, samples per epoch, expected repeats per row."""

    counts: dict[str, int]
    shares: dict[str, float]
    epoch_size: int
    warnings: tuple[str, ...] = ()

    def samples(self) -> dict[str, int]:
        """Samples of each category in one epoch: the largest-remainder rounding of E * p_c (sums to E)."""
        return largest_remainder(self.shares, self.epoch_size)

    def repeats(self) -> dict[str, float]:
        return {c: (self.epoch_size * self.shares[c] / n if n else 0.0) for c, n in self.counts.items()}

    def report(self) -> list[dict]:
        total = sum(self.counts.values())
        samples = self.samples()
        return [dict(category=c, rows=n, share_before=round(n / total, 4) if total else 0.0,
                     share_after=round(self.shares[c], 4), samples_per_epoch=samples[c],
                     expected_repeats=round(self.repeats()[c], 3))
                for c, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def allocate(counts: Mapping[str, int], strategy: Strategy, epoch_size: int | None = None,
             warn_repeats: float = 4.0) -> Allocation:
    counts = {str(c): int(n) for c, n in counts.items() if n > 0}
    if not counts:
        raise ValueError("nothing to balance: every category is empty (check the WHERE filter)")
    total = sum(counts.values())
    if strategy.name == "cap" and strategy.max_rows is not None:
        per = {c: min(n, strategy.max_rows) for c, n in counts.items()}
        size = sum(per.values()) if epoch_size is None else epoch_size
        shares = normalise(per)
    else:
        size = total if epoch_size is None else int(epoch_size)
        shares = _shares(counts, strategy, size)
    alloc = Allocation(counts, shares, size)
    limit = strategy.max_repeats if strategy.name == "cap" and strategy.max_repeats else warn_repeats
    warnings = tuple(f"{c}: each row would repeat {r:.1f} times per epoch (more than {limit:g})"
                     for c, r in alloc.repeats().items() if r > limit + 1e-9)
    return Allocation(counts, shares, size, warnings)


def _shares(counts: dict[str, int], strategy: Strategy, epoch_size: int) -> dict[str, float]:
    if strategy.name == "natural":
        return normalise(counts)
    if strategy.name == "uniform":
        return {c: 1 / len(counts) for c in counts}
    if strategy.name == "temperature":
        return normalise({c: n ** strategy.alpha for c, n in counts.items()})
    if strategy.name == "target":
        unknown = set(strategy.proportions) - set(counts)
        if unknown:
            raise ValueError(f"target names categories with no rows: {sorted(unknown)} (have {sorted(counts)})")
        return normalise({c: float(strategy.proportions.get(c, 0.0)) for c in counts})
    return unimax(counts, epoch_size, strategy.max_repeats)


def unimax(counts: Mapping[str, int], budget: int, max_repeats: float) -> dict[str, float]:
    """UniMax (Chung et al., 2023): spread `budget` samples as evenly as possible over categories, smallest
    first, none taking more than max_repeats x its rows; what a small category cannot take goes to the rest."""
    allocated, remaining = {}, float(budget)
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    for i, (category, n) in enumerate(ordered):
        fair = remaining / (len(ordered) - i)
        allocated[category] = min(fair, n * max_repeats)
        remaining -= allocated[category]
    return normalise(allocated)


def normalise(values: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(values.values()))
    if total <= 0:
        raise ValueError("the strategy gives every category a zero share")
    return {c: v / total for c, v in values.items()}


def largest_remainder(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Integers proportional to `shares` that sum exactly to `total` (ties broken by name, so it is stable)."""
    raw = {c: shares[c] * total for c in shares}
    out = {c: int(v) for c, v in raw.items()}
    left = total - sum(out.values())
    for c in sorted(raw, key=lambda c: (-(raw[c] - out[c]), c))[:left]:
        out[c] += 1
    return out
