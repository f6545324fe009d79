"""Flow matching on both modalities (paper §3.1, Eq. 1-2).

x_t = (1 - t) z + t eps: t = 0 is clean, t = 1 is pure noise; the network regresses v = eps - z.
The same t is used by the orchestrator and the DiT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def shift_sigma(t: torch.Tensor | float, shift: float):
    """Wan's timestep shift: t' = s t / (1 + (s - 1) t); spends more steps at high noise for s > 1."""
    return shift * t / (1 + (shift - 1) * t)


def noisy(z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 1: x_t = (1 - t) z + t eps, t (B,) broadcast over the remaining dims."""
    t = t.reshape(-1, *([1] * (z.ndim - 1))).to(z.dtype)
    return (1 - t) * z + t * eps


def velocity_target(z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - z


def predict_x0(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Invert Eq. 1 with a velocity: z = x_t - t v."""
    return x_t - t.reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype) * v


def sample_t(batch: int, shift: float = 1.0, generator=None, device=None) -> torch.Tensor:
    """Training timesteps: logit-normal (SD3), then Wan's shift. (B,) in (0, 1)."""
    t = torch.sigmoid(torch.randn(batch, generator=generator, device=device))
    return shift_sigma(t, shift)


def flow_loss(v_video, v_audio, z_video, z_audio, eps_video, eps_audio, audio_weight: float = 1.0,
              video_weight: torch.Tensor | None = None):
    """Eq. 2: MSE to eps - z on both modalities. Returns (total, video term, audio term).

    `video_weight`: optional per-cell weights (h, w) of mean 1 on the video's squared errors (the mouth-region
    aid, train/mouth_weight.py); None is Eq. 2's plain mean."""
    if video_weight is None:
        lv = F.mse_loss(v_video.float(), velocity_target(z_video, eps_video).float())
    else:
        lv = ((v_video.float() - velocity_target(z_video, eps_video).float()).pow(2) * video_weight).mean()
    la = F.mse_loss(v_audio.float(), velocity_target(z_audio, eps_audio).float())
    return lv + audio_weight * la, lv, la
