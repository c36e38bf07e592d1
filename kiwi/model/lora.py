"""LoRA (peft) on the language model's attention projections; everything else of the MLLM stays frozen.

The learnable queries and connectors are Kiwi's own parameters and train regardless; which parts train per
curriculum stage is decided by the training code (issue 6)."""

from __future__ import annotations

from torch import nn

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


def add_lora(language_model: nn.Module, rank: int = 64, alpha: int | None = None, dropout: float = 0.0) -> nn.Module:
    """Inject LoRA adapters into every attention projection of `language_model` and freeze its other weights."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=dropout, target_modules=list(ATTENTION))
    model = inject_adapter_in_model(config, language_model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return model


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in module.named_parameters() if "lora_" in n]
