"""Options the kiwi commands share: where and in what precision the model runs."""

from __future__ import annotations

import click

DTYPES = ("auto", "float32", "bfloat16", "float16")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def device_options(command):
    """--device and --dtype: where and in what precision the model runs (bf16 on a GPU unless told otherwise)."""
    command = click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
                           help="Weights' precision: auto = bfloat16 on a GPU, float32 on the CPU.")(command)
    return click.option("--device", default="auto", show_default=True,
                        help="auto (cuda when there is one, else cpu), cpu, cuda, cuda:1 …")(command)


def resolve_device(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise click.BadParameter(str(e), param_hint="--device") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(f"{device}: this machine has no CUDA device", param_hint="--device")
    if dtype == "auto":
        dtype = "bfloat16" if resolved.type == "cuda" else "float32"
    return resolved, getattr(torch, dtype)
