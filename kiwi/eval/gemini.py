"""The judge the paper used: Gemini, through Google's `google-genai` client, seeing what the official scripts send.

Per item: the files are uploaded through the Files API (the reference image first where the rubric uses one, then
the source video as the bench gives it, then the edited MP4), each waited on until ACTIVE; the rubric (the
instruction filled in) is the system instruction and the files are the whole content, in that order. The published
default models are `gemini-2.5-pro` for OpenVE-Bench and `gemini-3-flash-preview` for RefVIE-Bench. The client
guarantees match the OpenAI-compatible judge's (`kiwi.eval.judge`): retries with exponential backoff on 5xx/429,
transport errors and malformed answers, a concurrency limit, an on-disk cache keyed by item, output hash, rubric
fingerprint and model, the key read from the environment ($GEMINI_API_KEY, as upstream) and never logged."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kiwi.eval.judge import (
    JudgeError,
    JudgeRequest,
    MalformedAnswer,
    Verdict,
    judge_in_order,
    parse_scores,
    request_key,
    verdict,
)
from lake.chat import AnswerCache, backoff_wait

log = logging.getLogger(__name__)

DEFAULT_MODELS = {"openve-bench": "gemini-2.5-pro", "refvie-bench": "gemini-3-flash-preview"}


@dataclass(frozen=True)
class GeminiConfig:
    model: str = "gemini-2.5-pro"
    api_key_env: str = "GEMINI_API_KEY"
    base_url: str | None = None  # None: Google's endpoint; tests point it at a fake on 127.0.0.1
    timeout_s: float = 300.0
    max_retries: int = 3
    backoff_s: float = 2.0
    concurrency: int = 4
    cache_dir: str | None = None
    poll_s: float = 2.0  # between checks of an uploaded file's state
    max_wait_s: float = 600.0  # an upload still PROCESSING after this is a failed attempt
    enforce_cap: bool = False  # upstream asks for the cap in the rubric and never applies it afterwards


def _retryable(error: Exception) -> bool:
    from google.genai import errors

    if isinstance(error, errors.ServerError):
        return True
    if isinstance(error, errors.ClientError):
        return getattr(error, "code", None) == 429
    return True  # transport errors (connection reset, timeouts) and the like


class GeminiJudge:
    """`judge(request) -> Verdict`, `judge_many`, `calls`, `close`: the interface `JudgeScorer` uses."""

    def __init__(self, config: GeminiConfig = GeminiConfig()):
        self.config = config
        self.cache = AnswerCache(config.cache_dir, config.model)
        self.calls = 0  # generate_content requests sent (what the cache saves)
        self.uploads = 0
        self._client = None
        self._lock = threading.Lock()  # one client for every worker thread: a second would close the first

    def __repr__(self) -> str:
        return f"GeminiJudge(model={self.config.model!r}, base_url={self.config.base_url!r})"

    def __enter__(self) -> GeminiJudge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self):
        with self._lock:
            return self._client or self._connect()

    def _connect(self):
        if self._client is None:
            from google import genai
            from google.genai import types

            key = os.environ.get(self.config.api_key_env, "")
            if not key:
                raise JudgeError(f"the Gemini judge needs an API key in ${self.config.api_key_env}")
            options = types.HttpOptions(base_url=self.config.base_url, timeout=int(self.config.timeout_s * 1000),
                                        retry_options=types.HttpRetryOptions(attempts=1))  # ours retry, not the SDK's
            self._client = genai.Client(api_key=key, http_options=options)
        return self._client

    def cache_key(self, request: JudgeRequest) -> str:
        return request_key(request, self.config.model, "gemini-files")

    def _upload(self, data: bytes, mime: str, name: str):
        self.uploads += 1
        uploaded = self.client.files.upload(file=io.BytesIO(data), config={"mime_type": mime, "display_name": name})
        waited = 0.0
        while str(getattr(uploaded.state, "name", uploaded.state)) == "PROCESSING":
            if waited >= self.config.max_wait_s:
                raise JudgeError(f"{name}: still PROCESSING after {waited:g} s")
            time.sleep(self.config.poll_s)
            waited += self.config.poll_s
            uploaded = self.client.files.get(name=uploaded.name)
        if str(getattr(uploaded.state, "name", uploaded.state)) != "ACTIVE":
            raise JudgeError(f"{name}: the Files API says {uploaded.state}")
        return uploaded

    def _forget(self, uploaded: list) -> None:
        for file in uploaded:  # files expire on their own; deleting them keeps the project's quota free
            try:
                self.client.files.delete(name=file.name)
            except Exception as e:  # noqa: BLE001 - best effort
                log.debug("could not delete %s: %s", file.name, type(e).__name__)

    def judge(self, request: JudgeRequest) -> Verdict:
        key = self.cache_key(request)
        hit = self.cache.get(key)
        if hit is not None:
            return verdict(request, parse_scores(hit, request.rubric), hit, self.config.model, 0, True,
                           self.config.enforce_cap)
        files = request.files()
        system = request.rubric.system_text(request.instruction)
        uploaded: list = []
        problem = ""
        try:
            for attempt in range(1, self.config.max_retries + 2):
                backoff_wait(self.config, attempt)
                try:
                    while len(uploaded) < len(files):  # uploads that succeeded are kept across attempts
                        data, mime = files[len(uploaded)]
                        uploaded.append(self._upload(data, mime, f"{request.item_id}-{len(uploaded)}"))
                    self.calls += 1
                    response = self.client.models.generate_content(
                        model=self.config.model, config={"system_instruction": system}, contents=uploaded)
                    answer = response.text or ""
                    raw = parse_scores(answer, request.rubric)
                except MalformedAnswer as e:
                    problem = str(e)
                    continue
                except JudgeError:
                    raise
                except Exception as e:  # noqa: BLE001 - the SDK's and the transport's errors
                    if not _retryable(e):
                        raise JudgeError(f"{request.item_id}: the Gemini API refused the request: "
                                         f"{type(e).__name__} {str(e)[:200]}") from None
                    problem = f"{type(e).__name__}: {str(e)[:200]}"
                    log.debug("attempt %d on %s: %s", attempt, request.item_id, problem)
                    continue
                self.cache.put(key, answer)
                return verdict(request, raw, answer, self.config.model, attempt, False, self.config.enforce_cap)
        finally:
            if uploaded and self._client is not None:
                self._forget(uploaded)
        raise JudgeError(f"{request.item_id}: no verdict after {self.config.max_retries + 1} attempts ({problem})")

    def judge_many(self, requests: Sequence[JudgeRequest],
                   progress: Callable[[int, int], None] | None = None) -> list[Verdict]:
        return judge_in_order(self, requests, self.config.concurrency, progress)
