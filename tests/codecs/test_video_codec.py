import pytest
import torch
from diffusers import AutoencoderKLWan

from streamchar.codecs import VideoCodec, WanVideoCodec
from streamchar.errors import StreamCharError


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return WanVideoCodec.tiny()



def test_attributes(codec):
    assert isinstance(codec, VideoCodec)
    assert (codec.fps, codec.temporal_factor, codec.spatial_factor, codec.latent_channels) == (24, 4, 8, 16)
    assert codec.latent_rate == 6.0
    assert [codec.num_latent_frames(n) for n in (1, 5, 33)] == [1, 2, 9]
    assert codec.num_frames(9) == 33


@torch.no_grad()
def test_chunk_round_trip_shapes(codec, frames):
    z = codec.encode(frames(33))
    assert z.shape == (1, 16, 9, 8, 8)
    x = codec.decode(z)
    assert x.shape == (1, 3, 33, 64, 64)
    assert x.min() >= -1 and x.max() <= 1


@torch.no_grad()
@pytest.mark.parametrize("t, t_lat", [(1, 1), (5, 2)])
def test_short_clips(codec, t, t_lat, frames):
    z = codec.encode(frames(t, 16, 16))
    assert z.shape == (1, 16, t_lat, 2, 2)
    assert codec.decode(z).shape == (1, 3, t, 16, 16)


@pytest.mark.parametrize("t", [0, 32, 34])
def test_bad_frame_count(codec, t, frames):
    with pytest.raises(StreamCharError, match=str(t)):
        codec.num_latent_frames(t)
    if t > 0:
        with pytest.raises(StreamCharError, match=str(t)):
            codec.encode(frames(t, 8, 8))


def test_bad_shapes(codec):
    with pytest.raises(StreamCharError, match="H=60"):
        codec.encode(torch.zeros(1, 3, 1, 60, 64))
    with pytest.raises(StreamCharError, match="3 channels"):
        codec.encode(torch.zeros(1, 4, 1, 64, 64))
    with pytest.raises(StreamCharError, match=r"\(3, 1, 64, 64\)"):
        codec.encode(torch.zeros(3, 1, 64, 64))
    with pytest.raises(StreamCharError, match="16 channels"):
        codec.decode(torch.zeros(1, 8, 1, 8, 8))


@torch.no_grad()
def test_normalisation_matches_diffusers_pipelines(frames):
    torch.manual_seed(1)
    mean = [0.1 * i - 0.5 for i in range(16)]
    std = [0.5 + 0.1 * i for i in range(16)]
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        temperal_downsample=[False, True, True], latents_mean=mean, latents_std=std,
    ).eval()
    codec = WanVideoCodec(vae)
    x = frames(5, 16, 16)
    raw = vae.encode(x).latent_dist.mode()  # (1, 16, 2, 2, 2)
    m, s = torch.tensor(mean).view(1, -1, 1, 1, 1), torch.tensor(std).view(1, -1, 1, 1, 1)
    z = codec.encode(x)
    torch.testing.assert_close(z, (raw - m) / s)
    assert not torch.allclose(z, raw)
    torch.testing.assert_close(codec.decode(z), vae.decode(raw).sample, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_save_and_from_pretrained(codec, tmp_path):
    codec.vae.save_pretrained(tmp_path / "vae")
    loaded = WanVideoCodec.from_pretrained(tmp_path / "vae")
    z = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.decode(z), codec.decode(z))
    # a pipeline folder with a vae/ subfolder also works
    assert WanVideoCodec.from_pretrained(tmp_path).spatial_factor == 8


def test_from_pretrained_missing(tmp_path):
    with pytest.raises(StreamCharError, match="nope"):
        WanVideoCodec.from_pretrained(tmp_path / "nope")


@torch.no_grad()
def test_wan22_layout_is_16x(frames):
    # Wan2.2 TI2V-5B layout: patchify by 2 (3 * 2 * 2 = 12 channels in), residual blocks, 16x spatial
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8, decoder_base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
        patch_size=2, latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    ).eval()
    codec = WanVideoCodec(vae)
    assert codec.spatial_factor == 16 and codec.latent_channels == 4
    z = codec.encode(frames(5, 32, 32))
    assert z.shape == (1, 4, 2, 2, 2)
    assert codec.decode(z).shape == (1, 3, 5, 32, 32)
