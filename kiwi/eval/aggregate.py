"""Aggregation as the papers publish it: a category's score is the mean of all its dimension scores over its items;
the overall score is the unweighted mean of the category means (so a small category weighs as much as a large
one). Categories a bench reports apart (OpenVE's non-aligned ones) are shown but left out of the overall."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# Kiwi-Edit's published OpenVE-Bench category means (the five spatially aligned categories) and overall
PUBLISHED_OPENVE = {"category_means": (3.64, 2.64, 3.83, 2.63, 2.36), "overall": 3.02}


def overall(category_means: Iterable[float]) -> float:
    values = [float(v) for v in category_means if v is not None and not np.isnan(v)]
    if not values:
        raise ValueError("no category means to average")
    return float(np.mean(values))


def category_table(results: pd.DataFrame, metrics: Sequence[str] | None = None,
                   excluded: Iterable[str] = ()) -> pd.DataFrame:
    """Rows of eval_results (columns category, metric, value[, counts_to_overall]) -> one row per category: its
    item count, the mean of each metric, and `score` (the mean over the chosen metrics' values, i.e. of all
    dimensions); plus a last row `overall` (unweighted mean of the category scores that count)."""
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
    table.loc["overall"] = {**{c: np.nan for c in table.columns}, "items": table["items"].sum(),
                            "score": overall(counted), "counts": True}
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
