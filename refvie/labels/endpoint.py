"""A model-backed edit classifier: any OpenAI-compatible chat endpoint (a local vLLM serving Qwen2.5-VL, a hosted
model), through the shared `lake.chat` client (retries, on-disk cache, concurrency, key from the environment).

The model is asked for one strict line, `category: <name>; confidence: <0-1>`; anything else is a malformed answer
and is retried. With keyframes (source and target) it sees the edit as well as the words."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import numpy as np

from lake.chat import ChatClient, ChatConfig, MalformedAnswer, cache_key, image_data_url
from lake.taxonomy import EDIT_TYPES, EditType
from refvie.labels.base import Label

PROMPT_VERSION = "1"
PROMPT = """You label video-editing instructions with exactly one edit category.
Categories:
- local_add: something new appears in the scene (an object, a creature, a worn item).
- local_remove: something in the scene disappears.
- local_change: one object is replaced, or one of its attributes (colour, material, shape) changes.
- background_change: the setting, place, backdrop or sky is replaced while the subjects stay.
- global_style: the look of the whole frame changes (art style, colour grade, film look, time of day).
- other: camera moves, framing, subtitles or text, speed or playback, motion of the subjects, anything else.
Answer with one line and nothing else: category: <one of the names above>; confidence: <a number from 0 to 1>

Instruction: {instruction}"""

_ANSWER = re.compile(r"^\s*category\s*:\s*([a-z_]+)\s*;\s*confidence\s*:\s*([01](?:\.\d+)?)\s*$", re.I)


def parse_answer(answer: str) -> tuple[EditType, float]:
    """`category: <name>; confidence: <0-1>` on the first non-empty line, or MalformedAnswer."""
    line = next((ln for ln in answer.strip().splitlines() if ln.strip()), "")
    found = _ANSWER.match(line.strip().strip("`*"))
    if not found:
        raise MalformedAnswer(f"expected 'category: <name>; confidence: <0-1>', got {answer[:120]!r}")
    name, confidence = found.group(1).lower(), float(found.group(2))
    if name not in EDIT_TYPES:
        raise MalformedAnswer(f"{name!r} is not one of {', '.join(EDIT_TYPES)}")
    if not 0.0 <= confidence <= 1.0:
        raise MalformedAnswer(f"confidence {confidence} is not between 0 and 1")
    return EditType(name), confidence


@dataclass(frozen=True)
class EndpointConfig(ChatConfig):
    """The endpoint (`lake.chat.ChatConfig`) with a labeller's defaults, plus the review threshold."""

    api_key_env: str = "KIWI_LABEL_API_KEY"
    timeout_s: float = 60.0
    backoff_s: float = 1.0
    concurrency: int = 8
    max_tokens: int = 32
    review_threshold: float = 0.6


class EndpointClassifier:
    name = "endpoint"

    def __init__(self, config: EndpointConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self.chat = ChatClient(config, transport=transport, name="label endpoint")

    def messages(self, instruction: str, keyframes: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict]:
        content = [{"type": "text", "text": PROMPT.format(instruction=instruction)}]
        if keyframes is not None:
            content[0]["text"] += "\nThe two images are a frame of the source video and the same frame after the edit."
            content += [{"type": "image_url", "image_url": {"url": image_data_url(frame)}} for frame in keyframes]
        return [{"role": "user", "content": content}]

    def predict_one(self, instruction: str, keyframes: tuple[np.ndarray, np.ndarray] | None = None) -> Label:
        key = cache_key("label", PROMPT_VERSION, self.config.model, instruction,
                        "" if keyframes is None else cache_key(*(f.tobytes().hex()[:64] + str(f.shape)
                                                                 for f in keyframes)))
        (edit_type, confidence), _ = self.chat.complete(self.messages(instruction, keyframes), parse_answer,
                                                        key=key, what=f"instruction {instruction[:60]!r}")
        return Label(edit_type, confidence, self.name, needs_review=confidence < self.config.review_threshold)

    def predict(self, instructions: list[str], keyframes: list | None = None) -> list[Label]:
        items = list(zip(instructions, keyframes or [None] * len(instructions), strict=True))
        return self.chat.map(lambda item: self.predict_one(str(item[0]), item[1]), items)

    def classify(self, instructions: list[str]) -> list[EditType]:
        return [label.edit_type for label in self.predict(instructions)]


__all__ = ["ChatConfig", "EndpointClassifier", "EndpointConfig", "parse_answer"]
