"""Scorers behind one interface: `score(cases) -> one list of Score per case`, each Score a row of
`eval_results`. `AutomaticScorer` needs no weights; `ClipScorer` needs a CLIP folder; `JudgeScorer` asks a VLM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kiwi.eval import metrics
from kiwi.eval.bench import BenchItem, ItemMedia
from kiwi.eval.judge import JudgeRequest
from kiwi.eval.rubrics import PROJECT_RUBRICS, RubricSet
from lake.embed import l2_normalise


@dataclass(frozen=True)
class Case:
    """One bench item with its pixels brought to the output's geometry, and the model's output."""

    item: BenchItem
    media: ItemMedia
    output: np.ndarray  # (T, H, W, 3) uint8
    output_hash: str
    output_file: bytes | None = None  # published protocol: the stored MP4, what the judge is shown
    protocol: str = "quick"


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
    """The VLM judge with the rubric each item's category or task calls for (`RubricSet`: the project's own, or
    the official ones read by `kiwi.eval.official`); one Score per rubric dimension, plus `judge_mean`. Each
    score's detail records the rubric, its fingerprint, whether it is official, the judge model and the protocol,
    so a report can say which scores may be set beside the paper's. The scorer's name carries the judge model and
    the rubric set's fingerprint: another judge or rubric is scored anew, never mixed with these. An item the
    judge failed on (or with no rubric in the set) gets no scores; its error is in `failures`."""

    def __init__(self, client, rubrics: RubricSet = PROJECT_RUBRICS, progress=None):
        self.client, self.rubrics, self.progress = client, rubrics, progress
        self.name = f"judge:{client.config.model}:{rubrics.fingerprint}"
        self.failures: list[tuple[str, str]] = []

    def score(self, cases: Sequence[Case]) -> list[list[Score]]:
        requests, judged = [], []
        for index, c in enumerate(cases):
            rubric = self.rubrics.for_item(c.item.category, c.item.task)
            if rubric is None:
                self.failures.append((c.item.item_id, f"no rubric for category {c.item.category!r} in "
                                                      f"{self.rubrics.origin}"))
                continue
            whole = c.output_file is not None  # published: the files themselves, as the bench and the model gave
            requests.append(JudgeRequest(
                c.item.item_id, rubric, c.item.instruction, c.media.source, c.output, c.output_hash,
                c.media.reference, source_file=c.media.source_file if whole else None,
                output_file=c.output_file, reference_file=c.media.reference_file if whole else None))
            judged.append(index)
        verdicts = self.client.judge_many(requests, progress=self.progress)
        results: list[list[Score]] = [[] for _ in cases]
        for index, request, verdict in zip(judged, requests, verdicts, strict=True):
            if not verdict.ok:
                self.failures.append((verdict.item_id, verdict.error or ""))
                continue
            detail = dict(rubric=verdict.rubric, rubric_fingerprint=request.rubric.version,
                          rubric_set=self.rubrics.fingerprint, official=request.rubric.official,
                          judge_model=verdict.model, protocol=cases[index].protocol, raw=verdict.raw_scores,
                          cached=verdict.cached)
            results[index] = [*(Score(d, float(v), detail) for d, v in verdict.scores.items()),
                              Score("judge_mean", verdict.mean, detail)]
        return results
