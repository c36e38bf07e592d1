"""Inference: `kiwi.edit(model, video, instruction, reference=None)` -> the edited frames.

As upstream's demo reads and samples a clip: its first 81 frames, cut to 4k+1; frames scaled down (aspect kept) to
at most 720x1280 pixels, sides floored to multiples of 32, centre-cropped to that shape; the MLLM reads the raw
reference image while the VAE gets it letterboxed on white at the frame size; an Euler flow-matching sampler
(the model's default steps: 50 for the released model) runs from noise with the source latents added (scaled by
the noise level) and the reference tokens placed as the model was trained; the Wan VAE encodes and decodes in
upstream's tiles (480x832 pixels, half-tile strides) above that size. A one-frame source (an image) takes
upstream's image path: the image queries, with source conditioning."""

from __future__ import annotations

import numpy as np
import torch

from kiwi.data import reference_on_white
from kiwi.model.kiwi_edit import EditBatch, KiwiEdit
from lake.clips import MAX_PIXELS, fit_frames, frame_shape

MAX_FRAMES = 81
VAE_TILE, VAE_STRIDE = (480, 832), (240, 416)  # upstream's tile_size (30, 52) / stride (15, 26) latents, x16


def prepare_video(frames: np.ndarray, max_frames: int | None = MAX_FRAMES,
                  max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the first `max_frames` frames cut to 4k+1, centre-cropped to the aspect of
    `frame_shape` and resized to it (bicubic, as upstream's reader)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video frames must be (T, H, W, 3), got {frames.shape}")
    frames = frames[:max_frames] if max_frames else frames
    frames = frames[: (len(frames) - 1) // 4 * 4 + 1]
    height, width = frames.shape[1:3]
    h, w = frame_shape(height, width, max_pixels)
    if h == 0 or w == 0:
        raise ValueError(f"frames of {width}x{height} are smaller than 32 pixels")
    return fit_frames(frames, (h, w))


def tile_vae(model: KiwiEdit) -> None:
    """Upstream encodes and decodes 720p in tiles; diffusers' Wan VAE tiles only inputs larger than a tile."""
    if hasattr(model.vae, "enable_tiling"):
        model.vae.enable_tiling(tile_sample_min_height=VAE_TILE[0], tile_sample_min_width=VAE_TILE[1],
                                tile_sample_stride_height=VAE_STRIDE[0], tile_sample_stride_width=VAE_STRIDE[1])


@torch.no_grad()
def edit(model: KiwiEdit, video: np.ndarray, instruction: str, reference: np.ndarray | None = None,
         task: str | None = None, steps: int | None = None, seed: int = 0, progress: bool = False,
         max_frames: int | None = MAX_FRAMES, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """The edited frames (T, H, W, 3) uint8; an image (one frame) in, one frame out. `steps`: the model's
    default sampler steps when not given."""
    frames = prepare_video(np.asarray(video), max_frames, max_pixels)
    if len(frames) == 1:
        if reference is not None:
            raise ValueError("a one-frame source (an image) takes no reference image: upstream's image path has none")
        task = task or "image"
    task = task or ("ref_subject" if reference is not None else "instruct")
    if task.startswith("ref") and reference is None:
        raise ValueError(f"task {task} needs a reference image")
    ref = None if reference is None else reference_on_white(np.asarray(reference), frames.shape[1:3])
    batch = EditBatch([instruction], frames[None], frames[None], None if ref is None else ref[None], task,
                      mllm_reference=None if reference is None else [np.asarray(reference)])
    model.eval()
    tile_vae(model)
    source = model.encode_video(batch.source)
    reference_latents = model.encode_video(batch.reference[:, None]) if ref is not None else None
    context, condition = model.context(batch), model.refiner_input(batch)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(source.shape, generator=generator).to(source.device)

    def velocity(x, timestep, sigma):
        return model.flow.velocity(model.predict(x, sigma, context, source, reference_latents, condition), x, sigma)

    wrap = None
    if progress:
        from tqdm.auto import tqdm

        def wrap(steps_range):
            return tqdm(steps_range, desc="kiwi edit", unit="step")

    latents = model.flow.sample(velocity, noise, steps or model.sampler_steps, progress=wrap)
    return model.decode_latents(latents)[0][: len(frames)]
