"""Bounded memory: Lance's caches have a cap shared by every lake handle of a process, glibc's arenas a cap
(lake/memory.py)."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import lake
from lake.memory import CacheLimits, trim_heap


def _write_and_read_versions(db, versions: int = 60) -> None:
    for i in range(versions):  # each upsert is a version; each read caches that version's manifest and fragments
        db.upsert("pairs", [dict(pair_id=f"p{i}-{j}", dataset="d", instruction="add a kite", source_uri="s.mp4",
                                 target_uri="t.mp4") for j in range(20)])
        db.read("pairs", columns=["pair_id"])


def test_the_metadata_cache_stays_under_its_cap_where_an_uncapped_one_grows_past_it(tmp_path):
    capped = lake.open(tmp_path / "capped", caches=CacheLimits(metadata_mib=1, index_mib=1))
    roomy = lake.open(tmp_path / "roomy", caches=CacheLimits(metadata_mib=64, index_mib=64))
    _write_and_read_versions(capped)
    _write_and_read_versions(roomy)
    assert roomy.session.size_bytes > 3 * 2**20  # the same work would hold several MiB
    assert capped.session.size_bytes <= 2**20
    assert capped.count("pairs") == roomy.count("pairs") == 1200  # the cap costs re-reads, never rows


def test_handles_of_one_process_share_one_session_and_the_environment_sets_its_caps(tmp_path, monkeypatch):
    monkeypatch.setenv("KIWI_LAKE_METADATA_CACHE_MB", "7")
    monkeypatch.setenv("KIWI_LAKE_INDEX_CACHE_MB", "9")
    assert CacheLimits.from_environment() == CacheLimits(metadata_mib=7, index_mib=9)
    first, second = lake.open(tmp_path / "a"), lake.open(tmp_path / "b")
    assert first.session is second.session
    monkeypatch.setenv("KIWI_LAKE_METADATA_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="KIWI_LAKE_METADATA_CACHE_MB.*'lots'"):
        CacheLimits.from_environment()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_heap_reaches_glibc():
    assert trim_heap() is True


ARENAS_SCRIPT = """
import ctypes, threading
from lake.memory import limit_arenas
print(limit_arenas())
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    held = [bytearray(200_000) for _ in range(4)]  # malloc on this thread: it takes an arena
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_limit_arenas_caps_the_arenas_threads_allocate_from(setting):
    """Eight threads allocating at once: with a cap of 1 they take no arena of their own (importing the lake may
    have made one on a library's thread before the call); with 0 (glibc's own limit, 8 a core) they take one each."""
    env = {**os.environ, "KIWI_LAKE_MALLOC_ARENAS": setting}
    env.pop("MALLOC_ARENA_MAX", None)
    out = subprocess.run([sys.executable, "-c", ARENAS_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    arenas = sum(line.startswith("Arena ") for line in out.stderr.splitlines())
    assert out.stdout.split() == [str(setting == "1")]
    assert arenas <= 2 if setting == "1" else arenas >= 8
