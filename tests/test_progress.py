"""Progress off a terminal: a line per tenth of the work, never a bar's carriage returns."""

import io

from click.testing import CliRunner

from lake.progress import LogLines
from refvie.cli import cli


def test_log_lines_report_every_tenth_and_the_end():
    out = io.StringIO()
    lines = LogLines(25, "refvie build", "pair", stream=out)
    for _ in range(25):
        lines.update(1)
    lines.close()
    printed = out.getvalue().splitlines()
    # a tenth of 25 is 2: lines at 2, 4, …, 24, then the end once
    assert printed[0] == "refvie build: 2/25 pairs" and printed[-1] == "refvie build: 25/25 pairs"
    assert len(printed) == 13 and len(set(printed)) == 13


def test_log_lines_without_a_total_and_batched_updates():
    out = io.StringIO()
    lines = LogLines(None, "ingest x", "pair", every=10, stream=out)
    lines.update(25)  # one batch past two marks: one line, not two
    lines.update(5)
    lines.close()
    assert out.getvalue().splitlines() == ["ingest x: 25 pairs", "ingest x: 30 pairs"]


def test_ingest_off_a_terminal_writes_lines_not_a_bar(tmp_path):
    result = CliRunner().invoke(cli, ["ingest", "--format", "synthetic", "--n", "20", "--size", "32", "--frames", "5",
                                      "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr and "pair/s" not in result.stderr
    assert "ingest synthetic: 20/20 pairs" in result.stderr.splitlines()
    assert "read 20, accepted 20" in result.stdout
