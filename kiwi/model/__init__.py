"""Kiwi-Edit model components (issue 8, in progress): the MLLM encoder with learnable queries, the conditioned
Wan DiT, and the flow-matching objective."""

from kiwi.model.dit import KiwiTransformer, count_parameters
from kiwi.model.flow import FlowMatching
from kiwi.model.mllm import EncodedPrompt, KiwiMLLM, QueryCounts

__all__ = ["EncodedPrompt", "FlowMatching", "KiwiMLLM", "KiwiTransformer", "QueryCounts", "count_parameters"]
