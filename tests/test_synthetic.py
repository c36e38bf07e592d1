"""The synthetic edit world: every edit type, its ground truth, determinism, and the category mix."""

from collections import Counter

import numpy as np
import pytest

from lake import media
from lake.taxonomy import EditType
from refvie.synthetic import DEFAULT_MIX, SyntheticConfig, SyntheticWorld
from refvie.synthetic.sprites import Sprite, paste


def only(edit_type: str, **kw) -> SyntheticWorld:
    return SyntheticWorld(SyntheticConfig(mix={edit_type: 1.0}, frames=9, height=64, width=64, **kw))


def coverage(sprite_fields: dict, frames: int, height: int, width: int) -> np.ndarray:
    canvas = np.zeros((frames, height, width, 3), np.uint8)
    return paste(canvas, Sprite(**sprite_fields))


def sprite_coverage(sample, which: list[dict]) -> np.ndarray:
    T, H, W = sample.mask.shape
    cover = np.zeros((T, H, W), bool)
    for fields in which:
        cover |= coverage(fields, T, H, W)
    return cover


@pytest.mark.parametrize("seed", range(4))
def test_local_add_mask_is_the_new_sprite_and_the_reference_matches_it(seed):
    s = only("local_add", seed=seed).sample(0)
    new = s.meta["edited_sprite"]
    cover = coverage(new, *s.mask.shape)
    assert s.mask.any() and not (s.mask & ~cover).any()  # nothing outside the new sprite changed
    assert (s.mask.sum() / cover.sum()) > 0.97  # and (almost) all of it did; the rest matched the background by chance
    sprite = Sprite(**new)
    T, H, W = s.mask.shape
    inside = [t for t, (y, x) in enumerate(sprite.positions(T, H, W))
              if 0 <= y and 0 <= x and y + sprite.size <= H and x + sprite.size <= W]
    assert inside, "the new sprite is fully visible in at least one frame"
    t = inside[0]
    y, x = sprite.positions(T, H, W)[t]
    alpha = sprite.alpha()
    on_target = s.target[t, y : y + sprite.size, x : x + sprite.size][alpha]
    ry, rx = (H - sprite.size) // 2, (W - sprite.size) // 2
    on_reference = s.reference[ry : ry + sprite.size, rx : rx + sprite.size][alpha]
    assert np.array_equal(on_target, on_reference)
    assert (s.reference[~_centred(alpha, H, W)] == 255).all()  # white everywhere else


def _centred(alpha: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.zeros((height, width), bool)
    y, x = (height - alpha.shape[0]) // 2, (width - alpha.shape[1]) // 2
    out[y : y + alpha.shape[0], x : x + alpha.shape[1]] = alpha
    return out


@pytest.mark.parametrize("seed", range(4))
def test_local_remove_changes_only_where_the_sprite_was(seed):
    s = only("local_remove", seed=seed).sample(0)
    victim = coverage(s.meta["edited_sprite"], *s.mask.shape)
    assert s.mask.any() and not (s.mask & ~victim).any()
    assert s.reference is None
    assert "remove" in s.instruction.lower() or any(
        w in s.instruction.lower() for w in ("delete", "erase", "rid", "take out", "eliminate"))


@pytest.mark.parametrize("seed", range(6))
def test_local_change_reference_is_the_new_look_at_the_old_place(seed):
    s = only("local_change", seed=seed).sample(0)
    old = s.meta["sprites"][-1]
    new = s.meta["edited_sprite"]
    assert (new["x0"], new["y0"], new["motion"]) == (old["x0"], old["y0"], old["motion"])
    assert (new["shape"], new["colour"], new["texture"]) != (old["shape"], old["colour"], old["texture"])
    region = sprite_coverage(s, [old, new])
    assert s.mask.any() and not (s.mask & ~region).any()
    sprite = Sprite(**new)
    T, H, W = s.mask.shape
    ry, rx = (H - sprite.size) // 2, (W - sprite.size) // 2
    assert np.array_equal(s.reference[ry : ry + sprite.size, rx : rx + sprite.size][sprite.alpha()],
                          sprite.rgb()[sprite.alpha()])


@pytest.mark.parametrize("seed", range(4))
def test_background_change_keeps_every_sprite(seed):
    s = only("background_change", seed=seed).sample(0)
    sprites = sprite_coverage(s, s.meta["sprites"])
    assert np.array_equal(s.source[sprites], s.target[sprites])
    assert s.mask[~sprites].mean() > 0.8  # the background itself changed almost everywhere
    assert not (s.mask & sprites).any()
    assert s.reference.shape == s.source.shape[1:]
    plate_pixels = ~sprites[0]
    assert np.array_equal(s.reference[plate_pixels], s.target[0][plate_pixels])  # the reference is the new plate


@pytest.mark.parametrize("seed", range(6))
def test_global_style_changes_every_frame(seed):
    s = only("global_style", seed=seed).sample(0)
    per_frame = np.abs(s.source.astype(int) - s.target.astype(int)).mean(axis=(1, 2, 3))
    assert (per_frame > 4).all(), per_frame
    assert s.mask.all()
    assert s.reference.shape == s.source.shape[1:] and not np.array_equal(s.reference, s.target[0])


def test_mask_matches_the_change_after_video_coding():
    """Ground truth survives H.264: where the decoded clips differ clearly, the mask (give or take the 2 pixels
    that 4:2:0 chroma and block edges smear) says so, and most of the mask clearly differs."""
    from scipy.ndimage import binary_dilation

    for edit in ("local_add", "local_remove", "local_change", "background_change"):
        for index in range(3):
            s = only(edit, seed=3).sample(index)
            src, tgt = (media.decode_video(media.encode_video(c)) for c in (s.source, s.target))
            changed = np.abs(src.astype(int) - tgt.astype(int)).max(-1) > 40
            near_mask = binary_dilation(s.mask, structure=np.ones((1, 5, 5), bool))
            precision = (changed & near_mask).sum() / max(changed.sum(), 1)
            recall = (changed & s.mask).sum() / s.mask.sum()
            assert precision > 0.97 and recall > 0.8, (edit, index, precision, recall)


def test_same_seed_gives_byte_identical_samples_and_videos():
    a, b = SyntheticWorld(SyntheticConfig(seed=11)), SyntheticWorld(SyntheticConfig(seed=11))
    for i in (0, 7, 123):
        sa, sb = a.sample(i), b.sample(i)
        assert sa.instruction == sb.instruction and sa.edit_type == sb.edit_type
        for name in ("source", "target", "mask"):
            assert np.array_equal(getattr(sa, name), getattr(sb, name))
        assert media.encode_video(sa.target) == media.encode_video(sb.target)
    assert not np.array_equal(SyntheticWorld(SyntheticConfig(seed=12)).sample(0).source, a.sample(0).source)


def test_samples_are_random_access():
    world = SyntheticWorld(SyntheticConfig(frames=5, height=32, width=32))
    in_order = [s.instruction for s in world.samples(6)]
    assert [world.sample(i).instruction for i in (5, 2, 0)] == [in_order[5], in_order[2], in_order[0]]
    assert [s.pair_id for s in world.samples(2, start=4)] == ["syn-0-00000004", "syn-0-00000005"]


def test_default_mix_mimics_the_local_skew_and_custom_mixes_hold():
    world = SyntheticWorld()
    counts = Counter(world.edit_type(i).value for i in range(6000))
    for edit, share in DEFAULT_MIX.items():
        assert abs(counts[edit] / 6000 - share) < 0.02, (edit, counts[edit] / 6000)
    local = sum(counts[e] for e in ("local_add", "local_remove", "local_change")) / 6000
    assert abs(local - 0.70) < 0.02
    balanced = SyntheticWorld(SyntheticConfig(mix={"background_change": 1, "global_style": 3}))
    counts = Counter(balanced.edit_type(i) for i in range(4000))
    assert set(counts) == {EditType.BACKGROUND_CHANGE, EditType.GLOBAL_STYLE}
    assert abs(counts[EditType.GLOBAL_STYLE] / 4000 - 0.75) < 0.03


def test_instructions_have_real_variety():
    world = SyntheticWorld(SyntheticConfig(frames=3, height=32, width=32))
    texts = [s.instruction for s in world.samples(400)]
    assert len(set(texts)) > 350
    assert len({t.split()[0] for t in texts}) >= 15
    assert all(t[0].isupper() and "  " not in t and "{" not in t for t in texts)


def test_sizes_up_to_81_frames_of_512_pixels():
    s = SyntheticWorld(SyntheticConfig(frames=81, height=512, width=512, mix={"local_add": 1})).sample(0)
    assert s.source.shape == s.target.shape == (81, 512, 512, 3) and s.mask.shape == (81, 512, 512)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(mix={"zoom": 1.0}), "unknown edit types"),
    (dict(mix={"local_add": -1, "global_style": 2}), "non-negative"),
    (dict(height=33), "even number"),
    (dict(frames=0), "frames=0"),
    (dict(mix={"other": 1}), "no 'other' edits"),
])
def test_bad_configs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**kwargs)


def test_ray_data_source_renders_the_same_samples(ray_local):
    from refvie.synthetic.ray_source import synthetic_dataset

    config = SyntheticConfig(frames=5, height=32, width=32, seed=4)
    rows = synthetic_dataset(config, n=12, start=100, batch_size=4, blocks=3).take_all()
    assert sorted(r["index"] for r in rows) == list(range(100, 112))
    world = SyntheticWorld(config)
    for row in rows[:3]:
        sample = world.sample(int(row["index"]))
        assert row["instruction"] == sample.instruction and row["edit_type"] == sample.edit_type.value
        assert row["target_video"] == media.encode_video(sample.target)  # byte-identical in any worker
