"""The experiment's charts: per-category scores of every arm (mean over seeds, bars = 95% interval of that mean,
copying the source as a black tick), training curves, and the adaptive arm's category weights over training."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lake import Lake
from lake.db import in_filter


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower().startswith("qt"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, ax, xlabel: str, ylabel: str, path: Path | None, legend: dict):
    """Labels, legend, layout; saved and closed when `path` is given, else returned for a notebook to show."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(**legend)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        _pyplot().close(fig)
    return fig


def arm_chart(means: pd.DataFrame, copy_source: pd.DataFrame, metric: str, unit: str, path: Path | None = None):
    """Grouped bars: categories on x, one bar per arm; returns the figure (saved when `path` is given)."""
    from scipy.stats import t as student

    plt = _pyplot()
    arms = list(dict.fromkeys(means.index.get_level_values("arm")))
    categories = list(means.columns)
    fig, ax = plt.subplots(figsize=(3.0 + 1.3 * len(categories), 3.4))
    width = 0.8 / max(1, len(arms))
    for k, arm in enumerate(arms):
        table = means.xs(arm, level="arm")
        n = table.notna().sum()
        half = (table.std(ddof=1) / np.sqrt(n)) * [student.ppf(0.975, m - 1) if m > 1 else np.nan for m in n]
        x = np.arange(len(categories)) + (k - (len(arms) - 1) / 2) * width
        ax.bar(x, table.mean(), width, yerr=half.fillna(0), capsize=2, label=arm)
    copy = copy_source[copy_source["metric"] == metric].groupby("category")["value"].mean()
    for i, category in enumerate(categories):
        if category in copy.index:
            ax.hlines(copy[category], i - 0.45, i + 0.45, colors="black", linewidths=2,
                      label="copy source" if i == 0 else None)
    ax.set_xticks(range(len(categories)), [c.replace("_", "\n") for c in categories], fontsize=8)
    return _finish(fig, ax, "", f"{metric}{unit}", path,
                   legend=dict(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0)))


def loss_chart(losses: Mapping[str, list[float]], path: Path | None = None, window: int = 20):
    """Training loss per run (moving average over `window` steps)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3))
    for key, values in losses.items():
        if values:
            smooth = pd.Series(values).rolling(window, min_periods=1).mean()
            ax.plot(range(1, len(values) + 1), smooth, label=key, alpha=0.8, linewidth=1)
    ax.set_yscale("log")
    return _finish(fig, ax, "step", "training loss", path, legend=dict(fontsize=6, ncol=2))


def read_weights(db: Lake, run_ids: Mapping[str, str]) -> pd.DataFrame:
    """mix_weights rows of the given training runs, labelled by their key ("arm/seed")."""
    if not run_ids:
        return pd.DataFrame()
    frame = db.read("mix_weights", where=in_filter("run_id", list(run_ids.values()))).to_pandas()
    label = {v: k for k, v in run_ids.items()}
    return frame.assign(run=frame["run_id"].map(label)).sort_values(["run", "global_step", "category"])


def weights_chart(db: Lake, run_ids: Mapping[str, str], path: Path | None = None):
    """One line per category: its weight after each update, every run (seed) drawn thin. None without rows."""
    frame = read_weights(db, run_ids)
    if frame.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3))
    colours = dict(zip(sorted(frame["category"].unique()), plt.rcParams["axes.prop_cycle"].by_key()["color"],
                       strict=False))
    for (run, category), part in frame.groupby(["run", "category"]):
        first = run == frame["run"].iloc[0]
        ax.plot(part["global_step"], part["weight"], color=colours[category], alpha=0.8 if first else 0.3,
                linewidth=1.5 if first else 0.8, label=category if first else None)
    return _finish(fig, ax, "step", "category weight", path, legend=dict(fontsize=7))
