"""The scale benchmark's random-access part at a toy size: the figures it prints come from real reads on both
sides, and on an object store Lance fetches about the rows' own bytes where the Parquet filter read fetches whole
row groups (what the bench's ratio rests on)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import scale_bench  # noqa: E402


def test_blob_fetch_counts_requests_and_bytes_on_s3(tmp_path):
    pytest.importorskip("moto")
    result = scale_bench.bench_blobs([12], tmp_path, take=2, row_group_mb=16, store="s3")
    assert result["rows"] == [12]
    lance_mb, parquet_mb = result["lance_take_mb"][0], result["parquet_filter_mb"][0]
    # two clips of 1-5 MB each, plus index and manifest pages
    assert 2 <= lance_mb <= 2 * 5 + 1
    # each chosen row drags in its 16 MB row group (the last group of the file may be smaller)
    assert parquet_mb > 2 * lance_mb
    assert result["lance_take_requests"][0] > 0 and result["parquet_filter_requests"][0] > 0
    assert result["lance_take"][0] > 0 and result["parquet_filter"][0] > 0


def test_blob_fetch_on_local_disk_reports_both_sides(tmp_path):
    result = scale_bench.bench_blobs([16], tmp_path, take=2, row_group_mb=16)
    assert result["rows"] == [16] and "lance_take_requests" not in result
    assert result["lance_gib"][0] > 16 / 1024  # at least 1 MB a row on each side
    assert result["parquet_gib"][0] > 16 / 1024
