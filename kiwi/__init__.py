"""Kiwi-Edit: the model (kiwi.model), inference (`kiwi.edit`), and — next — streaming training and evaluation."""

from kiwi.inference import edit

__all__ = ["edit"]
