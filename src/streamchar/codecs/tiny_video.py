"""The tiny video codec: a 2D VAE over groups of 4 frames, fast enough to stream on a CPU.

The chunk contract is Wan's: 4x temporal with the first frame alone (33 frames <-> 9 latent frames), 8x
spatial. Wan's causal 3D VAE decodes one latent frame at a time through a cache of past features; at 64x64 on
two CPU cores that is most of a chunk's time. Here each latent frame is independent:

    frames (B, 3, 1 + 4k, H, W)
      -> groups: the first frame repeated 4x, then each run of 4 frames, RGB stacked on channels
         (B * (1 + k), 12, H, W)                           (the layout Wan2.2's 5B VAE patchifies into)
      -> 2D conv encoder (3 stride-2 stages)  -> posterior (mean, log-variance) (B * (1 + k), C, H/8, W/8)
      -> 2D conv decoder (3 nearest-x2 stages) -> (B * (1 + k), 12, H, W) -> the 4 frames of each group
         (group 0 gives its first frame only)

so every latent frame of a chunk is decoded as one batch, and decoding a chunk gives the same frames whether
the stream is decoded chunk by chunk or all at once. `TinyVideoVAE` is a diffusers `ModelMixin` (config.json +
safetensors through `save_pretrained` / `from_pretrained`); `TinyVideoCodec` puts it behind `VideoCodec`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin

from streamchar.codecs.base import VideoCodec
from streamchar.errors import StreamCharError

GROUP = 4  # frames per latent frame
CHANNELS_LAST = torch.channels_last  # oneDNN's preferred layout: ~30% faster convolutions on CPU, same results


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class TinyVideoVAE(ModelMixin, ConfigMixin):
    """(N, 12, H, W) groups <-> (N, z_dim, H/8, W/8) latents. `channels`: widths at 1x, 2x, 4x, 8x down."""

    @register_to_config
    def __init__(self, z_dim: int = 16, channels: tuple[int, ...] = (32, 64, 96, 128),
                 latents_mean: list[float] | None = None, latents_std: list[float] | None = None):
        super().__init__()
        if len(channels) != 4 or min(channels) < 8 or any(c % 8 for c in channels):
            raise StreamCharError(f"TinyVideoVAE channels must be 4 multiples of 8, got {channels}")
        c = list(channels)
        enc = [nn.Conv2d(3 * GROUP, c[0], 3, padding=1)]
        for i in range(3):
            enc += [ResBlock(c[i]), nn.Conv2d(c[i], c[i + 1], 3, stride=2, padding=1)]
        enc += [ResBlock(c[3]), nn.GroupNorm(8, c[3]), nn.SiLU(), nn.Conv2d(c[3], 2 * z_dim, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(z_dim, c[3], 3, padding=1), ResBlock(c[3])]
        for i in (3, 2, 1):
            dec += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c[i], c[i - 1], 3, padding=1),
                    ResBlock(c[i - 1])]
        dec += [nn.GroupNorm(8, c[0]), nn.SiLU(), nn.Conv2d(c[0], 3 * GROUP, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, groups: torch.Tensor) -> DiagonalGaussianDistribution:
        return DiagonalGaussianDistribution(self.encoder(groups))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def to_groups(frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, 1 + 4k, H, W) -> (B, 1 + k, 12, H, W): the first frame repeated 4x, then runs of 4 frames."""
    b, c, t, h, w = frames.shape
    first = frames[:, :, :1].expand(b, c, GROUP, h, w)
    x = torch.cat([first, frames[:, :, 1:]], dim=2)  # (B, 3, 4 (1 + k), H, W)
    x = x.view(b, c, t // GROUP + 1, GROUP, h, w).permute(0, 2, 3, 1, 4, 5)  # (B, 1 + k, 4, 3, H, W)
    return x.reshape(b, t // GROUP + 1, GROUP * c, h, w)


def from_groups(groups: torch.Tensor) -> torch.Tensor:
    """(B, 1 + k, 12, H, W) -> (B, 3, 1 + 4k, H, W): group 0 gives its first frame, the others all 4."""
    b, n, _, h, w = groups.shape
    x = groups.view(b, n, GROUP, 3, h, w).permute(0, 3, 1, 2, 4, 5).reshape(b, 3, n * GROUP, h, w)
    return x[:, :, GROUP - 1:]  # (B, 3, 1 + 4k, H, W): drop 3 of the 4 copies of the first frame


class TinyVideoCodec(VideoCodec):
    temporal_factor = GROUP
    spatial_factor = 8

    def __init__(self, vae: TinyVideoVAE, fps: int = 24):
        super().__init__()
        if fps < 1:
            raise StreamCharError(f"fps must be >= 1, got {fps}")
        cfg = vae.config
        self.vae, self.fps, self.latent_channels = vae, fps, cfg.z_dim
        mean = cfg.latents_mean or [0.0] * cfg.z_dim
        std = cfg.latents_std or [1.0] * cfg.z_dim
        if len(mean) != cfg.z_dim or len(std) != cfg.z_dim or min(std) <= 0:
            raise StreamCharError(f"TinyVideoVAE latents_mean / latents_std must be {cfg.z_dim} values (std > 0)")
        self.register_buffer("latents_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.register_buffer("latents_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1))

    def posterior(self, frames: torch.Tensor) -> DiagonalGaussianDistribution:
        """(B, 3, T, H, W) -> the posterior over raw (unnormalised) latents of all (B * T') groups."""
        g = to_groups(frames.to(self.vae.dtype))  # (B, T', 12, H, W)
        return self.vae.encode(g.flatten(0, 1).contiguous(memory_format=CHANNELS_LAST))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        self.check_frames(frames)
        b = frames.shape[0]
        z = self.posterior(frames).mode()  # (B * T', C, h, w)
        z = z.reshape(b, -1, *z.shape[1:]).transpose(1, 2)  # (B, C, T', h, w)
        return ((z - self.latents_mean.to(z.dtype)) / self.latents_std.to(z.dtype)).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        z = latents * self.latents_std.to(latents.dtype) + self.latents_mean.to(latents.dtype)
        b, c, t, h, w = z.shape
        z = z.transpose(1, 2).reshape(b * t, c, h, w).to(self.vae.dtype).contiguous(memory_format=CHANNELS_LAST)
        g = self.vae.decode(z)  # (B T', 12, H, W)
        return from_groups(g.reshape(b, t, *g.shape[1:])).clamp(-1.0, 1.0).contiguous()

    @classmethod
    def tiny(cls, latent_channels: int = 16, channels=(32, 64, 96, 128), fps: int = 24) -> "TinyVideoCodec":
        return cls(TinyVideoVAE(z_dim=latent_channels, channels=tuple(channels)).eval(), fps=fps)

    def save_pretrained(self, path: str | Path) -> None:
        self.vae.save_pretrained(str(path))

    @classmethod
    def from_pretrained(cls, path: str | Path, fps: int = 24) -> "TinyVideoCodec":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise StreamCharError(f"no tiny video codec at {str(path)!r} (expected a folder with config.json)")
        return cls(TinyVideoVAE.from_pretrained(path, local_files_only=True).eval(), fps=fps)
