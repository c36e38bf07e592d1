"""Frames <-> video bytes, images, masks, thumbnails; and every kind of bad bytes gives its reason code."""

import io

import numpy as np
import pytest

from lake import media
from lake.errors import MediaError
from tests.conftest import moving_square


@pytest.mark.parametrize("codec", sorted(media.VIDEO_CODECS))
def test_video_round_trip_in_each_codec(codec, clip):
    data = media.encode_video(clip, fps=8, codec=codec)
    frames = media.decode_video(data)
    assert frames.shape == clip.shape and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - clip).mean() < 8  # lossy, but the picture survives
    info = media.probe_video(data)
    assert (info.frames, info.width, info.height, info.fps, info.is_image) == (9, 32, 32, 8.0, False)
    assert info.codec == {"h264": "h264", "mpeg4": "mpeg4", "vp9": "vp9", "mjpeg": "mjpeg", "ffv1": "ffv1"}[codec]
    if codec == "ffv1":
        assert np.array_equal(frames, clip)  # lossless, and reproducible byte for byte
        assert data == media.encode_video(clip, fps=8, codec=codec)


def test_decode_from_a_file_object_and_a_path(tmp_path, clip):
    data = media.encode_video(clip)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    assert media.decode_video(io.BytesIO(data)).shape == clip.shape
    assert media.decode_video(path).shape == clip.shape
    assert media.decode_video(str(path), max_frames=4).shape[0] == 4


def test_fps_survives_round_trip(clip):
    assert media.probe_video(media.encode_video(clip, fps=24)).fps == 24.0
    assert abs(media.probe_video(media.encode_video(clip, fps=29.97)).fps - 29.97) < 0.01


def reason(src, **kwargs) -> str:
    with pytest.raises(MediaError) as info:
        media.decode_video(src, **kwargs)
    return info.value.reason


def test_empty_bytes_and_missing_files(tmp_path):
    assert reason(b"") == "empty"
    assert reason(tmp_path / "nope.mp4") == "empty"
    (tmp_path / "zero.mp4").write_bytes(b"")
    assert reason(tmp_path / "zero.mp4") == "empty"


def test_not_a_video():
    assert reason(b"hello, this is plain text and not a video at all " * 20) == "not_a_video"
    assert reason(bytes(range(256)) * 8) == "not_a_video"


@pytest.mark.parametrize(("codec", "keep"), [("h264", 0.5), ("h264", 0.1), ("vp9", 0.6), ("mjpeg", 0.6),
                                             ("mpeg4", 0.9)])
def test_truncated(codec, keep, clip):
    data = media.encode_video(clip, codec=codec)
    assert reason(data[: int(len(data) * keep)]) == "truncated"


def test_keep_converts_only_the_frames_it_names_and_still_checks_the_whole_decode(clip):
    data = media.encode_video(clip)
    whole = media.decode_video(data)
    seen = []

    def keep(count):
        seen.append(count)
        return [count - 1, 0, 0, 4]

    assert np.array_equal(media.decode_video(data, keep=keep), whole[[8, 0, 0, 4]]) and seen == [9]
    assert np.array_equal(media.decode_video(data, max_frames=5, keep=lambda n: [n - 1]), whole[[4]])
    with pytest.raises(ValueError, match=r"keep\(9\) named frames \[9\]"):
        media.decode_video(data, keep=lambda n: [n])
    with pytest.raises(MediaError) as e:  # a damaged clip fails as it would decoded whole
        media.decode_video(data[: len(data) // 2], keep=lambda n: [0])
    assert e.value.reason == "truncated"


def test_too_few_frames_for_a_still_image_or_a_one_frame_clip(clip):
    png = media.encode_image(clip[0])
    assert reason(png, min_frames=2) == "too_few_frames"
    info = media.probe_video(png)
    assert info.is_image and info.frames == 1
    assert reason(media.encode_video(clip[:1]), min_frames=2) == "too_few_frames"
    assert media.decode_video(png).shape == (1, 32, 32, 3)  # an image is a valid one-frame clip when allowed


def test_unsupported_codec_and_bad_frames(clip):
    with pytest.raises(MediaError) as info:
        media.encode_video(clip, codec="prores-from-the-future")
    assert info.value.reason == "unsupported"
    for bad in (clip.astype(np.float32), clip[..., :2], clip[:, :31]):
        with pytest.raises(MediaError) as info:
            media.encode_video(bad)
        assert info.value.reason == "bad_frames"


def test_error_carries_the_source_name():
    with pytest.raises(MediaError, match=r"^videos/a\.mp4: not_a_video"):
        media.decode_video(b"x" * 100, name="videos/a.mp4")


def test_corrupted_bytes_never_escape_as_other_exceptions(clip):
    """Bit flips and random garbage: each decode either succeeds or raises MediaError, and returns promptly
    (pytest-timeout guards against a hang)."""
    rng = np.random.default_rng(7)
    for codec in sorted(media.VIDEO_CODECS):
        good = bytearray(media.encode_video(clip, codec=codec))
        for _ in range(100):
            damaged = bytearray(good)
            for pos in rng.integers(0, len(damaged), size=int(rng.integers(1, 60))):
                damaged[pos] = int(rng.integers(0, 256))
            if rng.random() < 0.3:
                damaged = damaged[: int(rng.integers(1, len(damaged)))]
            try:
                frames = media.decode_video(bytes(damaged))
                assert frames.ndim == 4
                media.probe_video(bytes(damaged))
            except MediaError as e:
                assert e.reason in MediaError.REASONS
    for size in (1, 7, 64, 4096):
        with pytest.raises(MediaError):
            media.decode_video(rng.integers(0, 256, size, dtype=np.uint8).tobytes())


def test_image_round_trip_and_errors(clip):
    frame = clip[4]
    assert np.array_equal(media.decode_image(media.encode_image(frame, "png")), frame)
    jpeg = media.decode_image(media.encode_image(frame, "jpeg", quality=95))
    assert jpeg.shape == frame.shape and np.abs(jpeg.astype(int) - frame).mean() < 6
    for data, expected in ((b"", "empty"), (b"GIF89a-but-not-really", "not_an_image"),
                           (media.encode_image(frame)[:60], "truncated")):
        with pytest.raises(MediaError) as info:
            media.decode_image(data)
        assert info.value.reason == expected


def test_transparent_images_land_on_white():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(buf, format="PNG")
    assert (media.decode_image(buf.getvalue()) == 255).all()


def test_mask_stack_is_lossless():
    masks = np.random.default_rng(0).random((5, 12, 20)) > 0.6
    assert np.array_equal(media.decode_mask_stack(media.encode_mask_stack(masks)), masks)
    assert media.decode_mask_stack(media.encode_mask_stack(masks[0])).shape == (1, 12, 20)


def test_thumbnail_fits_the_box_and_keeps_aspect():
    wide = moving_square(1, frames=3, size=64)[:, :32]  # 3 x 32 x 64
    thumb = media.decode_image(media.thumbnail(wide, size=16))
    assert thumb.shape == (8, 16, 3)
    assert media.decode_image(media.video_thumbnail(media.encode_video(moving_square(2)), size=16)).shape == (16, 16, 3)


def test_encoding_is_reproducible_whatever_ran_before():
    """The same frames give the same bytes in every codec, also after other encoders ran in the process
    (x264's mbtree pass and Matroska's random segment UID used to break this)."""
    import hashlib

    seen: dict[tuple[int, str], set[str]] = {}
    for i in range(40):
        for codec in sorted(media.VIDEO_CODECS):
            data = media.encode_video(moving_square(i % 4), codec=codec)
            seen.setdefault((i % 4, codec), set()).add(hashlib.sha1(data).hexdigest())
    assert all(len(hashes) == 1 for hashes in seen.values()), {k: len(v) for k, v in seen.items()}


def test_numpy_colour_conversion_matches_swscale():
    import av

    clip = moving_square(5)
    ours = media.rgb_to_yuv420(clip).astype(int)
    theirs = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p").to_ndarray()
                       for f in clip]).astype(int)
    assert ours.shape == theirs.shape and np.abs(ours - theirs).mean() < 0.2
