"""Bounded memory for long-lived lake processes (a pipeline's writer, a training loader, a notebook kernel).

Two things made a writer's resident memory grow with the lake, measured with `bench/scale_bench.py --part write`:
- Lance's metadata cache keeps every version's manifest and fragment metadata it has read, up to 1 GiB per
  connection by default, and each `lake.open` made its own. Every handle in a process now shares one session
  whose caches have a cap (`$KIWI_LAKE_METADATA_CACHE_MB`, `$KIWI_LAKE_INDEX_CACHE_MB`).
- glibc keeps freed pages of its per-thread arenas; Lance's I/O threads free large buffers on other threads than
  the ones that allocated them. `trim_heap()` hands free pages back (`malloc_trim`), which the writer calls
  after each compaction."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from dataclasses import dataclass

MIB = 1 << 20


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
        raise ValueError(f"${name} must be a whole number of MiB, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"${name} must be >= 0 MiB, not {value}")
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
