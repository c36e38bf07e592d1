"""Nearest-neighbour search over the lake's embedding columns: exact cosine, or IVF-PQ with exact re-ranking once
a table is large enough to train an index. Mixed into `Lake`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute in nearest()

from lake.errors import LakeError
from lake.schema import spec_for
from lake.sql import literal

if TYPE_CHECKING:
    from lake.db import Version


class VectorSearch:
    """`Lake.nearest` and `Lake.index_vectors` (uses the host's `table`, `take` and write lock)."""

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
