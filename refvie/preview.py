"""A picture of what the data looks like: source | reference | target keyframes, one row per pair, labelled."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lake import Lake, media


@dataclass
class PreviewRow:
    edit_type: str
    instruction: str
    source: np.ndarray  # keyframe (H, W, 3)
    reference: np.ndarray | None
    target: np.ndarray


def synthetic_rows(n: int, seed: int = 0, **config) -> list[PreviewRow]:
    from refvie.synthetic import SyntheticConfig, SyntheticWorld

    world = SyntheticWorld(SyntheticConfig(seed=seed, **config))
    rows = []
    for s in world.samples(n):
        key = len(s.source) // 2
        rows.append(PreviewRow(s.edit_type.value, s.instruction, s.source[key], s.reference, s.target[key]))
    return rows


def lake_rows(db: Lake, n: int, where: str | None = None) -> list[PreviewRow]:
    """Pairs from the lake; the reference shown is the given one, else the ground truth, else none."""
    table = db.read("pairs", columns=["pair_id", "instruction", "gt_edit_type", "given_reference", "gt_reference"],
                    where=where, limit=n)
    ids = table["pair_id"].to_pylist()
    sources = db.read_blobs("pairs", "source_video", ids)
    targets = db.read_blobs("pairs", "target_video", ids)
    rows = []
    for i, row in enumerate(table.to_pylist()):
        src, tgt = media.decode_video(sources[i]), media.decode_video(targets[i])
        ref_bytes = row["given_reference"] or row["gt_reference"]
        rows.append(PreviewRow(row["gt_edit_type"] or "unlabelled", row["instruction"], src[len(src) // 2],
                               media.decode_image(ref_bytes) if ref_bytes else None, tgt[len(tgt) // 2]))
    return rows


def save_grid(rows: Iterable[PreviewRow], out: str | Path, columns_title=("source", "reference", "target")) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    if not rows:
        raise ValueError("nothing to preview: no rows")
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate((row.source, row.reference, row.target)):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is None:
                ax.text(0.5, 0.5, "no reference\n(instruction only)", ha="center", va="center", fontsize=8,
                        color="grey")
            else:
                ax.imshow(image)
            if r == 0:
                ax.set_title(columns_title[c], fontsize=10)
        axes[r][0].set_ylabel(row.edit_type, fontsize=9, fontweight="bold")
        axes[r][1].set_xlabel(textwrap.fill(row.instruction, 60), fontsize=7.5)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
