"""SynthTalk visemes: phoneme -> mouth shape mapping and the smoothed per-frame mouth track."""

import numpy as np

from streamchar.data.visemes import VISEME_SHAPES, MouthTrack, viseme_of


def test_unknown_and_decorated_phonemes():
    assert viseme_of("ˈaɪ") == "open" and viseme_of("ˌuː") == "round_u" and viseme_of("p") == "closed"
    assert viseme_of("t͡ʃ") == "sh" and viseme_of("n̩") == "small" and viseme_of("ɑːɹ") == "open"
    assert viseme_of("☃") == "neutral" and viseme_of("ˈ") == "rest" and viseme_of("_") == "rest"


def test_mouth_opening_closed_m_vs_open_vowel():
    track = MouthTrack([("m", 0.0, 1.0), ("ˈa", 1.0, 2.0)], 2.0)
    assert track.mouth_opening(36) > 0.8 and track.mouth_opening(12) < 0.05


def test_mouth_track_coarticulation():
    track = MouthTrack([("a", 0.5, 1.0), ("u", 1.0, 1.5)], 2.0)
    o = track.opening
    assert o.shape == (48,)
    assert abs(o[5] - VISEME_SHAPES["rest"][0]) < 1e-3  # silence = rest
    assert track.visemes[18] == "open" and track.visemes[30] == "round_u"
    assert np.abs(track.params[18] - VISEME_SHAPES["open"]).max() < 0.02
    # a ~40 ms blend: the frame on the boundary is in between, not a jump
    assert VISEME_SHAPES["round_u"][0] + 0.1 < o[24] < VISEME_SHAPES["open"][0] - 0.1
    # a short phoneme (50 ms) between frame times still shows up
    blip = MouthTrack([("a", 0.45, 0.5)], 1.0).opening
    assert blip.max() > 0.3
