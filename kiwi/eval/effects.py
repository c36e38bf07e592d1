"""Effect sizes over seeds: what an experiment can claim.

The unit of replication is the seed (a new initialisation and data order for every arm): per seed and category an
arm's mean over the bench items, minus the baseline arm's mean of the same seed, is one paired observation. Over
n seeds we report the mean difference with a Student-t interval, and the smallest effect the design would detect
(two-sided test at the interval's level, with the given power): MDE = (t_{1-a/2} + t_{power}) * sd / sqrt(n) —
the usual normal-approximation formula with t quantiles, using the spread this run measured."""

from __future__ import annotations

import numpy as np
import pandas as pd

LOCAL = ("local_add", "local_remove", "local_change")
LOCAL_GROUP = "local edits"  # the mean of the three local categories, per seed


def seed_means(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """eval_results rows with `arm` and `seed` columns -> the mean of `metric` per (arm, seed) and category,
    plus the `local edits` group (mean of the local categories of that arm and seed). Columns: categories."""
    rows = frame[frame["metric"] == metric].dropna(subset=["value"])
    means = rows.groupby(["arm", "seed", "category"])["value"].mean().unstack("category")
    local = [c for c in LOCAL if c in means.columns]
    if local:
        means[LOCAL_GROUP] = means[local].mean(axis=1)
    return means


def effects(means: pd.DataFrame, baseline: str, confidence: float = 0.95, power: float = 0.8,
            order: list[str] | None = None) -> pd.DataFrame:
    """Per arm (other than `baseline`, in `order` if given) and category: the mean over seeds of (arm - baseline),
    its interval, the number of seeds, the minimum detectable effect, and `clear` (the interval excludes zero)."""
    from scipy.stats import t as student

    present = list(means.index.get_level_values("arm").unique())
    arms = [a for a in order if a in present] if order else present
    if baseline not in arms:
        raise ValueError(f"baseline arm {baseline!r} is not among the arms {list(arms)}")
    base = means.xs(baseline, level="arm")
    rows = []
    for arm in arms:
        if arm == baseline:
            continue
        other = means.xs(arm, level="arm")
        seeds = other.index.intersection(base.index)
        for category in means.columns:
            d = (other.loc[seeds, category] - base.loc[seeds, category]).dropna().to_numpy()
            n = len(d)
            mean = float(d.mean()) if n else np.nan
            if n >= 2:
                se = float(d.std(ddof=1)) / np.sqrt(n)
                half = float(student.ppf(0.5 + confidence / 2, n - 1)) * se
                detectable = float(student.ppf(0.5 + confidence / 2, n - 1) + student.ppf(power, n - 1)) * se
            else:
                half = detectable = np.nan
            rows.append(dict(arm=arm, category=category, difference=mean, low=mean - half, high=mean + half,
                             seeds=n, detectable=detectable, clear=bool(n >= 2 and abs(mean) > half)))
    columns = ["arm", "category", "difference", "low", "high", "seeds", "detectable", "clear"]
    return pd.DataFrame(rows, columns=columns).set_index(["arm", "category"])  # empty: the baseline arm alone


def with_fixed_arm(means: pd.DataFrame, arm: str, values: pd.Series) -> pd.DataFrame:
    """`means` plus an arm that scores `values` (per category) under every seed: a deterministic baseline such as
    copying the source, so `effects(..., baseline=arm)` gives each trained arm's gain over it with intervals over
    the trained arms' seeds."""
    seeds = means.index.get_level_values("seed").unique()
    fixed = pd.DataFrame([values.reindex(means.columns).to_numpy()] * len(seeds), columns=means.columns,
                         index=pd.MultiIndex.from_product([[arm], seeds], names=["arm", "seed"]))
    return pd.concat([means, fixed])


def arm_lines(table: pd.DataFrame, baseline: str, unit: str = " dB") -> list[str]:
    """One line per arm of an `effects` table: its difference from `baseline` on background_change, global_style
    and the local edits, with intervals."""
    lines = []
    for arm in dict.fromkeys(table.index.get_level_values("arm")):
        part = table.loc[arm]
        said = [f"{c} {describe(part.loc[c], unit)}" for c in ("background_change", "global_style", LOCAL_GROUP)
                if c in part.index]
        lines.append(f"{arm} vs {baseline}: " + "; ".join(said) + ".")
    return lines


def describe(row: pd.Series, unit: str, confidence: float = 0.95) -> str:
    """One effect in words: '+3.2 dB [2.1, 4.3]' and whether it is clear."""
    if row["seeds"] < 2:
        return f"{row['difference']:+.2f}{unit} (one seed: no interval)"
    words = ("clearly better" if row["difference"] > 0 else "clearly worse") if row["clear"] else "no clear difference"
    return (f"{row['difference']:+.2f}{unit} [{row['low']:+.2f}, {row['high']:+.2f}] ({words}; "
            f"{round(100 * confidence)}% interval over {int(row['seeds'])} seeds)")


def verdict(table: pd.DataFrame, baseline: str, unit: str = " dB", higher_is_better: bool = True,
            bias_arm: str | None = None, power: float = 0.8) -> str:
    """The experiment's answer in plain words, from an `effects` table of the headline metric: does the baseline
    mix leave background_change behind (the rebalanced arms gain there; a deliberately more local-heavy arm loses
    there), and does each rebalancing close the gap without costing the local edits? Whatever the answer."""
    sign = 1 if higher_is_better else -1
    arms = list(dict.fromkeys(table.index.get_level_values("arm")))
    if not arms:
        return f"Only `{baseline}` was trained: no other mix to compare it with (see it against copying the source)."
    lines = arm_lines(table, baseline, unit)
    n = int(table["seeds"].max()) if len(table) else 0
    if n < 2:
        lines.append("One seed only: the run-to-run spread is not measured, so no difference can be called real. "
                     "Run at least five seeds.")
        return "\n".join(lines)

    def gain(arm: str, category: str) -> str:
        if (arm, category) not in table.index:
            return "absent"
        row = table.loc[(arm, category)]
        if not row["clear"]:
            return "none"
        return "gain" if sign * row["difference"] > 0 else "loss"

    rebalanced = [a for a in arms if a != bias_arm]
    if bias_arm in arms:
        effect = gain(bias_arm, "background_change")
        lines.append({"loss": f"The bias reproduces: the more local-heavy `{bias_arm}` mix leaves background_change "
                              f"clearly behind `{baseline}`.",
                      "gain": f"Unexpected: the more local-heavy `{bias_arm}` mix does better on background_change.",
                      }.get(effect, f"The bias does not show at this budget: `{bias_arm}` and `{baseline}` differ on "
                                    f"background_change by less than the seeds can resolve."))
    gaining = [a for a in rebalanced if gain(a, "background_change") == "gain"]
    if gaining:
        lines.append(f"`{baseline}` leaves background_change behind: {', '.join(f'`{a}`' for a in gaining)} "
                     f"clearly improve it.")
    elif rebalanced:
        lines.append(f"No rebalanced arm clearly improves background_change over `{baseline}` at this budget.")
    for arm in rebalanced:
        background, local = gain(arm, "background_change"), gain(arm, LOCAL_GROUP)
        moves = {"gain": "improves background_change", "loss": "does worse on background_change",
                 "none": "does not clearly move background_change"}.get(background, "is not measured on it")
        cost = {"loss": "and costs the local edits", "gain": "and the local edits gain too",
                "none": "with no clear cost on the local edits"}.get(local, "")
        lines.append(f"`{arm}` {moves} {cost}.".replace(" .", "."))
    detectable = table.xs("background_change", level="category")["detectable"] \
        if "background_change" in table.index.get_level_values("category") else pd.Series(dtype=float)
    if len(detectable.dropna()):
        lines.append(f"With {n} seeds an effect on background_change of about {detectable.median():.2f}{unit} would be "
                     f"detected with {round(100 * power)}% power (from the spread measured here; smaller effects "
                     f"may exist unseen).")
    return "\n".join(lines)
