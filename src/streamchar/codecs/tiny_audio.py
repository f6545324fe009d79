"""The tiny audio codec: a mel encoder and an iSTFT decoder in the style of Vocos, behind `AudioCodec`.

The tiny Oobleck (8 latent channels x 24 Hz) loses speech: a waveform decoder that small cannot learn phase
and formants at once in CPU-hours. Here the decoder predicts a spectrogram (log-magnitude and phase) and lets
the inverse STFT make the waveform, as Vocos does; the encoder reads log-mel frames:

    wave (B, 1, S), S padded to T_a * hop
      -> STFT (n_fft 1024, hop 256: 4 frames per latent) -> log-mel (B, n_mels, 4 T_a)
      -> conv + ConvNeXt blocks -> stride-4 conv -> posterior (mean, log-variance)   (B, C, T_a) at 24 Hz
      -> conv + x4 transposed conv -> ConvNeXt blocks -> (log-magnitude, phase) per STFT frame
      -> inverse STFT -> (B, 1, T_a * hop)

Latents are time-major (B, T_a, C) at the interface, normalised by stored mean / std. `TinyAudioVAE` is a
diffusers `ModelMixin` (config.json + safetensors through `save_pretrained` / `from_pretrained`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin

from streamchar.codecs.base import AudioCodec
from streamchar.errors import StreamCharError


class ConvNeXtBlock(nn.Module):
    """(B, D, T) -> (B, D, T): depthwise conv, LayerNorm over channels, pointwise MLP, residual."""

    def __init__(self, dim: int, kernel: int = 7):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up, self.down = nn.Linear(dim, 3 * dim), nn.Linear(3 * dim, dim)

    def forward(self, x):
        h = self.norm(self.dw(x).transpose(1, 2))  # (B, T, D)
        return x + self.down(F.gelu(self.up(h))).transpose(1, 2)


class TinyAudioVAE(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, sampling_rate: int = 24576, hop_length: int = 1024, latent_channels: int = 32,
                 n_fft: int = 1024, frames_per_latent: int = 4, n_mels: int = 80, dim: int = 256,
                 encoder_blocks: int = 3, decoder_blocks: int = 6,
                 latents_mean: list[float] | None = None, latents_std: list[float] | None = None):
        super().__init__()
        if hop_length % frames_per_latent:
            raise StreamCharError(f"hop_length {hop_length} must be a multiple of frames_per_latent "
                                  f"{frames_per_latent}")
        from transformers.audio_utils import mel_filter_bank

        self.stft_hop = hop_length // frames_per_latent
        fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                             max_frequency=sampling_rate / 2, sampling_rate=sampling_rate, norm="slaney",
                             mel_scale="slaney")
        self.register_buffer("mel_fb", torch.tensor(fb.T, dtype=torch.float32), persistent=False)  # (mels, freq)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        f = frames_per_latent
        self.enc_in = nn.Conv1d(n_mels, dim, 7, padding=3)
        self.enc_blocks = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(encoder_blocks)])
        self.enc_down = nn.Conv1d(dim, dim, 2 * f, stride=f, padding=f // 2)
        self.enc_out = nn.Conv1d(dim, 2 * latent_channels, 3, padding=1)
        self.dec_in = nn.Conv1d(latent_channels, dim, 3, padding=1)
        self.dec_up = nn.ConvTranspose1d(dim, dim, 2 * f, stride=f, padding=f // 2)
        self.dec_blocks = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(decoder_blocks)])
        self.dec_norm = nn.LayerNorm(dim)
        self.dec_out = nn.Linear(dim, n_fft + 2)  # log-magnitude and phase of n_fft/2 + 1 bins
        with torch.no_grad():  # start quiet (|X| ~ e^-5 per bin), not at |X| = 1 in every bin: a loud hiss
            self.dec_out.bias[: n_fft // 2 + 1].fill_(-5.0)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, n_mels, S / stft_hop) (the centred STFT's last frame dropped)."""
        spec = torch.stft(wave.float(), self.config.n_fft, self.stft_hop, window=self.window, return_complex=True)
        mel = self.mel_fb @ spec.abs().square()
        return mel[..., : wave.shape[-1] // self.stft_hop].clamp_min(1e-7).log()

    def encode(self, wave: torch.Tensor) -> DiagonalGaussianDistribution:
        # wave: (B, 1, T_a * hop) -> posterior over (B, C, T_a)
        x = self.enc_in(self.log_mel(wave[:, 0]).to(self.enc_in.weight.dtype))
        return DiagonalGaussianDistribution(self.enc_out(self.enc_down(self.enc_blocks(x))))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        # z: (B, C, T_a) -> wave (B, 1, T_a * hop)
        n = z.shape[-1] * self.config.hop_length
        x = self.dec_blocks(self.dec_up(self.dec_in(z)))  # (B, D, 4 T_a)
        h = self.dec_out(self.dec_norm(x.transpose(1, 2))).float()  # (B, 4 T_a, n_fft + 2)
        half = self.config.n_fft // 2 + 1
        mag = h[..., :half].clamp(max=7.0).exp()  # (B, frames, bins); the clamp keeps exp finite
        spec = torch.polar(mag, h[..., half:]).transpose(1, 2)  # (B, bins, frames), complex
        spec = torch.cat([spec, spec[..., -1:]], dim=-1)  # the centred iSTFT wants one frame more
        wave = torch.istft(spec, self.config.n_fft, self.stft_hop, window=self.window, length=n)
        return wave[:, None]


class TinyAudioCodec(AudioCodec):
    channels = 1

    def __init__(self, vae: TinyAudioVAE):
        super().__init__()
        cfg = vae.config
        self.vae = vae
        self.sample_rate, self.hop_length, self.latent_channels = cfg.sampling_rate, cfg.hop_length, cfg.latent_channels
        c = cfg.latent_channels
        mean = cfg.latents_mean or [0.0] * c
        std = cfg.latents_std or [1.0] * c
        if len(mean) != c or len(std) != c or min(std) <= 0:
            raise StreamCharError(f"TinyAudioVAE latents_mean / latents_std must be {c} values (std > 0)")
        self.register_buffer("latents_mean", torch.tensor(mean, dtype=torch.float32))  # (C,)
        self.register_buffer("latents_std", torch.tensor(std, dtype=torch.float32))

    def posterior(self, wave: torch.Tensor) -> DiagonalGaussianDistribution:
        pad = -wave.shape[-1] % self.hop_length
        return self.vae.encode(F.pad(wave, (0, pad)).to(self.vae.dtype))

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        self.check_wave(wave)
        z = self.posterior(wave).mode().transpose(1, 2)  # (B, T_a, C)
        return (z - self.latents_mean.to(z.dtype)) / self.latents_std.to(z.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        z = latents * self.latents_std.to(latents.dtype) + self.latents_mean.to(latents.dtype)
        return self.vae.decode(z.transpose(1, 2).to(self.vae.dtype)).clamp(-1.0, 1.0)  # (B, 1, T_a * hop)

    @classmethod
    def tiny(cls, latent_channels: int = 32, dim: int = 256) -> "TinyAudioCodec":
        return cls(TinyAudioVAE(latent_channels=latent_channels, dim=dim).eval())

    def save_pretrained(self, path: str | Path) -> None:
        self.vae.save_pretrained(str(path))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "TinyAudioCodec":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise StreamCharError(f"no tiny audio codec at {str(path)!r} (expected a folder with config.json)")
        return cls(TinyAudioVAE.from_pretrained(path, local_files_only=True).eval())
