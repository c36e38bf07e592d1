"""Prefix reads that fetch what they decode: `lake.ranged.RangedBlob` (every byte fetched once, in aligned ranges),
`Lake.read_videos(max_frames=…, ranged=True)`, measured in bytes and requests against moto through
`lake.counting_proxy`, and the training loader's use of them for clips much longer than what it takes."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest

import lake
from lake import media
from lake.counting_proxy import CountingProxy
from lake.ranged import MAX_REQUEST, RangedBlob
from tests.conftest import quadruplet_rows


class InMemory:
    def __init__(self, data: bytes):
        self.data, self.calls = data, []

    def size(self) -> int:
        return len(self.data)

    def read_range(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        return self.data[offset:offset + length]


def long_clip(frames: int = 241, seed: int = 0) -> bytes:
    """A textured clip whose frames cost bytes (noise rolled sideways), so a prefix is a fraction of the blob."""
    base = np.random.default_rng(seed).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    return media.encode_video(np.stack([np.roll(base, 3 * t, axis=1) for t in range(frames)]), fps=16)


@pytest.mark.parametrize("seed", range(5))
def test_a_ranged_blob_reads_what_a_file_reads_and_fetches_each_byte_once(seed):
    data = np.random.default_rng(seed).integers(0, 256, 1_000_003, dtype=np.uint8).tobytes()
    store = InMemory(data)
    ranged, plain = RangedBlob(store, min_request=4096, max_request=16384), io.BytesIO(data)
    rng = np.random.default_rng(100 + seed)
    for _ in range(300):
        if rng.random() < 0.3:
            offset, whence = int(rng.integers(-5000, len(data) + 5000)), int(rng.integers(0, 3))
            offset = abs(offset) if whence == io.SEEK_SET else offset
            assert ranged.seek(offset, whence) == plain.seek(max(0, offset + {0: 0, 1: plain.tell(),
                                                                               2: len(data)}[whence]))
        n = int(rng.integers(0, 70_000))
        assert ranged.read(n) == plain.read(n)
    fetched = sorted(store.calls)
    assert all(a + n <= b for (a, n), (b, _) in zip(fetched, fetched[1:], strict=False))  # no byte twice
    ranged.close()
    assert ranged.stats.fetched == sum(n for _, n in store.calls) <= len(data)
    assert ranged.stats.read <= ranged.stats.fetched


def test_a_prefix_read_decodes_the_same_frames_from_a_fraction_of_the_blob():
    data = long_clip()
    store = InMemory(data)
    ranged = RangedBlob(store)
    head = media.decode_video(ranged, max_frames=41)
    ranged.close()
    assert np.array_equal(head, media.decode_video(data)[:41])
    assert ranged.stats.fetched < 0.5 * len(data)
    assert ranged.stats.fetched <= ranged.stats.read + MAX_REQUEST  # at most one request beyond the need


def test_read_videos_ranged_against_object_storage_costs_the_prefix_not_the_blob(tmp_path, s3_lake_options):
    clip = long_clip(seed=1)
    rows = quadruplet_rows(2, videos=True)
    for row in rows:
        row["source_video"], row["num_frames"] = clip, 241
    with CountingProxy(s3_lake_options["aws_endpoint"]) as proxy:
        db = lake.open("s3://kiwi/ranged", storage_options={**s3_lake_options, "aws_endpoint": proxy.endpoint})
        db.upsert("quadruplets", rows)
        ids = [r["id"] for r in rows]
        whole = db.read_videos("quadruplets", "source_video", ids)  # warms the manifest and index reads too
        proxy.tally.reset()
        stats = []
        heads = db.read_videos("quadruplets", "source_video", ids, max_frames=41, ranged=True, stats=stats)
        ranged_bytes, ranged_gets = proxy.tally.get_bytes, proxy.tally.requests["GET"]
        proxy.tally.reset()
        db.read_videos("quadruplets", "source_video", ids, max_frames=41)
        whole_bytes = proxy.tally.get_bytes
    assert all(np.array_equal(h, w[:41]) for h, w in zip(heads, whole, strict=True))
    assert whole_bytes >= 2 * len(clip)  # the whole-blob read fetches both blobs whole
    assert ranged_bytes < 0.5 * whole_bytes  # the ranged read, about the prefix
    assert ranged_bytes <= sum(s.fetched for s in stats) + 128 * 1024  # its own ranges, and the row lookups
    own_requests = sum(s.requests for s in stats)
    assert own_requests <= 2 * 8  # a few requests per clip, not one per 32 KiB the decoder asks for
    assert ranged_gets <= own_requests + 4  # and the row lookups


def test_the_loader_reads_long_clips_in_ranges_and_gives_the_same_frames(tmp_path, monkeypatch):
    from kiwi.data import DataConfig, _decode_rows

    clip = long_clip(frames=60, seed=2)
    rows = quadruplet_rows(3, videos=True)
    rows[0]["source_video"], rows[0]["target_video"], rows[0]["num_frames"] = clip, clip, 60
    db = lake.open(tmp_path / "lake")
    db.upsert("quadruplets", rows)
    calls = []
    original = db.read_videos

    def spy(table, column, keys, version=None, **kwargs):
        calls.append((column, list(keys), kwargs.get("ranged")))
        return original(table, column, keys, version, **kwargs)

    monkeypatch.setattr(db, "read_videos", spy)
    version = db.table("quadruplets").version
    ids = [r["id"] for r in rows]
    config = DataConfig(frames=9, sampling="prefix", size=32)
    decoded = _decode_rows(db, "quadruplets", version, ids, config, "instruct")
    assert ("source_video", [ids[0]], True) in calls  # 60 frames for 9: ranged
    assert ("source_video", ids[1:], False) in calls  # 9 frames for 9: the whole blob in one read
    assert [r["id"] for r in decoded] == ids
    expected = media.decode_video(clip)[:9]
    from lake.clips import resize_crop

    assert np.array_equal(decoded[0]["source"], resize_crop(expected, 32))


def test_new_lakes_store_videos_as_blob_v2_and_lakes_of_older_formats_still_read_and_write(tmp_path):
    import lance

    from lake.schema import spec_for
    from lake.validate import to_arrow

    rows = quadruplet_rows(3)
    db = lake.open(tmp_path / "new")
    db.upsert("quadruplets", rows)
    new = lance.dataset(str(tmp_path / "new" / "quadruplets.lance"))
    assert new.data_storage_version == "2.2"
    assert str(new.schema.field("source_video").type).startswith("extension<lance.blob.v2")
    for version in ("2.0", "2.1"):  # what older Lance wrote: blob-encoded large_binary columns
        folder = tmp_path / f"format-{version}"
        lance.write_dataset(to_arrow(spec_for("quadruplets"), rows), str(folder / "quadruplets.lance"),
                            data_storage_version=version)
        old = lake.open(folder)
        assert old.read_blobs("quadruplets", "source_video", [rows[0]["id"]]) == [rows[0]["source_video"]]
        (head,) = old.read_videos("quadruplets", "target_video", [rows[1]["id"]], max_frames=4, ranged=True)
        assert np.array_equal(head, media.decode_video(rows[1]["target_video"])[:4])
        old.upsert("quadruplets", quadruplet_rows(1, seed=5))
        assert old.count("quadruplets") == 4
        assert lance.dataset(str(folder / "quadruplets.lance")).schema.field("source_video").type == pa.large_binary()
