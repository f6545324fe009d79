"""SynthTalk renderer: determinism, shapes, distinct identities, lip shapes, blinks, motion, speed (in pixels)."""

import time

import numpy as np
import pytest

from streamchar.data.identity import IDENTITIES
from streamchar.data.motion import Motion
from streamchar.data.render import eye_box, mouth_box, render_clip
from streamchar.errors import StreamCharError

WORDS = [(0.2, 0.6), (0.7, 1.3), (1.4, 1.9), (2.3, 2.8), (2.9, 3.6), (3.7, 4.4), (4.6, 5.2), (5.3, 5.9)]


def _phonemes(words):
    out = []
    for s, e in words:
        k = np.linspace(s, e, 5)
        out += [(p, float(a), float(b)) for p, a, b in zip(["t", "ˈa", "m", "iː", "s"], k[:-1], k[1:])]
    return out


def _lum(x):
    return x[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_deterministic_and_seed_dependent():
    args = (IDENTITIES[3], _phonemes(WORDS[:3]), WORDS[:3], 2.0)
    a, b = render_clip(*args, seed=5), render_clip(*args, seed=5)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, render_clip(*args, seed=6))


@pytest.mark.parametrize("size", [64, 128, 256])
def test_shape_dtype(size):
    clip = render_clip(IDENTITIES[0], [("a", 0.0, 0.1)], [(0.0, 0.1)], 3 / 24, size=size)
    assert clip.shape == (3, size, size, 3) and clip.dtype == np.uint8
    assert render_clip(IDENTITIES[0], [], [], 1.3).shape[0] == round(1.3 * 24)
    assert render_clip(IDENTITIES[0], [], [], 0.0).shape == (0, 64, 64, 3)


def test_identities_render_distinct():
    frames = np.stack([render_clip(idn, [], [], 1 / 24)[0] for idn in IDENTITIES]).astype(np.float32)
    means = frames.mean((1, 2))
    n = len(IDENTITIES)
    for i in range(n):
        for j in range(i + 1, n):
            assert np.abs(means[i] - means[j]).max() > 2.0, (i, j)
            assert np.abs(frames[i] - frames[j]).mean() > 10.0, (i, j)


def test_open_vowel_shows_more_dark_mouth_than_closed_m():
    phon = [("m", 0.0, 1.0), ("ˈa", 1.0, 2.0)]
    for i in (0, 1, 2, 5, 9, 16):
        idn = IDENTITIES[i]
        clip = render_clip(idn, phon, [(0.0, 2.0)], 2.0, seed=i)
        x0, y0, x1, y1 = mouth_box(idn, 64)
        dark = (_lum(clip[:, y0:y1, x0:x1]) < 50).sum((1, 2))
        assert dark[6:18].max() <= 1 and dark[30:42].min() >= 4, (i, dark)


def test_blink_closes_eyes():
    idn = IDENTITIES[2]
    closed = np.where(Motion(3, [], 6.0).eyes == 0)[0]
    clip = render_clip(idn, [], [], 6.0, seed=3).astype(np.float32)
    for side in (-1, 1):
        x0, y0, x1, y1 = eye_box(idn, 64, side)
        eye = clip[:, y0:y1, x0:x1]
        j = closed[0]
        blink_change = np.abs(eye[j] - eye[j - 2]).mean()
        open_change = np.abs(eye[j - 2] - eye[j - 4]).mean()
        assert blink_change > 3 * open_change + 2, (blink_change, open_change)


def test_motion_speaking_more_than_idle():
    idn = IDENTITIES[7]
    talk = render_clip(idn, _phonemes(WORDS), WORDS, 6.0, seed=1).astype(np.float32)
    idle = render_clip(idn, [], [], 6.0, seed=1).astype(np.float32)
    d_talk = np.abs(np.diff(talk, axis=0)).mean()
    d_idle = np.abs(np.diff(idle, axis=0)).mean()
    assert d_idle > 0.01  # breathing / sway in silence
    assert d_talk > 2 * d_idle


def test_unknown_and_decorated_phonemes_render():
    phon = [("☃", 0.0, 0.2), ("ˈ", 0.2, 0.3), ("", 0.3, 0.4), ("qqq", 0.4, 0.6), ("ɑːɹ", 0.6, 0.8)]
    clip = render_clip(IDENTITIES[1], phon, [(0.0, 0.8)], 1.0)
    assert clip.shape == (24, 64, 64, 3)


def test_bad_inputs_raise():
    with pytest.raises(StreamCharError):
        render_clip(IDENTITIES[0], [("a", 1.0, 0.5)], [], 1.0)
    with pytest.raises(StreamCharError):
        render_clip(IDENTITIES[0], [("a", 0.0)], [], 1.0)
    with pytest.raises(StreamCharError):
        render_clip(IDENTITIES[0], [], [(0.0, "x")], 1.0)
    with pytest.raises(StreamCharError):
        render_clip(IDENTITIES[0], [], [], -1.0)


def test_speed_64px():
    idn = IDENTITIES[4]
    render_clip(idn, [], [], 0.1)  # warm caches
    t0 = time.perf_counter()
    clip = render_clip(idn, _phonemes(WORDS), WORDS, 10.0)
    dt = time.perf_counter() - t0
    assert clip.shape[0] == 240
    print(f"240 frames at 64x64: {dt:.3f} s ({240 / dt:.0f} fps)")
    assert dt < 1.5
