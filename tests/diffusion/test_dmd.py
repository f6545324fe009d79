"""The distribution-matching gradient and the student's backward simulation."""

import pytest
import torch

from streamchar.diffusion.dmd import backward_simulation, dmd_gradient, dmd_loss
from streamchar.diffusion.samplers import student_sample


def test_gradient_is_zero_when_the_fake_score_equals_the_real_one():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 4, 5, generator=g, requires_grad=True)
    z_real = torch.randn(3, 4, 5, generator=g)
    grad = dmd_gradient(z, z_real, z_real.clone())
    assert torch.equal(grad, torch.zeros_like(grad))
    dmd_loss(z, grad).backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_gradient_points_from_the_fake_score_to_the_real_one_with_dmds_normalisation():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 6, generator=g, requires_grad=True)
    z_real, z_fake = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    grad = dmd_gradient(z, z_real, z_fake)
    weight = (z.detach() - z_real).abs().mean(dim=1, keepdim=True)
    assert torch.allclose(grad, (z_fake - z_real) / weight)
    dmd_loss(z, grad).backward()
    assert torch.allclose(z.grad, grad / z.numel())  # d loss / d z = grad / numel
    # a step against the gradient moves the sample's fake-score reading towards the real one
    assert (z.grad * (z_fake - z_real)).sum() > 0
    # the size of the step does not depend on how far the sample is from the real prediction (per sample)
    far = dmd_gradient(z.detach() * 10, z_real * 10, z_fake * 10)
    assert torch.allclose(far, grad, atol=1e-5)


def test_backward_simulation_to_the_last_step_is_the_student_sampler():
    """Exiting at the last step with the same noise gives what student_sample gives; the gradient reaches
    the network only through the exit step."""
    net = torch.nn.Linear(4, 4)
    calls = []

    def f(x_v, x_a, t):
        calls.append(torch.is_grad_enabled())
        return net(x_v), net(x_a)

    timesteps = [1.0, 0.75, 0.5, 0.25]
    x_v, x_a = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    z_v, z_a = backward_simulation(f, x_v, x_a, timesteps, exit_step=3, generator=torch.Generator().manual_seed(7))
    assert calls == [False, False, False, True]
    with torch.no_grad():
        ref_v, ref_a = student_sample(f, x_v, x_a, timesteps, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(z_v, ref_v, atol=1e-6) and torch.allclose(z_a, ref_a, atol=1e-6)
    (z_v.sum() + z_a.sum()).backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    calls.clear()
    backward_simulation(f, x_v, x_a, timesteps, exit_step=0)
    assert calls == [True]
    with pytest.raises(ValueError, match="exit_step"):
        backward_simulation(f, x_v, x_a, timesteps, exit_step=4)
