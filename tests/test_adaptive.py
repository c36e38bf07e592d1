"""Adaptive rebalancing: deterministic, exactly resumable mid-epoch with its weight history, elastic across ranks,
bounded by the repeat cap, and its weights rise for a category whose held-out loss stays high."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lake.adaptive import AdaptiveConfig, AdaptiveSampler, capped
from lake.balance import Strategy
from lake.slices import build_slice
from tests.conftest import quadruplet_rows

CONFIG = AdaptiveConfig(update_every=16, step_size=2.0, smoothing=0.05, max_repeats=3.0)


@pytest.fixture(scope="module")
def slice_(tmp_path_factory):
    import lake

    db = lake.open(tmp_path_factory.mktemp("adaptive") / "lake")
    db.upsert("quadruplets", quadruplet_rows(200, videos=False))
    return build_slice(db, strategy=Strategy("natural"))


def stuck_loss(category: str, step: int) -> dict[str, float]:
    """Every category's held-out loss halves over training, except `category`'s, which stays where it began."""
    decay = 0.5 ** (step / 4)
    return {c: 1.0 if c == category else decay for c in ("local_add", "local_remove", "local_change",
                                                        "background_change", "global_style")}


def run(sampler: AdaptiveSampler, n: int, start: int = 0, every: int = 16) -> list[str]:
    """Take n ids, feeding an update (as a trainer would) every `every` positions."""
    out = []
    for i, row in enumerate(itertools.islice(iter(sampler), n), start=start):
        out.append(str(row))
        if (i + 1) % every == 0:
            sampler.update(stuck_loss("background_change", (i + 1) // every), at_position=i + 1)
    return out


def test_weights_rise_for_a_category_whose_loss_stays_high(slice_):
    sampler = AdaptiveSampler(slice_, seed=0, config=CONFIG)
    before = sampler.weights["background_change"]
    ids = run(sampler, 160)
    after = sampler.weights["background_change"]
    assert after > 1.5 * before
    categories = dict(zip(slice_.ids, slice_.categories, strict=True))
    late = [categories[i] for i in ids[96:]]
    assert late.count("background_change") / len(late) > before * 1.5  # and the sequence follows the weights
    assert len(sampler.history) > 5 and sampler.history[-1]["losses"]["background_change"] == 1.0


def test_the_repeat_cap_bounds_every_weight(slice_):
    sampler = AdaptiveSampler(slice_, seed=0, config=AdaptiveConfig(update_every=16, step_size=20.0,
                                                                    max_repeats=1.2))
    run(sampler, 160)
    limit = {c: 1.2 * n / slice_.epoch_size for c, n in slice_.allocation.counts.items()}
    assert all(w <= limit[c] + 1e-9 for entry in sampler.history for c, w in entry["weights"].items())
    assert capped({"a": 0.9, "b": 0.1}, {"a": 10, "b": 90}, 100, 2.0) == pytest.approx({"a": 0.2, "b": 0.8})


def test_same_seed_and_losses_give_the_same_sequence(slice_):
    assert run(AdaptiveSampler(slice_, 3, CONFIG), 120) == run(AdaptiveSampler(slice_, 3, CONFIG), 120)
    assert run(AdaptiveSampler(slice_, 3, CONFIG), 120) != run(AdaptiveSampler(slice_, 4, CONFIG), 120)


def test_resume_mid_epoch_replays_the_uninterrupted_run(slice_):
    whole = run(AdaptiveSampler(slice_, 1, CONFIG), 150)
    first = AdaptiveSampler(slice_, 1, CONFIG)
    head = run(first, 70)
    state = first.state_dict()
    resumed = AdaptiveSampler(slice_, 1, CONFIG)
    resumed.load_state_dict(state)
    assert head + run(resumed, 80, start=70) == whole
    with pytest.raises(ValueError, match="cannot resume.*seed"):
        AdaptiveSampler(slice_, 2, CONFIG).load_state_dict(state)
    with pytest.raises(ValueError, match="cannot resume.*config"):
        AdaptiveSampler(slice_, 1, AdaptiveConfig(update_every=8)).load_state_dict(state)


def test_ranks_together_read_the_single_rank_sequence(slice_):
    single = run(AdaptiveSampler(slice_, 5, CONFIG), 128)
    ranks = [AdaptiveSampler(slice_, 5, CONFIG, rank=r, world_size=2) for r in range(2)]
    streams = [iter(s) for s in ranks]
    merged = []
    for i in range(64):  # lockstep, as data-parallel workers run; every rank gets the same (all-reduced) update
        merged += [str(next(streams[0])), str(next(streams[1]))]
        if (2 * i + 2) % 16 == 0:
            for s in ranks:
                s.update(stuck_loss("background_change", (2 * i + 2) // 16), at_position=2 * i + 2)
    assert merged == single


def test_an_epoch_has_the_slice_epoch_size(slice_):
    sampler = AdaptiveSampler(slice_, 0, CONFIG)
    assert len(list(sampler)) == slice_.epoch_size
    assert np.isclose(sum(sampler.weights.values()), 1.0)
