"""Training checkpoints: what is saved, how it is written atomically, and how any number of ranks reads it back.

A checkpoint is a folder: model weights (safetensors; FSDP runs write shards), optimizer tensors (safetensors) and
the rest as JSON (stage, step, loader positions, what was consumed, the run's config). It is written to
`checkpoint.next` and moved into place by renames, so a kill at any moment leaves the previous checkpoint or the new
one whole. The frozen VAE and vision tower are never saved: they are rebuilt from the model folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from kiwi.curriculum import RunConfig
from kiwi.model.io import load_strictly
from kiwi.model.kiwi_edit import KiwiEdit
from kiwi.sharding import is_sharded, load_sharded, load_whole_into_sharded, save_sharded

if TYPE_CHECKING:
    from kiwi.feed import StageFeed
    from kiwi.train import RunSummary

NOT_CHECKPOINTED = ("vae.", "mllm.model.model.visual.")  # frozen and rebuilt from the model folder on resume


def replace_folder(new: Path, folder: Path) -> None:
    """`new` becomes `folder` by renames: folder -> folder.old, new -> folder, then folder.old is removed.
    `recover_folder` finishes or undoes a replacement cut short."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(folder: Path) -> None:
    """After a kill inside `replace_folder`: with no `folder`, the previous one (folder.old) is put back; with
    both, the new one is whole and the old one goes."""
    old = folder.with_name(folder.name + ".old")
    if old.exists():
        if folder.exists():
            shutil.rmtree(old)
        else:
            old.rename(folder)


class RunMismatch(ValueError):
    """A checkpoint of another run (other steps, seed, slices, learning rate…) in the output folder: resuming it
    would silently mix two runs."""

    def __init__(self, out: Path, state: dict, run: RunConfig):
        now = json.loads(json.dumps(run.to_dict()))  # as the checkpoint stored it (tuples as lists)
        differences = _differences(state["run"], now) if state.get("run") else []
        said = "; ".join(f"{key}: {old!r} there, {new!r} now" for key, old, new in differences[:6])
        super().__init__(f"{out / 'checkpoint'} belongs to run {state['run_id']}, not to this one "
                         f"({said or 'another configuration'}). Use another --out, or --no-resume to start over there.")


def _differences(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every leaf that differs between two run configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{key}.{k}" if key else str(k))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in _differences(a, b, f"{key}[{i}]")]
    return [] if old == new else [(key, old, new)]


def load_weights(model: KiwiEdit, checkpoint: str | Path) -> KiwiEdit:
    """A training checkpoint's weights into a model built alike (the frozen VAE and vision tower are not saved);
    a sharded checkpoint (FSDP runs) is gathered into it."""
    if is_sharded(Path(checkpoint)):
        load_sharded(model, None, Path(checkpoint), NOT_CHECKPOINTED)
        return model
    path = Path(checkpoint) / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{checkpoint}: no model.safetensors (is it a kiwi training checkpoint?)")
    saved = [k for k in model.state_dict() if not k.startswith(NOT_CHECKPOINTED)]
    load_strictly(model, load_file(path), path, expected=saved)
    return model


def _saved_moments(folder: Path, device: torch.device) -> dict[int, dict[str, torch.Tensor]]:
    """An unsharded checkpoint's optimizer moments by parameter index, as `optimizer.state_dict()["state"]`."""
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(folder / "optimizer.safetensors").items():
        if key != "_empty":
            index, name = key.split(".", 1)
            moments.setdefault(int(index), {})[name] = value.to(device)
    return moments


class Checkpointing:
    """`Trainer.checkpoint` and its restore (uses the trainer's model, output folder, ranks and run)."""

    def checkpoint(self, stage_index: int, step: int, global_step: int, optimizer, feed: StageFeed,
                   summary: RunSummary, stage_start: bool = False) -> Path:
        """Model weights (safetensors), optimizer tensors (safetensors) and the rest (JSON). A `stage_start`
        checkpoint (written at a stage's end) resumes at the next stage with a fresh optimizer and loader.
        Under several ranks each writes its loader state (`state.rank{r}.json`); rank 0 the weights (every rank
        its shards, under FSDP).
        Atomic: every file goes to `checkpoint.next`, which replaces `checkpoint` by renames only once complete,
        so a kill at any moment leaves the previous checkpoint or the new one whole, never a mix."""
        folder, staging = self.out / "checkpoint", self.out / "checkpoint.next"
        self._barrier()
        if self.rank == 0:
            shutil.rmtree(staging, ignore_errors=True)  # a checkpoint killed half-written
            staging.mkdir(parents=True)
        self._barrier()
        if self.sharded:  # a collective: every rank writes its shards of the weights and optimizer state
            save_sharded(self.model, optimizer, staging, NOT_CHECKPOINTED)
        if self.rank != 0:
            (staging / f"state.rank{self.rank}.json").write_text(json.dumps({"loader": feed.state_dict()}))
        else:
            state = dict(stage_index=stage_index, step=step, global_step=global_step, loader=feed.state_dict(),
                         consumed=dict(summary.consumed), run_id=self.run_id, run=self.run.to_dict(),
                         stage_start=stage_start, ranks=self.world_size, ranks_at_start=self.ranks_at_start)
            if not self.sharded:  # one process holds the whole model: weights and optimizer tensors as files
                weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()
                           if not k.startswith(NOT_CHECKPOINTED)}
                save_file(weights, staging / "model.safetensors")
                opt = optimizer.state_dict()
                tensors = {f"{i}.{k}": v.detach().cpu().contiguous() for i, s in opt["state"].items()
                           for k, v in s.items() if torch.is_tensor(v)}
                save_file(tensors or {"_empty": torch.zeros(1)}, staging / "optimizer.safetensors")
                state["param_groups"] = opt["param_groups"]
            (staging / "state.json").write_text(json.dumps(state, indent=1))
        self._barrier()
        if self.rank == 0:
            replace_folder(staging, folder)
        self._barrier()
        return folder

    def _barrier(self) -> None:
        """Every rank's part of a checkpoint is on disk before any rank goes on (or exits)."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def _restore(self, optimizer, feed: StageFeed, state: dict, summary: RunSummary) -> None:
        """Weights, optimizer state and loader positions from the checkpoint, whatever number of ranks wrote it:
        shards are resharded for the ranks reading them, whole files are split over FSDP ranks, and the loader
        state — global sampler positions, the same on every rank — is rank 0's when the number of ranks changed."""
        folder = self.out / "checkpoint"
        summary.consumed.update(state["consumed"])
        moments = None if state["stage_start"] else optimizer
        if is_sharded(folder):  # weights and, mid-stage, optimizer state from every rank's shards
            load_sharded(self.model, moments, folder, NOT_CHECKPOINTED)
        else:
            saved = _saved_moments(folder, self.device) if moments is not None else {}
            if self.sharded:  # a checkpoint of one process or of DDP ranks, spread over FSDP ranks
                load_whole_into_sharded(self.model, moments, load_file(folder / "model.safetensors"), saved,
                                        state.get("param_groups"))
            else:
                load_weights(self.model, folder)
                if moments is not None:
                    optimizer.load_state_dict({"state": saved, "param_groups": state["param_groups"]})
        if state["stage_start"]:
            return
        mine = folder / f"state.rank{self.rank}.json"
        same_ranks = state.get("ranks", self.world_size) == self.world_size
        feed.load_state_dict(json.loads(mine.read_text())["loader"] if self.rank and same_ranks else state["loader"])
