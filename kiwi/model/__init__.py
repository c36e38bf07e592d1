"""Kiwi-Edit model components: the MLLM encoder with learnable queries, the conditioned
Wan DiT, and the flow-matching objective."""

from kiwi.model.connector import Connector
from kiwi.model.dit import KiwiTransformer, count_parameters
from kiwi.model.flow import FlowMatching
from kiwi.model.kiwi_edit import EditBatch, KiwiEdit, tiny
from kiwi.model.mllm import EncodedPrompt, KiwiMLLM, QueryCounts

__all__ = ["Connector", "EditBatch", "EncodedPrompt", "FlowMatching", "KiwiEdit", "KiwiMLLM", "KiwiTransformer",
           "QueryCounts", "count_parameters", "tiny"]
