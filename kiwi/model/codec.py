"""A lossless latent codec for the CPU-sized model: space-to-depth patches, nothing learnt.

The tiny configuration's Wan VAE has random weights, so nothing it decodes can show what the DiT learnt (outputs
sat at ~10 dB PSNR whatever the training). This codec folds each `patch` x `patch` block of RGB pixels into
3 * patch² channels (scaled to [-1, 1]); decoding unfolds them exactly, so every decibel a trained DiT gains shows
in pixels. It keeps time as it is (the Wan VAE compresses it 4x). The full model keeps the released Wan VAE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PixelCodec(nn.Module):
    def __init__(self, patch: int = 4):
        super().__init__()
        self.patch = patch
        self.channels = 3 * patch * patch

    def encode_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, 3p², T, H/p, W/p). H and W must be multiples of the patch."""
        b, c, t, h, w = x.shape
        if h % self.patch or w % self.patch:
            raise ValueError(f"frames of {w}x{h} are not a multiple of the codec's {self.patch}-pixel patch")
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        z = F.pixel_unshuffle(frames, self.patch)
        return z.reshape(b, t, self.channels, h // self.patch, w // self.patch).permute(0, 2, 1, 3, 4).contiguous()

    def decode_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """The exact inverse of `encode_pixels`."""
        b, c, t, h, w = z.shape
        frames = F.pixel_shuffle(z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), self.patch)
        return frames.reshape(b, t, 3, h * self.patch, w * self.patch).permute(0, 2, 1, 3, 4).contiguous()
