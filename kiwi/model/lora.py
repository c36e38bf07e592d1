"""LoRA (peft) on the language model's attention projections; everything else of the MLLM stays frozen.

The learnable queries and connectors are Kiwi's own parameters and train regardless; which parts train per
curriculum stage is decided by the training code (`kiwi.trainable`).

Saved as peft saves adapters: the base model in its own key names (loads into a plain Qwen2.5-VL) and the
adapters apart (`adapter_model.safetensors` + `adapter_config.json`, peft's state-dict helpers), so a round trip
gives the same outputs bit for bit and training can go on with the same adapters."""

from __future__ import annotations

from pathlib import Path

import torch
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


def has_lora(module: nn.Module) -> bool:
    return hasattr(module, "peft_config")


def base_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s state without its adapters, in the key names it has without peft (`q_proj.base_layer.weight`
    -> `q_proj.weight`)."""
    return {k.replace(".base_layer.", "."): v for k, v in module.state_dict().items() if "lora_" not in k}


def save_adapters(module: nn.Module, folder: Path) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    module.peft_config["default"].save_pretrained(folder)
    adapters = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(module).items()}
    save_file(adapters, folder / "adapter_model.safetensors")


def load_adapters(module: nn.Module, folder: Path) -> nn.Module:
    """Inject the adapters saved in `folder` into `module` and fill them; refuses, naming them, on adapter tensors
    missing from the file or unknown to the model."""
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    config = LoraConfig.from_pretrained(folder)
    add_lora(module, rank=config.r, alpha=config.lora_alpha, dropout=config.lora_dropout)
    saved = load_file(folder / "adapter_model.safetensors")
    result = set_peft_model_state_dict(module, saved)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(f"{folder}/adapter_model.safetensors does not fit the model: missing {missing[:3]} "
                         f"({len(missing)}), unexpected {list(result.unexpected_keys)[:3]} "
                         f"({len(result.unexpected_keys)})")
    return module
