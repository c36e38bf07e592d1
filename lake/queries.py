"""Named, parameterised SQL: one file per query in queries/ (or any folder on $KIWI_LAKE_QUERIES).

A file starts with comment lines that declare it:

    -- name: edit_type_distribution
    -- description: Rows and share of each edit type.
    -- param table: quadruplets        (an identifier, written {table}; must be a lake table)
    -- param min_rows: 0               (a value, written $min_rows; bound by DuckDB, never spliced)

Identifiers are checked against the lake's table names; values go through DuckDB's parameter binding."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lake.errors import LakeError
from lake.schema import TABLES
from lake.sql import literal

if TYPE_CHECKING:
    from lake.db import Lake, Version

_HEADER = re.compile(r"^--\s*(name|description|param)\s*:?\s*(.*)$")
_IDENTIFIER = re.compile(r"\{(\w+)\}")
_VALUE = re.compile(r"\$(\w+)")


def query_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("KIWI_LAKE_QUERIES", "").split(os.pathsep) if p]
    return [*extra, Path(__file__).resolve().parent.parent / "queries"]


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str
    path: Path
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def identifiers(self) -> list[str]:
        return sorted(set(_IDENTIFIER.findall(self.sql)))

    @property
    def values(self) -> list[str]:
        return sorted(set(_VALUE.findall(_strip_comments(self.sql))))

    def render(self, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The SQL with identifiers filled in, and the value parameters to bind."""
        merged = {**self.defaults, **params}
        unknown = set(params) - set(self.identifiers) - set(self.values)
        if unknown:
            raise LakeError(f"query {self.name!r} takes no parameter {sorted(unknown)[0]!r} "
                            f"(parameters: {', '.join(self.identifiers + self.values) or 'none'})")
        missing = [p for p in self.identifiers + self.values if p not in merged]
        if missing:
            raise LakeError(f"query {self.name!r} needs parameter {missing[0]!r}")
        for ident in self.identifiers:
            value = merged[ident]
            if ident == "table" and value not in TABLES:
                raise LakeError(f"query {self.name!r}: table={value!r} is not a lake table ({', '.join(TABLES)})")
            if ident != "table":  # a column of the query's table
                columns = TABLES[merged.get("table", "quadruplets")].columns
                if value not in columns:
                    raise LakeError(f"query {self.name!r}: {ident}={value!r} is not a column "
                                    f"(columns: {', '.join(columns)})")
        sql = _IDENTIFIER.sub(lambda m: str(merged[m.group(1)]), self.sql)
        return sql, {v: merged[v] for v in self.values}

    def run(self, lake: Lake, params: Mapping[str, Any], version: Version | Mapping[str, Version] | None = None,
            engine: str = "duckdb") -> pa.Table:
        sql, values = self.render(params)
        if engine == "duckdb":
            return lake.sql(sql, params=values or None, version=version)
        if engine == "daft":
            return run_daft(lake, sql, values, version)
        raise LakeError(f"unknown engine {engine!r}; use duckdb or daft")


def run_daft(lake: Lake, sql: str, values: Mapping[str, Any],
             version: Version | Mapping[str, Version] | None = None) -> pa.Table:
    """The same SQL through Daft: tables become Daft DataFrames, value parameters become literals."""
    import daft

    from lake.sql import referenced_tables, versions_per_table

    tables = referenced_tables(sql)
    versions = versions_per_table(tables, version)
    frames = {t: lake.daft(t, version=versions.get(t)) for t in tables}
    text = _VALUE.sub(lambda m: literal(values[m.group(1)]), sql)
    for duckdb_name, daft_name in _DAFT_FUNCTIONS.items():
        text = re.sub(rf"\b{duckdb_name}\s*\(", f"{daft_name}(", text)
    try:
        return daft.sql(text, register_globals=False, **frames).to_arrow()
    except Exception as e:  # noqa: BLE001 - Daft raises its own hierarchy
        raise LakeError(f"Daft SQL failed: {str(e).splitlines()[0]}") from None


_DAFT_FUNCTIONS = {"array_cosine_distance": "cosine_distance"}  # DuckDB name -> Daft name, same meaning


def parse_query(path: Path) -> NamedQuery:
    name, description, defaults, body = path.stem, "", {}, []
    for line in path.read_text().splitlines():
        match = _HEADER.match(line.strip()) if not body else None
        if match:
            kind, rest = match.groups()
            if kind == "name":
                name = rest.strip()
            elif kind == "description":
                description = (description + " " + rest.strip()).strip()
            else:
                key, _, default = rest.partition(":")
                default = default.split("(")[0].strip()
                if default:
                    defaults[key.strip()] = parse_value(default)
        elif line.strip() or body:
            body.append(line)
    return NamedQuery(name=name, description=description, sql="\n".join(body).strip(), path=path,
                      defaults=defaults)


def list_queries() -> dict[str, NamedQuery]:
    queries: dict[str, NamedQuery] = {}
    for folder in reversed(query_dirs()):  # earlier folders on the path win
        for path in sorted(folder.glob("*.sql")) if folder.is_dir() else []:
            query = parse_query(path)
            queries[query.name] = query
    return dict(sorted(queries.items()))


def load_query(name: str) -> NamedQuery:
    queries = list_queries()
    if name not in queries:
        raise LakeError(f"no named query {name!r} (known: {', '.join(queries) or 'none'})")
    return queries[name]


def parse_value(text: str) -> Any:
    """CLI and header values: JSON when it parses (numbers, lists, true/false), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--")[0] for line in sql.splitlines())
