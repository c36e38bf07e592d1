"""The pipeline's writer as the lake grows: small fragments are merged as it goes (so each upsert's key join and
manifest read stay small), its own compactions are not mistaken for another writer, and every row is counted."""

import numpy as np

import lake
from refvie.stages.write import Write, quadruplet_row, synthetic_batch


def _versions(db):
    return {t: db.table(t).version for t in ("quadruplets", "rejects")}


def test_the_writer_compacts_as_it_goes_and_counts_every_row(tmp_path):
    db = lake.open(tmp_path / "lake")
    writer = Write(db, compact_every=4, expected_versions=_versions(db))
    rng = np.random.default_rng(0)
    merged = []
    for start in range(0, 16 * 16, 16):
        writer(synthetic_batch(start, 16, rng, blob=64))
        if start == 3 * 16:  # the first compaction has just merged the first four batches
            merged = [f.fragment_id for f in db.dataset("quadruplets").get_fragments()]
    fragments = db.dataset("quadruplets").get_fragments()
    assert sorted(f.count_rows() for f in fragments) == [64] * 4  # without compaction: one fragment per batch, 16
    # each row is rewritten once: later compactions leave the first merged fragment as it is (merging into a
    # growing fragment rewrote it at every compaction, a per-row cost that grew with the lake)
    assert len(merged) == 1 and merged[0] in {f.fragment_id for f in fragments}
    assert not writer.shared  # its own compactions (a rewrite and a reservation each) are no foreign commit
    assert db.count("quadruplets") == writer.accepted == 256 and not writer.rejected
    # a duplicate of a row written 15 batches ago is still found after the compactions
    again = synthetic_batch(300, 2, rng, blob=64)
    first = db.read("quadruplets", columns=["instruction_emb", "target_emb"], where="pair_id = 'scale-000000003'")
    again["instruction_emb"][0] = np.asarray(first["instruction_emb"][0].as_py(), np.float32)
    again["target_emb"][0] = np.asarray(first["target_emb"][0].as_py(), np.float32)
    assert writer(again) == {"accepted": 1, "rejected": 1, "taken": 0}
    assert writer.rejected == {"duplicate": 1}


def test_a_foreign_commit_during_the_writers_life_is_still_noticed(tmp_path):
    """Compaction bookkeeping must not hide another writer: a row written by someone else between batches turns
    on the per-batch checks."""
    db = lake.open(tmp_path / "lake")
    writer = Write(db, compact_every=2, expected_versions=_versions(db))
    rng = np.random.default_rng(1)
    writer(synthetic_batch(0, 8, rng, blob=64))
    other = Write(db)
    other(synthetic_batch(100, 8, rng, blob=64))
    writer(synthetic_batch(8, 8, rng, blob=64))  # compacts after this batch
    assert writer.shared


def test_finish_merges_the_builds_fragments(tmp_path):
    db = lake.open(tmp_path / "lake")
    writer = Write(db, compact_every=2, expected_versions=_versions(db))
    rng = np.random.default_rng(2)
    for start in range(0, 12 * 16, 16):
        writer(synthetic_batch(start, 16, rng, blob=64))
    assert len(db.dataset("quadruplets").get_fragments()) == 6
    writer.finish()
    assert [f.count_rows() for f in db.dataset("quadruplets").get_fragments()] == [192]
    assert db.count("quadruplets") == 192 and not writer.shared


def test_a_build_onto_an_indexed_lake_compacts_without_error(tmp_path):
    """A lake past `index_min_rows` has vector indexes; compacting its fragments remaps them, and pylance cannot
    read that commit back (`get_transactions` raised TypeError, so every later build crashed at its first
    compaction)."""
    db = lake.open(tmp_path / "lake")
    rng = np.random.default_rng(3)
    first = Write(db, compact_every=100, expected_versions=_versions(db))
    for start in range(0, 512, 64):
        first(synthetic_batch(start, 64, rng, blob=16))
    assert db.index_vectors("quadruplets", "target_emb")
    second = Write(db, compact_every=2, expected_versions=_versions(db))
    for start in range(1000, 1128, 32):
        second(synthetic_batch(start, 32, rng, blob=16))
    second.finish()  # merges the indexed fragments too: the index is remapped
    assert db.count("quadruplets") == 640 and not second.shared
    assert db.table("quadruplets").list_indices()


def test_from_key_index_rows_upserts_go_through_an_index_that_keeps_up(tmp_path):
    db = lake.open(tmp_path / "lake")
    writer = Write(db, compact_every=2, key_index_rows=64, expected_versions=_versions(db))
    rng = np.random.default_rng(4)
    for start in range(0, 20 * 16, 16):
        writer(synthetic_batch(start, 16, rng, blob=16))
    dataset = db.dataset("quadruplets")
    stats = dataset.stats.index_stats("id_idx")
    assert stats["num_indexed_rows"] >= 4 * stats["num_unindexed_rows"] and stats["num_indexed_rows"] >= 256
    assert not writer.shared  # its index commits are its own, like its compactions
    # an upsert of indexed and unindexed keys still replaces, never duplicates
    again = synthetic_batch(0, 16, rng, blob=16)
    later = synthetic_batch(312, 8, rng, blob=16)
    rows = [quadruplet_row(b, i, writer.pipeline_version, writer.split_fractions)
            for b, n in ((again, 16), (later, 8)) for i in range(n)]
    result = db.upsert("quadruplets", rows)
    assert (result.inserted, result.updated) == (0, 24)
    assert db.count("quadruplets") == 320


def test_a_compaction_preempted_by_another_builds_compaction_plans_again(tmp_path, monkeypatch):
    """Two builds on one lake both compact at their end; the later commit of two rewrites of the same fragments is
    refused by Lance ("Retryable commit conflict ... preempted by concurrent transaction Rewrite"), which crashed the
    second build after all its rows were written (1 run in 12 of the two-builds test under load). The writer plans
    again against the newer version instead."""
    from lance.optimize import Compaction

    db = lake.open(tmp_path / "lake")
    writer = Write(db, compact_every=100, expected_versions=_versions(db))
    rng = np.random.default_rng(5)
    for start in range(0, 6 * 8, 8):
        writer(synthetic_batch(start, 8, rng, blob=16))
    real_plan, raced = Compaction.plan, []

    def plan_then_lose_the_race(dataset, options):
        plan = real_plan(dataset, options)
        if not raced:  # another build compacts the same fragments between this plan and its commit
            raced.append(True)
            db.dataset("quadruplets").optimize.compact_files(**options)
        return plan

    monkeypatch.setattr(Compaction, "plan", plan_then_lose_the_race)
    writer.finish()
    assert raced
    assert [f.count_rows() for f in db.dataset("quadruplets").get_fragments()] == [48]
    assert db.count("quadruplets") == 48 and writer.accepted == 48
