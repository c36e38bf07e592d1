"""Rectified flow / flow matching with a timestep shift, as Wan and Kiwi-Edit train: x_sigma = (1 - sigma) x0 +
sigma * noise, the model predicts the velocity (noise - x0), and an Euler sampler walks sigma from 1 to 0.

The shifted noise level sigma = s*u / (1 + (s-1)*u) (u uniform) is exactly the schedule of diffusers'
`FlowMatchEulerDiscreteScheduler(shift=s)`; timestep = 1000 * sigma.

`prediction="x0"` is the other parameterisation of the same flow: the network outputs the clean latents, the loss is
their mean squared error, and the sampler turns an x0 estimate into the velocity (x_sigma - x0_hat) / sigma. The
CPU-sized model uses it: at 2M parameters and a few thousand steps a velocity-predicting DiT learns the noise part
of its target and little else (outputs ~10 dB whatever the edit), while x0-prediction learns the edits
(../shared/snippets/tiny_edit_probe.py). The full model keeps velocity prediction, as trained upstream."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch


def keyed_generator(*key) -> torch.Generator:
    """A CPU generator seeded by a stable hash of `key` (e.g. seed, step, sample): the same key draws the same noise
    in any process, on any rank, after any resume."""
    digest = hashlib.blake2b("\x00".join(map(str, key)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)


@dataclass(frozen=True)
class FlowMatching:
    shift: float = 5.0
    num_train_timesteps: int = 1000
    prediction: str = "velocity"  # what the network outputs: "velocity" (noise - x0) or "x0"
    weighting: str = "none"  # "bell": upstream's training weight over the timestep (see loss_weight)

    def __post_init__(self):
        if self.prediction not in ("velocity", "x0"):
            raise ValueError(f"prediction must be 'velocity' or 'x0', not {self.prediction!r}")
        if self.weighting not in ("none", "bell"):
            raise ValueError(f"weighting must be 'none' or 'bell', not {self.weighting!r}")

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weights. "bell" is upstream's (DiffSynth's FlowMatchScheduler in training): on the
        1000-step training grid of timesteps t_i = 1000 * shifted(1 - i/1000), y_i = exp(-2 ((t_i - 500) / 1000)^2),
        weights (y_i - min y) rescaled to mean 1; a noise level takes the weight of its nearest grid timestep. It
        peaks at t = 500 and is exactly 0 at sigma = 1."""
        if self.weighting == "none":
            return torch.ones_like(sigma, dtype=torch.float32)
        n = self.num_train_timesteps
        grid = self.shifted(torch.linspace(1.0, 0.0, n + 1)[:-1].double()) * n
        y = torch.exp(-2 * ((grid - n / 2) / n) ** 2)
        weights = (y - y.min()) * (n / (y - y.min()).sum())
        nearest = (grid[None].to(sigma.device) - self.timestep(sigma.double())[:, None]).abs().argmin(1)
        return weights.to(sigma.device)[nearest].float()

    def shifted(self, u: torch.Tensor) -> torch.Tensor:
        return self.shift * u / (1 + (self.shift - 1) * u)

    def sample_sigma(self, batch: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
        u = torch.rand(batch, generator=generator, device=device)
        return self.shifted(u)

    def noisy(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
        return (1 - s) * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output."""
        return x0 if self.prediction == "x0" else noise - x0

    def velocity(self, output: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor,
                 min_sigma: float = 1e-3) -> torch.Tensor:
        """The sampler's velocity from the network's output at noise level `sigma` (one per sample)."""
        if self.prediction == "velocity":
            return output
        s = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype).clamp(min=min_sigma)
        return (x - output) / s

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * self.num_train_timesteps

    def loss(self, prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(prediction.float(), self.target(x0, noise).float())

    def sigmas(self, steps: int) -> torch.Tensor:
        """steps+1 noise levels from 1 down to 0 (shifted), the Euler sampler's grid."""
        return torch.cat([self.shifted(torch.linspace(1.0, 1.0 / steps, steps)), torch.zeros(1)])

    @torch.no_grad()
    def sample(self, velocity: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
               noise: torch.Tensor, steps: int, progress: Callable | None = None) -> torch.Tensor:
        """Euler integration of dx/dsigma = v(x, t) from pure noise (sigma=1) to data (sigma=0).
        `velocity(x, timestep, sigma)` is the model; `progress` wraps the step range (e.g. tqdm)."""
        x, sigmas = noise, self.sigmas(steps).to(noise.device)
        batch = noise.shape[0]
        for i in (progress or iter)(range(steps)):
            sigma = sigmas[i].expand(batch)
            v = velocity(x, self.timestep(sigma), sigma)
            x = x + (sigmas[i + 1] - sigmas[i]) * v
        return x
