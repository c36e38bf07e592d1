"""A pinned version is opened once: loaders read a slice's version every batch, and listing the table's versions
each time was over half of a small batch's load. The data read stays the version's, whatever is written later."""

import lake
from tests.conftest import quadruplet_rows


def test_a_numbered_version_is_resolved_once_and_keeps_reading_its_rows(tmp_path, monkeypatch):
    db = lake.open(tmp_path / "lake")
    first = db.upsert("quadruplets", quadruplet_rows(6)).version
    calls = []
    resolve = db.resolve_version
    monkeypatch.setattr(db, "resolve_version", lambda *a: calls.append(a) or resolve(*a))
    ids = [f"q0-{i:05d}" for i in range(3)]
    for _ in range(5):
        rows = db.take("quadruplets", ids, columns=["id", "instruction"], version=first)
        blobs = db.read_blobs("quadruplets", "source_video", ids, version=first)
    assert len(calls) == 1  # once for the version, not once per read
    assert [r["id"] for r in rows.to_pylist()] == ids and all(b for b in blobs)
    # rows written after the pin do not show at it; the latest sees them
    later = quadruplet_rows(6)
    for row in later:
        row["instruction"] = "rewritten"
    db.upsert("quadruplets", later)
    pinned = db.take("quadruplets", ids, columns=["instruction"], version=first).to_pylist()
    latest = db.take("quadruplets", ids, columns=["instruction"]).to_pylist()
    assert {r["instruction"] for r in pinned} == {"edit number 0", "edit number 1", "edit number 2"}
    assert {r["instruction"] for r in latest} == {"rewritten"}
    # a tag resolves every time (tags can be moved); an unknown version is still refused by name
    db.tag("quadruplets", "pin", first)
    assert db.take("quadruplets", ids[:1], columns=["id"], version="pin").num_rows == 1
    try:
        db.take("quadruplets", ids[:1], version=999)
    except lake.LakeError as e:
        assert "no version 999" in str(e)
    else:
        raise AssertionError("version 999 was read")
