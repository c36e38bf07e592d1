"""What a training read costs the store: bytes and requests per sample (`python bench/blob_reads.py`).

The published recipe trains on the first 81 frames of each clip; Ditto-1M's clips have 101. Source and target
clips of 101 frames of 720p are stored in a lake on local disk and on an S3-compatible store (moto, behind
`lake.counting_proxy`, which counts the requests and the bytes they bring back), and their first 81 frames are read
three ways:

- whole blob: `Lake.read_blobs` and decode (the loader's read for clips not much longer than what it takes);
- BlobFile: the decoder on Lance's blob file object (one sequential 512 KiB buffer, refetched at every seek);
- ranged: `Lake.read_videos(max_frames=81, ranged=True)` (`lake.ranged`: every byte fetched once, in ranges
  that grow along sequential reads; the loader's read for clips at least 1.5x longer than what it takes);
- latents: what the latent path reads besides the source clip, both clips' cached latents (fabricated at the Wan2.2
  VAE's shape, bfloat16).

Beside them, the same run's floor: raw PyAV decode of the same clips from memory, and the bytes the decoder
consumed (what the 81 frames and the container's index take)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
RESULTS = Path("bench/results/blob_reads.json")

FRAMES, TAKE = 101, 81


def moto_store():
    """A moto S3 server on 127.0.0.1 with a bucket `kiwi`, and a counting proxy in front of it."""
    from lake.counting_proxy import CountingProxy
    from tests.moto_store import start_moto, storage_options

    server, upstream = start_moto("bench")
    proxy = CountingProxy(upstream)
    return server, proxy, storage_options(proxy.endpoint, "bench")


def rows_with(clips: list[tuple[bytes, bytes]], height: int, width: int) -> list[dict]:
    return [dict(id=f"b{i}", pair_id=f"bp{i}", dataset="bench", task="instruct", edit_type="global_style",
                 instruction="Make it a watercolour", num_frames=FRAMES, fps=16.0, width=width, height=height,
                 split="train", source_video=source, target_video=target) for i, (source, target) in enumerate(clips)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2, help="source + target pairs")
    parser.add_argument("--frames", type=int, default=FRAMES, help="frames per stored clip")
    parser.add_argument("--take", type=int, default=TAKE, help="frames a training read decodes")
    args = parser.parse_args()

    from loader_published import HEIGHT, WIDTH, clip, fabricated_latents

    from lake import media
    from lake.db import Lake
    from lake.ranged import RangedBlob

    started = time.perf_counter()
    clips = [(media.encode_video(clip(2 * i, args.frames), fps=16), media.encode_video(clip(2 * i + 1, args.frames),
                                                                                       fps=16))
             for i in range(args.clips)]
    blob_bytes = sum(len(s) + len(t) for s, t in clips) / args.clips
    print(f"{args.clips} pairs of {args.frames}-frame {WIDTH}x{HEIGHT} H.264 clips, {blob_bytes / 1e6:.2f} MB per "
          f"sample (source + target), encoded in {time.perf_counter() - started:.0f} s; reading the first "
          f"{args.take} frames of each", flush=True)

    def floor() -> tuple[float, float]:
        """Raw PyAV decode of the same clips from memory, and the distinct bytes the decoder consumed."""
        needed, wall = 0, time.perf_counter()
        for pair in clips:
            for data in pair:
                ranged = RangedBlob(_InMemory(data))
                media.decode_video(ranged, max_frames=args.take)
                ranged.close()
                needed += ranged.stats.read
        return (time.perf_counter() - wall) / args.clips, needed / args.clips

    floor_s, needed = floor()
    print(f"  floor, raw PyAV decode from memory: {floor_s:.2f} s per sample; the decoder consumed "
          f"{needed / 1e6:.2f} MB per sample ({needed / blob_bytes:.0%} of the blobs)")

    results = [dict(store="memory", read="floor: raw PyAV decode", seconds=floor_s, consumed_bytes=needed,
                    blob_bytes=blob_bytes, frames=args.frames, take=args.take)]
    server, proxy, options = moto_store()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for store, db in (("local disk", Lake(Path(tmp) / "lake")),
                              ("moto S3", Lake("s3://kiwi/lake", storage_options=options))):
                db.upsert("quadruplets", rows_with(clips, HEIGHT, WIDTH))
                ids = [f"b{i}" for i in range(args.clips)]
                key = fabricated_latents(db, ids)
                readers = (("whole blob", _whole), ("BlobFile", _blob_file), ("ranged", _ranged),
                           ("latents", lambda db, ids, take, key=key: _latents(db, key, ids)))
                for name, read in readers:
                    read(db, ids, args.take)  # warm: the manifest and the index, on both sides
                    proxy.tally.reset()
                    wall = time.perf_counter()
                    fetched_local = read(db, ids, args.take)
                    seconds = (time.perf_counter() - wall) / args.clips
                    s3 = store == "moto S3"
                    results.append(dict(store=store, read=name, seconds=seconds,
                                        bytes=proxy.tally.get_bytes / args.clips if s3 else
                                        (fetched_local / args.clips if fetched_local is not None else None),
                                        gets=proxy.tally.requests["GET"] / args.clips if s3 else None))
                    if name == "latents":
                        print(f"  {store:10} {name:10}: {(fetched_local or 0) / args.clips / 1e6:6.2f} MB of latents"
                              + (f", {proxy.tally.get_bytes / args.clips / 1e6:.2f} MB and "
                                 f"{proxy.tally.requests['GET'] / args.clips:.1f} GETs" if store == "moto S3" else "")
                              + f" per sample, {seconds:.2f} s", flush=True)
                    elif store == "moto S3":
                        gets = proxy.tally.requests["GET"] / args.clips
                        fetched = proxy.tally.get_bytes / args.clips
                        print(f"  {store:10} {name:10}: {fetched / 1e6:6.2f} MB and {gets:4.1f} GETs per sample "
                              f"({fetched / needed:.2f}x what the decoder consumed), {seconds:.2f} s "
                              f"({seconds / floor_s:.2f}x the floor)", flush=True)
                    else:
                        shown = "n/a (read inside Lance)" if fetched_local is None else \
                            f"{fetched_local / args.clips / 1e6:6.2f} MB"
                        print(f"  {store:10} {name:10}: {shown} per sample, {seconds:.2f} s "
                              f"({seconds / floor_s:.2f}x the floor)", flush=True)
    finally:
        proxy.close()
        server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))


class _InMemory:
    def __init__(self, data: bytes):
        self.data = data

    def size(self) -> int:
        return len(self.data)

    def read_range(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


def _whole(db, ids: list[str], take: int) -> int:
    from lake import media

    total = 0
    for column in ("source_video", "target_video"):
        for data in db.read_blobs("quadruplets", column, ids):
            media.decode_video(data, max_frames=take)
            total += len(data)
    return total


def _blob_file(db, ids: list[str], take: int) -> None:
    from lake import media

    for column in ("source_video", "target_video"):
        for blob in db.blobs("quadruplets", column, ids):
            with blob:
                media.decode_video(blob, max_frames=take)


def _latents(db, key: str, ids: list[str]) -> int:
    """The latent path's read besides the source clip: both clips' latents (bfloat16, the Wan2.2 VAE's shape)."""
    from lake.latents import read_latents

    return sum(s.numel() * 2 + t.numel() * 2 for s, t in read_latents(db, key, ids))


def _ranged(db, ids: list[str], take: int) -> int:
    stats = []
    for column in ("source_video", "target_video"):
        db.read_videos("quadruplets", column, ids, max_frames=take, ranged=True, stats=stats)
    return sum(s.fetched for s in stats)


if __name__ == "__main__":
    main()
