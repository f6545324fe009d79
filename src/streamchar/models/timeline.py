"""The transcript's timeline (ours, for `orchestrator.positions = 'timeline'`): at which audio latent each
transcript token starts being spoken.

Training reads it from a clip's word timings (`plan_from_spans`): every token at the latent where its speech
starts. A stream plans it (`plan_from_durations`): each token lasts its type's mean duration, measured on the
training split (`measure_durations`) and kept in the orchestrator (`token_durations`, `lead_in`), so the plan
ships with the weights. The orchestrator puts each E_txt token at its planned latent, relative to the chunk
(models/orchestrator.py): a small LM then finds what a frame speaks by RoPE distance, and a model trained on
true timings speaks what the plan says when. The pointer still measures what was spoken (the end rule, E_txt).

Tokens of no word (word separators, punctuation: NaN spans) take the gap they stand in: in a run of them
between two words, the first starts where the previous word ends and the others where the next word starts,
so a pause is the duration of the token that opens it.

A voice's pace (`reference_pace`): the durations are the training voices' means, but voices differ (SynthTalk's
speak 140-190 words a minute), so a plan at the mean ends a fast voice's transcript late and a slow one's early.
Given a reference voice and the text it speaks (the paper's "reference audio/text"), the pace is its voiced
span over its text's planned span, and the stream's plan takes every duration times it. Training needs no
pace: it reads true timings.

The frame hint (`orchestrator.frame_hint`, `tiny`): `spoken_at` reads off a plan which token each frame of a
chunk speaks, and the orchestrator adds that token's embedding to the frame's E_cond input. A 4-layer LM trained
for CPU-hours finds the frame's token by RoPE distance for only ~40% of frames (measured: `align_acc` of the
alignment aid plateaus there), and a DiT told the wrong phoneme for most frames speaks nothing (judge WER 0.96
even with the true history). The hint gives the frame its token as a duration-based TTS front end does.
"""

from __future__ import annotations

import math

import torch


def plan_from_spans(spans: torch.Tensor, rate: float) -> torch.Tensor:
    """spans (N, 2): each token's (start, end) in seconds, NaN for tokens of no word; rate: audio latents per
    second. -> (N,) float32: each token's start in audio latents from the clip's start."""
    starts, ends = spans[:, 0].tolist(), spans[:, 1].tolist()
    n = len(starts)
    plan = [0.0] * n
    prev_end = 0.0
    i = 0
    while i < n:
        if not math.isnan(starts[i]):
            plan[i], prev_end = starts[i], ends[i]
            i += 1
            continue
        j = i  # a run of tokens of no word: [i, j)
        while j < n and math.isnan(starts[j]):
            j += 1
        nxt = starts[j] if j < n else prev_end
        plan[i] = prev_end
        for r in range(i + 1, j):
            plan[r] = max(nxt, prev_end)
        i = j
    return torch.tensor(plan, dtype=torch.float32) * rate


def plan_from_durations(ids: torch.Tensor, durations: torch.Tensor, start: float = 0.0,
                        pace: float = 1.0) -> torch.Tensor:
    """ids (N,) token ids; durations (V,) mean latents per token type; pace: every duration times it (> 1 is
    slower). -> (N,) float: each token's planned start, the first at `start`."""
    d = durations.float()[ids] * pace  # (N,)
    return start + torch.cumsum(d, 0) - d


def reference_pace(ids: torch.Tensor, durations: torch.Tensor, voiced_latents: float) -> float:
    """A reference voice's pace: the latents its voiced span lasts (first to last voiced frame) over what the
    durations plan for its text's tokens ids (N,). 1.0 is the training voices' mean; 1.2 a voice 20% slower."""
    planned = float(durations.float()[ids].sum())
    if not planned > 0:
        raise ValueError("the reference text plans no time: it has no tokens with a duration")
    return float(voiced_latents) / planned


def plan_end(ids: torch.Tensor, durations: torch.Tensor, plan: torch.Tensor) -> float:
    """Where a plan's last token ends (its start plus its mean duration); 0 for an empty plan."""
    if plan.numel() == 0:
        return 0.0
    return float(plan[-1]) + float(durations.float()[ids[-1]])


def measure_durations(clips, vocab_size: int, default: float) -> tuple[torch.Tensor, float]:
    """clips: (ids (N,), plan (N,)) of training clips (plans from their spans). -> (token_durations (V,): the
    mean of plan[i + 1] - plan[i] over every token i of each type that has a successor, `default` for types
    never seen; lead_in: the mean start of the first token)."""
    total = torch.zeros(vocab_size, dtype=torch.float64)
    count = torch.zeros(vocab_size, dtype=torch.float64)
    leads = []
    for ids, plan in clips:
        if len(ids) == 0:
            continue
        leads.append(float(plan[0]))
        if len(ids) > 1:
            gaps = (plan[1:] - plan[:-1]).double().clamp(min=0)
            total.index_add_(0, ids[:-1].long(), gaps)
            count.index_add_(0, ids[:-1].long(), torch.ones_like(gaps))
    durations = torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, default))
    return durations.float(), (sum(leads) / len(leads) if leads else 0.0)


def spoken_at(plan: torch.Tensor, ids: torch.Tensor, durations: torch.Tensor, frames: int) -> torch.Tensor:
    """Which token a plan speaks at each of a chunk's frames.

    plan (N,): each token's start in latents relative to the chunk's first frame (as E_txt's positions, rounded
    the same way); ids (N,); durations (V,) mean latents per token type; frames: the chunk's T_a.
    -> (T_a,) int64: the id of the last token that started at or before the frame, -1 before the first token
    and from the last token's end on (its start plus its mean duration)."""
    j = torch.arange(frames, device=ids.device)
    if plan.numel() == 0:
        return torch.full((frames,), -1, dtype=torch.int64, device=ids.device)
    plan = torch.cummax(plan.float(), 0).values  # a token never starts before the one it follows
    starts = torch.round(plan).long()
    k = torch.searchsorted(starts, j, right=True) - 1  # (T_a,) index of the token, -1 before the first
    end = round(float(plan[-1]) + float(durations.float()[ids[-1]]))
    return torch.where((k >= 0) & (j < end), ids[k.clamp(min=0)].long(), torch.full_like(j, -1))
