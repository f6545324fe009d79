"""Audio-visual sync scores as SyncNet computes them (Chung & Zisserman, "Out of time", 2016).

SyncNet embeds every 5-frame window of mouth crops (25 fps) and the matching 0.2 s of 16 kHz MFCCs; one
embedding per video frame for each stream. For each video frame i and each lag k in [-L, L] it measures
the distance between video embedding i and audio embedding i + k (audio zero-padded at the ends), averages
over frames, and reads off

    Sync-D = min_k mean_dist[k]                       (lower is better)
    Sync-C = median_k mean_dist[k] - Sync-D           (higher is better: a clear minimum)
    offset = -argmin_k                                 (SyncNet's sign: audio delayed by d frames -> -d)

`sync_scores` is that maths on any pair of per-frame sequences; the embedding networks live elsewhere.
With `distance="abs"` the same search runs on 1-D signals (the SynthTalk proxy: mouth opening vs audio
envelope, normalised), with `distance="euclidean"` on SyncNet's embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamchar.errors import StreamCharError

MAX_LAG = 15  # frames at 25 fps: +-0.6 s, SyncNet's default vshift


@dataclass
class SyncResult:
    sync_c: float  # confidence: median - min of the mean distance over lags
    sync_d: float  # the minimum mean distance
    offset: int  # frames, SyncNet's sign (-lag of the best match)
    mean_dist: list[float]  # mean distance at each lag -L..L


def lag_distances(video, audio, max_lag: int = MAX_LAG, distance: str = "euclidean") -> np.ndarray:
    """(T, D) video and (T, D) audio per-frame features (or (T,) signals) -> (T, 2L+1) distances:
    [i, j] = dist(video[i], audio[i + j - L]), audio zero beyond its ends (as SyncNet pads)."""
    v, a = np.asarray(video, np.float64), np.asarray(audio, np.float64)
    if v.ndim == 1:
        v, a = v[:, None], a[:, None] if a.ndim == 1 else a
    if v.ndim != 2 or a.ndim != 2 or v.shape[1] != a.shape[1]:
        raise StreamCharError(f"sync: video and audio features must be (T, D) with the same D, got {v.shape} "
                              f"and {a.shape}")
    if len(v) == 0 or len(a) == 0:
        raise StreamCharError("sync: empty feature sequence")
    if max_lag < 0:
        raise StreamCharError(f"sync: max_lag must be >= 0, got {max_lag}")
    T = min(len(v), len(a))
    v, a = v[:T], a[:T]
    padded = np.concatenate([np.zeros((max_lag, a.shape[1])), a, np.zeros((max_lag, a.shape[1]))])
    windows = np.stack([padded[j:j + T] for j in range(2 * max_lag + 1)], axis=1)  # (T, 2L+1, D)
    diff = v[:, None, :] - windows
    if distance == "euclidean":
        return np.sqrt((diff**2).sum(-1))
    if distance == "abs":
        return np.abs(diff).sum(-1)
    raise StreamCharError(f"sync: unknown distance {distance!r}; choose 'euclidean' or 'abs'")


def sync_scores(video, audio, max_lag: int = MAX_LAG, distance: str = "euclidean") -> SyncResult:
    """Sync-C, Sync-D and the offset of one clip from per-frame video / audio features."""
    mean_dist = lag_distances(video, audio, max_lag, distance).mean(axis=0)  # (2L+1,)
    best = int(np.argmin(mean_dist))
    sync_d = float(mean_dist[best])
    return SyncResult(sync_c=float(np.median(mean_dist) - sync_d), sync_d=sync_d, offset=max_lag - best,
                      mean_dist=mean_dist.tolist())
