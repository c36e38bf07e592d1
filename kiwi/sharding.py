"""Fully sharded data parallelism (FSDP2, `torch.distributed.fsdp.fully_shard`) for the full model, whose 5B
trained parameters with fp32 master weights and AdamW state (16 bytes each) fit no single GPU (`kiwi plan`).

Each DiT block and each language-model layer is its own sharded unit (gathered for its forward and backward,
resharded after), the rest of the model one more at the root; the frozen VAE stays whole on every rank (it runs
without gradients, outside the sharded forward's hot path). On a GPU the sharded fp32 parameters are cast to bf16
for compute and gradients reduced in fp32 (`MixedPrecisionPolicy`), which is the fp32-master-weight recipe without
a second copy of the weights. Checkpoints are sharded too (`torch.distributed.checkpoint`): every rank writes its
shards of the weights and optimizer state, and a load reshards them for whatever ranks read them."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from kiwi.model.kiwi_edit import KiwiEdit

SHARDED = "sharded"  # the checkpoint's subfolder of per-rank shards


def shard_model(model: KiwiEdit, bf16_compute: bool) -> KiwiEdit:
    """Shard `model` in place over the default process group (one mesh dimension, every rank)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device = next(model.transformer.parameters()).device
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16_compute else None,
                                  reduce_dtype=torch.float32 if bf16_compute else None)
    for block in model.transformer.transformer.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    language = getattr(getattr(getattr(model.mllm, "model", None), "model", None), "language_model", None)
    for layer in getattr(language, "layers", ()):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy, ignored_params=set(model.vae.parameters()))
    return model


def _model_state(model: torch.nn.Module, skip: tuple[str, ...]) -> dict:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return {k: v for k, v in get_model_state_dict(model).items() if not k.startswith(skip)}


def save_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, folder: Path,
                 skip: tuple[str, ...] = ()) -> None:
    """Every rank writes its shards of the weights (less the `skip` prefixes: frozen parts rebuilt from the model
    folder) and of the optimizer state (a collective call: all ranks, same order)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = {"model": _model_state(model, skip)}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    dcp.save(state, checkpoint_id=str(folder / SHARDED))


def load_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, folder: Path,
                 skip: tuple[str, ...] = ()) -> None:
    """Read a sharded checkpoint into `model` (and `optimizer`), resharded for the ranks reading it — any number
    of them, or one process without a process group."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    with warnings.catch_warnings():  # gathering into one process without a process group is what we mean
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        weights = {"model": _model_state(model, skip)}
        dcp.load(weights, checkpoint_id=str(folder / SHARDED))  # strict: a weight the shards lack is an error
        set_model_state_dict(model, weights["model"], options=StateDictOptions(strict=False))  # skip: not saved
        if optimizer is not None:
            # a template holds state for every parameter; the shards only for those that had gradients (a task's
            # unused queries never do), which keep the template's empty moments
            moments = {"optimizer": get_optimizer_state_dict(model, optimizer)}
            dcp.load(moments, checkpoint_id=str(folder / SHARDED),
                     planner=DefaultLoadPlanner(allow_partial_load=True))
            set_optimizer_state_dict(model, optimizer, moments["optimizer"])


def is_sharded(folder: Path) -> bool:
    return (Path(folder) / SHARDED).is_dir()


def load_whole_into_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                            weights: dict[str, torch.Tensor], moments: dict[int, dict[str, torch.Tensor]],
                            param_groups: list[dict] | None) -> None:
    """A whole checkpoint (one process's or DDP rank 0's files) into a sharded model: every rank reads the full
    tensors and keeps its shards. The optimizer moments, saved by parameter index, are named by the parameters
    the optimizer holds (the same order: the stage's trainable groups), which is how a sharded load finds them."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, strict=False)  # strict=False: frozen parts are not saved
    set_model_state_dict(model, weights, options=options)
    if optimizer is None:
        return
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    groups = [{**group, "params": [order[i] for i in group["params"]]} for group in param_groups or []]
    set_optimizer_state_dict(model, optimizer, {"state": {order[i]: v for i, v in moments.items()},
                                                "param_groups": groups}, options=options)
