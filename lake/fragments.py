"""Rows written by many workers, committed by one: each worker writes its rows as Lance data files that no version
references yet (`write_uncommitted`), and one process makes them part of the table in a single commit
(`commit_fragments`). The bytes (videos, images) are written where they were made, in parallel;
only a few hundred bytes of fragment metadata per batch travel to the committer.

Files of fragments that never get committed (a worker whose build was killed) are referenced by no version: they
are invisible to every reader, and `cleanup_old_versions` removes them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lake.schema import spec_for
from lake.validate import Rows, to_arrow


def write_uncommitted(dataset_uri: str, table: str, rows: Rows,
                      storage_options: Mapping[str, str] | None = None,
                      data_storage_version: str | None = None) -> str:
    """Validate `rows` for `table` and write them as data files beside the table at `dataset_uri`, without a
    commit. Returns the fragments' metadata as JSON (what `parse_fragments` reads back for `commit_fragments`);
    "[]" for no rows."""
    from lance.fragment import write_fragments

    data = to_arrow(spec_for(table), rows)
    if data.num_rows == 0:
        return "[]"
    # the spec's schema (blob columns as large_binary marked for blob encoding, which Lance turns into its blob
    # type as an ordinary write does) and the table's file version
    fragments = write_fragments(data, dataset_uri, storage_options=dict(storage_options or {}) or None,
                                data_storage_version=data_storage_version)
    return json.dumps([f.to_json() for f in fragments])


def parse_fragments(documents: list[str]) -> list:
    """The FragmentMetadata of every distinct fragment named in `documents` (JSON lists from `write_uncommitted`;
    rows of one batch repeat the same document)."""
    from lance.fragment import FragmentMetadata

    seen, fragments = set(), []
    for document in dict.fromkeys(documents):
        for entry in json.loads(document):
            path = data_paths(entry)
            if path not in seen:
                seen.add(path)
                fragments.append(FragmentMetadata.from_json(json.dumps(entry)))
    return fragments


def data_paths(entry: Mapping) -> tuple[str, ...]:
    """A fragment's identity before and after its commit: the names of its data files (unique per write; the
    fragment id is only assigned by the commit)."""
    return tuple(f["path"] for f in entry["files"])


@dataclass(frozen=True)
class Committed:
    rows: int  # rows of the fragments that stayed visible
    versions: tuple[int, ...]  # the versions these commits made, in order


def commit_fragments(db, table: str, fragments: list, remove_keys: list[str] = ()) -> Committed:
    """Make `fragments` (from `write_uncommitted`, via `parse_fragments`) part of `table` in one Append commit,
    then delete the rows keyed `remove_keys` from those fragments only (a second commit; rows that other writers
    hold under the same keys stay).

    The two commits are not atomic: a kill between them leaves the removed rows in the table. The builder
    removes only near-duplicates (kept: no loss) and pairs another build settled meanwhile (a second row under
    one key, which `drop_duplicate_keys` removes at the next build's start)."""
    from lance import LanceDataset, LanceOperation

    if not fragments:
        return Committed(0, ())
    with db._write_lock:
        dataset = db.dataset(table)
        appended = LanceDataset.commit(dataset.uri, LanceOperation.Append(fragments), read_version=dataset.version,
                                       storage_options=db.storage_options or None)
    rows = sum(f.physical_rows for f in fragments)
    if not remove_keys:
        return Committed(rows, (appended.version,))
    ours = {tuple(f.path for f in m.files) for m in fragments}
    mine = [f.fragment_id for f in appended.get_fragments() if tuple(d.path for d in f.metadata.files) in ours]
    with db._write_lock:
        result = db.table(table).delete(f"({key_predicate(table, remove_keys)}) AND ({in_fragments(mine)})")
    return Committed(rows - result.num_deleted_rows, (appended.version, result.version))


def key_predicate(table: str, keys: list[str]) -> str:
    from lake.sql import literal

    (column,) = spec_for(table).key
    return f"{column} IN ({', '.join(literal(k) for k in keys)})"


def in_fragments(fragment_ids: list[int]) -> str:
    """A predicate true for the rows of these fragments (a row's address is its fragment id << 32 | offset)."""
    if not fragment_ids:
        return "false"
    return " OR ".join(f"(_rowaddr >= {i << 32} AND _rowaddr < {(i + 1) << 32})" for i in fragment_ids)


def drop_duplicate_keys(db, table: str, keys: Sequence[str] | None = None) -> int:
    """Rows that share a key with an earlier row go (the first copy stays; copies of one pair are the same bytes):
    what two builds appending the same pair at once leave, or a kill between `commit_fragments`' two commits.
    One scan of the key column (of `keys` only, if given); returns the rows deleted."""
    import pyarrow.compute as pc

    if keys is not None and not keys:
        return 0
    (column,) = spec_for(table).key
    where = key_predicate(table, list(keys)) if keys else None
    found = db.dataset(table).to_table(columns=[column], with_row_address=True, filter=where)
    if found.num_rows < 2:
        return 0
    counts = pc.value_counts(found[column])
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    if not len(repeated):
        return 0
    chosen = found.filter(pc.is_in(found[column], repeated)).sort_by("_rowaddr")
    seen, later = set(), []
    for key, address in zip(chosen[column].to_pylist(), chosen["_rowaddr"].to_pylist(), strict=True):
        if key in seen:
            later.append(address)
        seen.add(key)
    with db._write_lock:
        return db.table(table).delete(f"_rowaddr IN ({', '.join(map(str, later))})").num_deleted_rows
