"""A source refiner for the CPU-sized model: a small convolution over the DiT's clean-latent estimate and the
source latents, added to the estimate.

The tiny DiT folds 8x8 pixels into each 128-wide token, so edits that keep the frame but change it finely (a
posterised print, a painting) come out no sharper than its tokens: copying the source still wins there. The refiner
sees the source at the codec's resolution (4x4 pixels per latent cell) beside the DiT's estimate, so a per-pixel map
of the source (quantise the colours, smooth and sharpen) costs it one hidden layer. Its last layer starts at zero:
an untrained refiner leaves the DiT's estimate as it is (x0-prediction only)."""

from __future__ import annotations

import torch
from torch import nn


class SourceRefiner(nn.Module):
    def __init__(self, channels: int, hidden: int | None = None, kernel: int = 3):
        super().__init__()
        hidden = hidden or 4 * channels
        self.kernel = kernel
        pad = kernel // 2
        self.net = nn.Sequential(nn.Conv3d(2 * channels, hidden, (1, kernel, kernel), padding=(0, pad, pad)),
                                 nn.GELU(), nn.Conv3d(hidden, channels, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, estimate: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        """estimate, source: (B, C, T, H, W) latents; a task without a source (images) refines against zeros."""
        source = torch.zeros_like(estimate) if source is None else source.to(estimate.dtype)
        return estimate + self.net(torch.cat([estimate, source], dim=1))
