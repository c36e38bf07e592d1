"""`make demo`: open the lake, write a handful of real video rows, and show what the lake can answer.

Grows with the project (ingest → RefVIE pipeline → slices → training → evaluation); today it exercises the lake
core: media encoding, idempotent upserts, rejects, versions and tags, DuckDB SQL, Daft, and `lake info`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import lake
from lake import media
from lake.taxonomy import EditType

INSTRUCTIONS = {
    EditType.LOCAL_ADD: "Add a small yellow square that drifts to the right",
    EditType.LOCAL_REMOVE: "Remove the red square",
    EditType.LOCAL_CHANGE: "Turn the red square blue",
    EditType.BACKGROUND_CHANGE: "Replace the background with a green gradient",
    EditType.GLOBAL_STYLE: "Make the whole clip look posterised",
}


def scene(seed: int, edit: EditType | None, frames: int = 9, size: int = 64) -> np.ndarray:
    """A gradient with a moving red square; `edit` applies one edit of the taxonomy to the same scene."""
    y, x = np.mgrid[0:size, 0:size]
    background = np.stack([x * 4, y * 4, np.full_like(x, 40 + seed * 10)], -1).clip(0, 255)
    if edit is EditType.BACKGROUND_CHANGE:
        background = np.stack([np.zeros_like(x), 80 + y * 2, np.zeros_like(x)], -1)
    clip = np.repeat(background[None], frames, 0).astype(np.uint8)
    for t in range(frames):
        o = 4 + t * 3 + seed
        if edit is not EditType.LOCAL_REMOVE:
            clip[t, 20:36, o : o + 16] = (40, 40, 220) if edit is EditType.LOCAL_CHANGE else (220, 40, 40)
        if edit is EditType.LOCAL_ADD:
            clip[t, 44:54, o + 10 : o + 20] = (240, 220, 30)
    if edit is EditType.GLOBAL_STYLE:
        clip = (clip // 64 * 64).astype(np.uint8)
    return clip


def main() -> None:
    db = lake.open()
    print(f"lake at {db.uri}")
    rows = []
    for i, edit in enumerate(INSTRUCTIONS):
        source, target = scene(i, None), scene(i, edit)
        rows.append(dict(
            id=f"demo-{i}", pair_id=f"demo-pair-{i}", dataset="demo", task="instruct", edit_type=edit.value,
            instruction=INSTRUCTIONS[edit], source_video=media.encode_video(source),
            target_video=media.encode_video(target), num_frames=len(source), fps=8.0, width=64, height=64,
            codec="h264", thumb_source=media.thumbnail(source), thumb_target=media.thumbnail(target),
            split="train", pipeline_version="demo", meta={"note": "hand-made demo rows"},
        ))
    result = db.upsert("quadruplets", rows)
    print(f"upserted {len(rows)} quadruplets: {result.inserted} new, {result.updated} replaced "
          f"(rerun the demo: nothing is duplicated) -> version {result.version}")

    broken = media.encode_video(scene(0, None))[:300]
    try:
        media.decode_video(broken, name="demo/broken.mp4")
    except lake.MediaError as e:
        db.reject("ingest", "demo/broken.mp4", e.reason, detail=str(e), dataset="demo")
        print(f"rejected demo/broken.mp4: {e.reason}")

    if "demo" not in {tag for _, tag, _ in db.tags("quadruplets")}:
        db.tag("quadruplets", "demo")

    print("\nedit-type distribution (named query edit_type_distribution, DuckDB over Lance):")
    print(db.query("edit_type_distribution", table="quadruplets").to_pandas().to_string(index=False))
    daft_counts = db.daft("quadruplets").groupby("edit_type").count("id").to_pydict()
    print(f"same counts from Daft: {dict(zip(daft_counts['edit_type'], daft_counts['id'], strict=True))}")
    frames = db.read_video("quadruplets", "demo-3", "target_video")
    print(f"decoded demo-3's target video from its Lance blob: {frames.shape} uint8\n")
    sys.stdout.flush()
    subprocess.run([sys.executable, "-m", "lake.cli", "info", "--lake", db.uri], check=True)


if __name__ == "__main__":
    main()
