"""The frame-aligned audio injection (models/audio_to_video.py) in the joint DiT."""

import pytest
import torch

from streamchar.config import tiny
from streamchar.errors import StreamCharError
from streamchar.models.audio_to_video import AudioToVideo
from streamchar.models.dit import JointDiT


def test_each_latent_frame_gets_the_c_a_of_its_own_video_frames():
    inj = AudioToVideo(8)
    torch.nn.init.normal_(inj.proj.weight)
    c_a = torch.randn(2, 33, 8, requires_grad=True)  # 33 video frames -> 9 latent frames: [0], [1-4], ..., [29-32]
    out = inj(c_a, 9)
    assert out.shape == (2, 9, 8)
    for j, frames in [(0, {0}), (1, {1, 2, 3, 4}), (8, {29, 30, 31, 32})]:
        (grad,) = torch.autograd.grad(out[0, j].sum(), c_a, retain_graph=True)
        assert {i for i in range(33) if grad[0, i].abs().sum() > 0} == frames, j
        assert grad[1].abs().sum() == 0  # no mixing across the batch
    with pytest.raises(StreamCharError, match="c_a has 30 frames"):
        inj(c_a[:, :30], 9)
    three = torch.randn(2, 99, 8)  # three chunks end to end (the rollout's window): each its own layout
    out3 = inj(three, 27, per_chunk=9)
    assert torch.allclose(out3[:, 9:18], inj(three[:, 33:66], 9), atol=1e-6)


def test_a_dit_that_gains_it_computes_what_it_did_and_then_listens_to_c_a():
    cfg = tiny()
    cfg.dit.audio_to_video = False
    torch.manual_seed(0)
    dit = JointDiT.from_config(cfg).eval()
    assert dit.audio_to_video is None
    g = torch.Generator().manual_seed(1)
    C, (h, w) = cfg.video.latent_channels, cfg.latent_size
    x_v = torch.randn(1, C, 9, h, w, generator=g)
    x_a = torch.randn(1, 33, cfg.audio.latent_channels, generator=g)
    c_a = torch.randn(1, 33, cfg.dit.dim, generator=g)
    t, ctx = torch.tensor([0.6]), torch.randn(1, 4, cfg.text.dim, generator=g)
    ref = dit.condition_frames(torch.randn(1, C, 1, h, w, generator=g))
    with torch.no_grad():
        before = dit.forward_full(x_v, x_a, c_a, t, ref, ctx)
        dit.add_audio_to_video()
        assert dit.cfg.audio_to_video and dit.audio_to_video is not None
        after = dit.forward_full(x_v, x_a, c_a, t, ref, ctx)
        assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
        torch.nn.init.normal_(dit.audio_to_video.proj.weight, std=0.05)
        own = dit.forward_full(x_v, x_a, c_a, t, ref, ctx)[0]
        other = dit.forward_full(x_v, x_a, c_a.roll(5, 1), t, ref, ctx)[0]
    assert (own - other).abs().max() > 1e-3  # the video now depends on c_a directly
