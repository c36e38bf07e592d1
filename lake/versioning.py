"""Versions and tags of the lake's tables: every write is a new version, a tag names one that matters, and every
read can ask for either. Mixed into `Lake`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lake.errors import LakeError

if TYPE_CHECKING:
    from lake.db import Version


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


class Versioning:
    """`Lake.versions`, `resolve_version`, `tag`, `delete_tag`, `tags`, `info` (uses the host's `table`)."""

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
