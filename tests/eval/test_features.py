"""FID / FVD feature extraction with tiny stand-in TorchScript networks that share the real call conventions and
return statistics of what they were given, so layout, range, size and clip choice are known answers."""

import hashlib

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from streamchar.errors import StreamCharError
from streamchar.eval.features import (
    CLIP_FRAMES,
    I3D_ENV,
    INCEPTION_ENV,
    clip_starts,
    fid,
    fid_protocol,
    file_sha256,
    fvd,
    fvd_protocol,
    i3d_features,
    inception_features,
    load_i3d,
    load_inception,
    video_clips,
    weights_path,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


class FakeInception(nn.Module):
    """Same call as NVIDIA's inception-2015-12-05.pt: model(img, return_features=True) -> (N, 2048).
    Features: [0:3] per-channel means of the raw input, [3] H, [4] W, [5] 1 if uint8, [6] min, [7] max."""

    def forward(self, img: Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> Tensor:
        n = img.shape[0]
        x = img.to(torch.float32)
        f = torch.zeros(n, 2048)
        f[:, 0:3] = x.mean(dim=(2, 3))
        f[:, 3] = float(img.shape[2])
        f[:, 4] = float(img.shape[3])
        f[:, 5] = float(img.dtype == torch.uint8)
        f[:, 6] = x.amin(dim=(1, 2, 3))
        f[:, 7] = x.amax(dim=(1, 2, 3))
        if return_features:
            return f
        return f[:, :1008]


class FakeI3D(nn.Module):
    """Same call as StyleGAN-V's i3d_torchscript.pt: model(x, rescale, resize, return_features) -> (B, 400),
    x (B, C, T, H, W). Features: [0:3] per-channel means, [3] T, [4] H, [5] W, [6] min, [7] max, [8] rescale,
    [9] resize, [10] 1 if float32, [11] channel-0 top-left pixel of frame 0, [12] its bottom-right pixel,
    [13] channel-1 top-left, [14] channel-1 bottom-right, [16:16+T] per-frame means."""

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        b, t = x.shape[0], x.shape[2]
        f = torch.zeros(b, 400)
        f[:, 0:3] = x.mean(dim=(2, 3, 4))
        f[:, 3] = float(t)
        f[:, 4] = float(x.shape[3])
        f[:, 5] = float(x.shape[4])
        f[:, 6] = x.amin(dim=(1, 2, 3, 4))
        f[:, 7] = x.amax(dim=(1, 2, 3, 4))
        f[:, 8] = float(rescale)
        f[:, 9] = float(resize)
        f[:, 10] = float(x.dtype == torch.float32)
        f[:, 11] = x[:, 0, 0, 0, 0]
        f[:, 12] = x[:, 0, 0, -1, -1]
        f[:, 13] = x[:, 1, 0, 0, 0]
        f[:, 14] = x[:, 1, 0, -1, -1]
        f[:, 16:16 + t] = x.mean(dim=(1, 3, 4))
        if return_features:
            return f
        return torch.softmax(f, dim=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    torch.jit.script(FakeInception()).save(str(d / "inception-2015-12-05.pt"))
    torch.jit.script(FakeI3D()).save(str(d / "i3d_torchscript.pt"))
    torch.save({"w": torch.zeros(3)}, d / "state_dict.pt")  # a checkpoint, not TorchScript
    (d / "garbage.pt").write_bytes(b"not a model")
    return d


def to_unit(v):
    """uint8 value -> the [-1, 1] value I3D is fed."""
    return np.asarray(v, np.float64) * 2 / 255 - 1


# ---------------------------------------------------------------- FID


def test_inception_features_layout_range_and_batching(files):
    model = load_inception(files / "inception-2015-12-05.pt")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(7, 20, 30, 3), dtype=np.uint8)
    feats = inception_features(frames, model, batch_size=3)
    assert feats.shape == (7, 2048) and feats.dtype == np.float64
    np.testing.assert_allclose(feats[:, 0:3], frames.mean(axis=(1, 2)), rtol=1e-5)  # NCHW, channel order kept
    assert (feats[:, 3] == 20).all() and (feats[:, 4] == 30).all()  # native size: the network resizes itself
    assert (feats[:, 5] == 1).all()  # uint8 in
    np.testing.assert_array_equal(feats[:, 6], frames.min(axis=(1, 2, 3)))  # [0, 255], not rescaled
    np.testing.assert_array_equal(feats[:, 7], frames.max(axis=(1, 2, 3)))
    np.testing.assert_array_equal(feats, inception_features(frames, model, batch_size=64))  # one batch
    np.testing.assert_array_equal(feats[4:], inception_features(frames[4:], model, batch_size=1))


def test_inception_bad_input(files):
    model = load_inception(files)  # a folder holding inception-2015-12-05.pt
    with pytest.raises(StreamCharError, match="uint8"):
        inception_features(np.zeros((2, 8, 8, 3), np.float32), model)
    with pytest.raises(StreamCharError, match=r"\(N, H, W, 3\)"):
        inception_features(np.zeros((2, 8, 8, 4), np.uint8), model)
    with pytest.raises(StreamCharError, match=r"\(N, H, W, 3\)"):
        inception_features(np.zeros((8, 8, 3), np.uint8), model)
    with pytest.raises(StreamCharError, match="FID: the network"):  # the I3D file given as Inception
        inception_features(np.zeros((2, 8, 8, 3), np.uint8), load_i3d(files / "i3d_torchscript.pt"))


# ---------------------------------------------------------------- FVD


def test_clip_starts():
    assert clip_starts(16) == [0] and clip_starts(100) == [0]
    assert clip_starts(40, 2) == [0, 24]
    assert clip_starts(50, 3) == [0, 17, 34]
    assert clip_starts(48, 3) == [0, 16, 32]  # exactly tiled
    for T, k in [(48, 3), (61, 3), (200, 7), (33, 2)]:
        s = clip_starts(T, k)
        assert s[0] == 0 and s[-1] == T - CLIP_FRAMES
        assert all(b - a >= CLIP_FRAMES for a, b in zip(s, s[1:]))  # non-overlapping
    with pytest.raises(StreamCharError, match="needs at least 48"):
        clip_starts(47, 3)
    with pytest.raises(StreamCharError, match="clips_per_video"):
        clip_starts(40, 0)


def test_i3d_clip_protocol_takes_the_right_frames(files):
    model = load_i3d(files / "i3d_torchscript.pt")
    # frame t is the constant 5 t: the per-frame means tell which frames a clip holds
    video = np.repeat((5 * np.arange(50, dtype=np.uint8))[:, None, None, None], 3, axis=3)
    video = np.broadcast_to(video, (50, 224, 224, 3))
    feats = i3d_features([video], model, clips_per_video=3)
    assert feats.shape == (3, 400) and feats.dtype == np.float64
    for row, start in zip(feats, [0, 17, 34]):
        np.testing.assert_allclose(row[16:32], to_unit(5 * np.arange(start, start + 16)), atol=1e-6)
    first = i3d_features([video], model)  # default: the first 16 frames
    np.testing.assert_allclose(first[0, 16:32], to_unit(5 * np.arange(16)), atol=1e-6)
    np.testing.assert_allclose(first, feats[:1], atol=1e-7)


def test_i3d_layout_range_and_centre_crop(files):
    model = load_i3d(files / "i3d_torchscript.pt")
    # 224 x 256: no resampling, the crop is columns 16..239. Channel 0 = column, channel 1 = row, channel 2 = 7.
    H, W = 224, 256
    frame = np.zeros((H, W, 3), np.uint8)
    frame[..., 0] = np.arange(W)[None, :]
    frame[..., 1] = np.arange(H)[:, None]
    frame[..., 2] = 7
    video = np.broadcast_to(frame, (20, H, W, 3))
    f = i3d_features([video], model)[0]
    assert f[3] == 16 and f[4] == 224 and f[5] == 224  # (B, 3, 16, 224, 224)
    assert f[8] == 0 and f[9] == 0 and f[10] == 1  # rescale=False, resize=False, float32
    assert f[11] == pytest.approx(to_unit(16), abs=1e-6) and f[12] == pytest.approx(to_unit(239), abs=1e-6)
    assert f[13] == pytest.approx(to_unit(0), abs=1e-6) and f[14] == pytest.approx(to_unit(223), abs=1e-6)
    np.testing.assert_allclose(f[0:3], to_unit([np.arange(16, 240).mean(), np.arange(224).mean(), 7]), atol=1e-6)
    # portrait 300 x 224: rows 38..261
    frame = np.zeros((300, 224, 3), np.uint8)
    frame[..., 1] = np.arange(300)[:, None].clip(0, 255)
    f = i3d_features([np.broadcast_to(frame, (16, 300, 224, 3))], model)[0]
    assert f[13] == pytest.approx(to_unit(38), abs=1e-6) and f[14] == pytest.approx(to_unit(255), abs=1e-6)
    assert f[4] == 224 and f[5] == 224
    # full range: 0 -> -1, 255 -> +1
    video = np.zeros((16, 224, 224, 3), np.uint8)
    video[:, :112] = 255
    f = i3d_features([video], model)[0]
    assert f[6] == -1 and f[7] == 1


def test_i3d_resizes_the_short_side(files):
    model = load_i3d(files / "i3d_torchscript.pt")
    rgb = np.array([10, 128, 250], np.uint8)
    for h, w in [(112, 128), (64, 64), (480, 640), (360, 270)]:
        video = np.broadcast_to(rgb, (16, h, w, 3))
        clips = video_clips(video)
        assert clips.shape == (1, 3, 16, 224, 224) and clips.dtype == torch.float32
        f = i3d_features([video], model)[0]
        assert f[4] == 224 and f[5] == 224
        np.testing.assert_allclose(f[0:3], to_unit(rgb), atol=1e-5)  # a flat colour stays flat
    # 112 x 128 upsampled x2 -> 224 x 256 -> crop columns 16..239 of the upsampled frame, i.e. source columns
    # 8..119: a left half black / right half white frame keeps its edge at the centre
    frame = np.zeros((112, 128, 3), np.uint8)
    frame[:, 64:] = 255
    x = video_clips(np.broadcast_to(frame, (16, 112, 128, 3)))[0, 0, 0]  # (224, 224)
    assert (x[:, :100] == -1).all() and (x[:, 124:] == 1).all()
    np.testing.assert_allclose(x[:, :112].numpy(), -x[:, 112:].flip(1).numpy(), atol=1e-6)  # symmetric


def test_i3d_batching_and_order(files):
    model = load_i3d(files / "i3d_torchscript.pt")
    rng = np.random.default_rng(1)
    videos = [rng.integers(0, 256, size=(T, 224, 240, 3), dtype=np.uint8) for T in (32, 40, 33)]
    one = i3d_features(videos, model, clips_per_video=2, batch_size=64)
    assert one.shape == (6, 400)
    for bs in (1, 4, 5):
        np.testing.assert_allclose(i3d_features(videos, model, clips_per_video=2, batch_size=bs), one, atol=1e-6)
    # video by video, clip by clip
    np.testing.assert_allclose(one[2:4], i3d_features(videos[1:2], model, clips_per_video=2), atol=1e-6)
    np.testing.assert_allclose(one[5, 3:6], [16, 224, 224])


def test_i3d_bad_input(files):
    model = load_i3d(files / "i3d_torchscript.pt")
    with pytest.raises(StreamCharError, match="video 1 has 15 frames, fewer than the 16"):
        i3d_features([np.zeros((16, 32, 32, 3), np.uint8), np.zeros((15, 32, 32, 3), np.uint8)], model)
    with pytest.raises(StreamCharError, match="too short for 2"):
        i3d_features([np.zeros((31, 32, 32, 3), np.uint8)], model, clips_per_video=2)
    with pytest.raises(StreamCharError, match="uint8"):
        i3d_features([np.zeros((16, 32, 32, 3), np.float32)], model)
    with pytest.raises(StreamCharError, match="list of"):
        i3d_features(np.zeros((16, 32, 32, 3), np.uint8), model)
    with pytest.raises(StreamCharError, match="no videos"):
        i3d_features([], model)
    with pytest.raises(StreamCharError, match="failed"):  # the Inception file given as I3D: no `rescale`
        i3d_features([np.zeros((16, 32, 32, 3), np.uint8)], load_inception(files / "inception-2015-12-05.pt"))


# ---------------------------------------------------------------- weights files


def test_weights_path_and_missing_files(files, tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.delenv(I3D_ENV, raising=False)
    for load, metric, env, name in [(load_inception, "FID", INCEPTION_ENV, "inception-2015-12-05.pt"),
                                    (load_i3d, "FVD", I3D_ENV, "i3d_torchscript.pt")]:
        with pytest.raises(StreamCharError) as e:
            load(None)
        msg = str(e.value)
        assert metric in msg and env in msg and name in msg and "\n" not in msg
        with pytest.raises(StreamCharError) as e:
            load(tmp_path / "nowhere.pt")
        msg = str(e.value)
        assert "not found" in msg and "nowhere.pt" in msg and env in msg and name in msg and "\n" not in msg
        monkeypatch.setenv(env, "")  # empty counts as unset
        with pytest.raises(StreamCharError, match=env):
            load(None)
        monkeypatch.setenv(env, str(files / name))  # the environment variable is used
        assert isinstance(load(None), torch.jit.ScriptModule)
        monkeypatch.setenv(env, str(tmp_path / "nowhere.pt"))  # an explicit path wins over it
        assert weights_path(metric, env, files / name, name) == files / name
        assert weights_path(metric, env, files, name) == files / name  # a folder holding the file


def test_not_torchscript(files):
    for name in ("state_dict.pt", "garbage.pt"):
        with pytest.raises(StreamCharError) as e:
            load_i3d(files / name)
        assert name in str(e.value) and "not a TorchScript" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(StreamCharError, match="not a TorchScript"):
            load_inception(files / name)


def test_sha256_and_protocols(files):
    path = files / "i3d_torchscript.pt"
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    p = fvd_protocol(clips_per_video=2, weights=path)
    assert p["clips_per_video"] == 2 and p["clip_frames"] == 16 and p["weights_file"] == "i3d_torchscript.pt"
    assert p["weights_sha256"] == file_sha256(path)
    assert "rescale=False, resize=False, return_features=True" in p["call"]
    assert "weights_sha256" not in fvd_protocol()
    q = fid_protocol(files / "inception-2015-12-05.pt")
    assert q["weights_sha256"] == hashlib.sha256((files / "inception-2015-12-05.pt").read_bytes()).hexdigest()
    assert q["call"] == "model(images, return_features=True)"


# ---------------------------------------------------------------- distances


def test_fid_fvd_known_answers():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) + rng.normal(size=8)
    shift = rng.normal(size=8)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fvd(a, a) == pytest.approx(0.0, abs=1e-8)
    # a shift moves only the mean: d^2 = |shift|^2
    assert fid(a, a + shift) == pytest.approx(shift @ shift, rel=1e-8)
    assert fvd(a + shift, a) == pytest.approx(shift @ shift, rel=1e-8)
    # b = 2a: mean 2 mu, covariance 4 S: d^2 = |mu|^2 + tr(S) + tr(4S) - 2 tr(2S) = |mu|^2 + tr(S)
    mu, cov = a.mean(axis=0), np.cov(a, rowvar=False)
    assert fid(a, 2 * a) == pytest.approx(mu @ mu + np.trace(cov), rel=1e-8)


def test_end_to_end_fid_with_the_stand_in(files):
    model = load_inception(files / "inception-2015-12-05.pt")
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 200, size=(12, 16, 16, 3), dtype=np.uint8)
    fa = inception_features(frames, model, batch_size=5)
    fb = inception_features(frames + np.uint8(10), model, batch_size=5)
    # the three channel means each move by exactly 10 and their covariance stays: d^2 = 3 * 10^2
    assert fid(fa[:, :3], fb[:, :3]) == pytest.approx(3 * 10.0**2, rel=1e-6)
