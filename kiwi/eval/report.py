"""Reports people look at: per-category tables as Markdown, bar charts as PNG, paired comparisons of two runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def bar_chart(table: pd.DataFrame, path: str | Path | None = None, title: str = "", ylabel: str = "score"):
    """One group of bars per category (rows of `table`), one bar per column (run). Returns the figure."""
    import matplotlib

    if path is not None and matplotlib.get_backend().lower().startswith("qt"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(table)), 3.4))
    width = 0.8 / max(1, table.shape[1])
    x = np.arange(len(table))
    for i, column in enumerate(table.columns):
        ax.bar(x + (i - (table.shape[1] - 1) / 2) * width, table[column].to_numpy(dtype=float), width, label=column)
    ax.set_xticks(x, [str(c).replace("_", "\n") for c in table.index], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def paired_difference(results: Mapping[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """Per category, the mean of (second run - first run) over the same items, its standard error and whether it
    stands clear of the noise (a paired t-test at 95%: |mean| > t(n-1) standard errors): the two runs are scored
    on identical items, so the pairing removes the items' own spread."""
    from scipy.stats import t as student
    (a_name, a), (b_name, b) = list(results.items())[:2]
    pick = ["item_id", "category", "value"]
    merged = a[a["metric"] == metric][pick].merge(b[b["metric"] == metric][pick], on=["item_id", "category"],
                                                  suffixes=("_a", "_b")).dropna()
    merged["diff"] = merged["value_b"] - merged["value_a"]
    rows = []
    for category, group in merged.groupby("category"):
        n = len(group)
        se = float(group["diff"].std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        mean = float(group["diff"].mean())
        means = {a_name: group["value_a"].mean(), b_name: group["value_b"].mean()}
        critical = float(student.ppf(0.975, n - 1)) if n > 1 else float("nan")
        rows.append(dict(category=category, items=n, **means, difference=mean, std_error=se,
                         clear_of_noise=bool(n > 2 and abs(mean) > critical * se)))
    return pd.DataFrame(rows).set_index("category")


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    columns = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for index, row in frame.iterrows():
        cells = [str(index)]
        for value in row:
            if isinstance(value, float | np.floating):
                cells.append("" if np.isnan(value) else f"{value:.{digits}f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def outputs_gallery(db, bench: str, runs: Mapping[str, str], item_ids: list[str], config, size: int = 96) -> str:
    """HTML: one row per bench item with the source, each run's output and the ground truth as playable clips
    (re-encoded to H.264 for the browser; the lake keeps the lossless originals) and the instruction."""
    import html

    from kiwi.eval.bench import item_media, load_bench
    from kiwi.eval.runner import conform
    from lake import media
    from lake.viz import video_tag

    items = {i.item_id: i for i in load_bench(db, bench)}

    def clip(frames) -> str:
        return video_tag(media.encode_video(frames), size)

    header = "".join(f"<th>{html.escape(name)}</th>" for name in ["item", "source", *runs, "target"])
    rows = [f'<table style="border-collapse:collapse"><tr>{header}</tr>']
    for item_id in item_ids:
        item = items[item_id]
        pixels = conform(item_media(db, item), config)
        cells = [f"<b>{html.escape(item.category)}</b><br><small>{html.escape(item.instruction)}</small>",
                 clip(pixels.source)]
        for run_id in runs.values():
            (video,) = db.read_blobs("eval_outputs", "video", [f"{run_id}/{item_id}"])
            cells.append(clip(media.decode_video(video)) if video else "<i>not run</i>")
        cells.append(clip(pixels.target) if pixels.target is not None else "<i>no ground truth</i>")
        rows.append("<tr>" + "".join(f'<td style="padding:4px;vertical-align:top">{c}</td>' for c in cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)
