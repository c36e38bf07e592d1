"""The dual connector's halves: a 2-layer MLP from the MLLM's hidden size to the DiT's width, output layer
zero-initialised, so a fresh connector hands the DiT an all-zero context and training starts from the base DiT."""

from __future__ import annotations

from torch import nn


class Connector(nn.Sequential):
    def __init__(self, in_features: int, width: int):
        super().__init__(nn.Linear(in_features, width), nn.GELU(approximate="tanh"), nn.Linear(width, width))
        nn.init.zeros_(self[2].weight)
        nn.init.zeros_(self[2].bias)
