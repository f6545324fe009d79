"""SynthTalk motion: blink timing and arm gestures only while speaking."""

import numpy as np

from streamchar.data.motion import Motion

WORDS = [(0.2, 0.6), (0.7, 1.3), (1.4, 1.9), (2.3, 2.8), (2.9, 3.6), (3.7, 4.4), (4.6, 5.2), (5.3, 5.9)]


def test_blinks_recur():
    closed = np.where(Motion(3, [], 6.0).eyes == 0)[0]
    assert 2 <= len(closed) and closed[0] >= 3
    # blinks recur every 2-6 s
    starts = closed[np.r_[True, np.diff(closed) > 1]] / 24
    assert len(starts) >= 1 and np.all(np.diff(starts) > 1.9) and np.all(np.diff(starts) < 6.5)


def test_gestures_only_while_speaking():
    m = Motion(1, WORDS, 6.0)
    assert m.arm.max() > 0.5  # at least one gesture while speaking
    assert Motion(1, [], 6.0).arm.max() == 0.0
