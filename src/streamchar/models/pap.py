"""Progress-aware pointer (paper §4.2, Eq. 5): how much of the transcript the chunk's audio has spoken.

Given transcript hidden states A (N tokens) and the chunk's audio condition c_a (T frames), each frame j
cross-attends over the transcript and reads a soft position p_j = sum_i alpha_ji * (i + 1) (the number of
tokens spoken once token i is), refined by a learnable per-frame offset delta_j; confidence weights w_j
(a softmax over frames) aggregate them into the endpoint

    s_hat = sum_j w_j (p_j + delta_j),    clamped to [0, N].

It is supervised with a smooth-L1 loss to ground-truth end indices (from word timings). The loss is taken
on the unclamped value so a prediction outside [0, N] still gets a gradient back into range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class PointerOutput:
    endpoint: torch.Tensor  # (B,) clamped to [0, N]
    raw: torch.Tensor  # (B,) before clamping (what the loss sees)
    positions: torch.Tensor  # (B, T) per-frame soft positions p_j + delta_j


class ProgressAwarePointer(nn.Module):
    def __init__(self, hidden_size: int, dim: int):
        super().__init__()
        self.dim = dim
        self.q = nn.Linear(hidden_size, dim)  # from c_a frames
        self.k = nn.Linear(hidden_size, dim)  # from transcript states
        self.offset = nn.Linear(hidden_size, 1)  # delta_j
        self.confidence = nn.Linear(hidden_size, 1)  # logits of w_j
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, ca: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None) -> PointerOutput:
        """ca: (B, T, hidden) audio-condition states; text: (B, N, hidden); text_mask: (B, N) bool, True = real."""
        B, N = text.shape[:2]
        if N == 0:
            raise ValueError("the progress-aware pointer needs at least one transcript token")
        ca, text = ca.to(self.q.weight.dtype), text.to(self.q.weight.dtype)
        scores = (self.q(ca).float() @ self.k(text).float().transpose(1, 2)) / self.dim**0.5  # (B, T, N)
        if text_mask is not None:
            scores = scores.masked_fill(~text_mask[:, None, :], float("-inf"))
        alpha = scores.softmax(-1)
        index = torch.arange(1, N + 1, dtype=alpha.dtype, device=alpha.device)  # endpoint after token i
        positions = alpha @ index + self.offset(ca).squeeze(-1).float()  # (B, T)
        w = self.confidence(ca).squeeze(-1).float().softmax(-1)  # (B, T)
        raw = (w * positions).sum(-1)
        n = text_mask.sum(-1).to(raw.dtype) if text_mask is not None else torch.full_like(raw, N)
        return PointerOutput(endpoint=torch.minimum(raw.clamp(min=0.0), n), raw=raw, positions=positions)


def pointer_loss(out: PointerOutput, target: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the predicted and the ground-truth end index (B,)."""
    return F.smooth_l1_loss(out.raw, target.to(out.raw.dtype))
