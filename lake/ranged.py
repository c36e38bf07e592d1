"""A blob read in cached ranges that grow along sequential reads: what a video decoder wants from object storage.

A decoder opening an MP4 reads the head, seeks to the index (`moov`, often at the end), then reads the packets
from the front; Lance's `BlobFile` keeps one sequential 512 KiB buffer, so every seek throws it away and the next
read fetches 512 KiB again (an 81-frame prefix of a long clip fetched 1.9x what the decoder consumed). Here every
byte is fetched once: a read that does not continue the last fetch asks for what it needs (at least 64 KiB), and a
run of sequential reads asks for twice as much each time, up to 512 KiB. A prefix read costs the bytes it decodes,
plus at most one request's worth, in a handful of requests whatever the decoder's seek pattern."""

from __future__ import annotations

import bisect
import io
from dataclasses import dataclass

MIN_REQUEST = 64 << 10
MAX_REQUEST = 512 << 10


@dataclass
class RangeStats:
    size: int = 0  # the blob's size
    fetched: int = 0  # bytes asked of the store
    requests: int = 0  # range reads issued
    read: int = 0  # distinct bytes the reader consumed (what it needed), known once closed


class RangedBlob(io.RawIOBase):
    """Wraps anything with `read_range(offset, length)` and `size()` (a Lance BlobFile)."""

    def __init__(self, blob, min_request: int = MIN_REQUEST, max_request: int = MAX_REQUEST):
        super().__init__()
        self._blob, self._min, self._max = blob, min_request, max_request
        self._size = blob.size()
        self._starts: list[int] = []  # fetched segments, sorted and disjoint: start -> bytes
        self._segments: dict[int, bytes] = {}
        self._pos = 0
        self._spans: list[tuple[int, int]] = []
        self.stats = RangeStats(size=self._size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def size(self) -> int:
        return self._size

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._pos + len(view), self._size)
        position, n = self._pos, 0
        while position < end:
            start, data = self._segment_at(position)
            if data is None:
                self._fetch(position, end)
                continue
            take = min(end, start + len(data)) - position
            view[n:n + take] = data[position - start:position - start + take]
            n += take
            position += take
        if n:
            self._spans.append((self._pos, self._pos + n))
        self._pos += n
        return n

    def _segment_at(self, position: int) -> tuple[int, bytes | None]:
        i = bisect.bisect_right(self._starts, position) - 1
        if i >= 0:
            start = self._starts[i]
            data = self._segments[start]
            if position < start + len(data):
                return start, data
        return position, None

    def _fetch(self, position: int, end: int) -> None:
        """One request from `position`: what the read needs, or twice the segment it continues, never past the next
        fetched segment or the blob's end."""
        i = bisect.bisect_right(self._starts, position)
        before = self._segments[self._starts[i - 1]] if i else b""
        sequential = i and self._starts[i - 1] + len(before) == position  # continues a fetched segment
        length = min(2 * len(before), self._max) if sequential else self._min
        length = max(length, end - position)
        limit = self._starts[i] if i < len(self._starts) else self._size
        length = min(length, limit - position)
        data = self._blob.read_range(position, length)
        if len(data) != length:
            raise OSError(f"short read: {len(data)} of {length} bytes at {position} of a {self._size}-byte blob")
        bisect.insort(self._starts, position)
        self._segments[position] = data
        self.stats.fetched += length
        self.stats.requests += 1

    def close(self) -> None:
        if not self.closed:
            self.stats.read = _union(self._spans)
            self._segments.clear()
            close = getattr(self._blob, "close", None)
            if close is not None:
                close()
        super().close()


def _union(spans: list[tuple[int, int]]) -> int:
    total, reach = 0, -1
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
