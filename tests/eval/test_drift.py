import numpy as np
import pytest

from streamchar.errors import StreamCharError
from streamchar.eval.drift import quality_drift

FPS = 24


def test_constant_quality_has_no_drift():
    d = quality_drift(np.full(300 * FPS, 0.7), FPS)
    assert d.drift == 0.0 and len(d.segment_end_s) == 10 and d.segment_end_s[-1] == 300.0


def test_injected_degradation_after_30_s_is_the_drift():
    rng = np.random.default_rng(0)
    base = 0.6 + 0.001 * rng.standard_normal(150 * FPS)  # a little noise
    clean = quality_drift(base, FPS).drift
    for amount in (0.05, 0.2):
        scores = base.copy()
        scores[40 * FPS:] -= amount  # degraded from 40 s on: every segment from the second one on sees it
        d = quality_drift(scores, FPS)
        assert d.drift - clean == pytest.approx(amount, abs=0.002)
        assert d.differences[0] < 0.002 and all(x > amount - 0.002 for x in d.differences[1:])


def test_only_the_segment_last_window_counts():
    scores = np.full(60 * FPS, 1.0)
    scores[10 * FPS:20 * FPS] = 0.0  # a dip in the middle of segment 1, outside its last 5 s
    assert quality_drift(scores, FPS).drift == 0.0
    scores[27 * FPS:30 * FPS] = 0.4  # 3 of the last 5 s of segment 1
    assert quality_drift(scores, FPS).drift == pytest.approx(0.6 * 3 / 5)
    assert len(quality_drift(np.concatenate([scores, np.zeros(10 * FPS)]), FPS).segment_end_s) == 2  # partial: out


def test_errors():
    with pytest.raises(StreamCharError, match="at least one whole 30 s segment"):
        quality_drift(np.ones(29 * FPS), FPS)
    with pytest.raises(StreamCharError, match="shape"):
        quality_drift(np.ones((2, 40 * FPS)), FPS)
    with pytest.raises(StreamCharError, match="NaN"):
        quality_drift(np.full(40 * FPS, np.nan), FPS)
    with pytest.raises(StreamCharError, match="window"):
        quality_drift(np.ones(40 * FPS), FPS, window=40)
