"""Samplers over a joint velocity field `f(x_v, x_a, t) -> (v_v, v_a)`, t a (B,) tensor in [0, 1].

- `euler_sample`: the teacher's sampler, N Euler steps on the shifted schedule (Wan: 50 steps, shift 5).
- `ancestral_sample`: DDPM's ancestral sampler (the SDE) on the same N timesteps: x0 predicted, then a draw
  of the next state from the Gaussian posterior q(x_s | x_t, x0).
  `tiny`'s teacher uses it (measured: `StreamConfig.teacher_solver`).
- `renoise_sample`: the student's rule on the same N timesteps (x0 predicted, then fresh noise): a
  lower-temperature sampler.
- `guided`: classifier-free guidance on a velocity of [conditional | unconditional] rows, per modality.
- `student_sample`: the few-step student (DMD, paper §4.2): at each timestep predict x0 = x_t - t v, then
  re-noise it to the next timestep with fresh noise; the last step returns x0. Default timesteps
  [1000, 750, 500, 250], warped by the same shift.
"""

from __future__ import annotations

from typing import Callable

import torch

from streamchar.diffusion.flow import noisy, predict_x0, shift_sigma

VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def euler_timesteps(steps: int, shift: float) -> list[float]:
    """steps + 1 values from 1 to 0 on the shifted schedule."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [float(shift_sigma(1 - i / steps, shift)) for i in range(steps + 1)]


def student_timesteps(timesteps: list[int], shift: float, num_train_timesteps: int = 1000) -> list[float]:
    """The student's timesteps (integers out of 1000) as shifted t in (0, 1]."""
    return [float(shift_sigma(t / num_train_timesteps, shift)) for t in timesteps]


def _full(x, t):
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)


@torch.no_grad()
def euler_sample(f: VelocityFn, x_v, x_a, steps: int = 50, shift: float = 5.0):
    """Integrate dx/dt = v from t = 1 (the given noise) to t = 0. x_v None: speech alone (stage 1)."""
    ts = euler_timesteps(steps, shift)
    for t, t_next in zip(ts[:-1], ts[1:]):
        v_v, v_a = f(x_v, x_a, _full(x_a, t))
        if x_v is not None:
            x_v = x_v + (t_next - t) * v_v.to(x_v.dtype)
        x_a = x_a + (t_next - t) * v_a.to(x_a.dtype)
    return x_v, x_a


@torch.no_grad()
def ancestral_sample(f: VelocityFn, x_v, x_a, steps: int = 50, shift: float = 5.0, generator=None):
    """DDPM's ancestral sampler on the flow path x_t = (1 - t) x0 + t eps, over the teacher's N shifted timesteps:
    from x_t, predict x0 = x_t - t v and draw x_s from q(x_s | x_t, x0) (a Gaussian; fresh noise each step).
    With the exact field it samples the data distribution, as Euler does (the SDE instead of the ODE)."""
    ts = euler_timesteps(steps, shift)
    for t, s in zip(ts[:-1], ts[1:]):
        v_v, v_a = f(x_v, x_a, _full(x_a, t))
        x_v = None if x_v is None else _posterior_draw(x_v, v_v, t, s, generator)
        x_a = _posterior_draw(x_a, v_a, t, s, generator)
    return x_v, x_a


def _posterior_draw(x, v, t: float, s: float, generator):
    """x_t, its velocity -> a draw of x_s ~ q(x_s | x_t, x0 = x_t - t v), s < t, with alpha = 1 - t, sigma = t."""
    x0 = x - t * v.to(x.dtype)
    if s == 0.0:
        return x0
    a_ts = (1 - t) / (1 - s)  # alpha_t / alpha_s
    var_ts = t * t - a_ts * a_ts * s * s  # the forward step's variance, sigma_t^2 - alpha_ts^2 sigma_s^2
    mean = (a_ts * s * s / (t * t)) * x + ((1 - s) * var_ts / (t * t)) * x0
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return mean + (var_ts**0.5 * s / t) * eps


def renoise_sample(f: VelocityFn, x_v, x_a, steps: int = 50, shift: float = 5.0, generator=None):
    """The student's rule over the teacher's N timesteps: x0 = x_t - t v, then x_s = (1 - s) x0 + s eps with
    fresh eps, nothing of x_t's noise kept. With a velocity that predicts E[x0 | x_t] this is *not* a sampler
    of the data: each step restarts from the posterior mean, so the samples are pulled towards the modes (a
    Gaussian's spread shrinks to about 2/3), a lower-temperature sampler, as guidance is. For the tiny
    teacher's speech it beats Euler and about ties the ancestral sampler (`StreamConfig.teacher_solver`)."""
    with torch.no_grad():
        return student_sample(f, x_v, x_a, euler_timesteps(steps, shift)[:-1], generator=generator)


def guided(v: tuple[torch.Tensor, torch.Tensor], scales: tuple[float, float]):
    """Classifier-free guidance: (v_video, v_audio) of 2B rows, the B conditional rows first, then the B
    unconditional ones -> B rows of v_u + s (v_c - v_u), with s = scales[0] for video, scales[1] for audio
    (s = 1 gives the conditional velocity)."""
    out = []
    for x, s in zip(v, scales):
        cond, uncond = x.chunk(2)
        out.append(uncond + s * (cond - uncond))
    return tuple(out)


def student_sample(f: VelocityFn, x_v, x_a, timesteps: list[float], generator=None):
    """Few-step sampling: x0 prediction, then re-noise to the next timestep. x_v, x_a are the t=1 noise.

    Runs under the caller's grad mode (Stage II rollouts back-propagate through it).
    """
    for i, t in enumerate(timesteps):
        tt = _full(x_a, t)
        v_v, v_a = f(x_v, x_a, tt)
        x0_a = predict_x0(x_a, v_a.to(x_a.dtype), tt)
        x0_v = predict_x0(x_v, v_v.to(x_v.dtype), tt) if x_v is not None else None  # None: speech alone
        if i == len(timesteps) - 1:
            return x0_v, x0_a
        t_next = _full(x_a, timesteps[i + 1])
        if x_v is not None:
            eps_v = torch.randn(x_v.shape, generator=generator, device=x_v.device, dtype=x_v.dtype)
            x_v = noisy(x0_v, eps_v, t_next)
        eps_a = torch.randn(x_a.shape, generator=generator, device=x_a.device, dtype=x_a.dtype)
        x_a = noisy(x0_a, eps_a, t_next)
    raise ValueError("student_sample needs at least one timestep")
