"""SynthTalk motion: blinks, head sway, breathing and arm gestures for one clip (`Motion`)."""

from __future__ import annotations

import math

import numpy as np

from streamchar.data.visemes import _check_clip, _check_intervals


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _causal(x, kernel):
    """Causal convolution, same length as `x` (a decaying response after each impulse)."""
    return np.convolve(x, kernel)[: len(x)] if len(x) else np.zeros(0)


def _sines(rng, t, freqs, n=3):
    """Sum of `n` sinusoids with random frequencies in `freqs` (Hz) and phases, peak about 1."""
    out = np.zeros_like(t)
    for _ in range(n):
        f = rng.uniform(*freqs)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    return out / n * 1.4


class Motion:
    """Deterministic per-clip motion from a seed and the speech intervals (`words`).

    Per-frame arrays (length T): `eyes` openness 0..1 (blinks every 2-6 s, ~120 ms), `head_dx`,
    `head_dy` (u units), `roll` (degrees), `yaw` (-1..1, shifts the inner face), `breath` (-1..1),
    `brow` raise 0..1, `gaze` (T, 2) in u units, `arm` (T, 2) left/right raise 0..1, `hand` (T, 2, 2)
    hand offsets in u units, `speaking` 0/1 and `activity` (smoothed speaking) 0..1.
    """

    def __init__(self, seed: int, words, duration_s: float, fps: float = 24):
        self.fps = fps
        T = self.n_frames = _check_clip(duration_s, fps)
        words = sorted(_check_intervals(words, "words (start_s, end_s)", 2))
        t = np.arange(T) / fps
        rngs = [np.random.default_rng([int(seed) & 0xFFFFFFFF, k]) for k in range(8)]

        # speech activity
        speaking = np.zeros(T)
        for s, e in words:
            speaking[(t >= s) & (t < e)] = 1.0
        act = np.zeros(T)
        a_up, a_down = 1 - math.exp(-1 / (fps * 0.15)), 1 - math.exp(-1 / (fps * 0.5))
        level = 0.0
        for i in range(T):
            level += (a_up if speaking[i] > level else a_down) * (speaking[i] - level)
            act[i] = level
        self.speaking, self.activity = speaking, act

        # blinks
        r = rngs[0]
        eyes = np.ones(T)
        tb = r.uniform(0.3, 2.0)
        while tb < duration_s:
            dur = r.uniform(0.10, 0.14)
            eyes[(t >= tb - 1 / fps) & (t < tb)] = 0.5
            eyes[(t >= tb + dur) & (t < tb + dur + 1 / fps)] = 0.5
            eyes[(t >= tb) & (t < tb + dur)] = 0.0
            tb += dur + r.uniform(2.0, 6.0)
        self.eyes = eyes

        # head sway: slow sinusoids in silence, bigger + faster ones while speaking, nods at word onsets
        r = rngs[1]
        amp = 0.3 + 0.7 * act
        onsets = np.zeros(T)
        for s, _ in words:
            i = int(round(s * fps))
            if 0 <= i < T:
                onsets[i] += 1.0
        kernel = np.exp(-np.arange(int(fps * 0.6)) / (fps * 0.15))
        kernel *= np.minimum(1.0, np.arange(len(kernel)) / 2.0)
        nod = _causal(onsets, kernel)
        nod = np.minimum(nod, 1.2)
        self.head_dx = 0.014 * (_sines(r, t, (0.05, 0.3)) * amp + 0.5 * act * _sines(r, t, (0.6, 1.4)))
        self.head_dy = 0.006 * _sines(r, t, (0.05, 0.3)) * amp + 0.006 * nod
        self.roll = 3.5 * (_sines(r, t, (0.05, 0.25)) * amp + 0.5 * act * _sines(r, t, (0.5, 1.2)))
        self.yaw = np.clip(0.6 * _sines(r, t, (0.04, 0.2)) * amp + 0.3 * act * _sines(r, t, (0.4, 1.0)), -1, 1)
        self.breath = np.sin(2 * np.pi * rngs[2].uniform(0.2, 0.3) * t + rngs[2].uniform(0, 2 * np.pi))

        # eyebrow raises at some word onsets
        r = rngs[3]
        brow_on = np.array([o * (r.random() < 0.35) for o in onsets], np.float64)
        self.brow = np.minimum(_causal(brow_on, np.exp(-np.arange(int(fps)) / (fps * 0.25))), 1.0)

        # gaze: piecewise constant, changes every 1-3 s
        r = rngs[4]
        gaze = np.zeros((T, 2))
        tg, cur = 0.0, np.zeros(2)
        while tg < duration_s:
            gaze[(t >= tg)] = cur
            tg += r.uniform(1.0, 3.0)
            cur = r.uniform(-1, 1, 2) * np.array([0.006, 0.003])
        self.gaze = gaze

        # arm gestures: triggered at word onsets while speaking
        r = rngs[5]
        arm = np.zeros((T, 2))
        groups = []  # merge words separated by < 0.35 s into phrases
        for s, e in words:
            if groups and s - groups[-1][1] < 0.35:
                groups[-1][1] = max(groups[-1][1], e)
            else:
                groups.append([s, e])
        busy_until = -1.0
        for s, e in words:
            go = r.random() < 0.6
            side = int(r.integers(0, 3))  # 0 left, 1 right, 2 both
            peak = r.uniform(0.6, 1.0)
            length = r.uniform(0.8, 2.2)
            if not go or s < busy_until:
                continue
            phrase_end = next(g[1] for g in groups if g[0] <= s <= g[1])
            g0, g1 = s - 0.12, max(s + 0.4, min(phrase_end, s + length))
            env = peak * _smoothstep((t - g0) / 0.3) * (1 - _smoothstep((t - g1) / 0.4))
            for k in ((0,) if side == 0 else (1,) if side == 1 else (0, 1)):
                arm[:, k] = np.maximum(arm[:, k], env)
            busy_until = g1 + 0.5
        self.arm = arm
        beat = _causal(onsets, np.exp(-np.arange(int(fps * 0.5)) / (fps * 0.12)))
        hand = np.zeros((T, 2, 2))
        for k in range(2):
            hand[:, k, 0] = 0.02 * _sines(r, t, (0.4, 1.2), 2)
            hand[:, k, 1] = 0.015 * _sines(r, t, (0.5, 1.5), 2) - 0.03 * np.minimum(beat, 1.0)
        self.hand = hand * arm[:, :, None]
