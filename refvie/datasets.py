"""Dataset identity: every dataset in the lake is one origin (a resolved file or folder), recorded in `datasets`.

Pair ids and reject keys are scoped by the dataset name, so two sources under one name would overwrite each
other's rows (two `train.csv` share every `train.csv:12`). A name therefore belongs to one origin: a source left
unnamed gets its file stem, or, when another origin holds that name, a name that tells the two apart; a source
named with `--dataset` that another origin already holds is refused. Generated sources (the synthetic world)
carry their world in every pair id and may share a name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lake import Lake


class DatasetConflict(ValueError):
    """A source would share its dataset name, and so its pair ids and reject keys, with another origin."""


@dataclass(frozen=True)
class Provenance:
    """Where a source's rows come from, and what the dataset says about itself."""

    origin: str  # file:///…/train.csv, file:///…/refvie_477k, or "synthetic:seed=0"
    default_name: str  # used when no name is asked for: the file stem, or the release's own name
    format: str
    roots: tuple[str, ...] = ()
    licence: str | None = None
    homepage: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.origin.startswith("file://")


def file_origin(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def registered(db: Lake) -> dict[str, dict[str, Any]]:
    """Every dataset the lake knows, by name."""
    return {row["dataset"]: row for row in db.read("datasets").to_pylist()}


def claim(db: Lake, provenance: Provenance, requested: str | None = None) -> str:
    """The dataset name this source's rows are stored under, recorded in `datasets`. A rerun of the same origin
    gets its earlier name; DatasetConflict when `requested` belongs to another origin, or this origin was
    ingested under another name."""
    known = registered(db)
    owner = {row["origin"]: name for name, row in known.items()}
    earlier = owner.get(provenance.origin)
    if earlier is not None and requested and requested != earlier and provenance.is_file:
        raise DatasetConflict(f"{_where(provenance)} was ingested as dataset {earlier!r}; rerun with --dataset "
                              f"{earlier} (or leave --dataset out) so its rows are not stored twice")
    if requested:
        holder = known.get(requested)
        if holder is not None and holder["origin"] != provenance.origin and provenance.is_file:
            raise DatasetConflict(
                f"dataset {requested!r} already holds the rows of {_where_uri(holder['origin'])}; "
                f"{_where(provenance)} is another source and would share its pair ids and reject records: "
                "give it its own --dataset name")
        name = requested
    elif earlier is not None:
        name = earlier
    else:
        name = _free_name(provenance, known)
    _record(db, name, provenance, known.get(name))
    return name


def _free_name(provenance: Provenance, known: dict[str, dict[str, Any]]) -> str:
    """The default name, or one that tells this origin apart from the one already holding it."""
    base = provenance.default_name
    if base not in known or not provenance.is_file:
        return base
    parent = Path(provenance.origin.removeprefix("file://")).parent.name
    digest = hashlib.blake2b(provenance.origin.encode(), digest_size=4).hexdigest()
    for candidate in (f"{parent}-{base}" if parent else None, f"{base}-{digest}"):
        if candidate and candidate not in known:
            return candidate
    raise DatasetConflict(f"no free dataset name for {_where(provenance)}; give one with --dataset")


def _record(db: Lake, name: str, provenance: Provenance, existing: dict[str, Any] | None) -> None:
    meta = json.loads(existing["meta"]) if existing and existing.get("meta") else {}
    meta.update(provenance.meta)
    row = dict(dataset=name, origin=existing["origin"] if existing else provenance.origin, format=provenance.format,
               roots=list(provenance.roots), licence=provenance.licence or (existing or {}).get("licence"),
               homepage=provenance.homepage or (existing or {}).get("homepage"), meta=json.dumps(meta))
    if existing is not None:
        row["created_at"] = existing["created_at"]
    db.upsert("datasets", [row])


def record_file_done(db: Lake, name: str, file: Path, rows: int) -> None:
    """Mark one file of a dataset as ingested whole (size and mtime), so a resumed release skips it."""
    row = registered(db)[name]
    meta = json.loads(row["meta"] or "{}")
    stat = file.stat()
    meta.setdefault("files_done", {})[file.name] = dict(size=stat.st_size, mtime_ns=stat.st_mtime_ns, rows=rows)
    db.update_columns("datasets", [dict(dataset=name, meta=json.dumps(meta))], ["meta"])


def file_done(db: Lake, name: str, file: Path) -> int | None:
    """The row count of `file` when it was ingested whole and has not changed since, else None."""
    row = registered(db).get(name)
    if row is None:
        return None
    done = json.loads(row["meta"] or "{}").get("files_done", {}).get(file.name)
    stat = file.stat()
    if done and done["size"] == stat.st_size and done["mtime_ns"] == stat.st_mtime_ns:
        return int(done["rows"])
    return None


def _where(provenance: Provenance) -> str:
    return _where_uri(provenance.origin)


def _where_uri(origin: str) -> str:
    """An origin as a user reads it: the path of a file:// URI, anything else as it is."""
    return origin.removeprefix("file://")
