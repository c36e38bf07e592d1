"""The rebalancing experiment the paper could not run: the same Kiwi-Edit trained with the same budget, once per
arm (a category mix: natural, uniform, temperature, a deliberately local-heavy target, adaptive) and seed, every
run evaluated per category on the same frozen bench against the ground truth and the do-nothing baseline, and the
arms compared to a baseline arm over seeds (effect sizes with intervals, the smallest detectable effect, a verdict
in plain words; see `kiwi.eval.effects`).

Every arm trains one mixed-task stage (each row on its own task: reference-guided where its edit type has a
reference, instruction editing otherwise), as Kiwi-Edit's last stage mixes them, so background changes are learnt
from their plates and styles and removals from their instructions. Runs, results and adaptive weights land in the
lake (`runs`, `eval_results`, `mix_weights`); the report (Markdown + charts) in the output folder. Rerunning
trains and scores nothing twice: run folders and eval ids are named by every setting that changes the result."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kiwi.curriculum import STAGE3, RunConfig, StageConfig
from kiwi.eval.effects import LOCAL, LOCAL_GROUP, arm_lines, effects, seed_means, verdict, with_fixed_arm
from kiwi.eval.report import markdown_table
from kiwi.eval.runner import EvalConfig, copy_source, evaluate, heldout_loss, results
from kiwi.model.kiwi_edit import MIXED
from lake import Lake
from lake.adaptive import AdaptiveConfig
from lake.balance import Strategy
from lake.slices import build_slice, save_slice

# A deliberately stronger skew than the synthetic world's natural 70/15/15: the paper's stage-3 situation, exaggerated
LOCAL_HEAVY = {"local_add": 0.3, "local_remove": 0.3, "local_change": 0.3, "background_change": 0.05,
               "global_style": 0.05}
ARM_HELP = "natural | uniform | temperature:ALPHA | local-heavy | target:cat=share,... | adaptive[:EVERY]"
# (metric, unit, higher is better): the headline first
HEADLINES = (("psnr", " dB", True), ("edit_psnr", " dB", True), ("masked_psnr", " dB", True), ("flow_loss", "", False))


@dataclass(frozen=True)
class Arm:
    label: str  # as given on the command line: names the run, the results and the report's columns
    strategy: Strategy  # the slice's static mix (adaptive: where it starts)
    adaptive: AdaptiveConfig | None = None


def parse_arm(text: str, update_every: int = 256) -> Arm:
    """'natural', 'uniform', 'temperature:0.3', 'local-heavy', 'target:local_add=0.5,background_change=0.5',
    'adaptive' or 'adaptive:128' (update every 128 samples) -> an Arm."""
    name, _, arg = text.strip().partition(":")
    try:
        if name in ("natural", "uniform") and not arg:
            return Arm(text, Strategy(name))
        if name == "temperature":
            return Arm(text, Strategy("temperature", alpha=float(arg)))
        if name == "local-heavy" and not arg:
            return Arm(text, Strategy("target", proportions=LOCAL_HEAVY))
        if name == "target":
            shares = {k.strip(): float(v) for k, v in (p.split("=") for p in re.split("[;,]", arg))}
            return Arm(text, Strategy("target", proportions=shares))
        if name == "adaptive":
            return Arm(text, Strategy("natural"), AdaptiveConfig(update_every=int(arg) if arg else update_every))
    except ValueError as e:
        raise ValueError(f"arm {text!r}: {e}") from None
    raise ValueError(f"arm {text!r}: not understood; use {ARM_HELP}")


@dataclass(frozen=True)
class ExperimentConfig:
    bench: str
    arms: tuple[str, ...] = ("local-heavy", "natural", "temperature:0.3", "adaptive")
    baseline: str = "natural"  # every other arm is compared with this one, seed by seed
    train_where: str = "split = 'train'"
    model: str = "tiny-edit"  # a KiwiConfig size
    steps: int = 400
    lr: float = 1e-3
    batch_size: int = 8
    lr_schedule: str = "cosine"  # short CPU runs end better decayed (StageConfig.lr_at)
    frames: int = 5
    size: int = 32
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    adaptive_every: int = 256  # samples between adaptive updates (an arm's ':EVERY' overrides)
    evaluation: EvalConfig = field(default_factory=lambda: EvalConfig(frames=5, size=32))
    metrics: tuple[str, ...] = ("psnr", "edit_psnr", "masked_psnr", "ssim", "reference_fidelity")
    # runs trained at once, each in its own process with cores / jobs threads (small models scale better across
    # processes than across threads); evaluation stays in this process
    jobs: int = 1

    def __post_init__(self):
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {self.jobs}")
        if self.baseline not in self.arms:
            raise ValueError(f"the baseline arm {self.baseline!r} must be one of the arms {list(self.arms)}")
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms repeat: {list(self.arms)}")
        for arm in self.arms:
            parse_arm(arm, self.adaptive_every)
        if self.steps <= 0 or not self.seeds:
            raise ValueError("an experiment needs steps > 0 and at least one seed")


@dataclass
class ExperimentResult:
    results: pd.DataFrame  # eval_results rows of every arm and seed, with `arm` and `seed` columns
    copy_source: pd.DataFrame  # the do-nothing baseline's rows
    means: dict[str, pd.DataFrame]  # metric -> per (arm, seed) category means
    effects: dict[str, pd.DataFrame]  # metric -> per (arm, category) effect vs the baseline arm over seeds
    losses: dict[str, list[float]]  # "arm/seed" -> training losses
    training_runs: dict[str, str]  # "arm/seed" -> runs.run_id (joins mix_weights)
    eval_runs: dict[str, str]  # "arm/seed" -> eval run id (eval_results, eval_outputs)
    verdict: str
    against_copy: pd.DataFrame | None = None  # PSNR effects of every arm over copying the source, over seeds
    report: Path | None = None

    def summary(self, metric: str = "psnr") -> pd.DataFrame:
        """Category means over seeds per arm, with the copy-source baseline beside them."""
        table = self.means[metric].groupby(level="arm").mean().T
        table["copy-source"] = copy_means(self.copy_source, metric)
        return table


def copy_means(copy: pd.DataFrame, metric: str) -> pd.Series:
    """The do-nothing baseline's mean per category (and over the local edits)."""
    means = copy[copy["metric"] == metric].groupby("category")["value"].mean()
    local = [c for c in means.index if c in LOCAL]
    if local:
        means[LOCAL_GROUP] = means[local].mean()
    return means


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", text).strip("-")


def run_name(arm: Arm, seed: int, config: ExperimentConfig, slice_id: str, architecture: str = "") -> str:
    """Every setting that changes the trained weights, so a rerun with another budget never reuses a run, and the
    model's `architecture_fingerprint`, so a run folder trained by another version of the model is never resumed."""
    every = f"-every{arm.adaptive.update_every}" if arm.adaptive else ""
    schedule = "" if config.lr_schedule == "constant" else f"-{config.lr_schedule}"
    shape = f"-{architecture}" if architecture else ""
    return (f"{_slug(arm.label)}{every}-{config.model}-{config.steps}x{config.batch_size}-lr{config.lr:g}{schedule}-"
            f"{config.frames}f{config.size}-seed{seed}-{slice_id[:8]}{shape}")


def train_arm(db: Lake, arm: Arm, seed: int, config: ExperimentConfig, out: Path, progress: bool = False):
    """One arm, one seed: its slice saved, one mixed-task stage trained (resumed if a run was cut short). The
    name returned for evaluation carries the trained weights' fingerprint: results of another model that ran
    under the same settings (an earlier architecture, say) are never taken for this one's."""
    from kiwi.checkpoints import load_weights
    from kiwi.model.io import architecture_fingerprint, state_fingerprint
    from kiwi.model.kiwi_edit import KiwiConfig
    from kiwi.runs import read_history
    from kiwi.train import Trainer

    slice_id = save_slice(db, build_slice(db, where=config.train_where, strategy=arm.strategy, seed=seed,
                                          name=f"experiment-{_slug(arm.label)}-seed{seed}"))
    model = KiwiConfig(size=config.model, seed=seed).build()
    name = run_name(arm, seed, config, slice_id, architecture_fingerprint(model))
    stage = StageConfig("mixed", slice_id, MIXED, STAGE3[:-1], config.steps, config.lr, batch_size=config.batch_size,
                        frames=config.frames, size=config.size, adaptive=arm.adaptive, lr_schedule=config.lr_schedule)
    trainer = Trainer(model, db, RunConfig(name, (stage,), seed=seed, checkpoint_every=max(1, config.steps // 2)),
                      out / "runs" / name)
    summary = trainer.train(progress=progress)
    if not summary.history:  # trained before: its weights and curve are on disk
        load_weights(model, out / "runs" / name / "checkpoint")
    losses = [h["loss"] for h in (summary.history or read_history(out / "runs" / name))]
    return model, f"{name}@{state_fingerprint(model)}", trainer.run_id, losses


def _train_one(uri: str, storage_options: dict, arm: Arm, seed: int, config: ExperimentConfig, out: Path,
               threads: int) -> str:
    """A worker process: one arm and seed trained to its checkpoint (the parent then finds it done)."""
    import torch

    import lake

    torch.set_num_threads(threads)
    train_arm(lake.open(uri, storage_options=storage_options, create=False), arm, seed, config, out)
    return f"seed {seed}, arm {arm.label}"


def train_in_parallel(db: Lake, arms: list[Arm], config: ExperimentConfig, out: Path,
                      log: Callable[[str], None] = print) -> None:
    """Every (seed, arm) run trained `config.jobs` at a time in spawned processes (Lance is not fork-safe), each
    with an equal share of the cores; runs already trained finish at once."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // config.jobs)
    pairs = [(arm, seed) for seed in config.seeds for arm in arms]
    log(f"training {len(pairs)} runs, {config.jobs} at a time ({threads} thread{'s' if threads > 1 else ''} each)")
    with ProcessPoolExecutor(config.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, db.uri, db.storage_options, arm, seed, config, out, threads)
                   for arm, seed in pairs]
        for done, future in enumerate(as_completed(futures), 1):
            log(f"  trained {future.result()} ({done}/{len(pairs)})")


def run_experiment(db: Lake, config: ExperimentConfig, out_dir: str | Path, progress: bool = False,
                   log: Callable[[str], None] = print) -> ExperimentResult:
    out = Path(out_dir)
    arms = [parse_arm(a, config.adaptive_every) for a in config.arms]
    if config.jobs > 1:
        train_in_parallel(db, arms, config, out, log)
    frames, losses, training_runs, eval_runs = [], {}, {}, {}
    for seed in config.seeds:
        for arm in arms:
            log(f"seed {seed}, arm {arm.label}: training {config.steps} steps of batch {config.batch_size}")
            model, name, run_id, losses[f"{arm.label}/{seed}"] = train_arm(db, arm, seed, config, out, progress)
            training_runs[f"{arm.label}/{seed}"] = run_id
            run = evaluate(db, model, config.bench, name, config.evaluation, progress=progress)
            heldout_loss(db, model, config.bench, name, config.evaluation, run_id=run.run_id)
            eval_runs[f"{arm.label}/{seed}"] = run.run_id
            frame = results(db, run.run_id).assign(arm=arm.label, seed=seed)
            frames.append(frame)
            psnr = frame[frame["metric"] == "psnr"].groupby("category")["value"].mean()
            log("  psnr " + ", ".join(f"{c} {v:.1f}" for c, v in psnr.items()))
    copy = results(db, evaluate(db, copy_source, config.bench, "copy-source", config.evaluation,
                                progress=progress).run_id)
    pooled = pd.concat(frames, ignore_index=True)
    means = {m: seed_means(pooled, m) for m, _, _ in HEADLINES if (pooled["metric"] == m).any()}
    effect = {m: effects(table, config.baseline, order=list(config.arms)) for m, table in means.items()}
    bias = next((a for a in config.arms if a.startswith(("local-heavy", "target:"))), None)
    against = effects(with_fixed_arm(means["psnr"], "copy-source", copy_means(copy, "psnr")), "copy-source",
                      order=["copy-source", *config.arms])
    text = "\n".join([*arm_lines(against, "copying the source"), verdict(effect["psnr"], config.baseline,
                                                                          bias_arm=bias)])
    result = ExperimentResult(pooled, copy, means, effect, losses, training_runs, eval_runs, text, against)
    result.report = write_report(db, result, config, out)
    return result


def write_report(db: Lake, result: ExperimentResult, config: ExperimentConfig, out: Path) -> Path:
    """report.md with the verdict, the effect tables and the category means, and PNG charts beside it."""
    from kiwi.eval.experiment_charts import arm_chart, loss_chart, weights_chart

    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Rebalancing experiment",
        "",
        (f"Arms {', '.join(f'`{a}`' for a in config.arms)} against `{config.baseline}`" if len(config.arms) > 1
         else f"One arm, `{config.baseline}`, against copying the source") + f"; {config.model}, "
        f"{config.steps} steps of batch {config.batch_size} at lr {config.lr:g} ({config.lr_schedule}), "
        f"{config.frames} frames of "
        f"{config.size}x{config.size}, one mixed-task stage; seeds {list(config.seeds)}; bench `{config.bench}` "
        f"({result.results['item_id'].nunique()} items), sampler {config.evaluation.steps} steps.",
        "",
        "## Verdict",
        "",
        *[f"- {line}" for line in result.verdict.splitlines()],
        "",
    ]
    if result.against_copy is not None:
        lines += ["## Against copying the source (psnr)", "",
                  "Does each arm edit at all? Its PSNR minus the do-nothing baseline's, over seeds:", "",
                  markdown_table(result.against_copy.reset_index().set_index("arm")), ""]
    for metric, unit, higher in HEADLINES:
        if metric not in result.means:
            continue
        summary = result.summary(metric)
        arm_chart(result.means[metric], result.copy_source, metric, unit, out / f"{metric}_by_arm.png")
        lines += [f"## {metric} ({'higher' if higher else 'lower'} is better)", ""]
        if len(config.arms) > 1:
            lines += [f"Difference from `{config.baseline}` over seeds (mean, 95% interval, minimum detectable effect "
                      f"at 80% power):", "", markdown_table(result.effects[metric].reset_index().set_index("arm")), ""]
        lines += ["Mean over seeds per arm, and copying the source:", "", markdown_table(summary), "",
                  f"![{metric} by arm]({metric}_by_arm.png)", ""]
    loss_chart(result.losses, out / "training_loss.png")
    lines += ["## Training", "", "![training loss](training_loss.png)", ""]
    adaptive = {k: v for k, v in result.training_runs.items() if k.split("/")[0].startswith("adaptive")}
    if adaptive and weights_chart(db, adaptive, out / "adaptive_weights.png"):
        lines += ["## Adaptive weights", "", "Category weights after each update (`mix_weights` in the lake, "
                  "joinable with `runs` on run_id):", "", "![adaptive weights](adaptive_weights.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
