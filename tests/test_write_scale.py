"""The pipeline's writer as the lake grows: small fragments are merged as it goes (so each upsert's key join and
manifest read stay small), its own compactions are not mistaken for another writer, and every row is counted."""

import numpy as np

import lake
from refvie.stages.write import Write, synthetic_batch


def test_the_writer_compacts_as_it_goes_and_counts_every_row(tmp_path):
    db = lake.open(tmp_path / "lake")
    writer = Write(db, compact_every=4, compact_rows=64,
                   expected_versions={t: db.table(t).version for t in ("quadruplets", "rejects")})
    rng = np.random.default_rng(0)
    for start in range(0, 16 * 16, 16):
        writer(synthetic_batch(start, 16, rng, blob=64))
    fragments = db.dataset("quadruplets").get_fragments()
    assert len(fragments) <= 4 + 256 // 64  # without compaction: one fragment per batch, 16
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
    writer = Write(db, compact_every=2, compact_rows=64,
                   expected_versions={t: db.table(t).version for t in ("quadruplets", "rejects")})
    rng = np.random.default_rng(1)
    writer(synthetic_batch(0, 8, rng, blob=64))
    other = Write(db)
    other(synthetic_batch(100, 8, rng, blob=64))
    writer(synthetic_batch(8, 8, rng, blob=64))  # compacts after this batch
    assert writer.shared
