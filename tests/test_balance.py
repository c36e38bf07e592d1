"""Rebalancing strategies on constructed counts: exact shares, exact caps, honest warnings."""

import pytest

from lake.balance import Strategy, allocate, largest_remainder, unimax

COUNTS = {"local_add": 600, "local_change": 200, "background_change": 150, "global_style": 50}  # 1,000 rows


def shares(strategy, counts=COUNTS, **kw):
    return {c: round(v, 6) for c, v in allocate(counts, strategy, **kw).shares.items()}


def test_natural_and_uniform():
    assert shares(Strategy("natural")) == {"local_add": 0.6, "local_change": 0.2, "background_change": 0.15,
                                           "global_style": 0.05}
    assert set(shares(Strategy("uniform")).values()) == {0.25}


def test_temperature_is_power_of_counts():
    got = allocate(COUNTS, Strategy("temperature", alpha=0.5)).shares
    roots = {c: n**0.5 for c, n in COUNTS.items()}
    assert got == pytest.approx({c: r / sum(roots.values()) for c, r in roots.items()})
    assert shares(Strategy("temperature", alpha=1.0)) == shares(Strategy("natural"))
    assert shares(Strategy("temperature", alpha=0.0)) == shares(Strategy("uniform"))


def test_target_proportions_are_normalised_and_checked():
    got = shares(Strategy("target", proportions={"local_add": 2, "background_change": 1, "global_style": 1}))
    assert got == {"local_add": 0.5, "local_change": 0.0, "background_change": 0.25, "global_style": 0.25}
    with pytest.raises(ValueError, match=r"no rows: \['zoom'\]"):
        allocate(COUNTS, Strategy("target", proportions={"zoom": 1}))


def test_cap_max_repeats_is_unimax():
    # budget 1,000 over 4 categories: fair share 250; global_style can take at most 2 x 50 = 100, the 150 it
    # cannot take is split over the other three (300 each), background_change (150 rows) then is capped at 300
    # (exactly 2 repeats), local_change at 300 and local_add gets the rest: 300.
    alloc = allocate(COUNTS, Strategy("cap", max_repeats=2))
    assert alloc.samples() == {"global_style": 100, "background_change": 300, "local_change": 300, "local_add": 300}
    assert max(alloc.repeats().values()) <= 2 + 1e-9
    assert unimax({"a": 10, "b": 1000}, 100, max_repeats=1.0) == pytest.approx({"a": 0.1, "b": 0.9})


def test_cap_max_rows_flattens_without_repeats():
    alloc = allocate(COUNTS, Strategy("cap", max_rows=100))
    assert alloc.samples() == {"local_add": 100, "local_change": 100, "background_change": 100, "global_style": 50}
    assert alloc.epoch_size == 350 and max(alloc.repeats().values()) == pytest.approx(1.0)


def test_report_and_repeat_warning():
    alloc = allocate(COUNTS, Strategy("uniform"))
    report = {r["category"]: r for r in alloc.report()}
    assert report["global_style"] == dict(category="global_style", rows=50, share_before=0.05, share_after=0.25,
                                          samples_per_epoch=250, expected_repeats=5.0)
    assert alloc.warnings == ("global_style: each row would repeat 5.0 times per epoch (more than 4)",)
    assert sum(r["samples_per_epoch"] for r in alloc.report()) == 1000


def test_largest_remainder_sums_exactly():
    assert largest_remainder({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10) == {"a": 4, "b": 3, "c": 3}
    assert sum(largest_remainder({"a": 0.123, "b": 0.877}, 7).values()) == 7


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(name="magic"), "unknown strategy"),
    (dict(name="temperature"), "alpha"),
    (dict(name="cap"), "exactly one of"),
    (dict(name="cap", max_rows=10, max_repeats=2), "exactly one of"),
    (dict(name="target"), "proportions"),
])
def test_bad_strategies_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Strategy(**kwargs)
