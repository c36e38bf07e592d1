"""What notebooks show: distribution charts, before/after rebalancing plots, and a gallery of samples with
thumbnails and playable HTML5 video. Notebooks call these; they hold no logic of their own."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from lake.balance import Strategy
    from lake.db import Lake
    from lake.slices import Slice


def bar_chart(table: pa.Table, category: str, value: str, title: str = "", ax=None):
    """A horizontal bar chart of `value` per `category` (e.g. the edit_type_distribution query)."""
    import matplotlib.pyplot as plt

    rows = table.select([category, value]).to_pylist()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1))
    ax.barh([str(r[category]) for r in rows][::-1], [r[value] for r in rows][::-1], color="#4c72b0")
    ax.set_xlabel(value)
    ax.set_title(title or f"{value} by {category}")
    ax.figure.tight_layout()
    return ax


def confusion_heatmap(table: pa.Table, title: str = "given label vs classifier", ax=None):
    """A confusion matrix from rows of (given, predicted, rows) — the `label_confusion` query — with counts in
    the cells; rows are the given labels. An empty table draws an empty chart that says so."""
    import matplotlib.pyplot as plt
    import numpy as np

    from lake.taxonomy import EDIT_TYPES

    rows = table.select(["given", "predicted", "rows"]).to_pylist()
    index = {e: i for i, e in enumerate(EDIT_TYPES)}
    counts = np.zeros((len(EDIT_TYPES), len(EDIT_TYPES)), int)
    for r in rows:
        counts[index[r["given"]], index[r["predicted"]]] += r["rows"]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5))
    ax.imshow(np.log1p(counts), cmap="Blues")
    for i in range(len(EDIT_TYPES)):
        for j in range(len(EDIT_TYPES)):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_xticks(range(len(EDIT_TYPES)), EDIT_TYPES, rotation=40, ha="right")
    ax.set_yticks(range(len(EDIT_TYPES)), EDIT_TYPES)
    ax.set_xlabel("classifier's answer")
    ax.set_ylabel("given label")
    agree = int(np.trace(counts))
    ax.set_title(f"{title}: {agree} of {int(counts.sum())} agree" if counts.sum() else f"{title}: no given labels")
    ax.figure.tight_layout()
    return ax


def before_after(s: Slice, ax=None):
    """Share of each category before (natural) and after the slice's strategy, with expected repeats."""
    import matplotlib.pyplot as plt
    import numpy as np

    report = s.report()
    names = [r["category"] for r in report]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    y = np.arange(len(names))
    ax.barh(y - 0.2, [r["share_before"] for r in report], height=0.4, label="natural", color="#bbbbbb")
    ax.barh(y + 0.2, [r["share_after"] for r in report], height=0.4, label=s.strategy.label, color="#dd8452")
    for i, r in enumerate(report):
        ax.text(r["share_after"], i + 0.2, f"  x{r['expected_repeats']:.2f}", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("share of an epoch")
    ax.set_title(f"{s.table}@{s.table_version}: {s.strategy.label}")
    ax.legend(loc="lower right")
    ax.figure.tight_layout()
    return ax


def compare_strategies(db: Lake, strategies: Sequence[Strategy], where: str | None = None, table: str = "quadruplets"):
    """One before/after panel per strategy on the same rows: the static view of what the curate notebook's
    controls draw one at a time (widgets do not survive an exported notebook; this figure does)."""
    import matplotlib.pyplot as plt

    from lake.slices import build_slice

    slices = [build_slice(db, table=table, strategy=strategy, where=where) for strategy in strategies]
    categories = max(len(s.report()) for s in slices)
    columns = min(2, len(slices))
    grid = -(-len(slices) // columns)
    fig, axes = plt.subplots(grid, columns, figsize=(5.5 * columns, (0.4 * categories + 1.6) * grid), squeeze=False)
    for ax, s in zip(axes.flat, slices, strict=False):
        before_after(s, ax=ax)
        ax.set_title(s.strategy.label, fontsize=10)
        ax.legend(loc="lower right", fontsize=7)
    for ax in list(axes.flat)[len(slices):]:
        ax.set_visible(False)
    fig.suptitle(f"{table}@{slices[0].table_version}" + (f" where {where}" if where else ""), fontsize=10)
    fig.tight_layout()
    return fig


def gallery(db: Lake, ids: Sequence[str] | None = None, n: int = 6, videos: int = 2, table: str = "quadruplets",
            size: int = 128) -> str:
    """HTML: one row per sample with source / reference / target thumbnails and the instruction; the first
    `videos` rows also get playable source and target clips (HTML5 <video>, data URIs)."""
    spec_key = "id" if table == "quadruplets" else "pair_id"
    if ids is None:
        ids = db.read(table, columns=[spec_key], limit=n)[spec_key].to_pylist()
    ids = list(ids)[:n]
    if not ids:
        return "<p>(no rows)</p>"
    columns = [spec_key, "edit_type", "instruction", "thumb_source", "thumb_target", "reference_image"]
    rows = db.take(table, ids, columns=columns).to_pylist()
    sources = db.read_blobs(table, "source_video", ids[:videos]) if videos else []
    targets = db.read_blobs(table, "target_video", ids[:videos]) if videos else []
    out = ['<table style="border-collapse:collapse">',
           "<tr><th>edit</th><th>source</th><th>reference</th><th>target</th></tr>"]
    for i, row in enumerate(rows):
        cells = [f"<b>{html.escape(row['edit_type'])}</b><br><small>{html.escape(row['instruction'])}</small>"
                 f"<br><code>{html.escape(row[spec_key])}</code>"]
        for image, mime in ((row["thumb_source"], "image/jpeg"), (row["reference_image"], "image/png"),
                            (row["thumb_target"], "image/jpeg")):
            cells.append(_img(image, mime, size) if image else "<i>none</i>")
        if i < len(sources) and sources[i] and targets[i]:
            cells[1] += "<br>" + video_tag(sources[i], size)
            cells[3] += "<br>" + video_tag(targets[i], size)
        out.append("<tr>" + "".join(f'<td style="padding:4px;vertical-align:top">{c}</td>' for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _img(data: bytes, mime: str, size: int) -> str:
    return f'<img width="{size}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def video_tag(data: bytes, size: int) -> str:
    """A playable, looping HTML5 <video> of MP4 bytes, inline as a data URI."""
    return (f'<video width="{size}" controls loop muted playsinline>'
            f'<source src="data:video/mp4;base64,{base64.b64encode(data).decode()}" type="video/mp4"></video>')
