"""Runs from a notebook: launch training in the background, watch its loss, stop and resume it, compare runs.
The notebook only calls these; the metrics come from each run's `metrics.jsonl`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from kiwi.curriculum import RunConfig
from kiwi.model.kiwi_edit import KiwiEdit
from kiwi.train import RunSummary, Trainer
from lake import Lake


class BackgroundRun:
    """A training run on a daemon thread; `stop()` asks it to checkpoint and end after the current step."""

    def __init__(self, model: KiwiEdit, db: Lake, run: RunConfig, out_dir: str | Path, resume: bool = True):
        self.out = Path(out_dir)
        self.trainer = Trainer(model, db, run, out_dir)
        self._stop = threading.Event()
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(resume,), daemon=True, name=f"kiwi-{run.name}")

    def _run(self, resume: bool) -> None:
        try:
            self.summary = self.trainer.train(resume=resume, should_stop=self._stop.is_set)
        except BaseException as e:  # noqa: BLE001 - surfaced to the notebook by wait()
            self.error = e

    def start(self) -> BackgroundRun:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> RunSummary | None:
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.summary

    def history(self) -> list[dict]:
        return read_history(self.out)


def launch(db: Lake, video_slice, reference_slice, steps: tuple[int, int, int], out_dir: str | Path, name: str,
           address: str | None = None, seed: int = 0, resume: bool = True):
    """The tiny curriculum on two slices, in this process (`BackgroundRun`) or, given a cluster `address`, as a Ray
    job (`kiwi.jobs.SubmittedRun`); both answer `running`, `stop()`, `wait()`, `history()`. Not started yet;
    `resume=False` starts over whatever OUT holds."""
    from dataclasses import replace

    from kiwi import curriculum
    from kiwi.model.kiwi_edit import tiny

    if address:
        from kiwi.jobs import SubmittedRun

        args = ["--config", "tiny", "--steps", ",".join(map(str, steps)), "--video-slice", video_slice.slice_id,
                "--reference-slice", reference_slice.slice_id, "--seed", str(seed), "--name", name]
        return SubmittedRun(address, args + ([] if resume else ["--no-resume"]), out_dir, db.uri)
    run = replace(curriculum.tiny(video_slice.slice_id, reference_slice.slice_id, steps=steps, seed=seed), name=name)
    return BackgroundRun(tiny(seed=seed), db, run, out_dir, resume=resume)


def consumed(out_dir: str | Path) -> dict[str, int]:
    """Samples consumed so far per edit type, from the run's metrics."""
    counts: dict[str, int] = {}
    for entry in read_history(out_dir):
        for t, n in entry.get("per_type_samples", {}).items():
            counts[t] = counts.get(t, 0) + n
    return counts


def plot_progress(runs: dict[str, str | Path]):
    """Loss curves beside the samples each run has consumed per edit type: what a live cell redraws."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (loss_ax, mix_ax) = plt.subplots(1, 2, figsize=(11, 3.5), gridspec_kw={"width_ratios": [3, 2]})
    plot_losses(runs, ax=loss_ax)
    counts = {label: consumed(folder) for label, folder in runs.items()}
    types = sorted({t for c in counts.values() for t in c})
    y = np.arange(len(types))
    height = 0.8 / max(1, len(runs))
    for i, (label, c) in enumerate(counts.items()):
        mix_ax.barh(y + i * height, [c.get(t, 0) for t in types], height=height, label=label)
    mix_ax.set_yticks(y + height * (len(runs) - 1) / 2, types)
    mix_ax.invert_yaxis()
    mix_ax.set_xlabel("samples consumed")
    mix_ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def read_history(out_dir: str | Path) -> list[dict]:
    path = Path(out_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def plot_losses(runs: dict[str, str | Path], per_type: bool = False, ax=None, smooth: int = 3):
    """Loss curves of one or more runs (label -> run folder); with `per_type`, one curve per edit type. A type
    absent from a step is a gap, not a carried value (a small batch often lacks one); the smoothing averages only
    the steps that have it. Stage boundaries are dotted lines named after the stage that starts there."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    marked: set[int] = set()
    for label, folder in runs.items():
        history = read_history(folder)
        if not history:
            continue
        steps = np.array([h["global_step"] for h in history])
        series = {"all": [h["loss"] for h in history]}
        if per_type:
            for t in sorted({t for h in history for t in h["per_type"]}):
                series[t] = [h["per_type"].get(t, np.nan) for h in history]
        for name, values in series.items():
            values = np.asarray(values, float)
            present = ~np.isnan(values)
            x, y = steps[present], values[present]
            if smooth > 1 and len(y) >= smooth:
                y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
                x = x[smooth - 1:]
            ax.plot(x, y, marker="." if name != "all" else None, markersize=3,
                    linewidth=1.8 if name == "all" else 1, label=f"{label}" + ("" if name == "all" else f" · {name}"))
        for previous, entry in zip(history, history[1:], strict=False):
            if entry.get("stage") != previous.get("stage") and entry["global_step"] not in marked:
                marked.add(entry["global_step"])
                ax.axvline(entry["global_step"] - 0.5, color="#888888", linestyle=":", linewidth=1)
                ax.text(entry["global_step"], 1, f" {entry['stage']}", transform=ax.get_xaxis_transform(),
                        va="top", fontsize=7, color="#555555")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss" + (f" (mean of {smooth} steps)" if smooth > 1 else ""))
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax
