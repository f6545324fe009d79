import pytest
import torch

from streamchar.config import tiny
from streamchar.diffusion.flow import flow_loss, noisy, predict_x0, sample_t, shift_sigma
from streamchar.diffusion.samplers import (ancestral_sample, euler_sample, euler_timesteps, renoise_sample,
                                          student_sample, student_timesteps)
from streamchar.models.dit import JointDiT
from streamchar.models.orchestrator import Orchestrator, OrchestratorInputs


def test_path_endpoints_and_x0_inversion():
    z, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert torch.equal(noisy(z, eps, torch.zeros(2)), z)
    assert torch.equal(noisy(z, eps, torch.ones(2)), eps)
    t = torch.tensor([0.3, 0.8])
    assert torch.allclose(predict_x0(noisy(z, eps, t), eps - z, t), z, atol=1e-6)


def test_shift_and_schedules():
    assert shift_sigma(0.0, 5.0) == 0.0 and shift_sigma(1.0, 5.0) == 1.0
    assert shift_sigma(0.5, 5.0) == pytest.approx(5 / 6)  # more steps at high noise
    ts = euler_timesteps(50, 5.0)
    assert len(ts) == 51 and ts[0] == 1.0 and ts[-1] == 0.0 and all(a > b for a, b in zip(ts, ts[1:]))
    st = student_timesteps([1000, 750, 500, 250], 5.0)
    assert st[0] == 1.0 and st[-1] == pytest.approx(5 * 0.25 / (1 + 4 * 0.25))
    s = sample_t(1000, shift=3.0, generator=torch.Generator().manual_seed(0))
    assert ((s > 0) & (s < 1)).all()


def _exact_field(z_v, z_a):
    """The exact velocity towards a single data point: v = (x_t - z) / t."""
    def f(x_v, x_a, t):
        tt = lambda x: t.reshape(-1, *([1] * (x.ndim - 1)))
        return (x_v - z_v) / tt(x_v), (x_a - z_a) / tt(x_a)
    return f


def test_samplers_land_on_the_data_with_the_exact_field():
    g = torch.Generator().manual_seed(0)
    z_v, z_a = torch.randn(1, 4, 9, 2, 2, generator=g), torch.randn(1, 33, 8, generator=g)
    x_v, x_a = torch.randn(z_v.shape, generator=g), torch.randn(z_a.shape, generator=g)
    f = _exact_field(z_v, z_a)
    ev, ea = euler_sample(f, x_v, x_a, steps=7, shift=5.0)
    assert torch.allclose(ev, z_v, atol=1e-5) and torch.allclose(ea, z_a, atol=1e-5)
    sv, sa = student_sample(f, x_v, x_a, student_timesteps([1000, 750, 500, 250], 5.0), generator=g)
    assert torch.allclose(sv, z_v, atol=1e-5) and torch.allclose(sa, z_a, atol=1e-5)
    for rule in (ancestral_sample, renoise_sample):
        av, aa = rule(f, x_v, x_a, steps=7, shift=5.0, generator=g)
        assert torch.allclose(av, z_v, atol=1e-5) and torch.allclose(aa, z_a, atol=1e-5)


def test_teacher_solvers_on_a_gaussian_with_its_exact_field():
    """Data N(mu, s^2) per coordinate and the exact velocity (x_t - E[x0 | x_t]) / t: Euler (the ODE) and the
    ancestral sampler (the SDE) give the data's mean and spread; renoise keeps the mean and shrinks the spread
    (it restarts every step from the posterior mean: the lower temperature its docstring states)."""
    mu, s = 1.5, 0.4

    def f(x_v, x_a, t):
        tt = t.reshape(-1, 1, 1).to(x_a.dtype)
        x0 = mu + (1 - tt) * s**2 / ((1 - tt) ** 2 * s**2 + tt**2) * (x_a - (1 - tt) * mu)
        return None, (x_a - x0) / tt

    x_a = torch.randn(1, 20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    euler = euler_sample(f, None, x_a, steps=200, shift=1.0)[1]
    ancestral = ancestral_sample(f, None, x_a, steps=200, shift=1.0, generator=g)[1]
    renoise = renoise_sample(f, None, x_a, steps=200, shift=1.0, generator=g)[1]
    for out in (euler, ancestral):
        assert out.mean().item() == pytest.approx(mu, abs=0.02) and out.std().item() == pytest.approx(s, rel=0.03)
    assert renoise.mean().item() == pytest.approx(mu, abs=0.02) and 0.55 * s < renoise.std().item() < 0.8 * s
    # a wrong posterior (too little of x_t's noise kept) is caught by the spread
    half = ancestral_sample(lambda v, a, t: (None, 0.9 * f(v, a, t)[1]), None, x_a, steps=200, shift=1.0,
                            generator=torch.Generator().manual_seed(1))[1]
    assert abs(half.std().item() - s) > 0.03 or abs(half.mean().item() - mu) > 0.05


def test_samplers_run_speech_alone():
    """x_v None (pretraining stage 1's model, speech without video): both samplers reach the audio data, and
    the audio draws are the same as with video (the student draws video noise first, only when there is video)."""
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(1, 33, 8, generator=g)
    x_a = torch.randn(z_a.shape, generator=g)

    def f(x_v, x_a, t):
        assert x_v is None
        return None, (x_a - z_a) / t.reshape(-1, 1, 1)

    ev, ea = euler_sample(f, None, x_a, steps=5, shift=5.0)
    assert ev is None and torch.allclose(ea, z_a, atol=1e-5)
    sv, sa = student_sample(f, None, x_a, student_timesteps([1000, 500], 5.0), generator=g)
    assert sv is None and torch.allclose(sa, z_a, atol=1e-5)


def test_student_renoises_between_steps():
    seen = []

    def f(x_v, x_a, t):
        seen.append((t.item(), x_v.std().item()))
        return torch.zeros_like(x_v), torch.zeros_like(x_a)  # predicts x0 = x_t

    student_sample(f, torch.randn(1, 4, 9, 8, 8), torch.randn(1, 33, 8), [1.0, 0.5], generator=torch.Generator().manual_seed(0))
    assert [t for t, _ in seen] == [1.0, 0.5] and len(seen) == 2


@pytest.mark.slow
def test_flow_loss_falls_10x_when_overfitting_one_batch():
    """DiT + orchestrator learn one fixed tiny batch (fixed noise and t) through Eq. 2."""
    cfg = tiny()
    torch.manual_seed(0)
    dit = JointDiT(cfg.dit, 16, 8, cfg.text.dim, cfg.audio_rope_scale, 9)
    orch = Orchestrator(cfg.orchestrator, 8, cfg.dit.dim, cfg.pap.dim)
    g = torch.Generator().manual_seed(1)
    B = 2
    z_v, z_a = torch.randn(B, 16, 9, 8, 8, generator=g), torch.randn(B, 33, 8, generator=g)
    e_v, e_a = torch.randn(z_v.shape, generator=g), torch.randn(z_a.shape, generator=g)
    t = torch.tensor([0.3, 0.7])
    ref, motion = torch.randn(B, 16, 1, 8, 8, generator=g), torch.randn(B, 16, 9, 8, 8, generator=g)
    ctx = torch.randn(B, cfg.text.max_length, cfg.text.dim, generator=g)
    ids = torch.randint(0, 1000, (B, 20), generator=g)
    params = list(dit.parameters()) + list(orch.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(60):
        x_v, x_a = noisy(z_v, e_v, t), noisy(z_a, e_a, t)
        prefix = orch.encode_prefix(OrchestratorInputs.unpadded(None, ids, 4, None, 8))
        c_a, _ = orch.condition(prefix, x_a, t)
        cache = dit.encode_conditions(dit.condition_frames(ref, None, motion), ctx)
        v_v, v_a = dit(x_v, x_a, c_a, t, cache)
        loss, _, _ = flow_loss(v_v, v_a, z_v, z_a, e_v, e_a)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
