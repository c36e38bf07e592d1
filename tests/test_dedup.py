"""The near-duplicate bank: the same decisions as checking rows one by one against a bank grown row by row
(what the writer did before), at a cost that does not copy the bank per row."""

import os

import numpy as np
import pytest

from lake.embed import l2_normalise
from refvie.stages.dedup import DuplicateBank, pair_hash


def one_by_one(batches, threshold):
    """The reference: every row against every kept row before it, in order."""
    kept_keys, kept_pairs, decisions = [], [], []
    for keys, pairs in batches:
        for key, pair in zip(keys, pairs, strict=True):
            dup = any(float(key @ k) >= threshold and p != pair for k, p in zip(kept_keys, kept_pairs, strict=True))
            decisions.append(dup)
            if not dup:
                kept_keys.append(key)
                kept_pairs.append(pair)
    return decisions


def test_batched_decisions_equal_the_row_by_row_check_within_and_across_batches():
    """Planted near-duplicates at the writer's threshold: in the same batch, in a later batch, the same pair
    twice, and a chain."""
    rng = np.random.default_rng(0)
    base = l2_normalise(rng.normal(size=(60, 32)).astype(np.float32))
    # planted near-duplicates: a row close to an earlier one (in the same batch or an earlier batch), the same
    # pair twice (no duplicate of itself), and a chain a~b~c where b is rejected so c is compared with a only
    rows = [base[i] for i in range(60)]
    pairs = [f"p{i}" for i in range(60)]
    rows[7] = l2_normalise(base[3] + 0.01 * rng.normal(size=32).astype(np.float32)[None])[0]  # same batch as 3
    rows[25] = l2_normalise(base[4] + 0.01 * rng.normal(size=32).astype(np.float32)[None])[0]  # a later batch
    rows[30], pairs[30] = base[12], "p12"  # the same pair again
    rows[41] = l2_normalise(base[40] + 0.08 * rng.normal(size=32).astype(np.float32)[None])[0]
    rows[42] = l2_normalise(rows[41] + 0.08 * rng.normal(size=32).astype(np.float32)[None])[0]
    keys = np.stack(rows)
    threshold = 0.995
    batches = [(keys[i : i + 16], pairs[i : i + 16]) for i in range(0, 60, 16)]
    bank = DuplicateBank(capacity=4)
    batched = [bool(x) for k, p in batches for x in bank.check_and_add(k, p, threshold)]
    assert batched == one_by_one(batches, threshold)
    assert batched[7] and batched[25] and not batched[30]
    assert bank.size == 60 - sum(batched) and len(bank._projected) <= 2 * bank.size  # doubling


def test_the_bank_grows_by_doubling_not_per_row():
    bank = DuplicateBank(capacity=2)
    reallocations, last = 0, None
    for i in range(1000):
        bank.add(np.ones((1, 8), np.float32) * i, [f"p{i}"])
        if bank._projected is not last:
            reallocations, last = reallocations + 1, bank._projected
    assert bank.size == 1000 and reallocations <= 11  # log2(1000 / 2) + the first shaping
    assert bank.pair_hashes[-1] == pair_hash("p999") and bank.keys[-1, 0] == 999


def test_the_full_keys_live_on_disk_and_memory_is_the_projection_per_row():
    """At 640 dimensions a banked key is 2.5 KB; the bank keeps ~140 bytes of it in memory (the projection and
    the pair's hash), reads the full key back only for the prefilter's candidates, and deletes its file on close."""
    rng = np.random.default_rng(3)
    keys = l2_normalise(rng.normal(size=(4096, 640)).astype(np.float32))
    bank = DuplicateBank(capacity=4096)
    for start in range(0, 4096, 256):
        bank.check_and_add(keys[start : start + 256], [f"p{i}" for i in range(start, start + 256)], 0.995)
    assert bank.size == 4096 and np.array_equal(bank.keys, keys)  # the file holds every key, in order
    # per row: projection, pair hash, squared norm, cell, place in its cell (doubling); per cell: its centroid
    per_row, per_cell = 32 * 4 + 8 + 4 + 4 + 2 * 4, 640 * 4 + 2 * 16 * 4
    assert bank.memory_bytes <= 4096 * per_row + bank.cells * per_cell < keys.nbytes / 10
    assert bank.exact_checks < 100  # random keys: the prefilter lets (almost) nothing through
    duplicate = l2_normalise(keys[10:11] + 1e-3 * rng.normal(size=(1, 640)).astype(np.float32))
    before = bank.exact_checks
    assert bank.check_and_add(duplicate, ["another"], 0.995).tolist() == [True] and bank.exact_checks > before
    path = f"/proc/self/fd/{bank._file.fileno()}"
    bank.close()
    assert not os.path.exists(path)


@pytest.mark.parametrize("threshold", [0.99, 0.9, 0.6])
def test_the_projected_prefilter_misses_nothing_on_clustered_keys(threshold):
    """Keys in tight clusters (many pairs near each other, as paraphrased instructions on similar clips): the
    32-dimensional prefilter plus the exact check decides as the full comparison does, at any threshold."""
    rng = np.random.default_rng(1)
    centres = l2_normalise(rng.normal(size=(12, 640)).astype(np.float32))
    spread = np.sqrt(2 - 2 * threshold) / np.sqrt(2 * 640)  # two members of a cluster sit about at the threshold
    noise = rng.normal(scale=spread, size=(400, 640)).astype(np.float32)
    keys = l2_normalise(centres[rng.integers(0, 12, 400)] + noise)
    pairs = [f"p{i}" for i in range(400)]
    batches = [(keys[i : i + 32], pairs[i : i + 32]) for i in range(0, 400, 32)]
    bank = DuplicateBank()
    batched = [bool(x) for k, p in batches for x in bank.check_and_add(k, p, threshold)]
    expected = one_by_one(batches, threshold)
    assert batched == expected and 0 < sum(expected) < 400


def test_a_duplicate_whose_difference_lies_in_the_projected_directions_is_caught():
    """The prefilter's worst case: the whole difference inside the 32 projected directions (no shrinking), at a
    cosine just above the threshold — the bound must hold exactly there."""
    rng = np.random.default_rng(2)
    threshold = 0.995
    a = l2_normalise(rng.normal(size=(1, 640)).astype(np.float32))
    bank = DuplicateBank()
    bank.add(a, ["a"])
    direction = bank.projection @ rng.normal(size=bank.projection.shape[1]).astype(np.float32)
    direction -= (direction @ a[0]) * a[0]  # orthogonal to a, still (almost) inside the projected span
    for scale in np.linspace(0.05, 0.2, 40):
        b = l2_normalise(a + scale * direction / np.linalg.norm(direction))
        if float(b[0] @ a[0]) < threshold + 1e-5:
            break
        candidate = b
    assert float(candidate[0] @ a[0]) >= threshold
    assert bank.check_and_add(candidate, ["b"], threshold).tolist() == [True]


@pytest.mark.parametrize("threshold", [0.995, 0.99])
def test_past_a_few_thousand_rows_the_bank_scans_only_nearby_cells_and_decides_the_same(monkeypatch, threshold):
    """Keys in clusters (as a real build's are), with near-duplicates planted at the threshold's edge, many of them
    across the boundary between two cells: the cells change no decision and spare most of the comparisons. (Cells
    from 1,024 rows here instead of 4,096, so that the test takes seconds.)"""
    from refvie.stages import dedup

    monkeypatch.setattr(dedup, "CELLS_FROM", 1024)
    rng = np.random.default_rng(5)
    centres = l2_normalise(rng.normal(size=(40, 640)).astype(np.float32))
    keys = l2_normalise(centres[rng.integers(0, 40, 3000)] + rng.normal(scale=0.03, size=(3000, 640)).astype(
        np.float32))
    radius = np.sqrt(2 - 2 * threshold)
    for i in range(1300, 3000, 7):  # a near-duplicate of an earlier row, just inside or just outside the threshold
        earlier = keys[rng.integers(0, i)]
        step = rng.normal(size=640).astype(np.float32)
        step -= (step @ earlier) * earlier
        angle = 2 * np.arcsin(radius / 2) * rng.choice([0.97, 1.03])
        keys[i] = np.cos(angle) * earlier + np.sin(angle) * step / np.linalg.norm(step)
    for i in range(2000, 3000, 11):  # halfway between two centres: on a cell boundary, and near an earlier row there
        keys[i] = l2_normalise((centres[i % 40] + centres[(i + 1) % 40])[None])[0]
    pairs = [f"p{i}" for i in range(3000)]
    batches = [(keys[i : i + 32], pairs[i : i + 32]) for i in range(0, 3000, 32)]

    celled = DuplicateBank()
    with_cells = [bool(x) for k, p in batches for x in celled.check_and_add(k, p, threshold)]
    monkeypatch.setattr(dedup, "CELLS_FROM", 10**9)
    whole = DuplicateBank()
    scanning_all = [bool(x) for k, p in batches for x in whole.check_and_add(k, p, threshold)]

    assert with_cells == scanning_all and 150 < sum(with_cells) < 3000
    assert celled.cells >= 16 and whole.cells == 0
    assert celled.rows_scanned < whole.rows_scanned / 3
    assert np.array_equal(celled.keys, whole.keys)
