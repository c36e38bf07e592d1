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
from typing import TYPE_CHECKING, Any

import lance
import pyarrow as pa

from lake.access import RandomAccess, in_filter  # noqa: F401 - in_filter: part of lake.db's interface
from lake.errors import LakeError
from lake.memory import CacheLimits, shared_session
from lake.schema import PRIMARY_KEY, TABLES, TableSpec, primary_key_metadata, spec_for
from lake.validate import Rows, to_arrow
from lake.vectors import VectorSearch
from lake.versioning import TableInfo, VersionInfo, Versioning  # noqa: F401 - re-exported

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


class Lake(VectorSearch, Versioning, RandomAccess):
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
        self._pinned: dict[tuple[str, int], lance.LanceDataset] = {}  # (table, version number) -> dataset
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
        """The underlying Lance dataset (for scans with pushdown, `take`, `take_blobs`). A numbered version never
        changes, so its dataset is opened once and kept (a loader reads the slice's pinned version every batch:
        listing the versions and opening the table each time took over half of a small batch's load)."""
        if version is None:
            return self.table(name).to_lance()
        key = (name, int(version)) if isinstance(version, int) or str(version).isdigit() else None
        if key is not None and key in self._pinned:
            return self._pinned[key]
        ds = self.table(name, version).to_lance()
        if key is not None:
            if len(self._pinned) >= 32:
                self._pinned.pop(next(iter(self._pinned)))
            self._pinned[key] = ds
        return ds

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
