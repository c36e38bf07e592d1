"""`make demo` and the installed `lake` command, run as a user would, in fresh processes."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_writes_rows_and_is_idempotent(tmp_path):
    env = {**os.environ, "KIWI_LAKE": str(tmp_path / "lake")}
    for _ in range(2):
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], env=env, capture_output=True,
                             text=True, timeout=300, check=True).stdout
    assert "0 new, 5 replaced" in out
    assert "rejected demo/broken.mp4: truncated" in out
    quadruplets = next(ln for ln in out.splitlines() if ln.strip().startswith("quadruplets"))
    assert quadruplets.split()[1] == "5"


def test_installed_lake_command(tmp_path):
    lake_bin = Path(sys.executable).parent / "lake"
    result = subprocess.run([str(lake_bin), "info", "--lake", str(tmp_path / "lake")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "quadruplets" in result.stdout
    bad = subprocess.run([str(lake_bin), "sql", "SELEC", "--lake", str(tmp_path / "lake")], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: SQL does not parse") and "Traceback" not in bad.stderr
