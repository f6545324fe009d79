import pytest
import torch

from streamchar.config import tiny
from streamchar.models.dit import JointBlock, JointDiT, TanhGELU

torch.manual_seed(0)
CFG = tiny()
C_V, C_A = CFG.video.latent_channels, CFG.audio.latent_channels


def build():
    torch.manual_seed(0)
    return JointDiT.from_config(CFG).eval()


def inputs(b=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    h, w = CFG.latent_size
    r = lambda *s: torch.randn(*s, generator=g)
    return dict(
        x_v=r(b, C_V, 9, h, w), x_a=r(b, 33, C_A), c_a=r(b, 33, CFG.dit.dim), t=torch.rand(b, generator=g),
        reference=r(b, C_V, 1, h, w), sink=r(b, C_V, 9, h, w), motion=r(b, C_V, 9, h, w),
        context=r(b, CFG.text.max_length, CFG.text.dim),
    )


def test_shapes():
    dit, x = build(), inputs(b=2)
    conds = dit.condition_frames(x["reference"], x["sink"], x["motion"])
    with torch.no_grad():
        v, a = dit(x["x_v"], x["x_a"], x["c_a"], x["t"], dit.encode_conditions(conds, x["context"]))
    assert v.shape == x["x_v"].shape and a.shape == x["x_a"].shape
    assert v.dtype == torch.float32 and torch.isfinite(v).all() and torch.isfinite(a).all()
    tokens, grid = dit.patchify(x["x_v"])
    assert tokens.shape == (2, 9 * 4 * 4, CFG.dit.dim) and grid == (9, 4, 4)


def test_unpatchify_inverts_patch_layout():
    dit = build()
    lat = torch.randn(1, C_V, 9, 8, 8)
    p = dit.cfg.patch_size
    # tokens laid out as the head produces them: (B, T*h*w, pt*ph*pw*C)
    tok = lat.reshape(1, C_V, 9, 4, p[1], 4, p[2]).permute(0, 2, 3, 5, 4, 6, 1).reshape(1, 9 * 16, -1)
    assert torch.equal(dit.unpatchify(tok, (9, 4, 4)), lat)


@pytest.mark.parametrize("with_conditions", [True, False])
def test_cached_condition_kv_equals_full_recomputation(with_conditions):
    dit, x = build(), inputs()
    conds = dit.condition_frames(x["reference"], x["sink"], x["motion"]) if with_conditions else []
    with torch.no_grad():
        cache = dit.encode_conditions(conds, x["context"])
        for t in (0.9, 0.4):  # the same cache serves every denoise step
            tt = torch.tensor([t])
            v1, a1 = dit(x["x_v"], x["x_a"], x["c_a"], tt, cache)
            v2, a2 = dit.forward_full(x["x_v"], x["x_a"], x["c_a"], tt, conds, x["context"])
            assert (v1 - v2).abs().max() < 1e-5 and (a1 - a2).abs().max() < 1e-5


def _condition_outputs(dit, x, conds):
    """Run forward_full and capture every block's output on the condition tokens."""
    n_cond = sum(c.latents.shape[2] for c in conds) * 16
    seen = []
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append(o[0][:, :n_cond].clone())) for b in dit.blocks]
    with torch.no_grad():
        v, a = dit.forward_full(x["x_v"], x["x_a"], x["c_a"], x["t"], conds, x["context"])
    for h in hooks:
        h.remove()
    return seen, v, a


def test_asymmetric_mask():
    dit, x = build(), inputs()
    conds = dit.condition_frames(x["reference"], x["sink"], x["motion"])
    cond_out, v, a = _condition_outputs(dit, x, conds)
    # changing the noisy tokens (and their timestep) leaves every condition-token output unchanged
    y = dict(x, x_v=x["x_v"] + 1.0, x_a=-x["x_a"], t=x["t"] * 0.5)
    cond_out2, v2, _ = _condition_outputs(dit, y, conds)
    assert all(torch.equal(p, q) for p, q in zip(cond_out, cond_out2))
    assert not torch.allclose(v, v2)
    # changing the condition tokens changes the noisy outputs
    conds3 = dit.condition_frames(x["reference"], x["sink"], x["motion"] + 1.0)
    _, v3, a3 = _condition_outputs(dit, x, conds3)
    assert (v3 - v).abs().max() > 1e-4 and (a3 - a).abs().max() > 1e-4


def _no_grad(p):
    return p.grad is None or p.grad.abs().max() == 0


def test_modality_experts_route_by_modality():
    torch.manual_seed(0)
    blk = JointBlock(CFG.dit)
    rope = torch.ones(40, 16, dtype=torch.complex64)  # no rotation
    x = torch.randn(1, 40, CFG.dit.dim, requires_grad=True)
    e = torch.randn(1, 1, 6, CFG.dit.dim)
    tkv = blk.cross_attn.kv(torch.randn(1, 5, CFG.dit.dim))
    out, _ = blk(x, e, rope, tkv, num_video=30)
    out[:, :30].pow(2).mean().backward(retain_graph=True)  # a video-only loss ...
    assert all(_no_grad(p) for p in blk.audio_ffn.parameters())
    assert any(p.grad.abs().max() > 0 for p in blk.ffn.parameters())
    blk.zero_grad(set_to_none=True)
    out[:, 30:].pow(2).mean().backward()  # ... and an audio-only loss
    assert all(_no_grad(p) for p in blk.ffn.parameters())
    assert any(p.grad.abs().max() > 0 for p in blk.audio_ffn.parameters())


def test_modality_experts_in_the_full_model():
    """In the whole DiT, the last block's experts see only their own modality's loss. (Earlier blocks'
    experts do get cross-modal gradients, through the shared attention of later blocks: by design.)"""
    dit, x = build(), inputs()
    conds = dit.condition_frames(x["reference"], None, x["motion"])
    last = dit.blocks[-1]
    v, a = dit(x["x_v"], x["x_a"], x["c_a"], x["t"], dit.encode_conditions(conds, x["context"]))
    v.pow(2).mean().backward()
    assert all(_no_grad(p) for p in last.audio_ffn.parameters())
    assert all(_no_grad(p) for p in dit.audio_head.parameters())
    assert all(p.grad.abs().max() > 0 for p in last.ffn.parameters())
    dit.zero_grad(set_to_none=True)
    v, a = dit(x["x_v"], x["x_a"], x["c_a"], x["t"], dit.encode_conditions(conds, x["context"]))
    a.pow(2).mean().backward()
    assert all(_no_grad(p) for p in last.ffn.parameters())
    assert all(_no_grad(p) for p in dit.head.parameters())
    assert all(p.grad.abs().max() > 0 for p in last.audio_ffn.parameters())
    assert dit.patch_embedding.weight.grad.abs().max() > 0  # video tokens still shape the audio


def test_per_token_timesteps():
    dit, x = build(), inputs()
    conds = dit.condition_frames(x["reference"])
    n = 9 * 16 + 33
    with torch.no_grad():
        cache = dit.encode_conditions(conds, x["context"])
        v1, a1 = dit(x["x_v"], x["x_a"], x["c_a"], torch.full((1,), 0.5), cache)
        v2, a2 = dit(x["x_v"], x["x_a"], x["c_a"], torch.full((1, n), 0.5), cache)
        v3, _ = dit(x["x_v"], x["x_a"], x["c_a"], torch.cat([torch.zeros(1, 16), torch.full((1, n - 16), 0.5)], 1), cache)
    assert torch.allclose(v1, v2, atol=1e-6) and torch.allclose(a1, a2, atol=1e-6)
    assert not torch.allclose(v1, v3)


def test_wan_parameter_names():
    names = set(dict(build().named_parameters()))
    for key in ["patch_embedding.weight", "text_embedding.0.weight", "text_embedding.2.weight",
                "time_embedding.0.weight", "time_embedding.2.weight", "time_projection.1.weight",
                "blocks.0.self_attn.q.weight", "blocks.0.self_attn.norm_q.weight", "blocks.0.cross_attn.k.weight",
                "blocks.0.norm3.weight", "blocks.0.ffn.0.weight", "blocks.0.ffn.2.weight", "blocks.0.modulation",
                "blocks.0.audio_ffn.0.weight", "head.head.weight", "head.modulation"]:
        assert key in names, key


def test_tanh_gelu_inference_form_is_the_tanh_approximation():
    x = torch.cat([torch.randn(4096) * 3, torch.tensor([0.0, -30.0, 30.0, 1e-4])])
    ref = torch.nn.functional.gelu(x, approximate="tanh")
    with torch.no_grad():  # the in-place sigmoid form
        fast = TanhGELU()(x)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fast, ref)  # it is the other computation, not the kernel again
    xg = x.clone().requires_grad_()
    out = TanhGELU()(xg)  # with gradients: PyTorch's kernel, and its backward
    assert torch.equal(out.detach(), ref)
    out.sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_bf16_path_matches_fp32():
    """The CUDA dtype (bf16 weights, fp32 norms, modulation and RoPE) runs on CPU too and stays close."""
    dit, x = build(), inputs()
    conds = dit.condition_frames(x["reference"], x["sink"], x["motion"])
    with torch.no_grad():
        v32, a32 = dit(x["x_v"], x["x_a"], x["c_a"], x["t"], dit.encode_conditions(conds, x["context"]))
        dit = dit.to(torch.bfloat16)
        bf = {k: v.to(torch.bfloat16) if k != "t" else v for k, v in x.items()}
        conds = dit.condition_frames(bf["reference"], bf["sink"], bf["motion"])
        v16, a16 = dit(bf["x_v"], bf["x_a"], bf["c_a"], bf["t"], dit.encode_conditions(conds, bf["context"]))
    assert v16.dtype == torch.float32
    assert (v16 - v32).norm() / v32.norm() < 0.05 and (a16 - a32).norm() / a32.norm() < 0.05


@pytest.mark.slow
def test_torch_compile_matches_eager():
    dit, x = build(), inputs()
    conds = dit.condition_frames(x["reference"], x["sink"], x["motion"])
    with torch.no_grad():
        cache = dit.encode_conditions(conds, x["context"])
        eager = dit(x["x_v"], x["x_a"], x["c_a"], x["t"], cache)
        dit.compile()
        compiled = dit(x["x_v"], x["x_a"], x["c_a"], x["t"], cache)
    assert (eager[0] - compiled[0]).abs().max() < 1e-4 and (eager[1] - compiled[1]).abs().max() < 1e-4


def test_audio_path_alone():
    """Speech without video (pretraining stage 1): no video tokens, the same audio machinery."""
    dit, x = build(), inputs()
    with torch.no_grad():
        cache = dit.encode_conditions([], x["context"])
        v, a = dit(None, x["x_a"], x["c_a"], x["t"], cache)
        v_full, a_full = dit.forward_full(None, x["x_a"], x["c_a"], x["t"], [], x["context"])
        _, a_with_video = dit(x["x_v"], x["x_a"], x["c_a"], x["t"], cache)
    assert v is None and v_full is None and a.shape == x["x_a"].shape
    assert (a - a_full).abs().max() < 1e-5
    assert (a - a_with_video).abs().max() > 1e-4  # video tokens do shape the audio when present


def test_rows_without_sink_and_motion_batch_with_rows_that_have_them():
    """A batch mixing chunk 0 (reference alone) and later chunks (reference + sink + motion): the absent
    groups are masked out, and every row computes what it computes alone (cached and full paths)."""
    dit, x = build(), inputs(b=3)
    present = torch.tensor([True, False, True])
    sink = x["sink"] * present[:, None, None, None, None]  # zeros where absent (as collate makes them)
    motion = x["motion"] * present[:, None, None, None, None]
    conds = dit.condition_frames(x["reference"], sink, motion, present)
    with torch.no_grad():
        cache = dit.encode_conditions(conds, x["context"])
        v, a = dit(x["x_v"], x["x_a"], x["c_a"], x["t"], cache)
        vf, af = dit.forward_full(x["x_v"], x["x_a"], x["c_a"], x["t"], conds, x["context"])
        for i in range(3):
            s = slice(i, i + 1)
            alone = dit.condition_frames(x["reference"][s], x["sink"][s] if present[i] else None,
                                         x["motion"][s] if present[i] else None)
            v1, a1 = dit(x["x_v"][s], x["x_a"][s], x["c_a"][s], x["t"][s], dit.encode_conditions(alone, x["context"][s]))
            assert (v[i] - v1[0]).abs().max() < 1e-5 and (a[i] - a1[0]).abs().max() < 1e-5
            assert (vf[i] - v1[0]).abs().max() < 1e-5 and (af[i] - a1[0]).abs().max() < 1e-5
