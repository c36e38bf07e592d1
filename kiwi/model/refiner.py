"""A source refiner for the CPU-sized model: a small convolution over the DiT's clean-latent estimate and the
source latents, added to the estimate, optionally modulated by the instruction.

The tiny DiT folds 8x8 pixels into each 128-wide token, so edits that keep the frame but change it finely (a
posterised print, a painting) come out no sharper than its tokens: copying the source still wins there. The refiner
sees the source at the codec's resolution (4x4 pixels per latent cell) beside the DiT's estimate, so a per-pixel map
of the source (quantise the colours, smooth and sharpen) costs it one hidden layer. Which map depends on the words
("a sepia palette" and "neon tones" map the same grey differently), so with `condition_dim` the hidden layer is
scaled and shifted per sample from a pooled instruction vector (FiLM, Perez et al. 2018). Its last layer and the
modulation start at zero: an untrained refiner leaves the DiT's estimate as it is (x0-prediction only)."""

from __future__ import annotations

import torch
from torch import nn


class SourceRefiner(nn.Module):
    def __init__(self, channels: int, hidden: int | None = None, kernel: int = 3, condition_dim: int = 0):
        super().__init__()
        hidden = hidden or 4 * channels
        self.kernel, self.condition_dim = kernel, condition_dim
        pad = kernel // 2
        self.net = nn.Sequential(nn.Conv3d(2 * channels, hidden, (1, kernel, kernel), padding=(0, pad, pad)),
                                 nn.GELU(), nn.Conv3d(hidden, channels, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.film = nn.Linear(condition_dim, 2 * hidden) if condition_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, estimate: torch.Tensor, source: torch.Tensor | None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """estimate, source: (B, C, T, H, W) latents; a task without a source (images) refines against zeros.
        condition: (B, condition_dim), the pooled instruction, needed when the refiner was built with one."""
        source = torch.zeros_like(estimate) if source is None else source.to(estimate.dtype)
        hidden = self.net[0](torch.cat([estimate, source], dim=1))
        if self.film is not None:
            if condition is None:
                raise ValueError("this source refiner is conditioned on the instruction: pass `condition`")
            scale, shift = self.film(condition.to(hidden.dtype)).view(len(hidden), 2, -1, 1, 1, 1).unbind(1)
            hidden = hidden * (1 + scale) + shift
        return estimate + self.net[2](self.net[1](hidden))
