"""Frame-aligned audio injection into the video tokens (ours, not the paper's; `dit.audio_to_video`).

In the paper the video learns the lips from the audio tokens through the shared self-attention alone. At
`tiny` that path was not learned: after 8,500 stage-2 steps (the last 2,000 with the mouth-region weight) the
tiny teacher's mouth loss on held-out chunks was the same with another clip's speech as with its own (0.4217
against 0.4199 at t = 0.3, 0.1261 against 0.1257 at t = 0.9): the video ignored the speech, and its mouths did
not follow it (sync-proxy offset 7.5 frames, truth 0.9).

The injection gives each video latent frame the audio condition c_a of the video frames it holds: c_a is one
vector per video frame (33 per chunk), a latent frame holds 4 of them (the first one frame: the codecs' causal
layout, frame 0 repeated to fill its group), so the 4 vectors are concatenated and projected to one vector
that is added to every token of that latent frame. c_a is clean at every noise level (it is the orchestrator's
reading of the transcript at each frame), so the mouth can follow it from the first step on.

The projection starts at zero: a model that gains it computes what it did before and learns from there.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from streamchar.errors import StreamCharError

GROUP = 4  # video frames per latent frame (the codecs' temporal factor)


class AudioToVideo(nn.Module):
    def __init__(self, dim: int, group: int = GROUP):
        super().__init__()
        self.group = group
        self.proj = nn.Linear(group * dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, c_a: torch.Tensor, latent_frames: int, per_chunk: int | None = None) -> torch.Tensor:
        """c_a (B, n * (1 + group * (K - 1)), dim) -> (B, n * K, dim): one vector per video latent frame, for
        n chunks of K = `per_chunk` latent frames laid end to end (each chunk with its own first frame; the
        rollout scores several at once); per_chunk None: one chunk of `latent_frames`."""
        B, F, dim = c_a.shape
        K = per_chunk or latent_frames
        n, frames = latent_frames // K, 1 + self.group * (K - 1)
        if latent_frames % K or F != n * frames:
            raise StreamCharError(f"audio_to_video: c_a has {F} frames, {latent_frames} video latent frames in "
                                  f"chunks of {K} need {n * frames} (one per video frame)")
        c_a = c_a.reshape(B * n, frames, dim)
        c_a = torch.cat([c_a[:, :1].expand(B * n, self.group - 1, dim), c_a], 1)  # (B n, group * K, dim)
        return self.proj(c_a.reshape(B * n, K, self.group * dim)).reshape(B, n * K, dim)
