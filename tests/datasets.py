"""Small real-looking datasets written at test time: videos in several codecs and containers, images, and every
kind of bad input an ingest must survive."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lake import media
from tests.conftest import moving_square

GOOD_VIDEOS = {  # name -> codec
    "clips/a_src.mp4": "h264", "clips/a_tgt.mp4": "h264",
    "clips/b_src.webm": "vp9", "clips/b_tgt.webm": "vp9",
    "clips/c_src.avi": "mjpeg", "clips/c_tgt.avi": "mjpeg",
}


@dataclass
class Dataset:
    root: Path
    outside: Path
    good_pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (src, tgt, prompt)
    image_pair: tuple[str, str, str] = ("images/cat.png", "images/cat_hat.jpg", "Put a hat on the cat")
    reference: str = "images/ref.png"
    # (src, tgt, prompt, expected reason)
    bad_pairs: list[tuple[str, str, str, str]] = field(default_factory=list)


def make_dataset(base: Path) -> Dataset:
    root, outside = base / "root", base / "outside"
    (root / "clips").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "bad").mkdir()
    outside.mkdir()
    for i, (name, codec) in enumerate(GOOD_VIDEOS.items()):
        (root / name).write_bytes(media.encode_video(moving_square(i), codec=codec))
    frame = moving_square(9)[0]
    (root / "images/cat.png").write_bytes(media.encode_image(frame, "png"))
    (root / "images/cat_hat.jpg").write_bytes(media.encode_image(frame[::-1].copy(), "jpeg"))
    (root / "images/ref.png").write_bytes(media.encode_image(frame[:, ::-1].copy(), "png"))
    good = media.encode_video(moving_square(20))
    (root / "bad/truncated.mp4").write_bytes(good[: len(good) // 2])
    (root / "bad/empty.mp4").write_bytes(b"")
    (root / "bad/one_frame.mp4").write_bytes(media.encode_video(moving_square(21)[:1]))
    (root / "bad/text.mp4").write_bytes(b"this is not a video, it is a note " * 10)
    (outside / "secret.mp4").write_bytes(good)
    os.symlink(outside / "secret.mp4", root / "clips/link_out.mp4")
    os.symlink(root / "clips/a_src.mp4", root / "clips/link_in.mp4")

    ds = Dataset(root=root, outside=outside)
    ds.good_pairs = [
        ("clips/a_src.mp4", "clips/a_tgt.mp4", "Add a red ball"),
        ("clips/b_src.webm", "clips/b_tgt.webm", "Remove the blue box"),
        ("clips/c_src.avi", "clips/c_tgt.avi", "Make it look like a painting"),
        ("clips/link_in.mp4", "clips/a_tgt.mp4", "Turn the square green"),  # a symlink that stays inside is fine
    ]
    ds.bad_pairs = [
        ("clips/missing.mp4", "clips/a_tgt.mp4", "Add a cat", "missing_file"),
        ("bad/truncated.mp4", "clips/a_tgt.mp4", "Add a dog", "truncated"),
        ("bad/empty.mp4", "clips/a_tgt.mp4", "Add a bird", "empty"),
        ("bad/one_frame.mp4", "clips/a_tgt.mp4", "Add a fish", "too_few_frames"),
        ("bad/text.mp4", "clips/a_tgt.mp4", "Add a frog", "not_a_video"),
        ("../outside/secret.mp4", "clips/a_tgt.mp4", "Add a moon", "path_escape"),
        (str(outside / "secret.mp4"), "clips/a_tgt.mp4", "Add a sun", "path_escape"),
        ("clips/link_out.mp4", "clips/a_tgt.mp4", "Add a star", "path_escape"),
        ("clips/a_src.mp4", "clips/b_tgt.webm", "   ", "empty_instruction"),
        ("clips/a_src.mp4", "clips/c_tgt.avi", "x" * 5000, "instruction_too_long"),
        ("clips/b_src.webm", "clips/a_tgt.mp4", "Add a\x00 hidden byte", "control_characters"),
        ("images/cat.png", "clips/a_tgt.mp4", "Animate the cat", "mixed_media"),
        ("clips/a_src.mp4", "clips/a_tgt.mp4", "Add a red ball", "duplicate_id"),  # same row as the first good one
    ]
    return ds
