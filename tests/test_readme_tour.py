"""The README's command-line tour, run as a user runs it: every command in its ```bash blocks, in order, in a fresh
folder, through the installed console scripts. Sizes are scaled down (SCALE) and optional `[...]` arguments left
out; commands that need data from outside the tour (a CSV on /data, a published bench, a judge server, a cluster)
are skipped by the reasons in SKIP. A command the README shows that fails, or one that no longer exists, fails
here — so the README cannot drift from the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lake import media
from tests.conftest import moving_square

ROOT = Path(__file__).resolve().parents[1]
# what the tour cannot reach on a CI machine, by the words that mark it
SKIP = {"make ": "the Makefile targets are CI itself", "tensorboard": "a server, not a command that ends",
        "/data": "a dataset on the user's disk", "path/to": "a published bench's files",
        "--bench openve-bench": "the published bench the tour cannot import",
        "release/": "the RefVIE parquet release", "…": "an elided command",
        "http://": "a server: a judge, a Ray head (tests/test_kiwi_jobs.py)",
        "refvie classifier train": "minutes of retraining what first use already trained (tests/test_labels.py)",
        "--reference-slice refvie": "the published recipe over the release's slices (tests/test_kiwi_launch.py)"}
# the tour's sizes, cut to seconds; each pattern must match (a README edit that drops one fails the test)
SCALE = {r"--n 500\b": "--n 64", r"--n 250\b": "--n 25", r"--seeds 5\b": "--seeds 1", r"--steps 400\b": "--steps 2",
         r"--per-category (8|20)\b": "--per-category 1", r"--adaptive-every 256\b": "--adaptive-every 32 --steps 6,0",
         r"(kiwi train --config tiny --lake data/lake --out runs/tiny)": r"\1 --steps 1,1,1",
         r"(kiwi experiment .*)--out": r"\1--arms natural,local-heavy --out"}
# commands whose stderr must hold nothing but their own progress bar (no library warnings, no Ray log lines)
# what each may write on stderr: its progress bar, or off a terminal its progress lines (kiwi train: per tenth of a
# stage, named after the stage)
QUIET = {"refvie build": "refvie build:", "refvie ingest": "ingest ",
         "kiwi train": ("tiny", "tiny-edit", "stage1-align: step", "stage2-instruct: step", "stage3-reference: step",
                        "instruct: step", "reference: step")}
# a few commands' output must show that they did what the README says
EXPECT = {"refvie ingest --format synthetic --n 64": "accepted", "refvie build": "quadruplets",
          "printf 'The lamp should be gone": "background_change", "kiwi bench list": "my-bench",
          "kiwi experiment": "verdict", "lake slice diff t03 unimax": "share_b",
          "lake query eval_by_category": "copy-source"}


def _logical_lines(block: str) -> list[str]:
    """Lines joined across `\\` continuations and newlines inside quotes; comments dropped."""
    lines, current, quote = [], "", None
    i = 0
    while i < len(block):
        c = block[i]
        if quote:
            current += c
            quote = None if c == quote else quote
        elif c in "'\"":
            quote, current = c, current + c
        elif c == "\\" and block[i + 1:i + 2] == "\n":
            i += 1
        elif c == "#" and (not current or current[-1] == " "):
            while i < len(block) and block[i] != "\n":
                i += 1
            continue
        elif c == "\n":
            lines.append(current)
            current = ""
        else:
            current += c
        i += 1
    return [" ".join(line.split()) for line in [*lines, current] if line.strip()]


def tour_commands(readme: str) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in _logical_lines(block):
            for command in line.split(" ; "):
                command = " ".join(re.sub(r"\[[^\]]*\]", "", command).split())
                if command and not any(mark in command for mark in SKIP):
                    commands.append(command)
    return commands


def scaled(commands: list[str]) -> list[str]:
    out = list(commands)
    for pattern, replacement in SCALE.items():
        hits = [i for i, c in enumerate(out) if re.search(pattern, c)]
        assert hits, f"the README no longer shows a command matching {pattern!r}: update SCALE with it"
        for i in hits:
            out[i] = re.sub(pattern, replacement, out[i])
    return out


def test_the_tour_parser_reads_continuations_quotes_options_and_skips():
    readme = ("```bash\nlake sql \"SELECT a\n          FROM t\"   # two lines, one command\n"
              "refvie ingest --n 5 \\\n   --seed 1 [--mix a=1] ; lake info\nmake demo\n```\n")
    assert tour_commands(readme) == ['lake sql "SELECT a FROM t"', "refvie ingest --n 5 --seed 1", "lake info"]


@pytest.mark.timeout(2400)  # ~40 commands, several of them start Ray or train
def test_every_command_of_the_readme_tour_runs_on_a_fresh_lake(tmp_path):
    commands = scaled(tour_commands((ROOT / "README.md").read_text()))
    assert len(commands) > 30
    (tmp_path / "in.mp4").write_bytes(media.encode_video(moving_square(1, frames=10, size=64), fps=8))
    (tmp_path / "ball.png").write_bytes(media.encode_image(moving_square(2, frames=1, size=32)[0]))
    (tmp_path / "photo.png").write_bytes(media.encode_image(moving_square(3, frames=1, size=64)[0]))
    (tmp_path / "instructions.txt").write_text("Remove the lamp\nMake it look like a pencil sketch\n")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("KIWI_LAKE", "RAY_ADDRESS")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    expected = dict(EXPECT)
    for command in commands:
        started = time.perf_counter()
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        print(f"{time.perf_counter() - started:6.1f} s  $ {command}")
        said = done.stdout + done.stderr
        assert done.returncode == 0, f"$ {command}\n{said[-3000:]}"
        assert "Traceback" not in said, f"$ {command}\n{said[-3000:]}"
        for start, bar in QUIET.items():
            if command.startswith(start):
                noise = [line for line in re.split(r"[\r\n]+", done.stderr) if line.strip()
                         and not line.startswith(bar)]
                assert not noise, f"$ {command}: stderr beyond the progress bar:\n" + "\n".join(noise[:20])
        for start, fragment in list(expected.items()):
            if command.startswith(start):
                assert fragment in said, f"$ {command}: expected {fragment!r} in\n{said[-3000:]}"
                del expected[start]
    assert not expected, f"tour commands not seen: {sorted(expected)}"
