"""Aggregation as the official scripts compute it: a category's score is the mean of all its dimension scores over
its items. OpenVE-Bench's overall is the unweighted mean of the category means (a small category weighs as much as
a large one); RefVIE-Bench's is pooled, the mean of every score of every item (`pooled=True`; the two agree only
when the categories have equal item counts). Categories a bench reports apart (OpenVE's subtitle, camera and
creative edits) are shown but left out of the overall."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

POOLED_SUITES = {"refvie-bench"}


def overall(category_means: Iterable[float]) -> float:
    values = [float(v) for v in category_means if v is not None and not np.isnan(v)]
    if not values:
        raise ValueError("no category means to average")
    return float(np.mean(values))


def category_table(results: pd.DataFrame, metrics: Sequence[str] | None = None,
                   excluded: Iterable[str] = (), pooled: bool = False) -> pd.DataFrame:
    """Rows of eval_results (columns category, metric, value[, counts_to_overall]) -> one row per category: its
    item count, the mean of each metric, and `score` (the mean over the chosen metrics' values, i.e. of all
    dimensions); plus a last row `overall`: the unweighted mean of the category scores that count, or with
    `pooled` the mean of all their values."""
    frame = results.dropna(subset=["value"])
    if metrics is not None:
        frame = frame[frame["metric"].isin(list(metrics))]
    if frame.empty:
        raise ValueError(f"no results for metrics {list(metrics or [])}")
    per_metric = frame.pivot_table(index="category", columns="metric", values="value", aggfunc="mean")
    table = per_metric.copy()
    table.insert(0, "items", frame.groupby("category")["item_id"].nunique())
    table["score"] = frame.groupby("category")["value"].mean()
    excluded = set(excluded)
    table["counts"] = [c not in excluded for c in table.index]
    counted = table.loc[table["counts"], "score"]
    if pooled:
        values = frame.loc[~frame["category"].isin(excluded), "value"]
        if values.empty:
            raise ValueError("no category scores to pool")
        total = float(values.mean())
    else:
        total = overall(counted)
    table.loc["overall"] = {**{c: np.nan for c in table.columns}, "items": table["items"].sum(),
                            "score": total, "counts": True}
    return table


def metric_table(results: pd.DataFrame, metrics: Sequence[str], excluded: Iterable[str] = ()) -> pd.DataFrame:
    """For reading: one row per category with its item count and the mean of each metric it has, and `overall`
    (per metric, the unweighted mean of the category means that count; blank where no category has it).
    Categories left out of the overall are marked with `*`."""
    frame = results.dropna(subset=["value"])
    frame = frame[frame["metric"].isin(list(metrics))]
    if frame.empty:
        raise ValueError(f"no results for metrics {list(metrics)}")
    table = frame.pivot_table(index="category", columns="metric", values="value", aggfunc="mean")
    table = table[[m for m in metrics if m in table.columns]]
    excluded = set(excluded)
    counted = table.loc[[c for c in table.index if c not in excluded]]
    table.loc["overall"] = counted.mean()
    table.insert(0, "items", frame.groupby("category")["item_id"].nunique())
    table.loc["overall", "items"] = table["items"].drop("overall").sum()
    table["items"] = table["items"].astype(int)
    table.index = [f"{c} *" if c in excluded else c for c in table.index]
    table.index.name, table.columns.name = None, None
    return table


def compare(tables: Mapping[str, pd.DataFrame], column: str = "score",
            difference: tuple[str, str] | None = None) -> pd.DataFrame:
    """Side by side: one column per run (e.g. natural vs rebalanced), rows = categories + overall, and with
    `difference=(a, b)` a column b - a."""
    joined = pd.DataFrame({name: t[column] for name, t in tables.items()})
    if difference:
        a, b = difference
        joined[f"{b} - {a}"] = joined[b] - joined[a]
    return joined
