import torch

from streamchar.config import tiny
from streamchar.models.orchestrator import Orchestrator

CFG = tiny()
C_A = CFG.audio.latent_channels


def build():
    torch.manual_seed(0)
    return Orchestrator(CFG.orchestrator, C_A, CFG.dit.dim, CFG.pap.dim).eval()


def inputs(b=1, hist=66, ref=24, text=30):
    g = torch.Generator().manual_seed(3)
    return dict(ref_audio=torch.randn(b, ref, C_A, generator=g) if ref else None,
                text_ids=torch.randint(0, 1000, (b, text), generator=g), transcript_start=6,
                hist_audio=torch.randn(b, hist, C_A, generator=g) if hist else None)


def test_shapes_and_transcript_span():
    o, x = build(), inputs(b=2)
    with torch.no_grad():
        prefix = o.encode_prefix(**x)
        c_a, hidden = o.condition(prefix, torch.randn(2, 33, C_A), torch.rand(2))
    assert prefix.length == 24 + 30 + 66
    assert prefix.transcript.shape == (2, 30 - 6, CFG.orchestrator.hidden_size)
    assert c_a.shape == (2, 33, CFG.dit.dim) and hidden.shape == (2, 33, CFG.orchestrator.hidden_size)


def test_cached_prefix_equals_recomputation():
    o = build()
    for kw in (inputs(), inputs(hist=0, ref=0)):  # first chunk: no history, no reference voice
        with torch.no_grad():
            prefix = o.encode_prefix(**kw)
            for t in (0.95, 0.5, 0.1):  # one prefix cache serves every denoise step
                x_a = torch.randn(1, 33, C_A)
                c1, h1 = o.condition(prefix, x_a, torch.tensor([t]))
                c2, h2, tr = o.forward_full(**kw, x_a=x_a, t=torch.tensor([t]))
                assert (c1 - c2).abs().max() < 1e-5 and (h1 - h2).abs().max() < 1e-5
            assert (prefix.transcript - tr).abs().max() < 1e-5


def test_prefix_cache_is_not_mutated_by_steps():
    o, x = build(), inputs()
    with torch.no_grad():
        prefix = o.encode_prefix(**x)
        before = [k.clone() for k, _ in prefix.kv]
        x_a = torch.randn(1, 33, C_A)
        first, _ = o.condition(prefix, x_a, torch.tensor([0.5]))
        o.condition(prefix, torch.randn(1, 33, C_A), torch.tensor([0.2]))
        again, _ = o.condition(prefix, x_a, torch.tensor([0.5]))
    assert all(torch.equal(a, k) for a, (k, _) in zip(before, prefix.kv))
    assert torch.equal(first, again)


def test_condition_depends_on_noisy_audio_timestep_and_text():
    o, x = build(), inputs()
    x_a = torch.randn(1, 33, C_A)
    with torch.no_grad():
        prefix = o.encode_prefix(**x)
        base, _ = o.condition(prefix, x_a, torch.tensor([0.5]))
        other_t, _ = o.condition(prefix, x_a, torch.tensor([0.1]))
        other_x, _ = o.condition(prefix, x_a + 1, torch.tensor([0.5]))
        other_text, _ = o.condition(o.encode_prefix(**dict(x, text_ids=x["text_ids"].flip(1))), x_a, torch.tensor([0.5]))
    for other in (other_t, other_x, other_text):
        assert (other - base).abs().max() > 1e-4


def test_gradients_reach_every_new_part():
    o, x = build(), inputs()
    prefix = o.encode_prefix(**x)
    c_a, hidden = o.condition(prefix, torch.randn(1, 33, C_A), torch.tensor([0.3]))
    (c_a.pow(2).mean() + o.pointer(prefix, hidden).raw.sum()).backward()
    for name in ("ref_proj", "hist_proj", "cond_proj", "time_embedding", "ca_proj", "pap"):
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in getattr(o, name).parameters()), name
    assert o.lm.embed_tokens.weight.grad.abs().max() > 0
