"""Rows in, a schema-exact Arrow table out — or a SchemaMismatchError that names table, column and value type.

Checking happens before anything is written, so a bad batch never leaves a half-written version behind."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.errors import SchemaMismatchError
from lake.schema import TableSpec
from lake.taxonomy import edit_scope

Rows = pa.Table | pa.RecordBatch | Iterable[Mapping[str, Any]] | Mapping[str, list]

_BYTES = (bytes, bytearray, memoryview)


def to_arrow(spec: TableSpec, rows: Rows) -> pa.Table:
    """Validate `rows` against `spec` and return a table with exactly the spec's schema (column order, types)."""
    columns = _columns(spec, rows)
    n = _row_count(spec, columns)
    unknown = [c for c in columns if c not in spec.schema.names]
    if unknown:
        raise SchemaMismatchError(spec.name, unknown[0], f"unknown column (the table has {', '.join(spec.columns)})")
    _derive(spec, columns, n)
    arrays = [_column_array(spec, f, columns.get(f.name), n) for f in spec.schema]
    table = pa.Table.from_arrays(arrays, schema=spec.schema)
    _check_one_of(spec, table)
    _check_unique_key(spec, table)
    return table


def to_arrow_partial(spec: TableSpec, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pa.Table:
    """Rows that carry the key and only `columns`, validated column by column (types, enums, required values):
    what a partial update writes."""
    names = [*spec.key, *[c for c in columns if c not in spec.key]]
    unknown = [c for c in names if c not in spec.schema.names]
    if unknown:
        raise SchemaMismatchError(spec.name, unknown[0], "no such column")
    arrays = [_column_array(spec, spec.schema.field(name), [row.get(name) for row in rows], len(rows))
              for name in names]
    return pa.Table.from_arrays(arrays, schema=pa.schema([spec.schema.field(n) for n in names]))


def _columns(spec: TableSpec, rows: Rows) -> dict[str, Any]:
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        return {name: rows.column(name) for name in rows.column_names}
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        return {str(c): rows[c].tolist() for c in rows.columns}
    if isinstance(rows, Mapping):
        return {k: list(v) for k, v in rows.items()}
    rows = list(rows)
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise SchemaMismatchError(spec.name, None, f"row {i} is a {type(row).__name__}, expected a mapping")
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}


def _row_count(spec: TableSpec, columns: dict[str, Any]) -> int:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise SchemaMismatchError(spec.name, None, f"columns have different lengths: {lengths}")
    return next(iter(lengths.values()), 0)


def _derive(spec: TableSpec, columns: dict[str, Any], n: int) -> None:
    """Fill columns whose value follows from others: timestamps default to now, edit_scope from edit_type."""
    now = datetime.now(UTC)
    for name in spec.timestamp_defaults:
        if name not in columns:
            columns[name] = [now] * n
    if "edit_scope" in spec.schema.names and "edit_scope" not in columns and "edit_type" in columns:
        try:
            columns["edit_scope"] = [None if t is None else edit_scope(t).value for t in _as_list(columns["edit_type"])]
        except ValueError as e:
            raise SchemaMismatchError(spec.name, "edit_type", str(e)) from None


def _as_list(values: Any) -> list:
    return values.to_pylist() if isinstance(values, pa.ChunkedArray | pa.Array) else list(values)


def _column_array(spec: TableSpec, field: pa.Field, values: Any, n: int) -> pa.Array:
    name = field.name
    if values is None:
        if not field.nullable:
            raise SchemaMismatchError(spec.name, name, f"missing required column of type {field.type}")
        return pa.nulls(n, type=field.type)
    if isinstance(values, pa.ChunkedArray | pa.Array):
        array = _cast_arrow(spec, field, values)
    else:
        values = _prepare_python(spec, field, values)
        array = _python_array(spec, field, values)
    if not field.nullable and array.null_count:
        first = next(i for i, v in enumerate(array.is_null().to_pylist()) if v)
        raise SchemaMismatchError(spec.name, name, f"null value at row {first} in a required column")
    if name in spec.enums:
        _check_enum(spec, name, array)
    if name in spec.json_columns:
        _check_json(spec, name, array)
    return array


def _cast_arrow(spec: TableSpec, field: pa.Field, values: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type.equals(field.type):
        return values
    if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
        t = values.type
        if not (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_null(t)):
            raise SchemaMismatchError(spec.name, field.name, f"expected bytes ({field.type}), got arrow {values.type}")
    try:
        return pc.cast(values, field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        raise SchemaMismatchError(spec.name, field.name, f"expected {field.type}, got arrow {values.type}") from None


def _prepare_python(spec: TableSpec, field: pa.Field, values: list) -> list:
    if field.name in spec.json_columns:
        return [v if v is None or isinstance(v, str) else json.dumps(v, sort_keys=True, default=str) for v in values]
    if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
        for i, v in enumerate(values):
            if v is not None and not isinstance(v, _BYTES):
                raise SchemaMismatchError(
                    spec.name, field.name, f"expected bytes, got {type(v).__name__} at row {i}: {_short(v)}"
                )
        return [bytes(v) if isinstance(v, bytearray | memoryview) else v for v in values]
    if pa.types.is_string(field.type):
        for i, v in enumerate(values):
            if v is not None and not isinstance(v, str):
                raise SchemaMismatchError(
                    spec.name, field.name, f"expected str, got {type(v).__name__} at row {i}: {_short(v)}"
                )
    if pa.types.is_integer(field.type):
        for i, v in enumerate(values):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | np.integer)):
                raise SchemaMismatchError(
                    spec.name, field.name, f"expected {field.type}, got {type(v).__name__} at row {i}: {_short(v)}"
                )
    if pa.types.is_timestamp(field.type):
        for i, v in enumerate(values):
            if v is not None and not isinstance(v, datetime):
                raise SchemaMismatchError(
                    spec.name, field.name, f"expected datetime, got {type(v).__name__} at row {i}: {_short(v)}"
                )
    return values


def _python_array(spec: TableSpec, field: pa.Field, values: list) -> pa.Array:
    try:
        return pa.array(values, type=field.type, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    for i, v in enumerate(values):  # find the offending value, so the message can name it
        try:
            pa.array([v], type=field.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as e:
            raise SchemaMismatchError(
                spec.name, field.name,
                f"expected {field.type}, got {type(v).__name__} at row {i}: {_short(v)} ({_first_line(e)})",
            ) from None
    raise SchemaMismatchError(spec.name, field.name, f"values do not convert to {field.type}")


def _check_enum(spec: TableSpec, name: str, array: pa.Array) -> None:
    allowed = spec.enums[name]
    bad = pc.invert(pc.is_in(array, value_set=pa.array(allowed, pa.string())))
    bad = pc.and_(bad, pc.is_valid(array))
    if pc.any(bad).as_py():
        value = pc.filter(array, bad)[0].as_py()
        raise SchemaMismatchError(spec.name, name, f"value {value!r} is not one of {', '.join(allowed)}")


def _check_json(spec: TableSpec, name: str, array: pa.Array) -> None:
    for i, v in enumerate(array.to_pylist()):
        if v is None:
            continue
        try:
            json.loads(v)
        except ValueError:
            raise SchemaMismatchError(spec.name, name, f"row {i} is not valid JSON: {_short(v)}") from None


def _check_one_of(spec: TableSpec, table: pa.Table) -> None:
    for a, b in spec.one_of:
        missing = pc.and_(table[a].is_null(), table[b].is_null())
        if pc.any(missing).as_py():
            row = missing.to_pylist().index(True)
            raise SchemaMismatchError(spec.name, a, f"row {row} has neither {a} nor {b}")


def _check_unique_key(spec: TableSpec, table: pa.Table) -> None:
    if table.num_rows < 2:
        return
    counts = table.group_by(list(spec.key)).aggregate([([], "count_all")])
    dupes = counts.filter(pc.greater(counts["count_all"], 1))
    if dupes.num_rows:
        example = {k: dupes[k][0].as_py() for k in spec.key}
        raise SchemaMismatchError(
            spec.name, ",".join(spec.key),
            f"{dupes.num_rows} key value(s) appear more than once in one write, e.g. {example}",
        )


def _short(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
