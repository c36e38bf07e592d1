"""A VLM judge over any OpenAI-compatible chat endpoint (a local vLLM serving Qwen2.5-VL, or a hosted model).

It sends sampled frames of the source and the edited video (and the reference) as JPEG data URLs with a
published rubric, parses the "Name: n" lines, applies the rubric's cap, and retries with exponential backoff on
timeouts, 5xx/429 answers and malformed replies. A verdict is cached on disk under (item, output hash, rubric and
its version, model), so rerunning an evaluation costs no calls. The API key is read from the environment at call
time and never stored in an object, logged or put in an error."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from kiwi.eval.rubrics import Rubric
from lake import media

log = logging.getLogger(__name__)


class JudgeError(RuntimeError):
    """The judge gave no usable verdict (after retries, where retrying made sense)."""


class MalformedAnswer(JudgeError):
    pass


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str  # the served model's name, e.g. Qwen/Qwen2.5-VL-72B-Instruct
    api_key_env: str = "KIWI_JUDGE_API_KEY"  # the variable holding the key ("" or unset: no auth header)
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 2.0  # waits backoff, 2x backoff, 4x backoff … between attempts
    concurrency: int = 4  # requests in flight at once
    frames: int = 4  # frames sampled from each video
    cache_dir: str | None = None
    max_tokens: int = 128
    temperature: float = 0.0


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


def _data_url(image: np.ndarray) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(media.encode_image(image, format="jpeg")).decode()


def _sample(video: np.ndarray, count: int) -> np.ndarray:
    return video[np.unique(np.round(np.linspace(0, len(video) - 1, count)).astype(int))]


class JudgeClient:
    def __init__(self, config: JudgeConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._http = httpx.Client(base_url=config.base_url.rstrip("/") + "/", timeout=config.timeout_s,
                                  transport=transport)
        self.calls = 0  # HTTP requests sent (what the cache saves)

    def __repr__(self) -> str:
        return f"JudgeClient({self.config.base_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- cache
    def cache_key(self, request: JudgeRequest) -> str:
        parts = [request.item_id, request.output_hash, request.rubric.name, request.rubric.version, self.config.model]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def _cached(self, key: str) -> dict | None:
        if not self.config.cache_dir:
            return None
        path = Path(self.config.cache_dir) / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _store(self, key: str, verdict: Verdict) -> None:
        if not self.config.cache_dir:
            return
        folder = Path(self.config.cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(dict(raw_scores=verdict.raw_scores, answer=verdict.answer)))
        tmp.replace(folder / f"{key}.json")  # atomic: a reader never sees half a verdict

    # ------------------------------------------------------------------------------------------- calls
    def messages(self, request: JudgeRequest) -> list[dict]:
        images = [*_sample(request.source, self.config.frames), *_sample(request.output, self.config.frames)]
        if request.rubric.uses_reference:
            if request.reference is None:
                raise JudgeError(f"{request.item_id}: rubric {request.rubric.name} needs the reference image")
            images.append(request.reference)
        content = [{"type": "text", "text": request.rubric.prompt(request.instruction)}]
        content += [{"type": "image_url", "image_url": {"url": _data_url(np.ascontiguousarray(i))}} for i in images]
        return [{"role": "user", "content": content}]

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.config.api_key_env, "") if self.config.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def judge(self, request: JudgeRequest) -> Verdict:
        """One verdict; raises JudgeError when every attempt failed or the endpoint refused the request."""
        key = self.cache_key(request)
        hit = self._cached(key)
        if hit is not None:
            return Verdict(request.item_id, request.rubric.name, apply_cap(hit["raw_scores"], request.rubric),
                           hit["raw_scores"], hit["answer"], self.config.model, attempts=0, cached=True)
        body = dict(model=self.config.model, messages=self.messages(request), max_tokens=self.config.max_tokens,
                    temperature=self.config.temperature)
        problem = ""
        for attempt in range(1, self.config.max_retries + 2):
            if attempt > 1:
                time.sleep(self.config.backoff_s * 2 ** (attempt - 2))
            try:
                self.calls += 1
                response = self._http.post("chat/completions", json=body, headers=self._headers())
            except httpx.TimeoutException:
                problem = f"no answer within {self.config.timeout_s:g} s"
                continue
            except httpx.TransportError as e:
                problem = f"cannot reach the judge at {self.config.base_url}: {type(e).__name__}"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise JudgeError(f"the judge at {self.config.base_url} refused the request: HTTP "
                                 f"{response.status_code} {response.text[:200]!r}")
            try:
                answer = response.json()["choices"][0]["message"]["content"]
                raw = parse_scores(answer, request.rubric)
            except MalformedAnswer as e:
                problem = str(e)
                continue
            except (KeyError, IndexError, TypeError, ValueError) as e:  # not a chat completion
                problem = f"unreadable reply: {type(e).__name__} {e}"
                continue
            verdict = Verdict(request.item_id, request.rubric.name, apply_cap(raw, request.rubric), raw, answer,
                              self.config.model, attempts=attempt)
            self._store(key, verdict)
            return verdict
        raise JudgeError(f"{request.item_id}: no verdict after {self.config.max_retries + 1} attempts ({problem})")

    def judge_many(self, requests: Sequence[JudgeRequest],
                   progress: Callable[[int, int], None] | None = None) -> list[Verdict]:
        """Verdicts in request order, at most `concurrency` in flight; an item the judge failed on comes back
        with `error` set instead of stopping the others."""
        done = 0
        lock = threading.Lock()

        def one(request: JudgeRequest) -> Verdict:
            nonlocal done
            try:
                verdict = self.judge(request)
            except JudgeError as e:
                log.warning("judge failed on %s: %s", request.item_id, e)
                verdict = Verdict(request.item_id, request.rubric.name, {}, {}, "", self.config.model, error=str(e))
            with lock:  # workers finish concurrently
                done += 1
                if progress:
                    progress(done, len(requests))
            return verdict

        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            return list(pool.map(one, requests))

