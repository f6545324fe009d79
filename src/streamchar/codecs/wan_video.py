"""Wan video VAE (diffusers `AutoencoderKLWan`) behind the `VideoCodec` interface.

Wan2.1 layout: 8x spatial, z_dim 16. Wan2.2 TI2V-5B layout: patch_size 2 on top of 8x -> 16x spatial, z_dim 48.
Both are 4x temporal with the first frame alone: 33 frames <-> 9 latent frames.
"""

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan

from streamchar.codecs.base import VideoCodec
from streamchar.codecs.wan_fast import accelerate
from streamchar.errors import StreamCharError


class WanVideoCodec(VideoCodec):
    def __init__(self, vae: AutoencoderKLWan, fps: int = 24):
        super().__init__()
        cfg = vae.config
        if fps < 1:
            raise StreamCharError(f"fps must be >= 1, got {fps}")
        # diffusers' Wan encoder hard-codes chunks of 1 + 4k frames, so the VAE must downsample time by exactly 4
        temporal_factor = 2 ** sum(bool(t) for t in cfg.temperal_downsample[: len(cfg.dim_mult) - 1])
        if temporal_factor != 4:
            raise StreamCharError(
                f"Wan VAE must downsample time by 4, got {temporal_factor} "
                f"(temperal_downsample={cfg.temperal_downsample})"
            )
        # one 2x spatial downsample per level but the last, times the optional patchify (Wan2.2 5B: patch_size=2)
        spatial_factor = 2 ** (len(cfg.dim_mult) - 1) * (cfg.patch_size or 1)
        if len(cfg.latents_mean) != cfg.z_dim or len(cfg.latents_std) != cfg.z_dim:
            raise StreamCharError(
                f"Wan VAE latents_mean/latents_std must have z_dim={cfg.z_dim} entries, "
                f"got {len(cfg.latents_mean)} and {len(cfg.latents_std)}"
            )

        self.vae = accelerate(vae)  # CPU fast paths for batch-1 conv3d and the RMS norm (codecs/wan_fast.py)
        self.fps = fps
        self.temporal_factor = temporal_factor
        self.spatial_factor = spatial_factor
        self.latent_channels = cfg.z_dim
        # (1, C, 1, 1, 1), broadcast over (B, C, T', h, w)
        self.register_buffer("latents_mean", torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.register_buffer("latents_std", torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: (B, 3, T, H, W) in [-1, 1], any float dtype (cast to the VAE's)
        self.check_frames(frames)
        z = self.vae.encode(frames.to(self.vae.dtype)).latent_dist.mode()  # (B, C, T', H/s, W/s), the posterior mean
        return (z - self.latents_mean.to(z.dtype)) / self.latents_std.to(z.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        # latents: (B, C, T', h, w), normalised
        self.check_latents(latents)
        z = latents * self.latents_std.to(latents.dtype) + self.latents_mean.to(latents.dtype)
        frames = self.vae.decode(z.to(self.vae.dtype)).sample  # (B, 3, 1 + 4 (T' - 1), h*s, w*s), diffusers already clamps
        return frames.clamp(-1.0, 1.0)

    @classmethod
    def tiny(cls, latent_channels: int = 16, base_dim: int = 8, fps: int = 24) -> "WanVideoCodec":
        """Small random Wan2.1-layout VAE (8x spatial, 4x temporal) for tests: 64x64 -> 8x8."""
        vae = AutoencoderKLWan(
            base_dim=base_dim,
            z_dim=latent_channels,
            dim_mult=[1, 2, 2, 2],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            latents_mean=[0.0] * latent_channels,
            latents_std=[1.0] * latent_channels,
        )
        return cls(vae.eval(), fps=fps)

    def save_pretrained(self, path: str | Path) -> None:
        """A diffusers VAE folder; the latent mean/std live in its config.json, as in Wan's releases."""
        self.vae.save_pretrained(str(path))

    @classmethod
    def from_pretrained(cls, path: str | Path, fps: int = 24) -> "WanVideoCodec":
        """Load a local diffusers VAE folder, or a Wan pipeline folder with a `vae/` subfolder."""
        path = Path(path)
        if not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
            path = path / "vae"
        if not (path / "config.json").is_file():
            raise StreamCharError(f"no Wan VAE found at {str(path)!r} (expected a diffusers folder with config.json)")
        vae = AutoencoderKLWan.from_pretrained(path, local_files_only=True)
        return cls(vae.eval(), fps=fps)
