"""Bounded memory for long-lived lake processes (a pipeline's writer, a training loader, a notebook kernel).

Two things made a writer's resident memory grow with the lake, measured with `bench/scale_bench.py --part write`:
- Lance's metadata cache keeps every version's manifest and fragment metadata it has read, up to 1 GiB per
  connection by default, and each `lake.open` made its own. Every handle in a process now shares one session
  whose caches have a cap (`$KIWI_LAKE_METADATA_CACHE_MB`, `$KIWI_LAKE_INDEX_CACHE_MB`).
- glibc keeps freed pages of its per-thread arenas; Lance's I/O threads free large buffers on other threads than
  the ones that allocated them. `trim_heap()` hands free pages back (`malloc_trim`), which the writer calls
  after each compaction; `limit_arenas()` (called by the `refvie` command before it opens a lake) caps the number
  of arenas (glibc makes up to 8 per core), which is what `MALLOC_ARENA_MAX` does from the environment."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from dataclasses import dataclass

MIB = 1 << 20
M_ARENA_MAX = -8  # glibc's mallopt parameter
DEFAULT_ARENAS = 2


@dataclass(frozen=True)
class CacheLimits:
    """Caps of Lance's caches for every lake handle of this process. The metadata cache holds manifests, fragment
    and deletion metadata (what repeated scans of a version reuse); the index cache holds vector and scalar index
    pages (what repeated key lookups and nearest-neighbour searches reuse)."""

    metadata_mib: int = 256
    index_mib: int = 1024

    @classmethod
    def from_environment(cls) -> CacheLimits:
        defaults = cls()
        return cls(metadata_mib=_mib("KIWI_LAKE_METADATA_CACHE_MB", defaults.metadata_mib),
                   index_mib=_mib("KIWI_LAKE_INDEX_CACHE_MB", defaults.index_mib))


def _mib(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"${name} must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"${name} must be >= 0, not {value}")
    return value


def shared_session(limits: CacheLimits | None = None):
    """One LanceDB session per process and cap (default: from the environment): every `Lake` opened with the same
    limits shares its caches."""
    return _session(limits or CacheLimits.from_environment())


@functools.cache
def _session(limits: CacheLimits):
    import lancedb

    return lancedb.Session(index_cache_size_bytes=limits.index_mib * MIB,
                           metadata_cache_size_bytes=limits.metadata_mib * MIB)


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only (musl and macOS have none)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def trim_heap() -> bool:
    """Return the C heap's free pages to the operating system (glibc); False where there is no such call."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def limit_arenas(count: int | None = None) -> bool:
    """Cap glibc's malloc arenas at `count` (default: `$KIWI_LAKE_MALLOC_ARENAS`, else 2; 0 leaves glibc's own
    limit). Effective for arenas made after the call, so call it before the lake's I/O threads start. False where
    there is no glibc or `MALLOC_ARENA_MAX` is set (the environment decides then)."""
    if count is None:
        count = _mib("KIWI_LAKE_MALLOC_ARENAS", DEFAULT_ARENAS)
    libc = _libc()
    if libc is None or count == 0 or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, int(count)))
