import numpy as np
import pytest

from streamchar.errors import StreamCharError
from streamchar.eval.sync import lag_distances, sync_scores


def delayed(x, d):
    """x delayed by d frames (d < 0: advanced), zeros where nothing is known."""
    out = np.zeros_like(x)
    if d >= 0:
        out[d:] = x[:len(x) - d]
    else:
        out[:d] = x[-d:]
    return out


@pytest.mark.parametrize("d", [-7, -2, 0, 3, 11])
def test_planted_offset_is_recovered_from_embeddings(d):
    rng = np.random.default_rng(d + 100)
    video = rng.normal(size=(200, 32))
    audio = delayed(video, d) + 0.3 * rng.normal(size=(200, 32))  # the soundtrack d frames late, noisy
    r = sync_scores(video, audio)
    assert r.offset == -d  # SyncNet's sign
    assert len(r.mean_dist) == 31 and r.sync_d == min(r.mean_dist)
    assert r.sync_c == pytest.approx(np.median(r.mean_dist) - r.sync_d)
    assert r.sync_c > 2.0  # a clear minimum


def test_confidence_is_low_without_sync():
    rng = np.random.default_rng(0)
    synced = sync_scores(v := rng.normal(size=(200, 16)), v + 0.3 * rng.normal(size=(200, 16)))
    unrelated = sync_scores(rng.normal(size=(200, 16)), rng.normal(size=(200, 16)))
    assert unrelated.sync_c < 0.2 * synced.sync_c and unrelated.sync_d > synced.sync_d


def test_one_dimensional_signals():
    t = np.arange(300)
    mouth = np.clip(np.sin(t / 3.0) + np.sin(t / 7.3), 0, None)
    r = sync_scores(mouth, delayed(mouth, 4), distance="abs")
    assert r.offset == -4


def test_lag_distances_pad_with_zeros():
    v = np.array([[1.0], [2.0], [3.0]])
    dist = lag_distances(v, v, max_lag=1)
    # lag -1: audio[i-1] (0 at i=0); lag 0: audio[i]; lag +1: audio[i+1] (0 at i=2)
    np.testing.assert_allclose(dist, [[1, 0, 1], [1, 0, 1], [1, 0, 3]])


def test_errors():
    with pytest.raises(StreamCharError, match="same D"):
        sync_scores(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(StreamCharError, match="empty"):
        sync_scores(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(StreamCharError, match="unknown distance"):
        sync_scores(np.zeros((5, 3)), np.zeros((5, 3)), distance="cosine")
