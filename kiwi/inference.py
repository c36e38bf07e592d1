"""Inference: `kiwi.edit(model, video, instruction, reference=None)` -> the edited frames.

As the original: frames are cut to 4k+1, sizes rounded down to a multiple of 32, the reference letterboxed on
white at the frame size; an Euler flow-matching sampler runs from noise with the source latents added (scaled by
the noise level) and the reference tokens appended; the VAE decodes the result."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from kiwi.data import reference_on_white
from kiwi.model.kiwi_edit import EditBatch, KiwiEdit


def prepare_video(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> 4k+1 frames, H and W resized down to multiples of 32."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video frames must be (T, H, W, 3), got {frames.shape}")
    t = (len(frames) - 1) // 4 * 4 + 1
    h, w = frames.shape[1] // 32 * 32, frames.shape[2] // 32 * 32
    if h == 0 or w == 0:
        raise ValueError(f"frames of {frames.shape[2]}x{frames.shape[1]} are smaller than 32 pixels")
    frames = frames[:t]
    if (h, w) != frames.shape[1:3]:
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    return frames


@torch.no_grad()
def edit(model: KiwiEdit, video: np.ndarray, instruction: str, reference: np.ndarray | None = None,
         task: str | None = None, steps: int = 8, seed: int = 0, progress: bool = False) -> np.ndarray:
    task = task or ("ref_subject" if reference is not None else "instruct")
    if task.startswith("ref") and reference is None:
        raise ValueError(f"task {task} needs a reference image")
    frames = prepare_video(np.asarray(video))
    ref = None if reference is None else reference_on_white(np.asarray(reference), frames.shape[1:3])
    batch = EditBatch([instruction], frames[None], frames[None], None if ref is None else ref[None], task)
    model.eval()
    source = model.encode_video(batch.source)
    reference_latents = model.encode_video(batch.reference[:, None]) if ref is not None else None
    context = model.context(batch)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(source.shape, generator=generator).to(source.device)

    def velocity(x, timestep, sigma):
        return model.flow.velocity(model.predict(x, sigma, context, source, reference_latents), x, sigma)

    wrap = None
    if progress:
        from tqdm.auto import tqdm

        def wrap(steps_range):
            return tqdm(steps_range, desc="kiwi edit", unit="step")

    latents = model.flow.sample(velocity, noise, steps, progress=wrap)
    return model.decode_latents(latents)[0][: len(frames)]
