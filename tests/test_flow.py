"""Flow matching: the shifted schedule equals diffusers' scheduler, the target is the velocity, and the Euler
sampler recovers data exactly when it is given the true velocity."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from kiwi.model.flow import FlowMatching


def test_shifted_schedule_matches_diffusers():
    flow = FlowMatching(shift=5.0)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    u = torch.linspace(1.0, 1 / 1000, 1000)
    assert torch.allclose(flow.shifted(u), scheduler.sigmas.float(), atol=1e-6)
    assert torch.allclose(flow.timestep(flow.shifted(u)), scheduler.timesteps.float(), atol=1e-3)


def test_noisy_sample_target_and_loss():
    flow = FlowMatching()
    x0, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    sigma = torch.tensor([0.0, 1.0])
    xt = flow.noisy(x0, noise, sigma)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[1], noise[1])
    assert flow.loss(flow.target(x0, noise), x0, noise) == 0
    shifted = flow.sample_sigma(10000, torch.Generator().manual_seed(0))
    assert 0 < shifted.min() and shifted.max() < 1 and shifted.median() > 0.7  # shift 5 favours high noise


def test_euler_with_the_true_velocity_recovers_the_data():
    flow = FlowMatching()
    x0, noise = torch.randn(1, 8), torch.randn(1, 8)
    out = flow.sample(lambda x, t, s: noise - x0, noise, steps=7)
    assert torch.allclose(out, x0, atol=1e-5)
    assert flow.sigmas(4)[0] == 1.0 and flow.sigmas(4)[-1] == 0.0 and len(flow.sigmas(4)) == 5


def test_the_bell_loss_weighting_is_upstreams_training_weight():
    """DiffSynth's FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True).set_timesteps(1000, training=True),
    computed here by hand: weights over the 1000 training timesteps, zero at sigma = 1, largest at t = 500, mean 1;
    a noise level takes its nearest grid timestep's weight."""
    import math

    flow = FlowMatching(shift=5.0, weighting="bell")
    sigmas = [5 * s / (1 + 4 * s) for s in [1 - i / 1000 for i in range(1000)]]
    ys = [math.exp(-2 * ((1000 * s - 500) / 1000) ** 2) for s in sigmas]
    total = sum(y - min(ys) for y in ys)
    expected = [(y - min(ys)) * 1000 / total for y in ys]
    grid = torch.tensor(sigmas, dtype=torch.float64)
    weights = flow.loss_weight(grid.float())
    assert torch.allclose(weights.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5)
    assert weights[0] == 0 and abs(weights.double().mean().item() - 1) < 1e-6
    middle = int(torch.argmin((grid - 0.5).abs()))
    assert weights[middle] == weights.max()
    assert torch.equal(FlowMatching().loss_weight(grid.float()), torch.ones(1000))
    with pytest.raises(ValueError, match="weighting"):
        FlowMatching(weighting="gaussian")
