"""Streaming a slice into batches: preprocessing, exact order, exact resume, the mix consumed."""

from collections import Counter

import numpy as np
import pytest
import torch

from kiwi.data import DataConfig, SliceLoader, reference_on_white
from lake.balance import Strategy
from lake.clips import resize_crop, sample_frames
from lake.slices import build_slice
from tests.conftest import synthetic_quadruplet_lake


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = synthetic_quadruplet_lake(tmp_path_factory.mktemp("data") / "lake", 48, seed=8, size=96)
    return db


def signature(loaded) -> tuple:
    b = loaded.batch
    return (tuple(loaded.ids), b.source.numpy().tobytes(), b.target.numpy().tobytes(),
            None if b.reference is None else b.reference.numpy().tobytes())


def test_preprocessing_shapes():
    clip = np.random.default_rng(0).integers(0, 255, (9, 96, 128, 3), dtype=np.uint8)
    out = resize_crop(sample_frames(clip, 5), 64)
    assert out.shape == (5, 64, 64, 3)
    assert sample_frames(clip[:2], 5).shape[0] == 5
    ref = reference_on_white(np.zeros((40, 80, 3), np.uint8), 64, 0.7)
    assert ref.shape == (64, 64, 3) and ref[0, 0].tolist() == [255, 255, 255] and (ref == 0).any()
    with pytest.raises(ValueError, match="4k\\+1"):
        DataConfig(frames=6)


def test_batches_are_deterministic_and_resume_exactly(db):
    s = build_slice(db, where="task = 'ref_subject'", strategy=Strategy("uniform"), seed=1)
    make = lambda: SliceLoader(db, s, DataConfig(), batch_size=3, seed=1, task="ref_subject")  # noqa: E731
    whole = [signature(b) for b in make()]
    assert len(whole) == s.epoch_size // 3 and whole == [signature(b) for b in make()]
    interrupted = make()
    it = iter(interrupted)
    head = [signature(next(it)) for _ in range(2)]
    state = interrupted.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert head + [signature(b) for b in resumed] == whole
    first = next(iter(make()))
    assert first.batch.source.shape == (3, 5, 64, 64, 3) and first.batch.reference.shape == (3, 64, 64, 3)
    for pixels in (first.batch.source, first.batch.target, first.batch.reference):  # torch batches, ready to move
        assert isinstance(pixels, torch.Tensor) and pixels.dtype == torch.uint8


def test_two_ranks_together_see_the_single_rank_batches(db):
    s = build_slice(db, strategy=Strategy("natural"), seed=2)
    one = [tuple(b.ids) for b in SliceLoader(db, s, DataConfig(), batch_size=4, seed=2, task="instruct",
                                              world_size=1)]
    ranks = [[b.ids for b in SliceLoader(db, s, DataConfig(), batch_size=2, seed=2, task="instruct", rank=r,
                                         world_size=2)] for r in range(2)]
    single_ids = [i for batch in one for i in batch]
    # the sampler interleaves ranks position by position, so rank r holds every other id of the global order
    merged = [ranks[g % 2][(g // 2) // 2][(g // 2) % 2] for g in range(min(len(single_ids), 2 * 2 * len(ranks[0])))]
    assert merged == single_ids[: len(merged)]


def test_consumed_categories_follow_the_slice_mix(db):
    s = build_slice(db, strategy=Strategy("uniform"), seed=3, epoch_size=300)
    loader = SliceLoader(db, s, DataConfig(), batch_size=10, seed=3, task="instruct", mode="stratified")
    counts = Counter(t for b in loader for t in b.edit_types)
    assert set(counts.values()) == {60}  # 300 samples, 5 categories, every batch holds the mix


def test_the_ray_data_path_delivers_the_thread_path_batches_and_resumes_alike(db, ray_local):
    s = build_slice(db, strategy=Strategy("temperature", alpha=0.3), seed=3)

    def make(ray):
        return SliceLoader(db, s, DataConfig(ray=ray), batch_size=4, seed=3, task="instruct")

    threads = [signature(b) for b in make(False)]
    by_ray = [signature(b) for b in make(True)]
    assert by_ray == threads and len(threads) == s.epoch_size // 4
    interrupted = make(True)
    it = iter(interrupted)
    head = [signature(next(it)) for _ in range(3)]
    resumed = make(True)
    resumed.load_state_dict(interrupted.state_dict())
    assert head + [signature(b) for b in resumed] == threads
    reference = build_slice(db, where="task = 'ref_subject'", seed=3)
    one = next(iter(SliceLoader(db, reference, DataConfig(ray=True), batch_size=2, seed=3, task="ref_subject")))
    same = next(iter(SliceLoader(db, reference, DataConfig(), batch_size=2, seed=3, task="ref_subject")))
    assert signature(one) == signature(same) and isinstance(one.batch.reference, torch.Tensor)


def test_frame_policy_takes_a_consecutive_prefix_and_keeps_the_aspect_within_a_pixel_budget(db):
    from lake.clips import fit_frames, frame_shape, take_frames

    clip = np.arange(12)[:, None, None, None] * np.ones((12, 4, 4, 3), np.uint8)
    assert take_frames(clip, 5, "prefix")[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]  # upstream: the first frames
    assert take_frames(clip, 5, "spread")[:, 0, 0, 0].tolist() == [0, 3, 6, 8, 11]
    assert take_frames(clip[:3], 5, "prefix")[:, 0, 0, 0].tolist() == [0, 1, 2, 2, 2]  # short: the last repeats
    assert frame_shape(720, 1280, 720 * 1280) == (704, 1280) and frame_shape(1080, 1920, 480 * 832) == (448, 832)
    wide = np.zeros((2, 90, 160, 3), np.uint8)
    wide[:, :, :30] = 255  # a white band at the left edge: cropped away when the frame is made narrower
    assert fit_frames(wide, (64, 64)).shape == (2, 64, 64, 3) and fit_frames(wide, (64, 64))[0, 32, 0, 0] == 0
    with pytest.raises(ValueError, match="sampling='middle'"):
        DataConfig(sampling="middle")
    s = build_slice(db, where="task = 'ref_subject'", strategy=Strategy("uniform"), seed=1)
    budget = DataConfig(max_pixels=64 * 64, sampling="prefix")  # 96x96 clips -> 64x64, whole frame, no crop
    batch = next(iter(SliceLoader(db, s, budget, batch_size=2, seed=1, task="ref_subject"))).batch
    assert tuple(batch.source.shape) == (2, 5, 64, 64, 3) and tuple(batch.reference.shape) == (2, 64, 64, 3)


@pytest.fixture(scope="module")
def two_shapes(tmp_path_factory):
    """Landscape 64x96 and portrait 96x64 clips in one lake."""
    import lake
    from refvie.ingest import IngestConfig, ingest
    from refvie.pipeline import build_local
    from refvie.sources import SyntheticSource
    from refvie.synthetic import SyntheticConfig

    db = lake.open(tmp_path_factory.mktemp("shapes") / "lake")
    for seed, (height, width) in ((11, (64, 96)), (12, (96, 64))):
        config = SyntheticConfig(frames=5, height=height, width=width, seed=seed, dataset=f"shape{seed}")
        ingest(SyntheticSource(12, config), db, IngestConfig(progress=False))
    build_local(db)
    return db


def test_batches_are_bucketed_by_frame_shape_and_keep_order_resume_and_ranks(two_shapes):
    """With a pixel budget and batches > 1, every batch holds clips of one shape (none cropped to another's);
    bucketing is part of the one global sequence, so a resumed loader and two ranks read what one loader reads."""
    from lake.sampler import bucket_batches

    db = two_shapes
    keys = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1])
    order = bucket_batches(keys, 2)
    assert sorted(order.tolist()) == list(range(9))  # a permutation: nothing dropped
    assert order.tolist() == [1, 2, 0, 3, 5, 6, 4, 7, 8]  # full batches as their bucket fills, leftovers last
    native = dict(db.sql("SELECT id, height, width FROM quadruplets").to_pandas()
                  .pipe(lambda f: zip(f["id"], zip(f["height"], f["width"], strict=True), strict=True)))
    assert set(native.values()) == {(64, 96), (96, 64)}
    s = build_slice(db, strategy=Strategy("natural"), seed=2)
    config = DataConfig(max_pixels=64 * 96, sampling="prefix")
    make = lambda **kw: SliceLoader(db, s, config, seed=2, task="instruct", **kw)  # noqa: E731
    batches = list(make(batch_size=4))
    pure = [len({native[i] for i in b.ids}) == 1 for b in batches]
    assert all(pure[:-1]) and len(batches) == s.epoch_size // 4  # leftovers make at most the last batch mixed
    for b in batches[:-1]:  # each at its own clips' shape: landscape and portrait batches both
        assert tuple(b.batch.source.shape[2:4]) == native[b.ids[0]]
    assert {tuple(b.batch.source.shape[2:4]) for b in batches} == {(64, 96), (96, 64)}
    unbucketed = [b.ids for b in SliceLoader(db, s, DataConfig(max_pixels=64 * 96, bucket_by_shape=False), 4, 2,
                                             "instruct")]
    assert not all(len({native[i] for i in ids}) == 1 for ids in unbucketed)  # what bucketing prevents
    interrupted = make(batch_size=4)
    it = iter(interrupted)
    head = [next(it).ids for _ in range(2)]
    resumed = make(batch_size=4)
    resumed.load_state_dict(interrupted.state_dict())
    assert head + [b.ids for b in resumed] == [b.ids for b in batches]
    ranks = [[b.ids for b in make(batch_size=2, rank=r, world_size=2)] for r in range(2)]
    dealt = [[x for pair in zip(a, b, strict=True) for x in pair] for a, b in zip(*ranks, strict=True)]
    assert dealt == [b.ids for b in batches]
    with pytest.raises(ValueError, match="cannot resume: the saved sampler has bucketed=False"):
        make(batch_size=4).load_state_dict(SliceLoader(db, s, DataConfig(max_pixels=64 * 96, bucket_by_shape=False),
                                                       4, 2, "instruct").state_dict())


def test_a_short_clip_is_cut_to_4k_plus_1_frames_as_upstream_trains():
    from lake.clips import cut_to_4k1, take_frames

    clip = np.arange(50)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    assert len(take_frames(clip, 81, "prefix_cut")) == 49 == cut_to_4k1(50)  # upstream: 4k+1 frames of a short clip
    assert (take_frames(clip, 81, "prefix_cut")[:, 0, 0, 0] == np.arange(49)).all()
    assert len(take_frames(clip, 81, "prefix")) == 81  # the repeat-the-last-frame reading, for comparison
    assert len(take_frames(clip, 33, "prefix_cut")) == 33 and cut_to_4k1(81) == 81 and cut_to_4k1(4) == 1


def test_decoded_rows_are_kept_so_a_later_epoch_reads_nothing_and_sees_the_same_batches(db, monkeypatch):
    from kiwi import decoded_rows as data

    monkeypatch.setattr(data, "DECODED", data.DecodedRows())  # a cache of this test's own
    s = build_slice(db, where="split = 'train'", strategy=Strategy("uniform"), seed=3)
    reads = []
    read_blobs = db.read_blobs
    monkeypatch.setattr(db, "read_blobs", lambda *a, **k: reads.append(a) or read_blobs(*a, **k))

    def epoch(n, mb):
        return [signature(b) for b in SliceLoader(db, s, DataConfig(decoded_cache_mb=mb), batch_size=4, seed=3,
                                                  task="instruct", epoch=n)]

    def read_ids():
        ids = {i for call in reads for i in call[2]}
        reads.clear()
        return ids

    uncached = [epoch(n, 0) for n in (0, 1)]
    read_ids()
    first = epoch(0, 64)
    decoded = read_ids()
    assert decoded  # the first epoch decodes
    second = epoch(1, 64)
    assert not read_ids() & decoded  # the second reads no row the first decoded
    assert [first, second] == uncached  # and sees the same pixels
    assert data.DECODED.used > 0 and len(data.DECODED._rows) >= len(decoded)
    tight = data.DecodedRows(budget=3 * next(iter(data.DECODED._rows.values()))["source"].nbytes * 16)
    for key, row in list(data.DECODED._rows.items()):
        tight.put(key, row)
    assert 0 < len(tight._rows) < len(data.DECODED._rows) and tight.used <= tight.budget  # least recent out
