"""What a stage trains: the model's parameter groups by name (a stage config's `trains`), and the freeze / unfreeze
that makes a stage train exactly those."""

from __future__ import annotations

import torch

from kiwi.model.kiwi_edit import KiwiEdit


def trainable_groups(model: KiwiEdit) -> dict[str, list[torch.nn.Parameter]]:
    lora = [p for n, p in model.mllm.named_parameters() if "lora_" in n]
    return {
        "queries": list(model.mllm.queries.parameters()),
        "query_connector": list(model.query_connector.parameters()),
        "reference_connector": list(model.reference_connector.parameters()),
        "source_embedder": list(model.transformer.source_embedder.parameters()),
        "reference_embedder": list(model.transformer.reference_embedder.parameters()),
        # the denoiser: the DiT and, in tiny-edit, the source refiner that finishes its estimate
        "dit": list(model.transformer.transformer.parameters())
        + (list(model.refiner.parameters()) if model.refiner is not None else []),
        "lora": lora,
    }


def set_trainable(model: KiwiEdit, trains: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze the stage's parts; returns the parameters to optimise."""
    model.requires_grad_(False)
    chosen = []
    for name, params in trainable_groups(model).items():
        if name in trains:
            for p in params:
                p.requires_grad_(True)
            chosen += params
    return chosen
