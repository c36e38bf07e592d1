"""Kiwi-Edit model components (issue 8, in progress): the conditioned DiT and the flow-matching objective."""

from kiwi.model.dit import KiwiTransformer, count_parameters
from kiwi.model.flow import FlowMatching

__all__ = ["FlowMatching", "KiwiTransformer", "count_parameters"]
