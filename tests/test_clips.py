"""Clip geometry at the published size costs no copy it does not need: the frames the trainer takes are the same
pixels whether a step crops, slices or resizes."""

import numpy as np
from PIL import Image

from lake.clips import fit_frames, frame_shape, take_frames


def test_a_720p_clip_is_cropped_to_704x1280_without_a_resize_and_with_the_resizes_pixels():
    frames = np.random.default_rng(0).integers(0, 256, (3, 720, 1280, 3), dtype=np.uint8)
    shape = frame_shape(720, 1280, 720 * 1280)
    assert shape == (704, 1280)
    fitted = fit_frames(frames, shape)
    resized = np.stack([np.asarray(Image.fromarray(f).resize((1280, 704), Image.BICUBIC)) for f in frames[:, 8:712]])
    assert np.array_equal(fitted, resized)
    assert np.shares_memory(fitted, frames)  # a view: 81 such frames are 224 MB


def test_taking_every_frame_or_a_prefix_is_a_view_with_the_same_frames():
    clip = np.random.default_rng(1).integers(0, 256, (9, 8, 8, 3), dtype=np.uint8)
    for sampling in ("prefix", "spread"):
        taken = take_frames(clip, 9, sampling)
        assert np.array_equal(taken, clip) and np.shares_memory(taken, clip)
    assert np.array_equal(take_frames(clip, 5, "prefix"), clip[:5])
    assert np.array_equal(take_frames(clip, 5, "spread"), clip[[0, 2, 4, 6, 8]])
    assert np.array_equal(take_frames(clip[:3], 5, "prefix"), clip[[0, 1, 2, 2, 2]])
