"""Kiwi-Edit: the model (kiwi.model), inference (`kiwi.edit`), streaming training and evaluation.

`kiwi.edit` is resolved on first use so that `import kiwi` (and every `kiwi` command, `--help` included) does not pay
for torch, transformers and diffusers before it needs them."""

__all__ = ["edit"]


def __getattr__(name: str):
    if name == "edit":
        from kiwi.inference import edit

        return edit
    raise AttributeError(f"module 'kiwi' has no attribute {name!r}")
