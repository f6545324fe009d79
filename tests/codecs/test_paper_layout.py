"""The paper's codec layouts (Wan2.2 VAE: 48 ch, 4x16x16, residual, patch 2; Oobleck: 49,152 Hz, 2048x, stereo),
as tiny random instances saved and loaded in their real formats, holding the chunk contract."""

import numpy as np
import torch
from diffusers import AutoencoderKLWan, AutoencoderOobleck

from streamchar.codecs import OobleckAudioCodec, WanVideoCodec
from streamchar.config import paper


@torch.no_grad()
def test_wan22_layout_chunk_contract_and_round_trip(tmp_path):
    torch.manual_seed(0)
    mean, std = torch.randn(48).tolist(), (torch.rand(48) + 0.5).tolist()
    vae = AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                           out_channels=12, patch_size=2, latents_mean=mean, latents_std=std).eval()
    codec = WanVideoCodec(vae)
    cfg = paper()
    assert (codec.spatial_factor, codec.temporal_factor, codec.latent_channels) == \
        (cfg.video.spatial_factor, cfg.video.temporal_factor, cfg.video.latent_channels)
    frames = torch.rand(1, 3, 33, 32, 32) * 2 - 1
    z = codec.encode(frames)
    assert z.shape == (1, 48, cfg.video_latent_frames, 2, 2)  # 33 frames <-> 9 latent frames
    raw = vae.encode(frames).latent_dist.mode()
    assert torch.allclose(z, (raw - torch.tensor(mean).view(1, -1, 1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1, 1),
                          atol=1e-5)  # the per-channel normalisation Wan's pipelines apply
    codec.save_pretrained(tmp_path / "vae")
    back = WanVideoCodec.from_pretrained(tmp_path / "vae")
    assert torch.equal(back.latents_mean, codec.latents_mean)
    assert torch.equal(back.decode(z), codec.decode(z)) and back.decode(z).shape == (1, 3, 33, 32, 32)


@torch.no_grad()
def test_oobleck_paper_rate_chunk_contract_and_round_trip(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=[2, 4, 4, 8, 8], channel_multiples=[1, 1, 2, 2, 2],
                             decoder_channels=8, decoder_input_channels=4, audio_channels=2, sampling_rate=49152).eval()
    stats = dict(latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[0.5, 2.0, 1.0, 1.5])
    codec = OobleckAudioCodec(vae, **stats)
    cfg = paper()
    assert codec.hop_length == cfg.audio.hop_length == 2048 and codec.latent_rate == cfg.audio_latent_rate == 24
    n = round(cfg.chunk_seconds * 49152)  # 1.375 s = 67,584 samples
    wave = torch.rand(1, 2, n) * 2 - 1
    z = codec.encode(wave)
    assert z.shape == (1, cfg.audio_latent_frames, 4)  # 1.375 s <-> 33 latent frames
    assert codec.encode(wave[..., : n - 100]).shape[1] == 33  # padded, never truncated
    assert codec.decode(z).shape == (1, 2, n)
    codec.save_pretrained(tmp_path / "audio")
    back = OobleckAudioCodec.from_pretrained(tmp_path / "audio")
    assert np.allclose(back.latents_std.numpy(), stats["latents_std"])
    assert torch.equal(back.encode(wave), z) and torch.equal(back.decode(z), codec.decode(z))
