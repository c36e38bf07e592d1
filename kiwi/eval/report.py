"""Reports people look at: per-category tables as Markdown, bar charts as PNG, galleries of outputs."""

from __future__ import annotations

import base64
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


def png_tag(rgb: np.ndarray) -> str:
    """An RGB uint8 image as an inline <img> (PNG: exact pixels, readable in a static export)."""
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode an image of shape {rgb.shape} as PNG")
    return f'<img src="data:image/png;base64,{base64.b64encode(png.tobytes()).decode()}">'


def _stills(frames: np.ndarray, size: int) -> np.ndarray:
    """First, middle and last frame side by side, each enlarged to `size` without smoothing."""
    import cv2

    picked = frames[[0, len(frames) // 2, len(frames) - 1]]
    return np.concatenate([cv2.resize(f, (size, size), interpolation=cv2.INTER_NEAREST) for f in picked], 1)


def _run_outputs(db, runs: Mapping[str, str], item_id: str) -> list[np.ndarray | None]:
    """Each run's stored output for one bench item (None where the run did not edit it)."""
    from lake import media

    outputs = []
    for run_id in runs.values():
        (video,) = db.read_blobs("eval_outputs", "video", [f"{run_id}/{item_id}"])
        outputs.append(media.decode_video(video) if video else None)
    return outputs


def outputs_gallery(db, bench: str, runs: Mapping[str, str], item_ids: list[str], config, size: int = 96,
                    still: bool = False) -> str:
    """HTML: one row per bench item with the instruction, the source, the reference image (the edit's other input,
    where the item has one), each run's output and the ground truth as playable clips (re-encoded to H.264 for the
    browser; the lake keeps the lossless originals). `still`
    shows first, middle and last frames side by side instead (PNG, pixels enlarged without smoothing), which
    reads in a static export and shows tiny 32x32 clips."""
    import html

    import cv2

    from kiwi.eval.bench import item_media, load_bench
    from kiwi.eval.runner import conform
    from lake import media
    from lake.viz import video_tag

    items = {i.item_id: i for i in load_bench(db, bench)}

    def clip(frames) -> str:
        return png_tag(_stills(frames, size)) if still else video_tag(media.encode_video(frames), size)

    def image(picture) -> str:
        if picture is None:
            return "<i>none</i>"
        return png_tag(cv2.resize(picture, (size, size), interpolation=cv2.INTER_AREA))

    header = "".join(f"<th>{html.escape(name)}</th>" for name in ["item", "source", "reference", *runs, "target"])
    rows = [f'<table style="border-collapse:collapse"><tr>{header}</tr>']
    for item_id in item_ids:
        item = items[item_id]
        pixels = conform(item_media(db, item), config)
        cells = [f"<b>{html.escape(item.category)}</b><br><small>{html.escape(item.instruction)}</small>",
                 clip(pixels.source), image(pixels.reference)]
        cells += [clip(out) if out is not None else "<i>not run</i>" for out in _run_outputs(db, runs, item_id)]
        cells.append(clip(pixels.target) if pixels.target is not None else "<i>no ground truth</i>")
        rows.append("<tr>" + "".join(f'<td style="padding:4px;vertical-align:top">{c}</td>' for c in cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def outputs_png(db, bench: str, runs: Mapping[str, str], item_ids: list[str], config, path: str | Path,
                size: int = 64) -> Path:
    """A PNG of the same rows as `outputs_gallery(still=True)` — per item the source, each run's output and the
    ground truth, first / middle / last frame each, with the category and the columns named — for a report."""
    import cv2

    from kiwi.eval.bench import item_media, load_bench
    from kiwi.eval.runner import conform

    items = {i.item_id: i for i in load_bench(db, bench)}
    gap, label_w, head_h = 6, 150, 22

    columns = ["source", *runs, "target"]
    cell_w = 3 * size
    width = label_w + len(columns) * (cell_w + gap)
    canvas = np.full((head_h + len(item_ids) * (size + gap), width, 3), 255, np.uint8)
    for c, name in enumerate(columns):
        cv2.putText(canvas, name, (label_w + c * (cell_w + gap), 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for r, item_id in enumerate(item_ids):
        item = items[item_id]
        pixels = conform(item_media(db, item), config)
        top = head_h + r * (size + gap)
        cv2.putText(canvas, item.category, (4, top + size // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
        clips = [pixels.source, *_run_outputs(db, runs, item_id), pixels.target]
        for c, frames in enumerate(clips):
            left = label_w + c * (cell_w + gap)
            canvas[top:top + size, left:left + cell_w] = \
                _stills(frames if frames is not None else np.full_like(pixels.source, 200), size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return path
