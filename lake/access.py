"""Random access by key: metadata rows (`take`), blob file objects (`blobs`), whole payloads through Lance's batch
reader (`read_blobs`, falling back to a row's `*_uri`) and one decoded video. Mixed into `Lake`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lake import media
from lake.errors import LakeError
from lake.ranged import RangedBlob
from lake.schema import spec_for

if TYPE_CHECKING:
    from lake.db import Version


class RandomAccess:
    """`Lake.take`, `blobs`, `read_blobs`, `read_video` (uses the host's `dataset`, column checks and storage
    options)."""

    def take(self, table: str, keys: Sequence[Any], columns: Sequence[str] | None = None,
             version: Version | None = None) -> pa.Table:
        """Rows by key, in the order given (metadata columns only; blobs come from `blobs`). Missing keys raise."""
        spec = spec_for(table)
        columns = list(columns) if columns is not None else spec.metadata_columns
        self._check_columns(spec, columns)
        found, _ = self._locate(table, keys, columns, version)
        return found.drop_columns(["_rowaddr"])

    def blobs(self, table: str, column: str, keys: Sequence[Any], version: Version | None = None) -> list:
        """File objects (Lance BlobFile: read, seek, PyAV opens them) for one blob column, in key order;
        None where the row holds no bytes (its video lives at the `*_uri` column instead)."""
        spec = spec_for(table)
        if column not in spec.blob_columns:
            raise LakeError(f"{table}.{column} is not a blob column (blob columns: {', '.join(spec.blob_columns)})")
        found, ds = self._locate(table, keys, [spec.key[0]], version)
        return ds.take_blobs(column, addresses=found["_rowaddr"].to_pylist())

    def read_blobs(self, table: str, column: str, keys: Sequence[Any], version: Version | None = None,
                   resolve_uris: bool = True) -> list[bytes | None]:
        """Whole blob payloads for many rows in key order, through Lance's planned batch reader (what loaders
        want). A row ingested without bytes (`--no-bytes`) is read from its `*_uri` column instead
        (`media.read_uri`: a file:// or s3:// URI; MediaError('missing_file') when it cannot be read); with
        `resolve_uris=False`, or where the row has no URI either, its payload is None."""
        spec = spec_for(table)
        if column not in spec.blob_columns:
            raise LakeError(f"{table}.{column} is not a blob column (blob columns: {', '.join(spec.blob_columns)})")
        uri_column = column.removesuffix("_video") + "_uri"
        uri_column = uri_column if resolve_uris and uri_column in spec.columns else None
        found, ds = self._locate(table, keys, [spec.key[0], *([uri_column] if uri_column else [])], version)
        addresses = found["_rowaddr"].to_pylist()
        if not addresses:
            return []
        by_address = dict(ds.read_blobs(column, addresses=list(dict.fromkeys(addresses)), preserve_order=True))
        payloads = [by_address[a] for a in addresses]
        if uri_column:
            uris = found[uri_column].to_pylist()
            payloads = [media.read_uri(uri, self.storage_options) if data is None and uri else data
                        for data, uri in zip(payloads, uris, strict=True)]
        return payloads

    def read_videos(self, table: str, column: str, keys: Sequence[Any], version: Version | None = None,
                    max_frames: int | None = None, ranged: bool = False, stats: list | None = None,
                    keep: Callable[[int], Sequence[int]] | None = None) -> list[np.ndarray]:
        """Decoded clips (uint8 (T, H, W, 3)) for many rows, in key order, each decoded only as far as
        `max_frames`. The payloads come whole through `read_blobs` (one planned read for many rows), or, `ranged`,
        each from its blob in cached ranges that grow along sequential reads (`lake.ranged`): about the bytes
        those frames take and the container's index, in a few requests per clip, which pays when the frames read
        are a small part of a long clip. Rows ingested without bytes are read from their `*_uri`. `stats`, a
        list, receives each ranged read's `RangeStats` (bytes fetched and consumed, requests). `keep`: only the
        frames it names are converted and returned (`media.decode_video`)."""
        keys = list(keys)
        if not ranged:
            return [media.decode_video(data, name=f"{table}/{key}/{column}", max_frames=max_frames,
                                       keep=keep)
                    for key, data in zip(keys, self.read_blobs(table, column, keys, version), strict=True)]
        files = self.blobs(table, column, keys, version)
        elsewhere = [key for key, f in zip(keys, files, strict=True) if f is None]
        fallback = dict(zip(elsewhere, self.read_blobs(table, column, elsewhere, version), strict=True)) \
            if elsewhere else {}
        clips = []
        for key, f in zip(keys, files, strict=True):
            if f is None and fallback[key] is None:
                raise LakeError(f"{table} row {key!r} has no bytes in {column} and no URI to read them from")
            source = RangedBlob(f) if f is not None else fallback[key]
            try:
                clips.append(media.decode_video(source, name=f"{table}/{key}/{column}", max_frames=max_frames,
                                                keep=keep))
            finally:
                if f is not None:
                    source.close()
                    if stats is not None:
                        stats.append(source.stats)
        return clips

    def read_video(self, table: str, key: Any, column: str = "source_video",
                   version: Version | None = None, **decode_kwargs) -> np.ndarray:
        """Decode one stored video to uint8 (T, H, W, 3)."""
        (blob,) = self.blobs(table, column, [key], version)
        if blob is None:
            raise LakeError(f"{table} row {key!r} has no bytes in {column}")
        with blob:
            return media.decode_video(blob, name=f"{table}/{key}/{column}", **decode_kwargs)

    def _locate(self, table: str, keys: Sequence[Any], columns: list[str], version: Version | None):
        spec = spec_for(table)
        if len(spec.key) != 1:
            raise LakeError(f"{table} has a composite key {spec.key}; use read(where=...)")
        key = spec.key[0]
        keys = list(keys)
        ds = self.dataset(table, version)
        if not keys:
            return ds.to_table(columns=columns, limit=0, with_row_address=True), ds
        wanted = columns if key in columns else [*columns, key]
        # a key asked for twice (a sampler repeating a row) is read once and returned twice
        found = ds.to_table(columns=wanted, filter=in_filter(key, list(dict.fromkeys(keys))), with_row_address=True)
        position = {k: i for i, k in enumerate(found[key].to_pylist())}
        missing = [k for k in keys if k not in position]
        if missing:
            raise LakeError(f"{table}: {len(missing)} key(s) not found, e.g. {missing[:3]}")
        found = found.take(pa.array([position[k] for k in keys]))
        return found.select([*columns, "_rowaddr"]), ds


def in_filter(column: str, values: Sequence[Any]) -> str:
    if all(isinstance(v, str) for v in values):
        literals = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    elif all(isinstance(v, int | np.integer) for v in values):
        literals = ", ".join(str(int(v)) for v in values)
    else:
        raise LakeError(f"keys for {column} must be all strings or all integers")
    return f"{column} IN ({literals})"
