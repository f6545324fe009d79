import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from streamchar.errors import StreamCharError
from streamchar.eval.identity import (
    FACE_EMBEDDER_ENV,
    FaceEmbedder,
    color_hist_distance,
    cosine,
    face_box,
    human_identity,
    human_identity_mean,
    identity_consistency,
    identity_proxy,
    identity_similarity,
    ssim,
    ssim_map,
)

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def textured(h=48, w=56, seed=0):
    """A mid-grey multi-scale texture, (h, w, 3) uint8, far from 0 and 255 (no clipping under small changes)."""
    rng = np.random.default_rng(seed)
    g = sum(ndimage.gaussian_filter(rng.standard_normal((h, w)), s) * a for s, a in [(1, 40), (3, 80)])
    g = 128 + 40 * g / g.std()
    return np.repeat(g.clip(30, 225)[..., None], 3, -1).round().astype(np.uint8)


# ---------------------------------------------------------------- SSIM


def test_ssim_identical_is_one():
    a = textured()
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a[..., 0], a[..., 0]) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_is_the_luminance_term():
    m, c = 100.0, 20.0
    a = np.full((16, 16, 3), m, np.uint8)
    b = np.full((16, 16, 3), m + c, np.uint8)
    expected = (2 * m * (m + c) + C1) / (m**2 + (m + c) ** 2 + C1)  # contrast-structure term is C2/C2 = 1
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)
    assert ssim_map(a, b).shape == (6, 6)  # 'valid' windows only: (H - 10, W - 10)


def test_ssim_by_hand_on_one_window():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (11, 11), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, (11, 11)), 0, 255).astype(np.uint8)
    r = np.arange(11) - 5.0
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()  # the 11x11 Gaussian window, sigma 1.5 (fspecial)
    x, y = a.astype(float), b.astype(float)
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    expected = (2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    assert ssim_map(a, b).shape == (1, 1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_ssim_uses_bt601_luminance():
    a = np.zeros((12, 12, 3), np.uint8)
    b = np.zeros((12, 12, 3), np.uint8)
    a[..., 0], b[..., 0] = 100, 200  # pure reds: luma 29.9 and 59.8
    m1, m2 = 0.299 * 100, 0.299 * 200
    assert ssim(a, b) == pytest.approx((2 * m1 * m2 + C1) / (m1**2 + m2**2 + C1), rel=1e-12)
    g = textured()  # grey RGB (R = G = B) scores as its grayscale channel
    n = (g.astype(int) + np.random.default_rng(2).integers(-9, 10, g.shape[:2])[..., None]).astype(np.uint8)
    assert ssim(g, n) == pytest.approx(ssim(g[..., 0], n[..., 0]), abs=1e-12)
    assert ssim(g, n) == pytest.approx(ssim(n, g), abs=1e-12)


def test_ssim_falls_monotonically_with_noise_and_blur():
    a = textured()
    z = np.random.default_rng(1).standard_normal(a.shape[:2])[..., None]
    noisy = [ssim(a, (a + s * z).round().clip(0, 255).astype(np.uint8)) for s in (0, 3, 6, 12, 24)]
    assert noisy[0] == pytest.approx(1.0)
    assert all(x > y for x, y in zip(noisy, noisy[1:])), noisy
    blurred = [ssim(a, ndimage.gaussian_filter(a.astype(float), (s, s, 0)).round().astype(np.uint8))
               for s in (0.5, 1, 2, 4)]
    assert all(x > y for x, y in zip([1.0] + blurred, blurred)), blurred


def test_ssim_bad_input():
    a = textured()
    with pytest.raises(StreamCharError, match="same size"):
        ssim(a, a[:-1])
    with pytest.raises(StreamCharError, match="at least 11x11"):
        ssim(a[:10], a[:10])
    with pytest.raises(StreamCharError, match="uint8"):
        ssim(a.astype(np.float32), a)
    with pytest.raises(StreamCharError, match="shape"):
        ssim(a[..., :2], a[..., :2])


# ---------------------------------------------------------------- colour histograms


def test_color_hist_distance_known_answers():
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 2] = 255
    a = textured()
    assert color_hist_distance(a, a) == 0.0
    perm = a.reshape(-1, 3)[np.random.default_rng(0).permutation(a.shape[0] * a.shape[1])].reshape(a.shape)
    assert color_hist_distance(a, perm) == pytest.approx(0.0, abs=1e-7)  # only the colour distribution counts
    assert color_hist_distance(red, blue) == pytest.approx(1.0)  # no shared cell: the maximum
    half = red.copy()
    half[:4] = blue[:4]  # p = (1/2, 1/2), q = (1, 0): BC = sqrt(1/2)
    assert color_hist_distance(half, red) == pytest.approx(math.sqrt(1 - math.sqrt(0.5)))
    assert color_hist_distance(red, blue, bins=1) == 0.0  # one cell holds every colour
    with pytest.raises(StreamCharError, match="bins"):
        color_hist_distance(red, blue, bins=0)
    with pytest.raises(StreamCharError, match="RGB"):
        color_hist_distance(red[..., 0], blue[..., 0])


# ---------------------------------------------------------------- identity proxy


def synthtalk(identity: int, frames: int = 6, size: int = 96):
    from streamchar.data.identity import make_identities
    from streamchar.data.render import render_clip

    return render_clip(make_identities(4)[identity], [], [], frames / 8, size=size, fps=8, seed=identity)


def test_default_face_box_holds_the_synthtalk_face():
    from streamchar.data.render import FACE_RY, HEAD_CENTER

    top, left, h, w = face_box(100, 200)
    rx_max = FACE_RY * 0.94  # widest face (face_aspect <= 0.94)
    assert top / 100 < HEAD_CENTER[1] - FACE_RY and (top + h) / 100 > HEAD_CENTER[1] + FACE_RY
    assert left / 200 < HEAD_CENTER[0] - rx_max and (left + w) / 200 > HEAD_CENTER[0] + rx_max


def test_identity_proxy_reference_repeated_and_another_character():
    a, b = synthtalk(0), synthtalk(1)
    ref = a[0]
    same = identity_proxy(np.repeat(ref[None], 4, 0), ref)
    assert same["metric"] == "identity_proxy" and same["proxy"] is True
    assert same["ssim"] == pytest.approx(1.0) and same["hist_distance"] == pytest.approx(0.0)
    assert same["ssim_per_frame"] == pytest.approx([1.0] * 4) and same["num_frames"] == 4
    own, other = identity_proxy(a, ref), identity_proxy(b, ref)
    assert len(own["ssim_per_frame"]) == len(own["hist_distance_per_frame"]) == len(a)
    assert own["ssim"] > 0.8 > other["ssim"]
    assert own["hist_distance"] < 0.3 < other["hist_distance"]
    assert own["box"] == face_box(96, 96)


def test_identity_proxy_box_and_shape_errors():
    a = synthtalk(0, frames=2, size=64)
    assert identity_proxy(a, a[0], box=(0, 0, 64, 64))["box"] == (0, 0, 64, 64)
    with pytest.raises(StreamCharError, match="does not fit"):
        identity_proxy(a, a[0], box=(10, 10, 60, 20))
    with pytest.raises(StreamCharError, match="top, left, height, width"):
        identity_proxy(a, a[0], box=(1, 2))
    with pytest.raises(StreamCharError, match="reference"):
        identity_proxy(a, a[0, :32])
    with pytest.raises(StreamCharError, match=r"\(T, H, W, 3\)"):
        identity_proxy(a[0], a[0])


# ---------------------------------------------------------------- learned embedder (stand-in networks)


class ChannelMeans(torch.nn.Module):
    """(N, 3, H, W) -> (N, 3) per-channel means."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class Probe(torch.nn.Module):
    """(N, C, H, W) -> (N, 4): H, W, min, max of each image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        hw = torch.tensor([float(x.shape[2]), float(x.shape[3])]).expand(n, 2)
        return torch.cat([hw, x.flatten(1).amin(1, keepdim=True), x.flatten(1).amax(1, keepdim=True)], 1)


class HalfMeans(torch.nn.Module):
    """(N, 1, H, W) -> (N, 2): means of the left and right halves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[3] // 2
        return torch.stack([x[..., :w].mean(dim=(1, 2, 3)), x[..., w:].mean(dim=(1, 2, 3))], 1)


def save(module, path):
    torch.jit.script(module).save(str(path))
    return path


def colour(rgb, n=1, size=40):
    return np.broadcast_to(np.array(rgb, np.uint8), (n, size, size, 3)).copy()


def test_arcface112_preprocessing_size_and_range(tmp_path):
    emb = FaceEmbedder(save(Probe(), tmp_path / "probe.pt"))
    faces = np.zeros((3, 37, 23, 3), np.uint8)
    faces[:, :10] = 255  # each crop holds 0 and 255
    out = emb.embed(faces)
    assert out.dtype == np.float64 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, [[112, 112, -1, 1]] * 3)


def test_identity_similarity_is_mean_cosine_of_channel_means(tmp_path):
    emb = FaceEmbedder(save(ChannelMeans(), tmp_path / "means.pt"), batch_size=2)
    ref = colour((255, 0, 0))[0]  # embedding (1, -1, -1)
    frames = np.concatenate([colour((255, 0, 0)), colour((255, 255, 0)), colour((0, 255, 255))])
    # cosines with (1, -1, -1): (1, -1, -1) -> 1, (1, 1, -1) -> 1/3, (-1, 1, 1) -> -1
    r = identity_similarity(frames, ref, emb, box=(0, 0, 40, 40))
    assert r["metric"] == "identity_similarity" and r["proxy"] is False and r["layout"] == "arcface112"
    assert r["per_frame"] == pytest.approx([1.0, 1 / 3, -1.0])
    assert r["similarity"] == pytest.approx((1 + 1 / 3 - 1) / 3)
    np.testing.assert_allclose(emb.embed(colour((255, 0, 0))), [[1.0, -1.0, -1.0]])


def test_human_identity_follows_vbench2_rule(tmp_path):
    emb = FaceEmbedder(save(ChannelMeans(), tmp_path / "means.pt"))
    first = colour((255, 0, 0))
    video = np.concatenate([first, colour((255, 0, 0), 15), colour((255, 255, 0), 6)])  # 22 frames, 21 counted
    r = human_identity(video, emb, box=(0, 0, 40, 40))
    assert r["counted"] == 21 and r["consistent"] == 15  # cos 1/3 < 0.4 is inconsistent
    assert r["score"] == pytest.approx(15 / 21)
    assert r["similarities"][:15] == pytest.approx([1.0] * 15)
    short = human_identity(video[:20], emb, box=(0, 0, 40, 40))  # 19 counted frames < 20
    assert short["score"] is None and short["counted"] == 19
    assert human_identity(video, emb, box=(0, 0, 40, 40), threshold=0.3)["score"] == pytest.approx(1.0)


def test_identity_consistency_and_mean():
    assert identity_consistency([0.4, 0.39999, 1.0], min_frames=0) == pytest.approx(2 / 3)  # >= 0.4 counts
    assert identity_consistency([1.0] * 19) is None
    assert identity_consistency([1.0] * 20) == 1.0
    assert human_identity_mean([0.5, None, 1.0]) == pytest.approx(0.75)
    with pytest.raises(StreamCharError, match="no video"):
        human_identity_mean([None, None])
    with pytest.raises(StreamCharError, match="NaN"):
        identity_consistency([float("nan")], min_frames=0)


def test_vbench2_layout_gray_mirror_pairs(tmp_path):
    emb = FaceEmbedder(save(HalfMeans(), tmp_path / "halves.pt"), layout="vbench2", batch_size=1)
    face = np.zeros((1, 128, 128, 3), np.uint8)
    face[:, :, 64:] = 255  # left black, right white: gray halves -1 / +1, the mirror swapped
    x = emb.preprocess(face)
    assert x.shape == (2, 1, 128, 128) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(x[1, 0], x[0, 0, :, ::-1])
    two = np.concatenate([face, face[:, :, ::-1]])  # the second face is the mirror of the first
    np.testing.assert_allclose(emb.embed(two), [[-1, 1, 1, -1], [1, -1, -1, 1]], atol=1e-6)  # (N, 2D)
    probe = FaceEmbedder(save(Probe(), tmp_path / "probe.pt"), layout="vbench2")
    np.testing.assert_array_equal(probe.embed(np.zeros((1, 30, 50, 3), np.uint8)),
                                  [[128, 128, -1, -1, 128, 128, -1, -1]])


def test_missing_weights_name_metric_file_and_env_var(check_missing_weights):
    check_missing_weights(FaceEmbedder, FACE_EMBEDDER_ENV, "arcface_r100.pt", "identity")
    check_missing_weights(lambda: FaceEmbedder(layout="vbench2"), FACE_EMBEDDER_ENV, "resnet18_110.pt")


def test_env_var_folder_bad_file_and_bad_output(tmp_path, monkeypatch):
    save(ChannelMeans(), tmp_path / "arcface_r100.pt")
    monkeypatch.setenv(FACE_EMBEDDER_ENV, str(tmp_path))  # a folder holding the expected file
    assert FaceEmbedder().path == tmp_path / "arcface_r100.pt"
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(StreamCharError, match="not a TorchScript"):
        FaceEmbedder(tmp_path / "junk.pt")
    with pytest.raises(StreamCharError, match="layout"):
        FaceEmbedder(tmp_path / "arcface_r100.pt", layout="arcface")

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean()

    bad = FaceEmbedder(save(Flat(), tmp_path / "flat.pt"))
    with pytest.raises(StreamCharError, match="expected"):
        bad.embed(colour((1, 2, 3)))


def test_cosine_of_a_zero_embedding_is_an_error():
    assert cosine([[3.0, 4.0], [1.0, 0.0]], [1.0, 0.0]) == pytest.approx([0.6, 1.0])
    with pytest.raises(StreamCharError, match="all zeros"):
        cosine([[0.0, 0.0]], [1.0, 0.0])
