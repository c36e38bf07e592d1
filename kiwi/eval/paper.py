"""The paper's table beside this project's scores: every scored model on a published bench, per category and
overall, with the figures the Kiwi-Edit paper reports as reference rows, each row marked comparable or not.

A score is comparable with the paper's only when it was produced as the paper's were: the `published` protocol,
the official rubrics (read from the user's copy of upstream's script; their fingerprint is shown), the judge
model the paper used, and every counted item judged. Anything else is still useful — for comparing this project's
own runs with each other — and the table says which condition it misses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kiwi.eval.aggregate import POOLED_SUITES, category_table

OPENVE_CATEGORIES = ("global_style", "background_change", "local_change", "local_remove", "local_add")
REFVIE_CATEGORIES = ("ref_subject", "ref_background")
PAPER_JUDGE = {"openve-bench": "gemini-2.5-pro", "refvie-bench": "gemini-3-flash-preview"}


@dataclass(frozen=True)
class PaperRow:
    method: str
    overall: float
    categories: dict[str, float] = field(default_factory=dict)
    closed_source: bool = False


def _openve(method: str, overall: float, *means: float, closed: bool = False) -> PaperRow:
    return PaperRow(method, overall, dict(zip(OPENVE_CATEGORIES, means, strict=True)), closed)


# Kiwi-Edit paper, Table 2: OpenVE-Bench judged by Gemini-2.5-Pro (overall, then the five categories in order)
PAPER_ROWS = {
    "openve-bench": (
        _openve("Runway Aleph", 3.49, 3.72, 2.62, 4.18, 4.16, 2.78, closed=True),
        _openve("VACE", 1.57, 1.49, 1.55, 2.07, 1.46, 1.26),
        _openve("OmniVideo", 1.19, 1.11, 1.18, 1.14, 1.14, 1.36),
        _openve("InsViE", 1.45, 2.20, 1.06, 1.48, 1.36, 1.17),
        _openve("Lucy-Edit", 2.22, 2.27, 1.57, 3.20, 1.75, 2.30),
        _openve("ICVE", 2.18, 2.22, 1.62, 2.57, 2.51, 1.97),
        _openve("DITTO", 2.13, 4.01, 1.68, 2.03, 1.53, 1.41),
        _openve("OpenVE-Edit", 2.50, 3.16, 2.36, 2.98, 1.85, 2.15),
        _openve("Kiwi-Edit (stage 3, instruct + reference)", 3.02, 3.64, 2.64, 3.83, 2.63, 2.36),
    ),
    "refvie-bench": (PaperRow("Kiwi-Edit (stage 3, instruct + reference)", 3.31),),
}


def _short(model: str) -> str:
    """A model folder's name (its weights' fingerprint cut), or the name given to a folder of outputs."""
    path, _, rest = model.partition("@")
    return Path(path).name + (f"@{rest[:8]}" if rest else "")


def score_details(frame: pd.DataFrame) -> list[dict]:
    return [d if isinstance(d, dict) else json.loads(d) for d in frame["detail"].dropna()]


def comparability(details: list[dict], suite: str, judged: int, expected: int) -> tuple[str, str]:
    """(comparable yes/no with the reasons, the rubric set's fingerprint)."""
    protocols = {d.get("protocol") for d in details}
    judges = {d.get("judge_model") for d in details}
    sets = {d.get("rubric_set") for d in details}
    reasons = []
    if protocols != {"published"}:
        reasons.append(f"protocol {'/'.join(sorted(map(str, protocols)))}")
    if not all(d.get("official") for d in details):
        reasons.append("project rubrics (give --rubrics)")
    if judges != {PAPER_JUDGE.get(suite)}:
        reasons.append(f"judge {'/'.join(sorted(map(str, judges)))} (paper: {PAPER_JUDGE.get(suite)})")
    if judged < expected:
        reasons.append(f"{judged} of {expected} items judged")
    return ("yes" if not reasons else "no: " + "; ".join(reasons)), "/".join(sorted(map(str, sets)))


def paper_table(results: pd.DataFrame, suite: str, expected_items: int, excluded: set[str] = frozenset()) -> \
        pd.DataFrame:
    """One row per (evaluation run, judge) in `results` (eval_results rows of one bench) and one per paper row:
    overall, the categories, whether it is comparable, the judge, the rubric fingerprint and the items judged."""
    categories = OPENVE_CATEGORIES if suite == "openve-bench" else REFVIE_CATEGORIES
    rows = []
    if results.empty or "scorer" not in results:
        results = pd.DataFrame(columns=["run_id", "scorer", "metric", "model", "category", "item_id", "value"])
    judged = results[results["scorer"].astype(str).str.startswith("judge")]
    for (run_id, scorer), part in judged.groupby(["run_id", "scorer"], sort=True):
        part = part[part["metric"] != "judge_mean"]
        table = category_table(part, None, excluded, pooled=suite in POOLED_SUITES)
        details = score_details(part)
        items = part.loc[~part["category"].isin(excluded), "item_id"].nunique()
        comparable, fingerprint = comparability(details, suite, items, expected_items)
        rows.append(dict(model=_short(str(part["model"].iloc[0])), run=run_id, overall=table.loc["overall", "score"],
                         **{c: table["score"].get(c, np.nan) for c in categories},
                         **{f"{c} *": table["score"].get(c, np.nan) for c in sorted(excluded & set(table.index))},
                         items=items, judge=scorer.split(":")[1] if ":" in scorer else "?", rubrics=fingerprint,
                         comparable=comparable))
    for paper in PAPER_ROWS.get(suite, ()):
        rows.append(dict(model=f"paper: {paper.method}" + (" (closed)" if paper.closed_source else ""), run="",
                         overall=paper.overall, **{c: paper.categories.get(c, np.nan) for c in categories},
                         items=np.nan, judge=PAPER_JUDGE.get(suite, ""), rubrics="official", comparable="paper"))
    frame = pd.DataFrame(rows)
    ordered = ["model", "overall", *categories]
    rest = [c for c in frame.columns if c not in ordered]
    return frame[ordered + rest]


def chart(table: pd.DataFrame, suite: str, path: str | Path):
    """Bars per category (and overall) for each row of a `paper_table` (indexed by model); paper rows hatched."""
    import matplotlib

    if matplotlib.get_backend().lower().startswith("qt"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = ["overall", *(OPENVE_CATEGORIES if suite == "openve-bench" else REFVIE_CATEGORIES)]
    values = table[categories].astype(float)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(categories)) + 3.0, 3.8))
    width = 0.8 / max(1, len(values))
    x = np.arange(len(categories))
    for i, (model, row) in enumerate(values.iterrows()):
        paper = str(model).startswith("paper:")
        ax.bar(x + (i - (len(values) - 1) / 2) * width, row.to_numpy(), width, label=str(model)[:48],
               hatch="//" if paper else None, alpha=0.55 if paper else 1.0)
    ax.set_xticks(x, [c.replace("_", "\n") for c in categories], fontsize=8)
    ax.set_ylim(0, 5)
    ax.set_ylabel("judge score (1-5)")
    ax.set_title(f"{suite}: this project beside the paper (hatched)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return fig
