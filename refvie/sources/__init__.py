"""Pair sources: real dataset layouts and the synthetic world, all yielding PairRecords."""

from refvie.sources.base import MediaRef, PairRecord, RowProblem, Source, resolve_inside
from refvie.sources.ditto import DittoSource
from refvie.sources.gpt_image_edit import GptImageEditSource
from refvie.sources.kiwi_csv import KiwiCsvSource
from refvie.sources.manifest import ManifestSource
from refvie.sources.nhr_edit import NhrEditSource
from refvie.sources.openve import OpenVeSource
from refvie.sources.reco import ReCoSource
from refvie.sources.refvie_parquet import RefvieParquetSource
from refvie.sources.synthetic import SyntheticSource

__all__ = ["DittoSource", "GptImageEditSource", "KiwiCsvSource", "ManifestSource", "MediaRef", "NhrEditSource",
           "OpenVeSource", "PairRecord", "ReCoSource", "RefvieParquetSource", "RowProblem", "Source", "SyntheticSource",
           "resolve_inside"]
