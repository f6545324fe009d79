"""Abstract codec interfaces: video <-> latents, audio <-> latents, text -> context.

Shape conventions (B = batch):
    video frames   (B, 3, T, H, W) in [-1, 1]     <->  latents (B, C, T', H/s, W/s),  T' = 1 + (T - 1) / temporal_factor
    audio wave     (B, channels, S) in [-1, 1]    <->  latents (B, T_a, C_a),          T_a = ceil(S / hop_length)
    text prompts   list[str] (len B)               ->  context (B, max_length, dim), zero past each prompt's length

Latents are always normalised (roughly zero mean, unit variance) and deterministic (the posterior mode).
"""

import math
from abc import ABC, abstractmethod

import torch
import torch.nn as nn

from streamchar.errors import StreamCharError


class VideoCodec(nn.Module, ABC):
    """Video VAE: causal in time, the first frame is encoded alone, then `temporal_factor` frames per latent frame."""

    fps: int
    temporal_factor: int
    spatial_factor: int
    latent_channels: int

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (ignoring the lone first frame)."""
        return self.fps / self.temporal_factor

    def num_latent_frames(self, num_frames: int) -> int:
        n, f = num_frames, self.temporal_factor
        if n < 1 or (n - 1) % f != 0:
            raise StreamCharError(f"num_frames must be 1 + {f} * k (k >= 0), got {n}")
        return 1 + (n - 1) // f

    def num_frames(self, num_latent_frames: int) -> int:
        """Inverse of `num_latent_frames`."""
        if num_latent_frames < 1:
            raise StreamCharError(f"num_latent_frames must be >= 1, got {num_latent_frames}")
        return 1 + (num_latent_frames - 1) * self.temporal_factor

    def check_frames(self, frames: torch.Tensor) -> None:
        if frames.ndim != 5:
            raise StreamCharError(f"frames must be (B, 3, T, H, W), got shape {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise StreamCharError(f"frames must be a float tensor in [-1, 1], got dtype {frames.dtype}")
        _, c, t, h, w = frames.shape
        if c != 3:
            raise StreamCharError(f"frames must have 3 channels (RGB), got {c} in shape {tuple(frames.shape)}")
        s = self.spatial_factor
        if h % s != 0 or w % s != 0:
            raise StreamCharError(f"frame height and width must be divisible by {s}, got H={h}, W={w}")
        self.num_latent_frames(t)

    def check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5:
            raise StreamCharError(f"video latents must be (B, C, T', h, w), got shape {tuple(latents.shape)}")
        if latents.shape[1] != self.latent_channels:
            raise StreamCharError(
                f"video latents must have {self.latent_channels} channels, got {latents.shape[1]} "
                f"in shape {tuple(latents.shape)}"
            )
        if latents.shape[2] < 1:
            raise StreamCharError(f"video latents must have at least 1 frame, got shape {tuple(latents.shape)}")

    @abstractmethod
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> normalised latents (B, C, T', H/s, W/s) (posterior mode)."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, T', h, w) -> frames (B, 3, T, h*s, w*s) clamped to [-1, 1]."""


class AudioCodec(nn.Module, ABC):
    """Waveform VAE: one latent frame per `hop_length` samples."""

    sample_rate: int
    hop_length: int
    latent_channels: int
    channels: int

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    def num_latent_frames(self, num_samples: int) -> int:
        if num_samples < 0:
            raise StreamCharError(f"num_samples must be >= 0, got {num_samples}")
        return math.ceil(num_samples / self.hop_length)

    def check_wave(self, wave: torch.Tensor) -> None:
        if wave.ndim != 3:
            raise StreamCharError(f"wave must be (B, channels, S), got shape {tuple(wave.shape)}")
        if not wave.is_floating_point():
            raise StreamCharError(f"wave must be a float tensor in [-1, 1], got dtype {wave.dtype}")
        if wave.shape[1] != self.channels:
            raise StreamCharError(
                f"wave must have {self.channels} channel(s), got {wave.shape[1]} in shape {tuple(wave.shape)}"
            )
        if wave.shape[2] < 1:
            raise StreamCharError(f"wave must have at least 1 sample, got shape {tuple(wave.shape)}")

    def check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 3:
            raise StreamCharError(f"audio latents must be (B, T_a, C_a), got shape {tuple(latents.shape)}")
        if latents.shape[2] != self.latent_channels:
            raise StreamCharError(
                f"audio latents must have {self.latent_channels} channels in the last dim (time-major), "
                f"got shape {tuple(latents.shape)}"
            )
        if latents.shape[1] < 1:
            raise StreamCharError(f"audio latents must have at least 1 frame, got shape {tuple(latents.shape)}")

    @abstractmethod
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, channels, S) in [-1, 1] -> normalised latents (B, ceil(S / hop), C_a). S is zero-padded, never cut."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, T_a, C_a) -> wave (B, channels, T_a * hop_length) clamped to [-1, 1]."""


class TextEncoder(nn.Module, ABC):
    """Prompt encoder: list of prompts -> (B, max_length, dim), exactly zero past each prompt's tokens."""

    dim: int
    max_length: int

    def check_prompts(self, prompts: list[str]) -> None:
        if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
            raise StreamCharError(f"prompts must be a list of strings, got {type(prompts).__name__}: {prompts!r}")
        if len(prompts) == 0:
            raise StreamCharError("prompts must be a non-empty list of strings, got []")
        for p in prompts:
            if not isinstance(p, str):
                raise StreamCharError(f"every prompt must be a string, got {type(p).__name__}: {p!r}")

    @abstractmethod
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """list of B prompts -> (B, max_length, dim)."""
