"""Daft over the lake, for work that should scale out (`daft.set_runner_ray()`) or read in parallel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import daft

    from lake.db import Lake, Version


def to_daft(lake: Lake, table: str, version: Version | None = None, blobs: bool = False) -> daft.DataFrame:
    import daft

    tbl = lake.table(table)
    number = None if version is None else lake.resolve_version(table, version)
    df = daft.read_lance(tbl.uri, io_config=io_config(lake.storage_options), version=number)
    if not blobs:
        df = df.select(*lake.spec(table).metadata_columns)
    return df


def io_config(storage_options: Mapping[str, str]):
    """Translate Lance/object_store storage options into a Daft IOConfig (S3 keys; others pass as-is)."""
    if not storage_options:
        return None
    from daft.io import IOConfig, S3Config

    o = {k.lower(): v for k, v in storage_options.items()}

    def pick(*names: str):
        return next((o[n] for n in names if n in o), None)

    s3 = S3Config(
        endpoint_url=pick("aws_endpoint", "endpoint", "aws_endpoint_url", "endpoint_url"),
        key_id=pick("aws_access_key_id", "access_key_id"),
        access_key=pick("aws_secret_access_key", "secret_access_key"),
        session_token=pick("aws_session_token", "session_token"),
        region_name=pick("aws_region", "region"),
        use_ssl=str(pick("allow_http") or "false").lower() != "true",
        force_virtual_addressing=str(pick("aws_virtual_hosted_style_request") or "false").lower() == "true",
    )
    return IOConfig(s3=s3)
