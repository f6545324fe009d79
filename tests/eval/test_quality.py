import numpy as np
import pytest
import torch
from scipy import ndimage

from streamchar.errors import StreamCharError
from streamchar.eval.drift import quality_drift
from streamchar.eval.quality import (
    MUSIQ_ENV,
    MusiqScorer,
    SharpnessProxy,
    detail_rms,
    imaging_quality,
    noise_sigma,
    per_frame_quality,
    sharpness_proxy,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def textured(n=96, seed=0):
    """A multi-scale texture with a few flat rectangles, (n, n, 3) uint8, mostly away from 0 and 255."""
    rng = np.random.default_rng(seed)
    img = sum(a * ndimage.gaussian_filter(rng.standard_normal((n, n)), s) / 0.1 for s, a in
              [(1, 3.0), (2, 4.0), (4, 5.0)])
    img = 128 + 40 * img / img.std()
    for _ in range(8):
        y, x = rng.integers(0, n - 8, 2)
        img[y:y + n // 5, x:x + n // 4] += rng.uniform(-40, 40)
    return np.stack([img, 0.9 * img + 10, 0.8 * img + 20], -1).clip(0, 255).round().astype(np.uint8)


def synthtalk_frame(size=128):
    from streamchar.data.identity import make_identities
    from streamchar.data.render import render_clip

    return render_clip(make_identities(2)[1], [], [], 0.25, size=size, fps=8)[0]


def blur(img, sigma):
    return ndimage.gaussian_filter(img.astype(float), (sigma, sigma, 0)).round().clip(0, 255).astype(np.uint8)


def add_noise(img, sigma, seed=1):
    z = np.random.default_rng(seed).standard_normal(img.shape[:2])[..., None]  # the same pattern at every sigma
    return (img + sigma * z).round().clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------- the proxy


@pytest.mark.parametrize("kind", ["texture", "synthtalk"])
def test_proxy_falls_with_blur_and_with_noise(kind):
    a = textured() if kind == "texture" else synthtalk_frame()
    blurred = [sharpness_proxy(a)] + [sharpness_proxy(blur(a, s)) for s in (0.5, 1, 2, 4)]
    assert all(x > y for x, y in zip(blurred, blurred[1:])), blurred
    noisy = [sharpness_proxy(a)] + [sharpness_proxy(add_noise(a, s)) for s in (2, 5, 10, 20)]
    assert all(x > y for x, y in zip(noisy, noisy[1:])), noisy
    assert 0 < min(blurred + noisy) and max(blurred + noisy) < 1
    assert blurred[-1] < 0.25 * blurred[0] and noisy[-1] < 0.25 * noisy[0]


def test_proxy_known_answers():
    flat = np.full((32, 32, 3), 90, np.uint8)
    assert noise_sigma(flat) == 0.0 and detail_rms(flat) == 0.0 and sharpness_proxy(flat) == 0.0
    ramp = np.repeat(np.repeat(np.arange(40, 104, dtype=np.uint8)[None, :, None], 64, 0), 3, 2)
    assert noise_sigma(ramp) == pytest.approx(0.0, abs=1e-12)  # Immerkaer's mask ignores linear ramps
    # white noise of sigma 10 grey levels on flat grey: Immerkaer recovers it, the corrected detail stays small
    z = np.random.default_rng(0).standard_normal((160, 160))[..., None]
    noisy = np.repeat((128 + 10 * z).round().astype(np.uint8), 3, 2)
    assert noise_sigma(noisy) * 255 == pytest.approx(10.0, rel=0.05)
    lap = ndimage.correlate(noisy[..., 0] / 255.0, [[0, 1, 0], [1, -4, 1], [0, 1, 0]])[1:-1, 1:-1]
    assert detail_rms(noisy) < 0.25 * np.sqrt((lap**2).mean())
    p = SharpnessProxy()
    assert p.metric == "imaging_quality_proxy" and p.proxy is True
    assert p.score_frame(noisy) == sharpness_proxy(noisy)


def test_proxy_bad_frames():
    with pytest.raises(StreamCharError, match="uint8"):
        sharpness_proxy(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(StreamCharError, match=r"\(H, W, 3\)"):
        sharpness_proxy(np.zeros((8, 8), np.uint8))
    with pytest.raises(StreamCharError, match="3x3"):
        sharpness_proxy(np.zeros((2, 8, 3), np.uint8))


def test_per_frame_quality_feeds_quality_drift():
    a = textured(48)
    frames = np.stack([a] * 4 + [blur(a, 2)] * 4)  # fps 4: a 2 s stream, the second second blurred
    q = per_frame_quality(frames, SharpnessProxy())
    assert q.shape == (8,) and q.dtype == np.float64
    assert q[0] == q[3] and q[4] == q[7] and q[0] > q[4]
    d = quality_drift(q, fps=4, segment=2, window=1)
    assert d.drift == pytest.approx(q[0] - q[4])
    np.testing.assert_array_equal(per_frame_quality(iter(list(frames)), SharpnessProxy()), q)  # a generator
    with pytest.raises(StreamCharError, match="no frames"):
        per_frame_quality(frames[:0], SharpnessProxy())
    with pytest.raises(StreamCharError, match=r"\(T, H, W, 3\)"):
        per_frame_quality(frames[0], SharpnessProxy())
    with pytest.raises(StreamCharError, match="score_frame"):
        per_frame_quality(frames, sharpness_proxy)


# ---------------------------------------------------------------- MUSIQ (stand-in networks)


class MeanTimes100(torch.nn.Module):
    """(N, 3, H, W) in [0, 1] -> (N,) the mean on a 0-100 scale."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 100.0 * x.mean(dim=(1, 2, 3))


class SizeProbe(torch.nn.Module):
    """(N, 3, H, W) -> (N, 1): 1000 H + W, and 1e6 when a value leaves [0, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bad = ((x.min() < 0) | (x.max() > 1)).float() * 1e6
        return torch.full((x.shape[0], 1), float(1000 * x.shape[2] + x.shape[3])) + bad


def save(module, path):
    torch.jit.script(module).save(str(path))
    return path


def test_musiq_scores_are_divided_by_100(tmp_path):
    m = MusiqScorer(save(MeanTimes100(), tmp_path / "m.pt"))
    assert m.metric == "imaging_quality" and m.proxy is False
    assert m.score_frame(np.full((20, 30, 3), 51, np.uint8)) == pytest.approx(0.2)
    frames = np.stack([np.full((20, 30, 3), v, np.uint8) for v in (0, 51, 255)])
    np.testing.assert_allclose(per_frame_quality(frames, m), [0.0, 0.2, 1.0], atol=1e-6)
    r = imaging_quality(frames, m)  # VBench: the video's mean frame score (/100)
    assert r["metric"] == "imaging_quality" and r["proxy"] is False and r["num_frames"] == 3
    assert r["score"] == pytest.approx(0.4, abs=1e-6)
    p = imaging_quality(frames, SharpnessProxy())
    assert p["metric"] == "imaging_quality_proxy" and p["proxy"] is True and p["score"] == 0.0  # flat frames


def test_musiq_vbench_longer_side_resize(tmp_path):
    m = MusiqScorer(save(SizeProbe(), tmp_path / "probe.pt"))
    big = np.zeros((600, 1000, 3), np.uint8)
    big[::2] = 255
    x = m.preprocess(big)  # s = 512 / 1000: (int(0.512 * 600), int(0.512 * 1000)) = (307, 512)
    assert tuple(x.shape) == (1, 3, 307, 512) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert m.score_frame(big) == pytest.approx((1000 * 307 + 512) / 100)
    assert tuple(m.preprocess(np.zeros((300, 512, 3), np.uint8)).shape) == (1, 3, 300, 512)  # not resized
    assert m.score_frame(np.zeros((64, 80, 3), np.uint8)) == pytest.approx((64000 + 80) / 100)
    tall = m.preprocess(np.zeros((1024, 700, 3), np.uint8))
    assert tuple(tall.shape) == (1, 3, 512, 350)
    flat = m.preprocess(np.full((700, 900, 3), 200, np.uint8))  # resizing keeps a constant frame constant
    assert torch.allclose(flat, torch.full_like(flat, 200 / 255))


def test_musiq_missing_weights_names_the_env_var(check_missing_weights, tmp_path, monkeypatch):
    check_missing_weights(MusiqScorer, MUSIQ_ENV, "MUSIQ", "musiq_spaq.pt")
    save(MeanTimes100(), tmp_path / "musiq_spaq.pt")
    monkeypatch.setenv(MUSIQ_ENV, str(tmp_path))  # a folder holding musiq_spaq.pt
    assert MusiqScorer().path == tmp_path / "musiq_spaq.pt"


def test_musiq_bad_files_and_outputs(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(StreamCharError, match="not a TorchScript"):
        MusiqScorer(tmp_path / "junk.pt")

    class Many(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))  # (N, 3): not one score

    class NaN(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)) * float("nan")

    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(StreamCharError, match="one score"):
        MusiqScorer(save(Many(), tmp_path / "many.pt")).score_frame(frame)
    with pytest.raises(StreamCharError, match="non-finite"):
        MusiqScorer(save(NaN(), tmp_path / "nan.pt")).score_frame(frame)
