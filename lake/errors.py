"""Error types with reason codes: raised where the fact is known, caught where the decision is made
(a CLI prints one line; an ingest loop turns the error into a `rejects` row)."""

from __future__ import annotations


class LakeError(Exception):
    """A user-facing problem with the lake: a missing table, an unknown version or tag, a bad query."""


class SchemaMismatchError(LakeError):
    """Rows that do not fit a table's schema. Names the table, the column and the offending value's type."""

    def __init__(self, table: str, column: str | None, problem: str):
        self.table, self.column, self.problem = table, column, problem
        where = f"{table}.{column}" if column else table
        super().__init__(f"{where}: {problem}")


class MediaError(LakeError):
    """Bytes that are not usable media. `reason` is a short stable code suitable for the `rejects` table."""

    REASONS = frozenset(
        {"empty", "not_a_video", "not_an_image", "truncated", "too_few_frames", "unsupported", "too_large",
         "bad_frames", "corrupt", "missing_file"}
    )

    def __init__(self, reason: str, detail: str = "", source: str | None = None):
        if reason not in self.REASONS:
            raise ValueError(f"unknown MediaError reason {reason!r}")
        self.reason, self.detail, self.source = reason, detail, source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{reason}" + (f" ({detail})" if detail else ""))
