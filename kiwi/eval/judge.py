"""A VLM judge over any OpenAI-compatible chat endpoint (a vLLM serving Qwen3-VL or Qwen2.5-VL, or a hosted model).

The rubric goes as the system message (the instruction filled in); the user message holds the media in upstream's
order — the reference image first where the rubric uses one, then the source video, then the edited one. With
`media="video"` the judge gets the whole files as `video_url` parts (what vLLM takes for video models, and what the
official judges see); with `media="frames"` a few JPEG frames of each (cheap, for CPU work). It parses the
"Name: n" lines and retries with exponential backoff on timeouts, 5xx/429 answers and malformed replies. The cap
(the other dimensions never above the first) is asked of the judge by every rubric; `enforce_cap` also applies it
after the fact, which upstream never does, so the published protocol turns it off. A verdict is cached on disk
under (item, output hash, rubric and its fingerprint, model, media), so rerunning an evaluation costs no calls.
The API key is read from the environment at call time and never stored in an object, logged or put in an error.
`kiwi.eval.gemini` is the same judge over Google's Gemini API."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import numpy as np

from kiwi.eval.rubrics import Rubric
from lake import media
from lake.chat import ChatClient, ChatConfig, ChatError, cache_key, image_data_url, map_in_order
from lake.chat import MalformedAnswer as _ChatMalformed

log = logging.getLogger(__name__)


class JudgeError(ChatError):
    """The judge gave no usable verdict (after retries, where retrying made sense)."""


class MalformedAnswer(JudgeError, _ChatMalformed):
    pass


@dataclass(frozen=True)
class JudgeConfig(ChatConfig):
    """The endpoint (`lake.chat.ChatConfig`: base_url, model, key variable, timeout, retries, backoff, concurrency,
    cache folder, max_tokens, temperature) plus what the judge sees and whether the cap is applied afterwards."""

    frames: int = 4  # media="frames": frames of each video
    media: str = "frames"  # or "video": the whole files
    enforce_cap: bool = True

    def __post_init__(self):
        if self.media not in ("frames", "video"):
            raise ValueError(f"judge media {self.media!r}: use 'frames' or 'video'")


@dataclass(frozen=True)
class JudgeRequest:
    item_id: str
    rubric: Rubric
    instruction: str
    source: np.ndarray  # (T, H, W, 3) uint8
    output: np.ndarray  # (T, H, W, 3) uint8
    output_hash: str
    reference: np.ndarray | None = None
    source_file: bytes | None = None  # the encoded files, for judges that see whole videos
    output_file: bytes | None = None
    reference_file: bytes | None = None

    def files(self) -> list[tuple[bytes, str]]:
        """(bytes, MIME type) in the order the judge sees them: reference (if the rubric uses one), source, edit."""
        if self.rubric.uses_reference and self.reference is None and self.reference_file is None:
            raise JudgeError(f"{self.item_id}: rubric {self.rubric.name} needs the reference image")
        out = []
        if self.rubric.uses_reference:
            picture = self.reference_file or media.encode_image(np.ascontiguousarray(self.reference), format="jpeg")
            out.append((picture, mime_type(picture)))
        for data, frames in ((self.source_file, self.source), (self.output_file, self.output)):
            data = data if data is not None else media.encode_video(frames, fps=15)
            out.append((data, mime_type(data)))
        return out


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


def mime_type(data: bytes) -> str:
    """The MIME type of an image or video file from its first bytes."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in data[:64] else "video/x-matroska"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "video/x-msvideo"
    return "application/octet-stream"


def verdict(request: JudgeRequest, raw: dict[str, int], answer: str, model: str, attempts: int, cached: bool,
            enforce_cap: bool) -> Verdict:
    scores = apply_cap(raw, request.rubric) if enforce_cap else dict(raw)
    return Verdict(request.item_id, request.rubric.name, scores, raw, answer, model, attempts=attempts, cached=cached)


def judge_in_order(judge, requests: Sequence[JudgeRequest], concurrency: int,
                   progress: Callable[[int, int], None] | None = None) -> list[Verdict]:
    """`judge.judge` over the requests in order, at most `concurrency` in flight; an item the judge failed on
    comes back with `error` set instead of stopping the others."""

    def one(request: JudgeRequest) -> Verdict:
        try:
            return judge.judge(request)
        except JudgeError as e:
            log.warning("judge failed on %s: %s", request.item_id, e)
            return Verdict(request.item_id, request.rubric.name, {}, {}, "", judge.config.model, error=str(e))

    return map_in_order(one, requests, concurrency, progress)


def request_key(request: JudgeRequest, model: str, media_kind: str) -> str:
    return cache_key(request.item_id, request.output_hash, request.rubric.name, request.rubric.version, model,
                     media_kind)


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
        media_kind = "video" if self.config.media == "video" else f"frames{self.config.frames}"
        return request_key(request, self.config.model, media_kind)

    def messages(self, request: JudgeRequest) -> list[dict]:
        if self.config.media == "video":
            content = [_file_part(data, mime) for data, mime in request.files()]
        else:
            if request.rubric.uses_reference and request.reference is None:
                raise JudgeError(f"{request.item_id}: rubric {request.rubric.name} needs the reference image")
            images = [request.reference] if request.rubric.uses_reference else []
            images += [*_sample(request.source, self.config.frames), *_sample(request.output, self.config.frames)]
            content = [{"type": "image_url", "image_url": {"url": image_data_url(i)}} for i in images]
        return [{"role": "system", "content": request.rubric.system_text(request.instruction)},
                {"role": "user", "content": content}]

    def judge(self, request: JudgeRequest) -> Verdict:
        """One verdict; raises JudgeError when every attempt failed or the endpoint refused the request."""
        try:
            raw, answer = self.chat.complete(self.messages(request), lambda text: parse_scores(text, request.rubric),
                                             key=self.cache_key(request), what=request.item_id)
        except JudgeError:
            raise
        except ChatError as e:
            raise JudgeError(str(e)) from None
        return verdict(request, raw, answer.text, self.config.model, answer.attempts, answer.cached,
                       self.config.enforce_cap)

    def judge_many(self, requests: Sequence[JudgeRequest],
                   progress: Callable[[int, int], None] | None = None) -> list[Verdict]:
        """Verdicts in request order (see `judge_in_order`)."""
        return judge_in_order(self, requests, self.config.concurrency, progress)


def _file_part(data: bytes, mime: str) -> dict:
    url = f"data:{mime};base64," + base64.b64encode(data).decode()
    if mime.startswith("video/"):
        return {"type": "video_url", "video_url": {"url": url}}
    return {"type": "image_url", "image_url": {"url": url}}
