"""Kiwi-Edit model components (issue 8, in progress): the conditioned DiT so far."""

from kiwi.model.dit import KiwiTransformer, count_parameters

__all__ = ["KiwiTransformer", "count_parameters"]
