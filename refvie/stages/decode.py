"""Stage 0, decode: pair ids in, decoded source and target frames out (plus what the writer will copy).

Reads from the lake by id (Lance random access; blobs as whole payloads), so a Ray task carries ids, not videos,
until it runs. Undecodable or mismatched pairs are rejected with the media reason code."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from lake import media
from lake.errors import MediaError
from refvie.stages.batch import column, reject, timed

PAIR_COLUMNS = ["pair_id", "dataset", "instruction", "source_uri", "target_uri", "num_frames", "fps", "width",
                "height", "codec", "meta", "gt_edit_type", "given_reference"]


@dataclass
class Decode:
    lake_uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict)
    max_frames: int | None = None
    db: object = None

    def setup(self) -> None:
        import lake

        self.db = lake.open(self.lake_uri, storage_options=self.storage_options, create=False)

    def __call__(self, batch: dict) -> dict:
        if self.db is None:
            self.setup()
        start = time.perf_counter()
        ids = [str(i) for i in batch["pair_id"]]
        meta = self.db.take("pairs", ids, columns=PAIR_COLUMNS).to_pylist()
        sources = self.db.read_blobs("pairs", "source_video", ids, resolve_uris=False)  # URIs per row, below
        targets = self.db.read_blobs("pairs", "target_video", ids, resolve_uris=False)
        out = {name: column([row[name] for row in meta]) for name in PAIR_COLUMNS}
        out["given_reference"] = column([row["given_reference"] or b"" for row in meta])  # b"": none given
        out["source_bytes"], out["target_bytes"] = column(sources), column(targets)
        out["source"], out["target"] = column([None] * len(ids)), column([None] * len(ids))
        out["reject_reason"] = column([None] * len(ids))
        for i, pair_id in enumerate(ids):
            try:
                if sources[i] is None and meta[i]["source_uri"]:  # ingested with --no-bytes: read where it points
                    sources[i] = media.read_uri(meta[i]["source_uri"], self.storage_options)
                if targets[i] is None and meta[i]["target_uri"]:
                    targets[i] = media.read_uri(meta[i]["target_uri"], self.storage_options)
                if sources[i] is None or targets[i] is None:
                    raise MediaError("empty", "the pair holds neither video bytes nor a URI to read them from")
                src = media.decode_video(sources[i], max_frames=self.max_frames, name=f"{pair_id}/source")
                tgt = media.decode_video(targets[i], max_frames=self.max_frames, name=f"{pair_id}/target")
            except MediaError as e:
                reject(out, i, "decode", e.reason, str(e))
                continue
            if src.shape[1:] != tgt.shape[1:]:
                reject(out, i, "decode", "size_mismatch", f"source {src.shape[1:3]} vs target {tgt.shape[1:3]}")
                continue
            frames = min(len(src), len(tgt))
            out["source"][i], out["target"][i] = src[:frames], tgt[:frames]
            out["meta"][i] = json.loads(meta[i]["meta"] or "{}")
        timed(out, "decode", start)
        return out
