"""Small benches and evaluation scripts fabricated in exactly the published layouts (upstream's file names, column
and key names, folder structure), with videos generated here and rubric texts in other words than upstream's."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml

from lake import media

OPENVE_ROWS = [  # (edited_type, prompt): all five aligned categories and the three the official script skips
    ("global_style", "Apply the watercolour style to the whole video"),
    ("background_change", "Replace the background with a snowy mountain range"),
    ("local_change", "Change the red box into a blue ball"),
    ("local_remove", "Remove the box from the scene"),
    ("local_add", "Add a small yellow star above the box"),
    ("local_add", "Add a green hat"),
    ("camera_edit", "Zoom the camera slowly out from the box"),
    ("subtitle_edit", "Add the subtitle 'hello' at the bottom"),
    ("creative_edit", "Make the box dance"),
]


def clip(frames: int = 9, height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """A moving gradient with a box: compresses well, decodes the same everywhere."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, 3)
    y, x = np.mgrid[0:height, 0:width]
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        out[t] = (base + (x[..., None] + 2 * t) % 64 + y[..., None] // 4).clip(0, 255)
        top, left = height // 4 + t % 4, width // 4 + t
        out[t, top:top + height // 4, left:left + width // 4] = (220, 30, 30)
    return out


def openve_bench(root: Path, frames: int = 9, size: tuple[int, int] = (64, 64)) -> Path:
    """`root/OpenVE-Bench/benchmark_videos.csv` + `videos/`, named as the release names them; `original_video`
    starts with the bench folder, as upstream's `./benchmark/` + path expects. Returns the bench folder."""
    folder = root / "OpenVE-Bench"
    (folder / "videos").mkdir(parents=True)
    rows = []
    for index, (edited_type, prompt) in enumerate(OPENVE_ROWS):
        name = f"{index:04d}_{edited_type}_{prompt[:20].replace(' ', '_')}.mp4"
        (folder / "videos" / name).write_bytes(media.encode_video(clip(frames, *size, seed=index)))
        rows.append(dict(prompt=prompt, edited_type=edited_type, original_video=f"OpenVE-Bench/videos/{name}"))
    with (folder / "benchmark_videos.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "edited_type", "original_video"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


REFVIE_ENTRIES = [("subject", "Add the cat from the reference next to the box"),
                  ("subject", "Put this teapot on the table"),
                  ("subject", "Insert the dog"),
                  ("background", "Replace the background with the beach in the image")]


def refvie_bench(root: Path, frames: int = 9) -> Path:
    """`root/RefVIE-Bench/refvie_bench.yaml` with `src_video`, `instruction`, `ref_img`, `edit_type` entries
    (3 subject, 1 background: unequal counts, so pooled != mean of means). Returns the YAML's path."""
    folder = root / "RefVIE-Bench"
    for sub in ("videos", "ref_imgs"):
        (folder / sub).mkdir(parents=True)
    entries = []
    for index, (edit_type, instruction) in enumerate(REFVIE_ENTRIES):
        (folder / f"videos/src_{index}.mp4").write_bytes(media.encode_video(clip(frames, seed=10 + index)))
        picture = np.full((48, 40, 3), (30 + 50 * index, 200, 90), np.uint8)
        (folder / f"ref_imgs/ref_{index}.png").write_bytes(media.encode_image(picture))
        entries.append(dict(src_video=f"videos/src_{index}.mp4", instruction=instruction,
                            ref_img=f"ref_imgs/ref_{index}.png", edit_type=edit_type))
    (folder / "refvie_bench.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    return folder / "refvie_bench.yaml"


OPENVE_DIMENSIONS = ("Instruction Compliance", "Consistency & Detail Fidelity", "Visual Quality & Stability")


def _openve_rubric(topic: str) -> str:
    return (f"\nPretend grader for {topic} edits; these words are not upstream's.\n"
            + "".join(f"{d}\n1 to 5, higher is better.\n" for d in OPENVE_DIMENSIONS)
            + "Example Response Format\nBrief reasoning: a few words.\n"
            + "".join(f"{d}: A number from 1 to 5.\n" for d in OPENVE_DIMENSIONS)
            + "Editing instruction is: {edit_prompt}.\n")


def openve_script(path: Path, *, placeholder: str = "{edit_prompt}", drop: str | None = None) -> Path:
    """A script shaped like upstream's eval_openve_gemini.py: module-level rubric constants, the `prompt_type`
    table, then code that must never run here (it raises at import)."""
    constants = {"GLOBAL_STYLE": "style", "BACKGROUND_CHANGE": "background", "LOCAL_CHANGE": "change",
                 "LOCAL_REMOVE": "removal", "LOCAL_ADD": "addition", "SUBTITLES_EDIT": "subtitle",
                 "CAMERA_MULTI_SHOT_EDIT": "camera", "CREATIVE_EDIT": "creative"}
    lines = ["# a fabricated evaluation script in the published structure"]
    for name, topic in constants.items():
        if name != drop:
            text = _openve_rubric(topic).replace("{edit_prompt}", placeholder)
            lines.append(f"{name} = {text!r}\n")
    lines += ["import json, os", "raise SystemExit('this script must never be run by the project')",
              "from google import genai",
              "prompt_type = {'global_style': GLOBAL_STYLE, 'local_change': LOCAL_CHANGE, "
              "'background_change': BACKGROUND_CHANGE, 'local_remove': LOCAL_REMOVE, 'local_add': LOCAL_ADD}",
              "def check_format(out):", "    return False"]
    path.write_text("\n".join(lines) + "\n")
    return path


REFVIE_DIMENSIONS = {
    "subject": ("Identity Consistency & Compliance", "Temporal Consistency & Texture Fidelity",
                "Physical Integration & Tracking"),
    "background": ("Reference Fidelity & Preservation", "Matting Quality & Temporal Stability",
                   "Visual Harmony & Perspective"),
}


def refvie_script(path: Path) -> Path:
    """A script shaped like upstream's eval_refvie_gemini.py (its prompts with `{prompt}`, `task_score_map`)."""
    def rubric(kind: str) -> str:
        dims = REFVIE_DIMENSIONS[kind]
        return (f"\nMade-up {kind} reference grader.\n" + "".join(f"{d}\nscore it.\n" for d in dims)
                + "Example Response Format:\n" + "".join(f"{d}: A number from 1 to 5.\n" for d in dims)
                + "editing instruction is : {prompt}\n")

    path.write_text(f"BACKGROUND_REFERENCE_PROMPT = {rubric('background')!r}\n"
                    f"SUBJECT_REFERENCE_PROMPT = {rubric('subject')!r}\n"
                    "raise SystemExit('never run')\n"
                    f"task_score_map = {dict((k, list(v)) for k, v in REFVIE_DIMENSIONS.items())!r}\n")
    return path
