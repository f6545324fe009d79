"""Frame-token alignment: which transcript token each audio-latent frame speaks (a training aid of ours).

Not in the paper. The orchestrator must learn where in the transcript the chunk it conditions is: at the
paper's scale a 3B LM learns that from the flow-matching loss alone; at `tiny` (a 4-layer, 128-wide LM, a few
CPU-hours) it does not. Measured on the first tiny teacher (stage 2, 5,750 steps): the audio flow loss at
t = 0.9 was 0.951 with the clip's own transcript and 1.001 with another clip's, and the judge heard none of
its speech (WER 0.97): c_a carried almost nothing of the text.

The aid gives the orchestrator a direct signal: at every E_cond position (the noisy-audio tail that becomes
c_a), the LM's final state is read through its own tied token embeddings as logits over the vocabulary, and a
cross-entropy asks for the token being spoken in that frame (from the word timings; a word's tokens share
its span, at its phonemes' own times where the clip gives them (`token_spans`); frames of silence are
ignored). Nothing is added to the model: the readout is the LM's
embedding matrix, and inference never computes it. `align_weight` (pretraining config) scales it; 0 turns
it off (the `paper` default).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100  # frames of silence (no token is being spoken)


def token_spans(text: str, words: list[dict], tokenizer, phonemes: list[dict] | None = None
                ) -> tuple[list[int], np.ndarray]:
    """Token ids of `text` and each token's (start, end) in seconds (N, 2); NaN for tokens of no word
    (spaces, punctuation). A word's n tokens share its span in order: at the times of the clip's own phonemes
    in that word (`phonemes`: SynthTalk's `{"ipa", "start", "end"}`, each in the word its midpoint falls in)
    where it gives them, else evenly. With m phonemes the word's boundaries are its start, the starts of
    phonemes 1..m-1 and its end; token r starts at boundary r * m / n (interpolated), so n = m is exact."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    owner = []  # per token: the index of the first word its characters overlap, or -1
    for a, b in offsets:
        hit = [i for i, w in enumerate(words) if w["char_start"] < b and a < w["char_end"]]
        owner.append(hit[0] if hit else -1)
    mids = np.array([(p["start"] + p["end"]) / 2 for p in phonemes or []])
    spans = np.full((len(ids), 2), np.nan)
    for i, w in enumerate(words):
        mine = [j for j, o in enumerate(owner) if o == i]
        inside = [p for p, c in zip(phonemes or [], mids) if w["start"] - 1e-6 <= c < w["end"] + 1e-6]
        inner = [min(max(p["start"], w["start"]), w["end"]) for p in inside[1:]]
        bounds = np.array([w["start"], *inner, w["end"]])  # (m + 1,) the word's phoneme boundaries
        at = np.interp(np.arange(len(mine) + 1) * (len(bounds) - 1) / max(len(mine), 1),
                       np.arange(len(bounds)), bounds)  # (n + 1,) token r spans [at[r], at[r + 1])
        for r, j in enumerate(mine):
            spans[j] = (at[r], at[r + 1])
    return ids, spans


def frame_tokens(ids: list[int], spans: np.ndarray, n_frames: int, rate: float) -> torch.Tensor:
    """(n_frames,) int64: the id of the token spoken at each frame's centre (frame f covers [f, f+1) / rate),
    IGNORE where no token is."""
    out = np.full(n_frames, IGNORE, dtype=np.int64)
    centres = (np.arange(n_frames) + 0.5) / rate
    for tok, (a, b) in zip(ids, spans):
        if np.isnan(a):
            continue
        out[(centres >= a) & (centres < b)] = tok
    return torch.from_numpy(out)


def frame_token_loss(hidden: torch.Tensor, embedding: torch.Tensor, targets: torch.Tensor):
    """hidden (B, T, h) LM final states at the E_cond positions; embedding (V, h) the LM's token embeddings;
    targets (B, T) token ids or IGNORE. -> (cross-entropy, accuracy): each sample's mean over its frames that
    speak (0 for a silent chunk), then the mean over samples, so a batch gives its samples' mean one by one."""
    logits = hidden.float() @ embedding.float().t()  # (B, T, V)
    keep = targets != IGNORE  # (B, T)
    ce = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none") * keep  # (B, T)
    n = keep.sum(1).clamp(min=1)  # (B,)
    hits = (logits.argmax(-1) == targets) & keep
    return (ce.sum(1) / n).mean(), (hits.sum(1) / n).mean().detach()
