"""What every pair source yields: `PairRecord`s with media references resolved inside the source's root.

A source never raises for one bad row: it yields the record with a `problem` (reason code, detail), and the ingest
loop turns that into a `rejects` row. Problems that concern the whole source (a missing file, a missing column)
raise a ValueError that names the file and what is wrong."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from refvie.datasets import Provenance, file_origin

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".gif"})


class RowProblem(Exception):
    """One row cannot be used; `reason` is the short code that lands in `rejects`."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class MediaRef:
    """A video or image: inline bytes, or a file resolved inside the dataset root. `uri` is as the source wrote it."""

    uri: str | None
    path: Path | None = None
    data: bytes | None = None

    @property
    def is_image(self) -> bool:
        """Told apart by extension, as the Kiwi-Edit loaders do: an image is a one-frame clip."""
        name = str(self.path or self.uri or "")
        return Path(name).suffix.lower() in IMAGE_EXTENSIONS

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise RowProblem("missing_file", str(self.uri)) from None
        except IsADirectoryError:
            raise RowProblem("missing_file", f"{self.uri} is a directory") from None


@dataclass
class PairRecord:
    input_ref: str  # where the row came from, stable across reruns: "train.csv:12", "chunk-0.parquet:7"
    dataset: str
    pair_id: str | None = None
    instruction: str | None = None
    source: MediaRef | None = None
    target: MediaRef | None = None
    reference: MediaRef | None = None
    edit_type: str | None = None
    gt_mask: bytes | None = None
    gt_reference: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    problem: RowProblem | None = None
    # A source whose rows are costly to produce (rendering, downloading) can defer the work: ingest calls this in
    # its worker pool, and only for rows not already in the lake.
    deferred: Callable[[], PairRecord] | None = None


class Source(Protocol):
    """A lazy iterable of PairRecords with a dataset name ("" until ingest claims one: see refvie.datasets) and
    where its rows come from."""

    dataset: str

    def provenance(self) -> Provenance: ...

    def __iter__(self) -> Iterator[PairRecord]: ...


def resolve_inside(root: Path, relative: str, allowed: tuple[Path, ...] = ()) -> MediaRef:
    """A path from a manifest, resolved inside `root`. A relative path is taken from `root`; an absolute one is
    accepted when it lies inside `root` or one of the `allowed` folders (Kiwi-Edit's CSVs allow both). `..`
    escapes, symlinks that lead out and absolute paths elsewhere raise RowProblem('path_escape'); URIs
    (s3://…) are not local files and raise 'unsupported_uri'."""
    if relative is None or not str(relative).strip():
        raise RowProblem("missing_path", "empty path")
    text = str(relative).strip()
    if "://" in text:
        raise RowProblem("unsupported_uri", f"{text}: only files under the dataset root can be ingested")
    roots = [r.resolve() for r in (root, *allowed)]
    if os.path.isabs(text):
        candidate = Path(text).resolve()
        if not any(candidate.is_relative_to(r) for r in roots):
            raise RowProblem("path_escape", f"{text} is absolute and lies outside the allowed roots "
                                            f"({', '.join(map(str, roots))}); add its folder with --root")
        return MediaRef(uri=text, path=candidate)
    candidate = (roots[0] / text).resolve()
    if not candidate.is_relative_to(roots[0]):
        raise RowProblem("path_escape", f"{text} resolves outside the dataset root")
    return MediaRef(uri=text, path=candidate)


def stable_id(prefix: str, *parts: object) -> str:
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=10).hexdigest()
    return f"{prefix}-{digest}"


def media_field(root: Path, value: Any, allowed: tuple[Path, ...] = ()) -> MediaRef | None:
    """A manifest cell: bytes are inline media, strings are paths under the root (or absolute, inside an allowed
    root), empty means absent."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return MediaRef(uri=None, data=bytes(value)) if len(value) else None
    if isinstance(value, str) and not value.strip():
        return None
    return resolve_inside(root, str(value), allowed)


def file_provenance(path: Path, fmt: str, root: Path, allowed: tuple[Path, ...], default_name: str = "",
                    **about: Any) -> Provenance:
    """A file or folder source's provenance: its resolved location is its identity."""
    return Provenance(origin=file_origin(path), default_name=default_name or Path(path).stem, format=fmt,
                      roots=tuple(str(r.resolve()) for r in (root, *allowed)), **about)
