import pytest
import torch

from streamchar.codecs import VideoCodec
from streamchar.codecs.tiny_video import TinyVideoCodec, TinyVideoVAE, from_groups, to_groups
from streamchar.errors import StreamCharError


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return TinyVideoCodec.tiny()



def test_groups_round_trip(frames):
    x = frames(33, 16, 16, b=2)
    g = to_groups(x)
    assert g.shape == (2, 9, 12, 16, 16)
    assert torch.equal(g[:, 0, :3], x[:, :, 0]) and torch.equal(g[:, 0, 9:], x[:, :, 0])  # first frame 4x
    assert torch.equal(g[:, 1, 3:6], x[:, :, 2])  # group 1 holds frames 1-4, RGB after RGB
    assert torch.equal(from_groups(g), x)


def test_contract(codec):
    assert isinstance(codec, VideoCodec)
    assert (codec.temporal_factor, codec.spatial_factor, codec.latent_channels) == (4, 8, 16)
    assert codec.num_latent_frames(33) == 9


@torch.no_grad()
def test_round_trip_shapes(codec, frames):
    z = codec.encode(frames(33))
    assert z.shape == (1, 16, 9, 8, 8)
    x = codec.decode(z)
    assert x.shape == (1, 3, 33, 64, 64) and x.min() >= -1 and x.max() <= 1


@torch.no_grad()
def test_decoding_chunk_by_chunk_equals_decoding_at_once(codec):
    z = torch.randn(2, 16, 9, 8, 8, generator=torch.Generator().manual_seed(1))
    together = codec.decode(z)
    for b in range(2):
        torch.testing.assert_close(codec.decode(z[b: b + 1]), together[b: b + 1], atol=1e-5, rtol=0)
    # latent frames are independent: a chunk's later groups do not change its earlier frames
    torch.testing.assert_close(codec.decode(z[:, :, :3]), together[:, :, :9], atol=1e-5, rtol=0)


@torch.no_grad()
def test_save_load_is_exact(codec, tmp_path):
    codec.vae.register_to_config(latents_mean=[0.5] * 16, latents_std=[2.0] * 16)
    c = TinyVideoCodec(codec.vae)
    c.save_pretrained(tmp_path / "v")
    back = TinyVideoCodec.from_pretrained(tmp_path / "v")
    z = torch.randn(1, 16, 9, 8, 8)
    assert torch.equal(back.decode(z), c.decode(z))
    assert torch.equal(back.latents_std, c.latents_std)
    codec.vae.register_to_config(latents_mean=None, latents_std=None)


def test_bad_input(codec, tmp_path, frames):
    with pytest.raises(StreamCharError, match="1 \\+ 4"):
        codec.encode(frames(6))
    with pytest.raises(StreamCharError, match="divisible by 8"):
        codec.encode(frames(5, 60, 60))
    with pytest.raises(StreamCharError, match="16 channels"):
        codec.decode(torch.zeros(1, 4, 9, 8, 8))
    with pytest.raises(StreamCharError, match="no tiny video codec"):
        TinyVideoCodec.from_pretrained(tmp_path)
    with pytest.raises(StreamCharError, match="multiples of 8"):
        TinyVideoVAE(channels=(30, 64, 96, 128))
