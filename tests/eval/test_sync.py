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


@pytest.fixture(scope="module")
def rendered():
    """Two SynthTalk characters speaking (espeak-ng + the renderer), with their true soundtracks."""
    from streamchar.data.identity import IDENTITIES
    from streamchar.data.render import render_clip
    from streamchar.data.speech import VOICES, espeak_available, synthesize

    if not espeak_available():
        pytest.skip("libespeak-ng is not installed (apt-get install espeak-ng)")
    text = ("Good morning, Anna. The old bridge was quiet today. "
            "Peter found a yellow kite near the river, and we carried it home.")
    clips = []
    for identity, voice in ((3, 0), (17, 5)):
        s = synthesize(text, VOICES[voice])
        frames = render_clip(IDENTITIES[identity], [(p.ipa, p.start, p.end) for p in s.phonemes],
                             [(w.start, w.end) for w in s.words], len(s.audio) / s.sample_rate, seed=identity)
        clips.append((frames, s.audio, s.sample_rate))
    return clips


def test_sync_proxy_recovers_a_planted_offset(rendered):
    from streamchar.eval.sync import sync_proxy

    for frames, audio, sr in rendered:
        true = sync_proxy(frames, audio, sr, fps=24)
        assert abs(true.offset) <= 1 and true.sync_c > 0.15, true  # visemes may anticipate the sound a frame
        for d in (-5, 4, 9):
            shift = round(d * sr / 24)
            moved = np.roll(audio, shift)  # the soundtrack d frames late (d < 0: early)
            moved[:shift] = 0 if shift > 0 else moved[:shift]
            if shift < 0:
                moved[shift:] = 0
            found = sync_proxy(frames, moved, sr, fps=24).offset
            assert abs(found + d) <= 1, (d, found)  # to within a frame (42 ms): the proxy's resolution


def test_sync_proxy_errors():
    from streamchar.eval.sync import sync_proxy

    with pytest.raises(StreamCharError, match="square"):
        sync_proxy(np.zeros((10, 64, 48, 3), np.uint8), np.zeros(1000), 16000, 24)


def test_sync_proxy_holds_for_every_identity():
    """The mouth contrast follows the speech for all 24 characters (a darkness threshold did not)."""
    from streamchar.data.identity import IDENTITIES
    from streamchar.data.render import render_clip
    from streamchar.data.speech import VOICES, espeak_available, synthesize
    from streamchar.eval.sync import sync_proxy

    if not espeak_available():
        pytest.skip("libespeak-ng is not installed (apt-get install espeak-ng)")
    text = "Good morning, Anna. The old bridge was quiet today. Peter found a yellow kite near the river."
    for i, identity in enumerate(IDENTITIES):
        s = synthesize(text, VOICES[i % len(VOICES)])
        frames = render_clip(identity, [(p.ipa, p.start, p.end) for p in s.phonemes],
                             [(w.start, w.end) for w in s.words], len(s.audio) / s.sample_rate, seed=i)
        r = sync_proxy(frames, s.audio, s.sample_rate, fps=24)
        assert abs(r.offset) <= 1 and r.sync_c > 0.25, (i, r.offset, r.sync_c)
