"""Distribution matching distillation (paper §4.2; DMD, Yin et al. 2024, and DMD2's normalisation), in the
flow-matching parametrisation of flow.py, on both modalities at once.

The generator (the few-step student) makes a clean sample z. It is re-noised at a random t,
x_t = (1 - t) z + t eps, and read by two score networks as clean-sample predictions (z = x_t - t v):

    real   the frozen teacher with classifier-free guidance       -> z_real
    fake   a copy of the teacher trained on the student's samples -> z_fake

The distribution-matching gradient of the generator's sample is (z_fake - z_real) / w, where
w = mean |z - z_real| per sample (DMD's normalisation: the step size does not depend on how far off the
sample is). It is applied as the loss 0.5 || z - sg(z - grad) ||^2, whose gradient with respect to z is
exactly `grad`, so the optimiser moves z towards where the real score points, away from the fake one.
Video and audio each get their own normaliser; their losses are summed.

`backward_simulation` makes the generator's sample the way inference does: the student's few-step sampler
from pure noise, stopped at a random exit step, gradient through that last step only (DMD2, Self-Forcing), so
training sees the states the 4-step sampler reaches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamchar.diffusion.flow import noisy, predict_x0


def dmd_gradient(z: torch.Tensor, z_real: torch.Tensor, z_fake: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(z_fake - z_real) / mean |z - z_real| per sample; z, z_real, z_fake (B, ...). Returned detached."""
    with torch.no_grad():
        dims = tuple(range(1, z.ndim))
        weight = (z.float() - z_real.float()).abs().mean(dim=dims, keepdim=True).clamp_min(eps)
        return ((z_fake.float() - z_real.float()) / weight).to(z.dtype)


def dmd_loss(z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 || z - sg(z - grad) ||^2 as a mean over elements: d loss / d z = grad / numel."""
    return 0.5 * F.mse_loss(z.float(), (z - grad).detach().float(), reduction="mean")


def randn_rows(shape, generator=None, device=None, dtype=None) -> torch.Tensor:
    """Normal noise of `shape` (B, ...): from one Generator, or row b from generator[b] (a list of B), so that a
    sample's noise does not depend on the batch it is in (a batch split over ranks draws what one rank does)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for {shape[0]} rows")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype) for g in generator])
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


def renoise(z: torch.Tensor, t: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A clean sample at noise level t (B,) -> (x_t, eps). generator: one, or one per row (`randn_rows`)."""
    e = randn_rows(z.shape, generator, z.device, z.dtype)
    return noisy(z, e, t), e


def backward_simulation(f, x_v: torch.Tensor, x_a: torch.Tensor, timesteps: list[float], exit_step: int,
                        generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's few-step sample of (x_v, x_a) (pure noise, t = 1), stopped after step `exit_step`
    (0-based, < len(timesteps)): steps before it run without gradient, the exit step with the caller's grad
    mode. -> the clean-sample predictions (z_v, z_a) of the exit step. f(x_v, x_a, t) -> velocities."""
    if not 0 <= exit_step < len(timesteps):
        raise ValueError(f"exit_step must be in [0, {len(timesteps)}), got {exit_step}")
    for i, t in enumerate(timesteps[: exit_step + 1]):
        tt = torch.full((x_v.shape[0],), float(t), device=x_v.device)
        if i < exit_step:
            with torch.no_grad():
                v_v, v_a = f(x_v, x_a, tt)
                z_v, z_a = predict_x0(x_v, v_v.to(x_v.dtype), tt), predict_x0(x_a, v_a.to(x_a.dtype), tt)
                t_next = torch.full_like(tt, float(timesteps[i + 1]))
                x_v, _ = renoise(z_v, t_next, generator)
                x_a, _ = renoise(z_a, t_next, generator)
        else:
            v_v, v_a = f(x_v, x_a, tt)
            return predict_x0(x_v, v_v.to(x_v.dtype), tt), predict_x0(x_a, v_a.to(x_a.dtype), tt)
    raise AssertionError("unreachable")
