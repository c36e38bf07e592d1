"""The `Lake`: one object over a LanceDB database holding every table of lake.schema.

A local folder by default, any object-store URI (`s3://…`, `gs://…`, `az://…`) with `storage_options` through
the same code. Writes are idempotent upserts on each table's key; every read can name a version or a tag, so a
slice or a run that recorded a version reads exactly what it read before, whatever was appended since."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute in nearest()

from lake import media
from lake.errors import LakeError
from lake.memory import CacheLimits, shared_session
from lake.schema import PRIMARY_KEY, TABLES, TableSpec, primary_key_metadata, spec_for
from lake.sql import literal
from lake.validate import Rows, to_arrow

if TYPE_CHECKING:
    import daft
    from lancedb.table import LanceTable

os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")

DEFAULT_URI = "./data/lake"
Version = int | str  # a version number or a tag name


def default_uri() -> str:
    """`$KIWI_LAKE`, else ./data/lake — the rule every CLI of the project follows."""
    return os.environ.get("KIWI_LAKE") or DEFAULT_URI


@dataclass(frozen=True)
class WriteResult:
    table: str
    inserted: int
    updated: int
    version: int


@dataclass(frozen=True)
class VersionInfo:
    version: int
    timestamp: datetime
    rows: int
    tags: tuple[str, ...]


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int
    version: int
    versions: int
    tags: dict[str, int]
    bytes: int


def open(uri: str | os.PathLike | None = None, storage_options: Mapping[str, str] | None = None,
         *, create: bool = True, caches: CacheLimits | None = None) -> Lake:  # noqa: A001 - reads like lance.dataset
    """Open (and by default create) the lake at `uri` (default: `$KIWI_LAKE` or ./data/lake); `caches` caps Lance's
    caches (default: `lake.memory.CacheLimits.from_environment()`, shared by every handle of the process)."""
    return Lake(uri, storage_options=storage_options, create=create, caches=caches)


def exists(uri: str | os.PathLike, storage_options: Mapping[str, str] | None = None) -> bool:
    """Whether `uri` holds a lake (at least one of its tables), without creating anything."""
    import lancedb

    uri = str(uri)
    if "://" not in uri and not os.path.isdir(uri):
        return False
    names = set(lancedb.connect(uri, storage_options=dict(storage_options or {}) or None).list_tables().tables)
    return bool(names & set(TABLES))


class Lake:
    """The one entry point: tables, writes, versions, tags, SQL (DuckDB), Daft and blob access."""

    def __init__(self, uri: str | os.PathLike | None = None, storage_options: Mapping[str, str] | None = None,
                 *, create: bool = True, caches: CacheLimits | None = None):
        import lancedb

        self.uri = str(uri or default_uri())
        self.storage_options = dict(storage_options or {})
        if "://" not in self.uri:  # absolute: Ray workers and other processes do not share our current folder
            self.uri = os.path.abspath(self.uri)
            os.makedirs(self.uri, exist_ok=True)
        self.session = shared_session(caches)  # bounded caches, shared by the process's handles (lake/memory.py)
        self._db = lancedb.connect(self.uri, storage_options=self.storage_options or None, session=self.session)
        self._write_lock = threading.Lock()  # one commit at a time from this handle; other writers meet the key check
        self._duckdb = None  # one in-memory DuckDB per handle; each query runs on its own cursor (lake.sql)
        self._duckdb_lock = threading.Lock()
        from lake.snapshots import Snapshots

        self.snapshots = Snapshots(self)  # SQL over large tables at Parquet speed (lake/snapshots.py)
        self._tables: dict[str, LanceTable] = {}
        existing = set(self._db.list_tables().tables)
        for name, spec in TABLES.items():
            if name in existing:
                self._check_schema(spec, self._db.open_table(name))
            elif create:
                self._db.create_table(name, schema=spec.schema)

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    # ------------------------------------------------------------------------------------------- tables

    @property
    def table_names(self) -> list[str]:
        existing = set(self._db.list_tables().tables)
        return [name for name in TABLES if name in existing]

    def spec(self, table: str) -> TableSpec:
        return spec_for(table)

    def table(self, name: str, version: Version | None = None) -> LanceTable:
        """The LanceDB table, at its latest version or checked out at `version` (a number or a tag). The latest is
        kept open: a later call only checks out the newest version (listing the lake's tables per call cost one
        LIST request per read on object storage)."""
        spec_for(name)
        if version is None:
            table = self._tables.get(name)
            if table is None:
                table = self._tables[name] = self._open(name)
            table.checkout_latest()
            return table
        table = self._open(name)
        table.checkout(self.resolve_version(name, version))
        return table

    def _open(self, name: str) -> LanceTable:
        if name not in self.table_names:
            raise LakeError(f"table {name!r} does not exist in the lake at {self.uri}")
        return self._db.open_table(name)

    def dataset(self, name: str, version: Version | None = None) -> lance.LanceDataset:
        """The underlying Lance dataset (for scans with pushdown, `take`, `take_blobs`)."""
        return self.table(name, version).to_lance()

    def count(self, table: str, where: str | None = None, version: Version | None = None) -> int:
        return self.dataset(table, version).count_rows(filter=where)

    def read(self, table: str, columns: Sequence[str] | None = None, where: str | None = None,
             version: Version | None = None, limit: int | None = None) -> pa.Table:
        """Scan with projection and filter pushdown. Without `columns`, every column but the blobs."""
        spec = spec_for(table)
        columns = list(columns) if columns is not None else spec.metadata_columns
        self._check_columns(spec, columns)
        blobs = [c for c in columns if c in spec.blob_columns]
        if blobs:
            raise LakeError(f"{table}: blob columns {blobs} are read with lake.blobs() or lake.read_video()")
        return self.dataset(table, version).to_table(columns=columns, filter=where, limit=limit)

    # ------------------------------------------------------------------------------------------- writes

    def upsert(self, table: str, rows: Rows) -> WriteResult:
        """Validate, then insert-or-replace by key. Running the same upsert twice leaves one copy of each row."""
        spec = spec_for(table)
        data = to_arrow(spec, rows)
        if data.num_rows == 0:
            return WriteResult(table, 0, 0, self.table(table).version)
        with self._write_lock:
            tbl = self.table(table)
            result = (
                tbl.merge_insert(list(spec.key)).when_matched_update_all().when_not_matched_insert_all()
                # validated already; LanceDB's own check would call a null embedding "variable length"
                .execute(data, on_bad_vectors="null")
            )
        return WriteResult(table, result.num_inserted_rows, result.num_updated_rows, result.version)

    def update_columns(self, table: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> WriteResult:
        """Rewrite `columns` of existing rows (matched on the key; unknown keys are ignored), leaving every other
        column — blobs included — as it is. One new table version."""
        from lake.validate import to_arrow_partial

        spec = spec_for(table)
        data = to_arrow_partial(spec, rows, columns)
        with self._write_lock:
            tbl = self.table(table)
            if data.num_rows == 0:
                return WriteResult(table, 0, 0, tbl.version)
            result = tbl.to_lance().merge_insert(list(spec.key)).when_matched_update_all().execute(data)
        return WriteResult(table, 0, result["num_updated_rows"], self.table(table).version)

    def append(self, table: str, rows: Rows) -> WriteResult:
        """Validate and append without a key lookup: for rows known to be new (a fresh slice's rows)."""
        data = to_arrow(spec_for(table), rows)
        with self._write_lock:
            tbl = self.table(table)
            tbl.add(data, on_bad_vectors="null")
        return WriteResult(table, data.num_rows, 0, tbl.version)

    def reject(self, stage: str, input_ref: str, reason: str, detail: str | None = None,
               dataset: str | None = None, scores: Mapping[str, Any] | None = None) -> WriteResult:
        """Record one input that could not be used. Keyed by (stage, dataset, input_ref): a rerun updates, never
        duplicates."""
        return self.reject_many([dict(stage=stage, input_ref=input_ref, reason=reason, detail=detail,
                                      dataset=dataset, scores=scores)])

    def reject_many(self, rejects: Sequence[Mapping[str, Any]]) -> WriteResult:
        rows = []
        for r in rejects:
            row = dict(r)
            row.setdefault("reject_id", reject_id(row["stage"], row["input_ref"], row.get("dataset")))
            if isinstance(row.get("scores"), Mapping):
                row["scores"] = json.dumps(row["scores"], sort_keys=True, default=float)
            rows.append(row)
        return self.upsert("rejects", rows)

    def delete(self, table: str, where: str) -> int:
        """Delete rows matching a Lance SQL predicate; returns how many went. A new version, old ones stay readable."""
        with self._write_lock:
            tbl = self.table(table)
            before = tbl.count_rows()
            tbl.delete(where)
            return before - tbl.count_rows()

    def optimize(self, table: str) -> None:
        """Compact small fragments and (re)build the BTree index on the key, which `take` and upserts use."""
        spec = spec_for(table)
        from lancedb.index import BTree

        with self._write_lock:
            tbl = self.table(table)
            indexed = {tuple(ix.columns) for ix in tbl.list_indices()}
            for column in spec.key:
                if (column,) not in indexed and tbl.count_rows():
                    tbl.create_index(column, config=BTree())
            tbl.optimize()

    # ------------------------------------------------------------------------------------------- vectors

    def nearest(self, query: Any, k: int = 10, table: str = "quadruplets", column: str = "target_emb",
                where: str | None = None, columns: Sequence[str] | None = None,
                version: Version | None = None) -> pa.Table:
        """The k rows whose `column` vector is closest (cosine) to `query`: a vector, or the key of a row whose
        own vector is used (that row is left out of the answer). `where` filters before the search."""
        spec = spec_for(table)
        key = spec.key[0]
        tbl = self.table(table, version)
        exclude = None
        if isinstance(query, str):
            row = self.take(table, [query], columns=[column], version=version)
            vector = row[column][0].as_py()
            if vector is None:
                raise LakeError(f"{table} row {query!r} has no {column}")
            exclude = query
        else:
            vector = np.asarray(query, np.float32).tolist()
        filters = [f for f in (where, f"{key} != {literal(exclude)}" if exclude else None) if f]
        search = tbl.search(vector, vector_column_name=column).metric("cosine").limit(k)
        if any(ix.columns == [column] for ix in tbl.list_indices()):
            search = search.nprobes(20).refine_factor(10)  # PQ distances are coarse: re-rank the candidates exactly
        if filters:
            search = search.where(" AND ".join(f"({f})" for f in filters), prefilter=True)
        wanted = list(columns) if columns else [key, "edit_type", "instruction"] if table == "quadruplets" else [key]
        result = search.select(wanted).to_arrow()
        distance = result["_distance"]
        return result.select(wanted).append_column("similarity", pa.compute.subtract(1.0, distance))

    def index_vectors(self, table: str, column: str, min_rows: int = 256) -> bool:
        """Build an IVF-PQ index on a vector column once the table is big enough to train one (a new version)."""
        from lancedb.index import IvfPq

        tbl = self.table(table)
        rows = tbl.count_rows(f"{column} IS NOT NULL")
        if rows < min_rows:
            return False
        dim = tbl.schema.field(column).type.list_size
        sub_vectors = next(d for d in (dim // 16, dim // 8, dim // 4, 1) if d and dim % d == 0)
        with self._write_lock:
            tbl.create_index(column, config=IvfPq(distance_type="cosine", num_partitions=max(1, int(rows**0.5) // 4),
                                                  num_sub_vectors=sub_vectors), replace=True)
        return True

    # ------------------------------------------------------------------------------------------- versions

    def versions(self, table: str) -> list[VersionInfo]:
        tbl = self.table(table)
        by_version: dict[int, list[str]] = {}
        for tag, info in tbl.tags.list().items():
            by_version.setdefault(int(info["version"]), []).append(tag)
        return [
            VersionInfo(
                version=int(v["version"]),
                timestamp=v["timestamp"],
                rows=int(v.get("metadata", {}).get("total_rows", 0) or 0),
                tags=tuple(sorted(by_version.get(int(v["version"]), []))),
            )
            for v in tbl.list_versions()
        ]

    def resolve_version(self, table: str, version: Version) -> int:
        """A version number or tag name to a version number, with an error that lists what exists."""
        tbl = self.table(table)
        if isinstance(version, str) and not version.isdigit():
            tags = tbl.tags.list()
            if version not in tags:
                known = ", ".join(sorted(tags)) or "none"
                raise LakeError(f"table {table!r} has no tag {version!r} (tags: {known})")
            return int(tags[version]["version"])
        number = int(version)
        known = [int(v["version"]) for v in tbl.list_versions()]
        if number not in known:
            raise LakeError(f"table {table!r} has no version {number} (versions {min(known)}..{max(known)})")
        return number

    def tag(self, table: str, name: str, version: Version | None = None) -> int:
        """Name a version (default: the latest) so it can be read back by name; returns the version number."""
        tbl = self.table(table)
        number = tbl.version if version is None else self.resolve_version(table, version)
        if name in tbl.tags.list():
            raise LakeError(f"table {table!r} already has a tag {name!r}")
        if name.isdigit():
            raise LakeError(f"tag {name!r} would read as a version number; use a name with a letter in it")
        tbl.tags.create(name, number)
        return number

    def delete_tag(self, table: str, name: str) -> None:
        self.resolve_version(table, name)
        self.table(table).tags.delete(name)

    def tags(self, table: str | None = None) -> list[tuple[str, str, int]]:
        """(table, tag, version) for one table or all of them."""
        names = [table] if table else self.table_names
        return [
            (name, tag, int(info["version"]))
            for name in names
            for tag, info in sorted(self.table(name).tags.list().items())
        ]

    def info(self) -> list[TableInfo]:
        out = []
        for name in self.table_names:
            tbl = self.table(name)
            out.append(TableInfo(
                name=name,
                rows=tbl.count_rows(),
                version=tbl.version,
                versions=len(tbl.list_versions()),
                tags={tag: int(i["version"]) for tag, i in tbl.tags.list().items()},
                bytes=int(tbl.stats().get("total_bytes", 0)) if tbl.count_rows() else 0,
            ))
        return out

    # ------------------------------------------------------------------------------------------- random access

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

    # ------------------------------------------------------------------------------------------- SQL and Daft

    def duckdb_cursor(self):
        """A fresh DuckDB connection (cursor) on this handle's one database: its own temp views and
        registrations, opened in microseconds where a new database costs tens of milliseconds per query."""
        with self._duckdb_lock:
            if self._duckdb is None:
                import duckdb

                self._duckdb = duckdb.connect()
                self._duckdb.execute("SET parquet_metadata_cache = true")  # snapshot footers parsed once
            return self._duckdb.cursor()

    def sql(self, query: str, params: Mapping[str, Any] | None = None,
            version: Version | Mapping[str, Version] | None = None) -> pa.Table:
        """Run DuckDB SQL over the lake's tables (blob columns hidden; projections and filters pushed into Lance).

        `version` pins the table the query reads (a number or tag), or maps table -> version when it reads several."""
        from lake.sql import run_sql

        return run_sql(self, query, params=params, version=version)

    def query(self, name: str, version: Version | Mapping[str, Version] | None = None, engine: str = "duckdb",
              **params: Any) -> pa.Table:
        """Run a named query from queries/*.sql, e.g. `db.query("edit_type_distribution", table="quadruplets")`;
        `engine="daft"` runs the same SQL through Daft."""
        from lake.queries import load_query

        return load_query(name).run(self, params, version=version, engine=engine)

    def daft(self, table: str, version: Version | None = None, blobs: bool = False) -> daft.DataFrame:
        """A lazy Daft DataFrame over the table (blob columns left out unless `blobs=True`)."""
        from lake.dataframes import to_daft

        return to_daft(self, table, version=version, blobs=blobs)

    # ------------------------------------------------------------------------------------------- helpers

    def _check_columns(self, spec: TableSpec, columns: Sequence[str]) -> None:
        unknown = [c for c in columns if c not in spec.columns]
        if unknown:
            raise LakeError(f"{spec.name} has no column {unknown[0]!r} (columns: {', '.join(spec.columns)})")

    @staticmethod
    def _check_schema(spec: TableSpec, table: LanceTable) -> None:
        """A table written before a nullable column was added gains it (all null); anything else missing means
        the table belongs to another schema."""
        missing = [n for n in spec.schema.names if n not in table.schema.names]
        addable = [spec.schema.field(n) for n in missing if spec.schema.field(n).nullable]
        if addable and len(addable) == len(missing):
            table.add_columns(addable)
            missing = []
        if missing:
            raise LakeError(
                f"table {spec.name!r} lacks columns {missing}: it was written by another version of kiwi-lake"
            )
        undeclared = [k for k in spec.key if PRIMARY_KEY.encode() not in (table.schema.field(k).metadata or {})]
        if undeclared:  # created before keys were declared: declare them, so concurrent upserts stay unique
            declared = primary_key_metadata(spec.key)
            try:
                table.to_lance().update_field_metadata({k: declared[k] for k in spec.key})
            except Exception:  # noqa: BLE001 - a lake opened with read-only credentials stays readable
                pass


def reject_id(stage: str, input_ref: str, dataset: str | None = None) -> str:
    """Stable key of a reject: (stage, dataset, input_ref); two datasets' `train.csv:12` are two records."""
    key = f"{stage}\x00{input_ref}" if dataset is None else f"{stage}\x00{dataset}\x00{input_ref}"
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def in_filter(column: str, values: Sequence[Any]) -> str:
    if all(isinstance(v, str) for v in values):
        literals = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    elif all(isinstance(v, int | np.integer) for v in values):
        literals = ", ".join(str(int(v)) for v in values)
    else:
        raise LakeError(f"keys for {column} must be all strings or all integers")
    return f"{column} IN ({literals})"
