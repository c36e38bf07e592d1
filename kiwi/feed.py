"""A stage's data: one slice loader per task source, interleaved micro-batch by micro-batch in a smooth weighted
round-robin (upstream's MixDataloader deals image, video and reference samples 1:1:1 in turn), each source moving
to a new epoch of its own slice when it runs out. A mixture of one source is a plain loader.

The state — every source's sampler position and epoch, and the place in the round-robin — resumes the interleave
exactly: a run stopped after any micro-batch sees, from there, the batches an uninterrupted run would have seen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kiwi.data import LoadedBatch, SliceLoader
from lake.adaptive import AdaptiveSampler


def round_robin(weights: Sequence[int]) -> list[int]:
    """One cycle of a smooth weighted round-robin (nginx's): source i appears weights[i] times, spread as evenly as
    the weights allow — (1, 1, 1) -> [0, 1, 2], (2, 1) -> [0, 1, 0], (3, 1) -> [0, 0, 1, 0]."""
    if not weights or any(int(w) != w or w < 1 for w in weights):
        raise ValueError(f"round-robin weights must be positive integers, got {list(weights)}")
    total, current, cycle = sum(weights), [0] * len(weights), []
    for _ in range(total):
        for i, weight in enumerate(weights):
            current[i] += weight
        chosen = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[chosen] -= total
        cycle.append(chosen)
    return cycle


class StageFeed:
    """`next()` gives the stage's next micro-batch. `make_loader(source_index, epoch)` opens a source's loader at
    the start of an epoch; the feed opens the next epoch itself when a source's slice runs out."""

    def __init__(self, make_loader: Callable[[int, int], SliceLoader], weights: Sequence[int]):
        self.make_loader = make_loader
        self.cycle = round_robin(weights)
        self.loaders = [make_loader(i, 0) for i in range(len(weights))]
        self._batches: list[Any] = [None] * len(weights)
        self.micro = 0  # micro-batches delivered in this stage

    @property
    def primary(self) -> SliceLoader:
        """The first source's loader (the only one of a single-task stage; adaptive rebalancing drives it)."""
        return self.loaders[0]

    def next(self) -> LoadedBatch:
        index = self.cycle[self.micro % len(self.cycle)]
        loaded = self._next_of(index)
        self.micro += 1
        return loaded

    def _next_of(self, index: int) -> LoadedBatch:
        if self._batches[index] is None:
            self._batches[index] = iter(self.loaders[index])
        try:
            return next(self._batches[index])
        except StopIteration:
            previous = self.loaders[index].sampler
            loader = self.make_loader(index, previous.epoch + 1)
            if isinstance(previous, AdaptiveSampler):  # the mix carries over into the next epoch, history and all
                previous.set_epoch(previous.epoch + 1)
                loader.sampler = previous
            self.loaders[index] = loader
            self._batches[index] = iter(loader)
            return next(self._batches[index])

    def state_dict(self) -> dict[str, Any]:
        return {"micro": self.micro, "sources": [loader.state_dict() for loader in self.loaders]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume every source where it was; refuses a state of another mixture (another number of sources)."""
        if "sources" not in state:  # a single loader's state (checkpoints from before mixtures)
            state = {"micro": 0, "sources": [state]}
        if len(state["sources"]) != len(self.loaders):
            raise ValueError(f"cannot resume: the saved feed has {len(state['sources'])} task sources, this stage "
                             f"{len(self.loaders)}")
        for index, saved in enumerate(state["sources"]):
            self.loaders[index].load_state_dict(saved)  # the sampler's state carries its epoch
            self._batches[index] = None
        self.micro = int(state["micro"])
