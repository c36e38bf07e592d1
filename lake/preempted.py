"""Commits that lose a race: Lance refuses a commit that a concurrent, incompatible one got in before (two rewrites of
the same fragments, two builds of one index) with a *retryable* conflict. Such commits here are housekeeping a
writer plans from the version it reads (compaction, index refresh), so the remedy is to read the newer version and
plan again — often finding the work done already."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


def retryable_conflict(error: BaseException) -> bool:
    """Whether `error` is Lance's "preempted, please retry" refusal (pylance raises it as a plain OSError from some
    calls and as `lance.commit.CommitConflictError` from others)."""
    if not isinstance(error, OSError):
        return False
    flag = getattr(error, "retryable", None)
    return bool(flag) if flag is not None else "Retryable commit conflict" in str(error)


def retry_preempted(plan_and_commit: Callable[[], object], attempts: int = 6, pause_s: float = 0.05) -> bool:
    """Run `plan_and_commit` (which must read the latest version itself) until no concurrent commit preempts it.
    True once it committed; False when every attempt lost the race — the housekeeping is left to the next one,
    nothing is lost. Waits grow and are jittered so two writers stop meeting."""
    for attempt in range(attempts):
        try:
            plan_and_commit()
            return True
        except OSError as e:
            if not retryable_conflict(e):
                raise
            time.sleep(pause_s * 2 ** attempt * (0.5 + random.random()))
    return False
