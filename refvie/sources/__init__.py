"""Pair sources: real dataset layouts and the synthetic world, all yielding PairRecords."""

from refvie.sources.base import MediaRef, PairRecord, RowProblem, Source, resolve_inside
from refvie.sources.kiwi_csv import KiwiCsvSource
from refvie.sources.manifest import ManifestSource
from refvie.sources.refvie_parquet import RefvieParquetSource
from refvie.sources.synthetic import SyntheticSource

__all__ = ["KiwiCsvSource", "ManifestSource", "MediaRef", "PairRecord", "RefvieParquetSource", "RowProblem",
           "Source", "SyntheticSource", "resolve_inside"]
