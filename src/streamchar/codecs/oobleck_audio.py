"""Oobleck waveform VAE (diffusers `AutoencoderOobleck`, as in Stable Audio) behind the `AudioCodec` interface.

Latents are returned time-major, (B, T_a, C_a), ready to be used as a token sequence.
"""

import json
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderOobleck

from streamchar.codecs.base import AudioCodec
from streamchar.errors import StreamCharError


class OobleckAudioCodec(AudioCodec):
    def __init__(
        self,
        vae: AutoencoderOobleck,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ):
        super().__init__()
        cfg = vae.config
        self.vae = vae
        self.sample_rate = int(cfg.sampling_rate)
        self.hop_length = math.prod(cfg.downsampling_ratios)
        self.latent_channels = cfg.decoder_input_channels
        self.channels = cfg.audio_channels
        if cfg.encoder_hidden_size != 2 * self.latent_channels:
            # the encoder outputs (mean, scale) stacked on channels, so it must give 2 * decoder_input_channels
            raise StreamCharError(
                f"Oobleck encoder_hidden_size ({cfg.encoder_hidden_size}) must be 2 * decoder_input_channels "
                f"({self.latent_channels})"
            )

        c = self.latent_channels
        mean = [0.0] * c if latents_mean is None else list(latents_mean)
        std = [1.0] * c if latents_std is None else list(latents_std)
        if len(mean) != c or len(std) != c:
            raise StreamCharError(
                f"latents_mean/latents_std must have {c} entries, got {len(mean)} and {len(std)}"
            )
        if min(std) <= 0:
            raise StreamCharError(f"latents_std must be > 0, got {std}")
        # (C_a,), broadcast over time-major latents (B, T_a, C_a)
        self.register_buffer("latents_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("latents_std", torch.tensor(std, dtype=torch.float32))

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        # wave: (B, channels, S) in [-1, 1], any float dtype (cast to the VAE's)
        self.check_wave(wave)
        # Oobleck's strided convs floor the length (drop the tail); zero-pad to a whole number of hops instead
        pad = -wave.shape[-1] % self.hop_length
        wave = F.pad(wave, (0, pad))  # (B, channels, T_a * hop)
        z = self.vae.encode(wave.to(self.vae.dtype)).latent_dist.mode()  # (B, C_a, T_a)
        z = z.transpose(1, 2)  # (B, T_a, C_a)
        return (z - self.latents_mean.to(z.dtype)) / self.latents_std.to(z.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        # latents: (B, T_a, C_a), normalised
        self.check_latents(latents)
        num_samples = latents.shape[1] * self.hop_length
        z = latents * self.latents_std.to(latents.dtype) + self.latents_mean.to(latents.dtype)
        wave = self.vae.decode(z.transpose(1, 2).to(self.vae.dtype)).sample  # (B, channels, ~T_a * hop)
        # an odd-stride ConvTranspose1d in Oobleck's decoder (kernel 2s, padding ceil(s/2)) yields L*s - 1 samples,
        # not L*s, so such VAEs come out short; pad with zeros (or crop) to exactly T_a * hop to keep chunks aligned
        wave = wave[..., :num_samples]
        wave = F.pad(wave, (0, num_samples - wave.shape[-1]))  # (B, channels, T_a * hop)
        return wave.clamp(-1.0, 1.0)

    @classmethod
    def tiny(cls) -> "OobleckAudioCodec":
        """Small random mono VAE for tests: hop 1024 at 24576 Hz -> 24 Hz latents, 8 channels."""
        with warnings.catch_warnings():  # diffusers' Oobleck still uses the deprecated weight_norm
            warnings.simplefilter("ignore", FutureWarning)
            vae = _tiny_oobleck()
        return cls(vae.eval())

    def save_pretrained(self, path: str | Path) -> None:
        """A diffusers VAE folder plus `latents_stats.json` (Oobleck's config has no place for mean/std)."""
        path = Path(path)
        self.vae.save_pretrained(str(path))
        stats = {"latents_mean": self.latents_mean.tolist(), "latents_std": self.latents_std.tolist()}
        (path / "latents_stats.json").write_text(json.dumps(stats))

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ) -> "OobleckAudioCodec":
        """Load a local diffusers Oobleck folder, or a pipeline folder with a `vae/` subfolder."""
        path = Path(path)
        if not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
            path = path / "vae"
        if not (path / "config.json").is_file():
            raise StreamCharError(f"no Oobleck VAE found at {str(path)!r} (expected a folder with config.json)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            vae = AutoencoderOobleck.from_pretrained(path, local_files_only=True)
        stats_file = path / "latents_stats.json"
        if latents_mean is None and latents_std is None and stats_file.is_file():
            try:
                stats = json.loads(stats_file.read_text())
                latents_mean, latents_std = stats["latents_mean"], stats["latents_std"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise StreamCharError(f"{stats_file} is not a valid latent statistics file ({e})") from None
        return cls(vae.eval(), latents_mean=latents_mean, latents_std=latents_std)


def _tiny_oobleck() -> AutoencoderOobleck:
    return AutoencoderOobleck(
        encoder_hidden_size=16,
        downsampling_ratios=[2, 4, 4, 4, 8],  # even strides: the decoder gives exactly T_a * hop samples
        channel_multiples=[1, 2, 4, 4, 8],
        decoder_channels=16,
        decoder_input_channels=8,
        audio_channels=1,
        sampling_rate=24576,
    )
