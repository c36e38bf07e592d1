"""Flow matching: the shifted schedule equals diffusers' scheduler, the target is the velocity, and the Euler
sampler recovers data exactly when it is given the true velocity."""

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
