"""A VLM judge over any OpenAI-compatible chat endpoint (a local vLLM serving Qwen2.5-VL, or a hosted model).

It sends sampled frames of the source and the edited video (and the reference) as JPEG data URLs with a
published rubric, parses the "Name: n" lines, applies the rubric's cap, and retries with exponential backoff on
timeouts, 5xx/429 answers and malformed replies. A verdict is cached on disk under (item, output hash, rubric and
its version, model), so rerunning an evaluation costs no calls. The API key is read from the environment at call
time and never stored in an object, logged or put in an error."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import numpy as np

from kiwi.eval.rubrics import Rubric
from lake.chat import ChatClient, ChatConfig, ChatError, cache_key, image_data_url
from lake.chat import MalformedAnswer as _ChatMalformed

log = logging.getLogger(__name__)


class JudgeError(ChatError):
    """The judge gave no usable verdict (after retries, where retrying made sense)."""


class MalformedAnswer(JudgeError, _ChatMalformed):
    pass


@dataclass(frozen=True)
class JudgeConfig(ChatConfig):
    """The endpoint (`lake.chat.ChatConfig`: base_url, model, key variable, timeout, retries, backoff, concurrency,
    cache folder, max_tokens, temperature) plus how many frames of each video the judge sees."""

    frames: int = 4


@dataclass(frozen=True)
class JudgeRequest:
    item_id: str
    rubric: Rubric
    instruction: str
    source: np.ndarray  # (T, H, W, 3) uint8
    output: np.ndarray  # (T, H, W, 3) uint8
    output_hash: str
    reference: np.ndarray | None = None


@dataclass
class Verdict:
    item_id: str
    rubric: str
    scores: dict[str, int]  # after the cap
    raw_scores: dict[str, int]
    answer: str
    model: str
    attempts: int = 1
    cached: bool = False
    error: str | None = None  # set (and scores empty) when the judge failed for this item

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.scores.values())))


def parse_scores(answer: str, rubric: Rubric) -> dict[str, int]:
    """Each dimension's "Name: n" (any case, markdown emphasis and "n/5" allowed); every dimension must be
    there, once, with an integer from 1 to 5."""
    scores = {}
    for dimension in rubric.dimensions:
        pattern = rf"^[\s*_#>-]*{re.escape(dimension)}[\s*_]*:\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*5)?"
        found = re.findall(pattern, answer, flags=re.IGNORECASE | re.MULTILINE)
        if len(found) != 1:
            raise MalformedAnswer(f"{'no' if not found else 'more than one'} '{dimension}: n' line in the answer "
                                  f"{answer[:200]!r}")
        value = float(found[0])
        if value != int(value) or not 1 <= value <= 5:
            raise MalformedAnswer(f"{dimension} = {found[0]} is not an integer from 1 to 5")
        scores[dimension] = int(value)
    return scores


def apply_cap(scores: dict[str, int], rubric: Rubric) -> dict[str, int]:
    if not rubric.capped_by:
        return dict(scores)
    cap = scores[rubric.capped_by]
    return {d: v if d == rubric.capped_by else min(v, cap) for d, v in scores.items()}


def _sample(video: np.ndarray, count: int) -> np.ndarray:
    return video[np.unique(np.round(np.linspace(0, len(video) - 1, count)).astype(int))]


class JudgeClient:
    """Rubric prompts and score parsing over the shared `lake.chat.ChatClient` (retries, cache, concurrency)."""

    def __init__(self, config: JudgeConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self.chat = ChatClient(config, transport=transport, name="judge")

    @property
    def calls(self) -> int:
        """HTTP requests sent (what the cache saves)."""
        return self.chat.calls

    def __repr__(self) -> str:
        return f"JudgeClient({self.config.base_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        self.chat.close()

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cache_key(self, request: JudgeRequest) -> str:
        return cache_key(request.item_id, request.output_hash, request.rubric.name, request.rubric.version,
                         self.config.model)

    def messages(self, request: JudgeRequest) -> list[dict]:
        images = [*_sample(request.source, self.config.frames), *_sample(request.output, self.config.frames)]
        if request.rubric.uses_reference:
            if request.reference is None:
                raise JudgeError(f"{request.item_id}: rubric {request.rubric.name} needs the reference image")
            images.append(request.reference)
        content = [{"type": "text", "text": request.rubric.prompt(request.instruction)}]
        content += [{"type": "image_url", "image_url": {"url": image_data_url(i)}} for i in images]
        return [{"role": "user", "content": content}]

    def judge(self, request: JudgeRequest) -> Verdict:
        """One verdict; raises JudgeError when every attempt failed or the endpoint refused the request."""
        try:
            raw, answer = self.chat.complete(self.messages(request), lambda text: parse_scores(text, request.rubric),
                                             key=self.cache_key(request), what=request.item_id)
        except JudgeError:
            raise
        except ChatError as e:
            raise JudgeError(str(e)) from None
        return Verdict(request.item_id, request.rubric.name, apply_cap(raw, request.rubric), raw, answer.text,
                       self.config.model, attempts=answer.attempts, cached=answer.cached)

    def judge_many(self, requests: Sequence[JudgeRequest],
                   progress: Callable[[int, int], None] | None = None) -> list[Verdict]:
        """Verdicts in request order, at most `concurrency` in flight; an item the judge failed on comes back
        with `error` set instead of stopping the others."""

        def one(request: JudgeRequest) -> Verdict:
            try:
                return self.judge(request)
            except JudgeError as e:
                log.warning("judge failed on %s: %s", request.item_id, e)
                return Verdict(request.item_id, request.rubric.name, {}, {}, "", self.config.model, error=str(e))

        return self.chat.map(one, requests, progress)
