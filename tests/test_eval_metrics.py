"""Automatic metrics on constructed videos with known answers, and the published aggregation."""

import math

import numpy as np
import pandas as pd
import pytest

from kiwi.eval import metrics
from kiwi.eval.aggregate import category_table, overall
from kiwi.eval.paper import OPENVE_CATEGORIES, PAPER_ROWS


@pytest.fixture
def video():
    rng = np.random.default_rng(0)
    return rng.integers(40, 200, size=(5, 32, 48, 3), dtype=np.uint8)


def test_identical_videos_score_perfectly(video):
    assert metrics.psnr(video, video) == metrics.PSNR_CAP
    assert metrics.ssim(video, video) == pytest.approx(1.0)
    assert metrics.temporal_stability(video, video) == pytest.approx(1.0)
    assert metrics.masked_psnr(video, video, np.zeros((8, 8), bool)) == metrics.PSNR_CAP


def test_a_known_brightness_shift_gives_the_textbook_psnr(video):
    shifted = video + np.uint8(10)  # values stay below 255: every pixel off by exactly 10
    assert metrics.psnr(shifted, video) == pytest.approx(10 * math.log10(255**2 / 100))
    assert metrics.ssim(shifted, video) < 1.0


def test_masked_psnr_sees_only_what_lies_outside_the_edit(video):
    mask = np.zeros((32, 48), bool)
    mask[8:24, 16:32] = True
    inside = video.copy()
    inside[:, mask] = 0  # a big change inside the edit mask
    assert metrics.masked_psnr(inside, video, mask) == metrics.PSNR_CAP
    assert metrics.psnr(inside, video) < 20
    outside = video.copy()
    outside[:, ~mask] += np.uint8(5)
    assert metrics.masked_psnr(outside, video, mask) == pytest.approx(10 * math.log10(255**2 / 25))
    # a keyframe mask at another resolution is resized to the frames
    assert metrics.masked_psnr(inside, video, np.kron(mask, np.ones((2, 2), bool))) == metrics.PSNR_CAP
    assert metrics.masked_psnr(video, video, np.ones((4, 4), bool)) is None  # a global edit has no outside


def test_temporal_stability_compares_motion_with_the_target(video):
    frozen = np.repeat(video[:1], len(video), axis=0)
    assert metrics.temporal_change_ratio(frozen, video) == 0.0
    assert metrics.temporal_stability(frozen, video) < 0.01
    ramp = np.stack([np.full((16, 16, 3), 10 * t, np.uint8) for t in range(5)])  # 10 grey levels a frame
    faster = np.stack([np.full((16, 16, 3), 20 * t, np.uint8) for t in range(5)])
    assert metrics.temporal_change_ratio(faster, ramp) == pytest.approx(2.0)
    assert metrics.temporal_stability(faster, ramp) == pytest.approx(0.5)


def test_reference_fidelity_prefers_the_referenced_subject():
    rng = np.random.default_rng(1)
    background = np.full((5, 64, 64, 3), 120, np.uint8)
    subject = np.zeros((20, 20, 3), np.uint8)
    subject[..., 0] = 230
    subject[5:15, 5:15, 2] = 200
    other = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[22:42, 22:42] = True
    with_subject, with_other = background.copy(), background.copy()
    with_subject[:, 22:42, 22:42] = subject
    with_other[:, 22:42, 22:42] = other
    good = metrics.reference_fidelity(with_subject, subject, mask, "ref_subject")
    bad = metrics.reference_fidelity(with_other, subject, mask, "ref_subject")
    assert good > 0.85 and good > bad + 0.2, (good, bad)


def test_shape_mismatch_is_a_clear_error(video):
    with pytest.raises(ValueError, match="psnr: videos differ in shape"):
        metrics.psnr(video, video[:3])


def test_every_published_openve_row_has_an_overall_equal_to_the_mean_of_its_five_categories():
    rows = PAPER_ROWS["openve-bench"]
    assert len(rows) >= 9 and all(set(r.categories) == set(OPENVE_CATEGORIES) for r in rows)
    for row in rows:  # the paper rounds to two places: a transcription slip shows here
        assert overall(row.categories.values()) == pytest.approx(row.overall, abs=0.0101), row.method
    kiwi = [r for r in rows if r.method.startswith("Kiwi-Edit")][0]
    assert [kiwi.categories[c] for c in OPENVE_CATEGORIES] == [3.64, 2.64, 3.83, 2.63, 2.36]


def test_refvie_pools_every_score_while_openve_averages_category_means():
    rows = []
    for i in range(3):  # three subject items, every dimension 5
        rows += [dict(item_id=f"s{i}", category="ref_subject", metric=m, value=5.0) for m in "ABC"]
    rows += [dict(item_id="b0", category="ref_background", metric=m, value=2.0) for m in "DEF"]
    frame = pd.DataFrame(rows)
    # by hand: pooled = (9 scores x 5 + 3 scores x 2) / 12 = 4.25; mean of the category means = (5 + 2) / 2 = 3.5
    assert category_table(frame, pooled=True).loc["overall", "score"] == 4.25
    assert category_table(frame).loc["overall", "score"] == 3.5
    assert category_table(frame, pooled=True).loc["ref_subject", "score"] == 5.0


def test_category_table_averages_dimensions_then_categories_without_weighting_by_size():
    rows = []
    for i in range(3):  # a big category: mean of its two dimensions over 3 items = 4
        rows += [dict(item_id=f"a{i}", category="local_add", metric="IC", value=5.0),
                 dict(item_id=f"a{i}", category="local_add", metric="VQ", value=3.0)]
    rows += [dict(item_id="b0", category="background_change", metric="IC", value=2.0),
             dict(item_id="b0", category="background_change", metric="VQ", value=2.0),
             dict(item_id="c0", category="subtitles_edit", metric="IC", value=5.0),
             dict(item_id="c0", category="subtitles_edit", metric="VQ", value=5.0)]
    table = category_table(pd.DataFrame(rows), ["IC", "VQ"], excluded={"subtitles_edit"})
    assert table.loc["local_add", "score"] == 4.0 and table.loc["local_add", "items"] == 3
    assert table.loc["overall", "score"] == 3.0  # (4 + 2) / 2: the reported-apart category is left out
    assert table.loc["subtitles_edit", "score"] == 5.0 and not table.loc["subtitles_edit", "counts"]
