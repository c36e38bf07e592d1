"""A client for any OpenAI-compatible chat endpoint (vLLM, a hosted model), shared by the VLM judge (kiwi) and the
endpoint edit classifier (refvie), which must not import each other.

What both need and neither should write twice: bounded retries with exponential backoff on timeouts, 5xx/429
answers and replies the caller's parser rejects; no retry on other 4xx; an on-disk cache of answers under a key the
caller chooses (so a rerun costs no calls); a concurrency limit; the API key read from the environment at call time
and never stored in an object, logged or put in an error."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class ChatError(RuntimeError):
    """The endpoint gave no usable answer (after retries, where retrying made sense)."""


class MalformedAnswer(ChatError):
    """A reply the caller's parser cannot use; retried like a timeout."""


@dataclass(frozen=True)
class ChatConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str  # the served model's name
    api_key_env: str = "KIWI_JUDGE_API_KEY"  # the variable holding the key ("" or unset: no auth header)
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 2.0  # waits backoff, 2x backoff, 4x backoff … between attempts
    concurrency: int = 4  # requests in flight at once
    cache_dir: str | None = None
    max_tokens: int = 128
    temperature: float = 0.0


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    attempts: int
    cached: bool


def image_data_url(image: np.ndarray) -> str:
    """An RGB uint8 image as a JPEG data URL, the form OpenAI-compatible endpoints take inline."""
    from lake import media

    return "data:image/jpeg;base64," + base64.b64encode(
        media.encode_image(np.ascontiguousarray(image), format="jpeg")).decode()


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class AnswerCache:
    """Answers on disk, one JSON file per key, written atomically (a reader never sees half an answer); no folder:
    nothing is cached."""

    def __init__(self, folder: str | None, model: str):
        self.folder, self.model = (Path(folder) if folder else None), model

    def get(self, key: str) -> str | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text())["answer"] if path.exists() else None

    def put(self, key: str, answer: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(dict(answer=answer, model=self.model)))
        tmp.replace(self.folder / f"{key}.json")


def backoff_wait(config: ChatConfig, attempt: int) -> None:
    """Before attempt 2, 3, …: backoff, 2x backoff, 4x backoff … seconds."""
    if attempt > 1:
        time.sleep(config.backoff_s * 2 ** (attempt - 2))


class ChatClient:
    def __init__(self, config: ChatConfig, transport: httpx.BaseTransport | None = None, name: str = "endpoint"):
        self.config, self.name = config, name
        self._http = httpx.Client(base_url=config.base_url.rstrip("/") + "/", timeout=config.timeout_s,
                                  transport=transport)
        self.calls = 0  # HTTP requests sent (what the cache saves)
        self.cache = AnswerCache(config.cache_dir, config.model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.base_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- cache
    def cached(self, key: str) -> str | None:
        return self.cache.get(key)

    def store(self, key: str, answer: str) -> None:
        self.cache.put(key, answer)

    # ------------------------------------------------------------------------------------------- calls
    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.config.api_key_env, "") if self.config.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def complete(self, messages: list[dict], parse: Callable[[str], R], key: str | None = None,
                 what: str = "request") -> tuple[R, ChatAnswer]:
        """The parsed answer to `messages`; `parse` raises MalformedAnswer on a reply it cannot use (retried).
        A cached answer under `key` is parsed and returned without a call. Raises ChatError naming `what`."""
        if key is not None:
            hit = self.cached(key)
            if hit is not None:
                return parse(hit), ChatAnswer(hit, attempts=0, cached=True)
        body = dict(model=self.config.model, messages=messages, max_tokens=self.config.max_tokens,
                    temperature=self.config.temperature)
        problem = ""
        for attempt in range(1, self.config.max_retries + 2):
            backoff_wait(self.config, attempt)
            try:
                self.calls += 1
                response = self._http.post("chat/completions", json=body, headers=self._headers())
            except httpx.TimeoutException:
                problem = f"no answer within {self.config.timeout_s:g} s"
                continue
            except httpx.TransportError as e:
                problem = f"cannot reach the {self.name} at {self.config.base_url}: {type(e).__name__}"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise ChatError(f"the {self.name} at {self.config.base_url} refused the request: HTTP "
                                f"{response.status_code} {response.text[:200]!r}")
            try:
                answer = response.json()["choices"][0]["message"]["content"]
                parsed = parse(answer)
            except MalformedAnswer as e:
                problem = str(e)
                continue
            except (KeyError, IndexError, TypeError, ValueError) as e:  # not a chat completion
                problem = f"unreadable reply: {type(e).__name__} {e}"
                continue
            if key is not None:
                self.store(key, answer)
            return parsed, ChatAnswer(answer, attempts=attempt, cached=False)
        raise ChatError(f"{what}: no verdict after {self.config.max_retries + 1} attempts ({problem})")

    def map(self, function: Callable[[T], R], items: Sequence[T],
            progress: Callable[[int, int], None] | None = None) -> list[R]:
        """`function` over `items` in order, at most `concurrency` calls in flight; `progress(done, total)`."""
        return map_in_order(function, items, self.config.concurrency, progress)


def map_in_order(function: Callable[[T], R], items: Sequence[T], concurrency: int,
                 progress: Callable[[int, int], None] | None = None) -> list[R]:
    """`function` over `items` in order with at most `concurrency` calls at once; `progress(done, total)`."""
    done = 0
    lock = threading.Lock()

    def one(item: T) -> R:
        nonlocal done
        result = function(item)
        with lock:  # workers finish concurrently
            done += 1
            if progress:
                progress(done, len(items))
        return result

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, items))
