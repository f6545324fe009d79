"""Audio-visual sync scores as SyncNet computes them (Chung & Zisserman, "Out of time", 2016).

SyncNet embeds every 5-frame window of mouth crops (25 fps) and the matching 0.2 s of 16 kHz MFCCs; one
embedding per video frame for each stream. For each video frame i and each lag k in [-L, L] it measures
the distance between video embedding i and audio embedding i + k (audio zero-padded at the ends), averages
over frames, and reads off

    Sync-D = min_k mean_dist[k]                       (lower is better)
    Sync-C = median_k mean_dist[k] - Sync-D           (higher is better: a clear minimum)
    offset = -argmin_k                                 (SyncNet's sign: audio delayed by d frames -> -d)

`sync_scores` is that maths on any pair of per-frame sequences; the embedding networks live elsewhere.
With `distance="euclidean"` it runs on SyncNet's embeddings; with `distance="abs"` on 1-D signals:

`sync_proxy` is the weights-free stand-in for SynthTalk characters (reported as `sync_proxy`, never as
Sync-C/D): the mouth opening (the luminance contrast, i.e. the standard deviation of luminance, in the renderer's
mouth box: an open mouth shows a dark interior between lips and teeth; a fixed darkness threshold failed on
dark-skinned or bearded characters, the contrast works for all 24 identities) against
the audio envelope (RMS per video frame in dB, floored 40 dB below its peak), both standardised, searched
over the same lags at the video's own frame rate. On espeak-ng speech rendered by SynthTalk the true
soundtrack scores offset 0 or 1 (the mouth may anticipate the sound by a frame); a soundtrack shifted by
d frames moves it by -d.
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


def mouth_opening(frames) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a SynthTalk-layout character -> (T,) luminance std in the mouth box."""
    from streamchar.data.render import mouth_box

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
        raise StreamCharError(f"sync_proxy needs square (T, H, W, 3) frames, got {frames.shape}")
    x0, y0, x1, y1 = mouth_box(None, frames.shape[1])  # the layout is the same for every identity
    lum = frames[:, y0:y1, x0:x1].astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # (T, h, w)
    return lum.std(axis=(1, 2))


def audio_envelope(audio, sample_rate: int, fps: float, frames: int, floor_db: float = 40.0) -> np.ndarray:
    """(S,) or (channels, S) audio -> (frames,) RMS of each video frame's samples in dB, floored."""
    x = np.asarray(audio, np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x
    hop = sample_rate / fps
    bounds = np.round(np.arange(frames + 1) * hop).astype(int)
    rms = np.array([np.sqrt(np.mean(x[a:b] ** 2)) if b > a and a < len(x) else 0.0
                    for a, b in zip(bounds[:-1], bounds[1:])])
    db = 20 * np.log10(rms + 1e-12)
    return np.maximum(db, db.max() - floor_db)


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def sync_proxy(frames, audio, sample_rate: int, fps: float, max_lag: int = MAX_LAG) -> SyncResult:
    """The SynthTalk sync proxy of one clip (see the module docstring)."""
    mouth = mouth_opening(frames)
    envelope = audio_envelope(audio, sample_rate, fps, len(mouth))
    return sync_scores(_standardise(mouth), _standardise(envelope), max_lag, distance="abs")

