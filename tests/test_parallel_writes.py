"""Parallel writes: workers write the quadruplets' bytes as uncommitted Lance fragments, the driver checks
near-duplicates and commits. The same rows as the one-writer build, every pair once (also across a race with
another writer and across a kill between the append and its clean-up). Through Ray: tests/test_pipeline.py (an
interrupted build resumed, and the two-node cluster)."""

import numpy as np
import pytest

import lake
from lake.fragments import commit_fragments, drop_duplicate_keys, parse_fragments
from refvie.ingest import ingest
from refvie.pipeline import PipelineConfig, build_local, pending_pairs
from refvie.sources import SyntheticSource
from refvie.stages.fragments import FragmentTarget, write_fragments_task
from refvie.stages.write import Write
from tests.test_pipeline import QUIET, SMALL, final_state, pipeline_stages

# as the plain-loop test compares: the embeddings come from other processes on Ray (float noise)
COMPARED = ["id", "edit_type", "split", "edit_mask", "reference_image", "edit_strength"]


def stage_batch(db, pair_ids=None) -> dict:
    """Every pending pair of `db` through the CPU stages and the embedder, in this process."""
    batch = {"pair_id": np.array(pair_ids or pending_pairs(db), dtype=object)}
    for stage in pipeline_stages(db):
        batch = stage(batch)
    return batch


def worker_written(db, batch: dict) -> dict:
    """What a Ray write task hands the driver for `batch` (its bytes written beside the table, uncommitted)."""
    return write_fragments_task(batch, FragmentTarget.of(db, "refvie-0.1", Write(db).split_fractions))


@pytest.fixture(scope="module")
def one_writer_lake(tmp_path_factory):
    db = lake.open(tmp_path_factory.mktemp("one-writer") / "lake")
    ingest(SyntheticSource(16, SMALL), db, QUIET)
    build_local(db, PipelineConfig(write_batch=8))
    return db


def test_fragments_written_by_workers_commit_as_the_rows_the_one_writer_builds(tmp_path, one_writer_lake):
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(16, SMALL), db, QUIET)
    writer = Write(db)
    writer.setup()
    for half in np.array_split(np.array(pending_pairs(db), dtype=object), 2):
        light = worker_written(db, stage_batch(db, list(half)))
        assert "target_bytes" not in light and "source_bytes" not in light  # the bytes stayed with the worker
        assert db.count("quadruplets") == writer.accepted  # written, not visible until the driver commits
        writer(light)
    ours = db.read("quadruplets", columns=COMPARED).sort_by("id")
    theirs = one_writer_lake.read("quadruplets", columns=COMPARED).sort_by("id")
    assert ours.to_pylist() == theirs.to_pylist() and ours.num_rows == writer.accepted > 10
    one = ours["id"][0].as_py()
    assert (db.read_video("quadruplets", one, "target_video") ==
            one_writer_lake.read_video("quadruplets", one, "target_video")).all()
    assert len(final_state(db)[0]) == 16


def test_a_near_duplicate_leaves_its_fragment_and_is_rejected(tmp_path):
    """Two pairs with the same content in one worker batch: both are in the worker's fragment, the driver's bank
    rejects the second, and the commit removes it from the fragment again."""
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(4, SMALL), db, QUIET)
    first = db.read("pairs", limit=1).to_pylist()[0]
    twin = first | {"pair_id": "twin-of-first"}
    twin |= {c: db.read_blobs("pairs", c, [first["pair_id"]])[0] for c in ("source_video", "target_video")}
    db.upsert("pairs", [twin])
    writer = Write(db)
    writer.setup()
    writer(worker_written(db, stage_batch(db)))
    done, reasons = final_state(db)
    assert len(done) == 5 and reasons["duplicate"] == 1
    assert db.count("quadruplets") == writer.accepted == 5 - sum(reasons.values())


@pytest.mark.parametrize("lands", ["before the check", "between the check and the commit"])
def test_a_pair_another_writer_built_meanwhile_is_kept_once(tmp_path, monkeypatch, lands):
    """Another build writes this batch's pairs after this writer listed them. Landed before the batch's check,
    the pairs leave this writer's fragments again; landed between the check and the append (appends do not meet on
    keys as upserts do), the writer sees the foreign commit and keeps one row per key."""
    import refvie.stages.write as write_module

    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(6, SMALL), db, QUIET)
    batch = stage_batch(db)
    writer = Write(db, expected_versions={t: db.table(t).version for t in ("quadruplets", "rejects")})
    writer.setup()
    other = lake.open(tmp_path / "lake")

    def other_build():
        return build_local(other, PipelineConfig(write_batch=8))

    if lands == "before the check":
        other_build()
    else:
        commit = write_module.commit_fragments

        def racing_commit(*args, **kwargs):
            other_build()
            return commit(*args, **kwargs)

        monkeypatch.setattr(write_module, "commit_fragments", racing_commit)
    written = writer(worker_written(db, batch))
    done, _ = final_state(db)  # asserts one row per key, no pair both built and rejected
    assert len(done) == 6 and db.count("quadruplets") == other.count("quadruplets") > 0
    assert sum(written.values()) == 6


def test_second_rows_under_one_key_are_removed_before_the_next_build(tmp_path):
    """A kill between the append and its clean-up can leave two rows under one key (two builds appended the same
    pair): the next writer's setup keeps the first and removes the rest."""
    db = lake.open(tmp_path / "lake")
    ingest(SyntheticSource(6, SMALL), db, QUIET)
    build_local(db, PipelineConfig(write_batch=8))
    ids = db.read("quadruplets", columns=["id", "pair_id"]).slice(0, 2)
    light = worker_written(db, stage_batch(db, ids["pair_id"].to_pylist()))  # a second build's rows of 2 pairs
    first_copies = db.take("quadruplets", ids["id"].to_pylist(), columns=["id", "edit_strength"]).to_pylist()
    commit_fragments(db, "quadruplets", parse_fragments(list(light["fragments_json"])))
    assert db.count("quadruplets") == db.count("pairs") - db.count("rejects") + 2
    assert drop_duplicate_keys(db, "quadruplets", ids["id"].to_pylist()[:1]) == 1  # only the keys asked for
    writer = Write(db)
    writer.setup()
    assert writer.repaired == 1
    final_state(db)
    assert db.take("quadruplets", ids["id"].to_pylist(), columns=["id", "edit_strength"]).to_pylist() == \
        first_copies
