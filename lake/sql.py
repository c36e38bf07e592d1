"""DuckDB over the lake: each query gets a fresh connection (a cursor on the lake handle's one in-memory database)
on which the tables it names are views over their Lance datasets. The views list only metadata columns, so
`SELECT *` can never pull video bytes, and DuckDB pushes projections and filters through the view into the Lance
scan."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from lake.errors import LakeError
from lake.schema import TABLES

if TYPE_CHECKING:
    from lake.db import Lake, Version


_PLACEHOLDER = re.compile(r"\$\w+|\?")


def literal(value: Any) -> str:
    """A Python value as an SQL literal (for Lance/DuckDB filters built from data; quotes doubled)."""
    if isinstance(value, bool) or value is None:
        return {True: "TRUE", False: "FALSE", None: "NULL"}[value]
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def referenced_tables(query: str) -> set[str]:
    """The lake tables a query names (parsed by DuckDB, so CTE names and string literals do not count).
    Parameter placeholders are replaced by NULL first: DuckDB's parser refuses them in this call."""
    try:
        names = duckdb.get_table_names(_PLACEHOLDER.sub("NULL", query))
    except duckdb.Error as e:
        raise LakeError(f"SQL does not parse: {_first_line(e)}") from None
    return {n for n in names if n in TABLES}


def connect(lake: Lake, tables: set[str], version: Version | Mapping[str, Version] | None = None,
            query: str = ""):
    """A DuckDB connection with each of `tables` registered as a metadata-only view, at the requested version:
    over the version's Parquet snapshot where the query allows one (`lake.snapshots`), else over the Lance
    dataset."""
    versions = versions_per_table(tables, version)
    con = lake.duckdb_cursor()
    for name in sorted(tables):
        dataset = lake.dataset(name, versions.get(name))
        snapshot = lake.snapshots.for_query(name, dataset, query) if query else None
        if snapshot is not None:
            path = str(snapshot).replace("'", "''")
            con.execute(f"CREATE TEMP VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')")
            continue
        raw = f"__lance_{name}"
        con.register(raw, dataset)
        spec = lake.spec(name)
        columns = ", ".join(_view_column(spec.schema.field(c), spec.key[0]) for c in spec.metadata_columns)
        con.execute(f'CREATE TEMP VIEW "{name}" AS SELECT {columns} FROM "{raw}"')
    return con


def _view_column(field: pa.Field, key: str) -> str:
    """Vector columns pass through an expression DuckDB cannot see through, so it keeps filters on them
    (`target_emb IS NOT NULL`) to itself: Lance fails on such a filter pushed into its scan. Projection is
    still pushed down."""
    if pa.types.is_fixed_size_list(field.type):
        return f'CASE WHEN "{key}" IS NOT NULL THEN "{field.name}" END AS "{field.name}"'
    return f'"{field.name}"'


def run_sql(lake: Lake, query: str, params: Mapping[str, Any] | None = None,
            version: Version | Mapping[str, Version] | None = None) -> pa.Table:
    tables = referenced_tables(query)
    con = connect(lake, tables, version, query)
    try:
        relation = con.sql(query, params=dict(params) if params else None)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as e:
        raise LakeError(f"SQL failed: {_first_line(e)}{_hidden_column_hint(str(e), tables)}") from None
    finally:
        con.close()


def _hidden_column_hint(message: str, tables: set[str]) -> str:
    """When the failure names a video/image column: SQL never reads those (it would pull media bytes); say how."""
    for name in sorted(tables):
        spec = TABLES[name]
        for column in spec.schema.names:
            if column not in spec.metadata_columns and f'"{column}"' in message:
                return (f" — {name}.{column} holds media bytes and is hidden from SQL; select {spec.key[0]} here and "
                        f"read the media with db.read_video({name!r}, key, {column!r}) or db.read_blobs(...)")
    return ""


def versions_per_table(tables: set[str], version: Version | Mapping[str, Version] | None) -> dict[str, Version]:
    if version is None:
        return {}
    if isinstance(version, Mapping):
        unknown = set(version) - tables
        if unknown:
            raise LakeError(f"version given for {sorted(unknown)}, which the query does not read")
        return dict(version)
    if len(tables) != 1:
        raise LakeError(
            f"version={version!r} is ambiguous: the query reads {sorted(tables) or 'no lake table'}; "
            "pass a mapping such as version={'quadruplets': 3}"
        )
    return {next(iter(tables)): version}


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]
