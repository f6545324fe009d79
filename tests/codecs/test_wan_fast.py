import torch

from streamchar.codecs import WanVideoCodec
from streamchar.codecs.wan_fast import accelerate, plain


@torch.no_grad()
def test_fast_paths_match_pytorch_and_diffusers():
    torch.manual_seed(0)
    codec = WanVideoCodec.tiny()  # accelerated when built
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    z = codec.encode(x)
    fast = codec.decode(z)
    with torch.autograd.profiler.profile() as prof:
        codec.decode(z[:, :, :1])
    assert not any(e.name == "aten::slow_conv3d_forward" for e in prof.function_events)
    plain(codec.vae)
    torch.testing.assert_close(codec.encode(x), z, atol=1e-4, rtol=0)
    torch.testing.assert_close(codec.decode(z), fast, atol=1e-4, rtol=0)
    accelerate(codec.vae)


def test_training_keeps_pytorch_path_and_gradients():
    torch.manual_seed(0)
    codec = WanVideoCodec.tiny()
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    out = codec.vae(x).sample
    out.square().mean().backward()
    grads = [p.grad for p in codec.vae.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
