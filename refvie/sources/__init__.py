"""Pair sources: real dataset layouts and the synthetic world, all yielding PairRecords."""

from refvie.sources.base import MediaRef, PairRecord, RowProblem, Source, resolve_inside
from refvie.sources.gpt_image_edit import GptImageEditSource
from refvie.sources.kiwi_csv import KiwiCsvSource
from refvie.sources.manifest import ManifestSource
from refvie.sources.nhr_edit import NhrEditSource
from refvie.sources.refvie_parquet import RefvieParquetSource
from refvie.sources.synthetic import SyntheticSource

__all__ = ["GptImageEditSource", "KiwiCsvSource", "ManifestSource", "MediaRef", "NhrEditSource", "PairRecord",
           "RefvieParquetSource", "RowProblem", "Source", "SyntheticSource", "resolve_inside"]
