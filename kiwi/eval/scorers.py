"""Scorers behind one interface: `score(cases) -> one list of Score per case`, each Score a row of
`eval_results`. `AutomaticScorer` needs no weights; `ClipScorer` needs a CLIP folder; `JudgeScorer` asks a VLM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kiwi.eval import metrics
from kiwi.eval.bench import BenchItem, ItemMedia
from kiwi.eval.judge import JudgeClient, JudgeRequest
from kiwi.eval.rubrics import rubric_for
from lake.embed import l2_normalise


@dataclass(frozen=True)
class Case:
    """One bench item with its pixels brought to the output's geometry, and the model's output."""

    item: BenchItem
    media: ItemMedia
    output: np.ndarray  # (T, H, W, 3) uint8
    output_hash: str


@dataclass(frozen=True)
class Score:
    metric: str
    value: float | None  # None: not applicable to this item (e.g. no ground truth), kept so reruns skip it
    detail: dict | None = None


class Scorer(Protocol):
    name: str

    def score(self, cases: Sequence[Case]) -> list[list[Score]]: ...


class AutomaticScorer:
    """PSNR/SSIM and temporal stability against the ground truth (where the bench has it), preservation outside
    the edit mask against the source, and reference fidelity (image-descriptor cosine, or `embedder`)."""

    name = "auto"
    metrics = ("psnr", "ssim", "masked_psnr", "edit_psnr", "temporal_stability", "temporal_change_ratio",
               "reference_fidelity")

    def __init__(self, embedder=None):
        self.embedder = embedder

    def score(self, cases: Sequence[Case]) -> list[list[Score]]:
        return [self.one(c) for c in cases]

    def one(self, case: Case) -> list[Score]:
        out, m = case.output, case.media
        values: dict[str, float | None] = dict.fromkeys(self.metrics)
        if m.target is not None:
            values["psnr"] = metrics.psnr(out, m.target)
            values["ssim"] = metrics.ssim(out, m.target)
            values["temporal_stability"] = metrics.temporal_stability(out, m.target)
            values["temporal_change_ratio"] = metrics.temporal_change_ratio(out, m.target)
        if m.edit_mask is not None:
            values["masked_psnr"] = metrics.masked_psnr(out, m.source, m.edit_mask)
            if m.target is not None:
                values["edit_psnr"] = metrics.edit_psnr(out, m.target, m.edit_mask)
        if m.reference is not None:
            values["reference_fidelity"] = metrics.reference_fidelity(out, m.reference, m.edit_mask, case.item.task,
                                                                      self.embedder)
        return [Score(k, v) for k, v in values.items()]


class ClipScorer:
    """Text-video agreement: mean cosine between a CLIP model's text embedding of the instruction and its image
    embeddings of sampled output frames (a CLIP/SigLIP folder by local path; nothing downloads)."""

    name = "clip"

    def __init__(self, path: str, frames: int = 4, device: str = "cpu"):
        import torch
        import transformers
        from transformers import AutoModel, AutoProcessor

        transformers.logging.set_verbosity_error()
        self.torch, self.frames, self.device = torch, frames, device
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.max_text = self.model.config.text_config.max_position_embeddings

    def _features(self, output) -> np.ndarray:
        output = getattr(output, "pooler_output", output)
        return l2_normalise(output.float().cpu().numpy())

    def score(self, cases: Sequence[Case]) -> list[list[Score]]:
        results = []
        for case in cases:
            index = np.unique(np.round(np.linspace(0, len(case.output) - 1, self.frames)).astype(int))
            with self.torch.no_grad():
                text = self.processor(text=[case.item.instruction], return_tensors="pt", padding=True,
                                      truncation=True, max_length=self.max_text)  # long instructions are cut
                images = self.processor(images=list(case.output[index]), return_tensors="pt")
                t = self._features(self.model.get_text_features(**text.to(self.device)))
                v = self._features(self.model.get_image_features(**images.to(self.device)))
            results.append([Score("clip_text_video", float((v @ t.T).mean()))])
        return results


class JudgeScorer:
    """The VLM judge with the rubric of each item's task; one Score per rubric dimension (after the cap), plus
    `judge_mean`. An item the judge failed on gets no scores (its error is returned in `failures`)."""

    name = "judge"

    def __init__(self, client: JudgeClient, progress=None):
        self.client, self.progress = client, progress
        self.failures: list[tuple[str, str]] = []

    def score(self, cases: Sequence[Case]) -> list[list[Score]]:
        requests = [JudgeRequest(c.item.item_id, rubric_for(c.item.task), c.item.instruction, c.media.source,
                                 c.output, c.output_hash, c.media.reference) for c in cases]
        verdicts = self.client.judge_many(requests, progress=self.progress)
        results = []
        for verdict in verdicts:
            if not verdict.ok:
                self.failures.append((verdict.item_id, verdict.error or ""))
                results.append([])
                continue
            detail = dict(rubric=verdict.rubric, raw=verdict.raw_scores, cached=verdict.cached)
            results.append([*(Score(d, float(v), detail) for d, v in verdict.scores.items()),
                            Score("judge_mean", verdict.mean, detail)])
        return results
