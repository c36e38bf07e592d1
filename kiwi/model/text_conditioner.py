"""The instruction encoder of the CPU-sized model: a frozen MiniLM sentence embedding (shipped offline, cached per
instruction) through a trainable MLP into a few context tokens.

It stands where Qwen2.5-VL stands in the full model and answers the same `encode` call, so the connectors, the DiT
and the training loop do not change. Why: on 2 CPU cores the tiny random MLLM cost 18x the DiT per step and knew
no words; a pretrained sentence embedding knows "background" from "sepia" for free, and the MLP learns the rest.
The reference image reaches the DiT through its reference embedder, as in the full model; there are no reference
features here."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from kiwi.model.mllm import EncodedPrompt, QueryCounts


class TextConditioner(nn.Module):
    def __init__(self, hidden_size: int = 128, tokens: int = 8, embedding_dim: int = 384, cache_size: int = 65536):
        super().__init__()
        self.hidden_size, self.tokens, self.embedding_dim = hidden_size, tokens, embedding_dim
        self.queries = nn.Sequential(nn.Linear(embedding_dim, 4 * hidden_size), nn.GELU(),
                                     nn.Linear(4 * hidden_size, tokens * hidden_size))
        self.counts = QueryCounts(image=tokens, video=tokens, reference=tokens)
        self.max_frames = 0
        self._embedder = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def freeze_vision(self) -> None:
        """Nothing to freeze: the sentence embedder is frozen and outside the module's parameters."""

    def embed(self, instructions: list[str]) -> torch.Tensor:
        """Frozen sentence embeddings, each instruction computed once (training revisits the same rows)."""
        todo = [t for t in dict.fromkeys(instructions) if t not in self._cache]
        if todo:
            if self._embedder is None:
                from lake.embed import TextEmbedder

                self._embedder = TextEmbedder()
            for text, vector in zip(todo, self._embedder(todo), strict=True):
                self._cache[text] = vector
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        device = self.queries[0].weight.device
        return torch.from_numpy(np.stack([self._cache[t] for t in instructions])).to(device)

    def encode(self, instructions: list[str], videos=None, references=None, task: str = "video") -> EncodedPrompt:
        embedded = self.embed(list(instructions)).to(self.queries[0].weight.dtype)
        features = self.queries(embedded).view(len(instructions), self.tokens, self.hidden_size)
        return EncodedPrompt(features, None, features)
