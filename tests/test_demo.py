"""`make demo` and the installed commands, run as a user would, in fresh processes."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_ingests_builds_previews_and_is_idempotent(tmp_path):
    env = {**os.environ, "KIWI_LAKE": str(tmp_path / "lake"), "KIWI_DEMO_DIR": str(tmp_path / "demo"),
           "KIWI_DEMO_PAIRS": "24", "KIWI_DEMO_STEPS": "1,2,2", "KIWI_DEMO_BENCH_PAIRS": "10",
           "KIWI_DEMO_EXPERIMENT_STEPS": "2", "KIWI_DEMO_BENCH_PER_CATEGORY": "10",
           "KIWI_DEMO_EXPERIMENT_ARMS": "local-heavy,natural", "KIWI_DEMO_EXPERIMENT_SEEDS": "0,1"}
    runs = [subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], env=env, capture_output=True,
                           text=True, timeout=600, check=True).stdout for _ in range(2)]
    first, second = runs
    assert "read 24, accepted 24, already in the lake 0, rejected 0" in first
    assert "read 5, accepted 3, already in the lake 0, rejected 2" in first
    assert "read 24, accepted 0, already in the lake 24, rejected 0" in second
    assert "read 10, accepted 10, already in the lake 0, rejected 0" in first  # the bench's held-out pairs
    assert "refvie build: 37 pending" in first and "refvie build: 0 pending" in second
    assert "Daft agrees: True" in second
    assert "saved slices" in first and "alpha 0.3" in first
    assert "5 steps (stage1-align 1 / stage2-instruct 2 / stage3-reference 2)" in first
    assert (tmp_path / "demo" / "preview.png").stat().st_size > 10_000
    rows = {ln.split()[0]: ln.split() for ln in second.splitlines() if ln.strip() and ln.split()[0] in
            ("pairs", "quadruplets", "rejects", "eval_outputs")}
    assert rows["pairs"][1] == "37"
    assert int(rows["quadruplets"][1]) + int(rows["rejects"][1]) == 37 + 2  # every pair built or rejected
    # the experiment: two arms x two seeds, per-category means, effects over seeds, a verdict, a report with
    # charts; the rerun redoes nothing
    for text in (first, second):
        assert "psnr per category (dB), mean over seeds" in text and "copy-source" in text
        assert "local-heavy vs natural: background_change" in text and "95% interval over 2 seeds" in text
    assert "seed 1, arm natural: training 2 steps" in first
    report = tmp_path / "demo" / "experiment"
    assert (report / "report.md").read_text().startswith("# Rebalancing experiment")
    assert {p.name for p in report.glob("*.png")} >= {"psnr_by_arm.png", "flow_loss_by_arm.png", "training_loss.png",
                                                       "gallery.png"}
    assert "ground truth per category" in first and "kiwi experiment" in first
    items = int(second.split("bench demo-bench")[1].split(": ")[1].split()[0])
    assert rows["eval_outputs"][1] == str((2 * 2 + 1) * items)  # 2 arms x 2 seeds + the copy baseline, once


def test_installed_commands(tmp_path):
    bin_dir = Path(sys.executable).parent
    mistyped = subprocess.run([str(bin_dir / "lake"), "info", "--lake", str(tmp_path / "lkae")], capture_output=True,
                              text=True, timeout=120)
    assert mistyped.returncode == 1 and mistyped.stderr.startswith(f"Error: no lake at {tmp_path / 'lkae'}")
    assert not (tmp_path / "lkae").exists()  # a typo leaves nothing behind
    import lake

    lake.open(tmp_path / "lake")
    result = subprocess.run([str(bin_dir / "lake"), "info", "--lake", str(tmp_path / "lake")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "quadruplets" in result.stdout
    bad = subprocess.run([str(bin_dir / "lake"), "sql", "SELEC", "--lake", str(tmp_path / "lake")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: SQL does not parse") and "Traceback" not in bad.stderr
    help_text = subprocess.run([str(bin_dir / "refvie"), "ingest", "--help"], capture_output=True, text=True,
                               timeout=120)
    assert help_text.returncode == 0 and "--format" in help_text.stdout
