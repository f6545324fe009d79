import pytest
import torch
from diffusers import AutoencoderOobleck

from streamchar.codecs import AudioCodec, OobleckAudioCodec
from streamchar.errors import StreamCharError

CHUNK = 33792  # 1.375 s at 24576 Hz


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return OobleckAudioCodec.tiny()


def wave(n, b=1, c=1):
    return torch.rand(b, c, n, generator=torch.Generator().manual_seed(n)) * 2 - 1


def test_attributes(codec):
    assert isinstance(codec, AudioCodec)
    assert (codec.sample_rate, codec.hop_length, codec.latent_channels, codec.channels) == (24576, 1024, 8, 1)
    assert codec.latent_rate == 24.0
    assert codec.num_latent_frames(CHUNK) == 33
    assert codec.num_latent_frames(33000) == 33


@torch.no_grad()
def test_chunk_round_trip_shapes(codec):
    z = codec.encode(wave(CHUNK, b=2))
    assert z.shape == (2, 33, 8)  # time-major
    w = codec.decode(z)
    assert w.shape == (2, 1, CHUNK)
    assert w.min() >= -1 and w.max() <= 1


@torch.no_grad()
def test_non_multiple_length_is_padded_not_truncated(codec):
    x = wave(33000)
    z = codec.encode(x)
    assert z.shape == (1, 33, 8)
    # same as encoding the explicitly zero-padded wave
    padded = torch.nn.functional.pad(x, (0, CHUNK - 33000))
    torch.testing.assert_close(z, codec.encode(padded))
    assert codec.decode(z).shape == (1, 1, CHUNK)


@torch.no_grad()
def test_normalisation():
    torch.manual_seed(0)
    mean, std = [0.1 * i for i in range(8)], [1.0 + 0.2 * i for i in range(8)]
    codec = OobleckAudioCodec(OobleckAudioCodec.tiny().vae, latents_mean=mean, latents_std=std)
    x = wave(4096)
    raw = codec.vae.encode(x).latent_dist.mode().transpose(1, 2)  # (1, 4, 8)
    z = codec.encode(x)
    torch.testing.assert_close(z, (raw - torch.tensor(mean)) / torch.tensor(std))
    expected = codec.vae.decode(raw.transpose(1, 2)).sample.clamp(-1, 1)
    torch.testing.assert_close(codec.decode(z), expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_odd_stride_decoder_output_is_fixed_to_exact_length():
    # stride 3 makes Oobleck's ConvTranspose1d give L*3 - 1 samples; the codec pads back to T_a * hop
    torch.manual_seed(0)
    vae = AutoencoderOobleck(
        encoder_hidden_size=8, downsampling_ratios=[3, 2], channel_multiples=[1, 2], decoder_channels=8,
        decoder_input_channels=4, audio_channels=2, sampling_rate=600,
    ).eval()
    assert vae.decode(torch.zeros(1, 4, 10)).sample.shape[-1] != 60
    codec = OobleckAudioCodec(vae)
    assert codec.latent_rate == 100.0
    z = codec.encode(wave(55, c=2))
    assert z.shape == (1, 10, 4)
    assert codec.decode(z).shape == (1, 2, 60)


def test_bad_inputs(codec):
    with pytest.raises(StreamCharError, match=r"\(1, 1024\)"):
        codec.encode(torch.zeros(1, 1024))
    with pytest.raises(StreamCharError, match="got 2"):
        codec.encode(torch.zeros(1, 2, 1024))
    with pytest.raises(StreamCharError, match=r"\(1, 8, 33\)"):
        codec.decode(torch.zeros(1, 8, 33))  # channel-major by mistake
    with pytest.raises(StreamCharError, match="8 entries, got 3"):
        OobleckAudioCodec(codec.vae, latents_mean=[0.0] * 3)


@torch.no_grad()
def test_save_and_from_pretrained(codec, tmp_path):
    codec.vae.save_pretrained(tmp_path)
    loaded = OobleckAudioCodec.from_pretrained(tmp_path)
    x = wave(CHUNK)
    z = codec.encode(x)
    assert torch.equal(loaded.encode(x), z)
    assert torch.equal(loaded.decode(z), codec.decode(z))


def test_from_pretrained_missing(tmp_path):
    with pytest.raises(StreamCharError, match="nope"):
        OobleckAudioCodec.from_pretrained(tmp_path / "nope")
