"""Shared fixtures: real encoded clips made at test time, and a lake holding a few hundred of them."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# SQL snapshots (lake/snapshots.py) of this session's lakes go to a folder of their own, not the user's cache,
# removed when the session ends (every session used to leave one behind in the temp folder)
if "KIWI_LAKE_SQL_CACHE" not in os.environ:
    os.environ["KIWI_LAKE_SQL_CACHE"] = tempfile.mkdtemp(prefix="kiwi-test-sql-")
    atexit.register(shutil.rmtree, os.environ["KIWI_LAKE_SQL_CACHE"], ignore_errors=True)

import numpy as np
import pytest

import lake
from lake import media
from lake.taxonomy import EDIT_TYPES


def moving_square(seed: int, frames: int = 9, size: int = 32) -> np.ndarray:
    """A smooth gradient with a coloured square that moves: content a codec keeps close to the original."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, int(rng.integers(0, 255)))], -1)
    clip = np.repeat(base[None], frames, 0).astype(np.uint8)
    colour = rng.integers(0, 255, 3)
    side = size // 4
    for t in range(frames):
        top = (t * 2 + int(rng.integers(0, size // 2))) % (size - side)
        clip[t, top : top + side, top : top + side] = colour
    return clip


@pytest.fixture(scope="session")
def clip() -> np.ndarray:
    return moving_square(0)


def quadruplet_rows(n: int, videos: bool = True, seed: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        row = dict(
            id=f"q{seed}-{i:05d}", pair_id=f"p{seed}-{i:05d}", dataset="fixture", task="instruct",
            edit_type=EDIT_TYPES[i % 5] if i % 7 else "background_change", instruction=f"edit number {i}",
            num_frames=9, fps=8.0, width=32, height=32, split="train", edit_strength=float(i % 10) / 10,
        )
        if videos:
            row["source_video"] = media.encode_video(moving_square(seed * 100_000 + i))
            row["target_video"] = media.encode_video(moving_square(seed * 100_000 + i + 1))
        else:
            row["source_uri"], row["target_uri"] = f"s3://videos/{i}.mp4", f"s3://videos/{i}-edit.mp4"
        rows.append(row)
    return rows


@pytest.fixture(scope="session")
def filled_lake(tmp_path_factory) -> lake.Lake:
    """300 quadruplets with real H.264 videos; read-only for tests (write tests make their own lake)."""
    db = lake.open(tmp_path_factory.mktemp("filled") / "lake")
    db.upsert("quadruplets", quadruplet_rows(300))
    return db


@pytest.fixture
def empty_lake(tmp_path) -> lake.Lake:
    return lake.open(tmp_path / "lake")


@pytest.fixture(scope="session")
def ray_local():
    """One quiet Ray instance for the test session (2 CPUs, capped object store, fast shuffles on 2 cores)."""
    import logging

    for key, value in {"RAY_DEDUP_LOGS": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_AUTH_MODE": "disabled",
                       "RAY_ENABLE_RECORD_ACTOR_TASK_LOGGING": "0"}.items():
        os.environ.setdefault(key, value)
    import ray
    import ray.data
    from ray.data.context import ShuffleStrategy

    # address="local": its own instance, never a cluster another process left in /tmp/ray/ray_current_cluster
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2,
             log_to_driver=False, logging_level=logging.WARNING, configure_logging=True, ignore_reinit_error=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ctx.default_hash_shuffle_parallelism = 2
    ctx.read_op_min_num_blocks = 2
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_lake_options():
    """An S3-compatible object store for the session: moto's server on 127.0.0.1 with a bucket `kiwi`."""
    pytest.importorskip("boto3")
    from tests.moto_store import start_moto, storage_options

    server, endpoint = start_moto()
    yield storage_options(endpoint)
    server.stop()


def synthetic_quadruplet_lake(path, n: int, seed: int, frames: int = 9, size: int = 64) -> lake.Lake:
    """A lake holding n synthetic pairs run through the RefVIE stages (plain loop): what kiwi's tests train on."""
    from refvie.ingest import IngestConfig, ingest
    from refvie.pipeline import build_local
    from refvie.sources import SyntheticSource
    from refvie.synthetic import SyntheticConfig

    db = lake.open(path)
    ingest(SyntheticSource(n, SyntheticConfig(frames=frames, height=size, width=size, seed=seed)), db,
           IngestConfig(progress=False))
    build_local(db)
    return db
