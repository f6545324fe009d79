import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamchar.errors import StreamCharError
from streamchar.eval import syncnet as S

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET, LOUD = 0.2, 0.8  # the two levels of the test clips: brightness / 255 and, through calibration, audio
AMP = {0: 0.02, 1: 0.5}  # sine amplitude of a quiet / loud 25 fps frame
TONE = 440.0  # Hz: 11 whole cycles in a 400-sample MFCC frame, so the frame energy does not depend on phase


# ---------------------------------------------------------------- the network and its weights file


def random_syncnet(seed=0):
    torch.manual_seed(seed)
    m = S.SyncNet()
    for mod in m.modules():  # non-trivial BatchNorm statistics, so eval mode matters
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
            mod.num_batches_tracked.fill_(7)
    return m.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    m = random_syncnet()
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(m.state_dict(), path)
    return m, path


def test_random_syncnet_round_trip_and_shapes(weights, monkeypatch):
    m, path = weights
    lips = torch.rand(2, 3, 5, 224, 224) * 255  # (N, 3, 5, 224, 224) BGR in [0, 255]
    mfccs = torch.randn(2, 1, 13, 20)  # (N, 1, 13, 20)
    loaded = S.load_syncnet(path)
    assert not loaded.training
    with torch.no_grad():
        v, a = m.forward_lip(lips), m.forward_aud(mfccs)
        assert v.shape == (2, 1024) and a.shape == (2, 1024)
        assert torch.equal(loaded.forward_lip(lips), v) and torch.equal(loaded.forward_aud(mfccs), a)
    monkeypatch.setenv(S.SYNCNET_ENV, str(path.parent))  # a folder holding syncnet_v2.model
    again = S.load_syncnet()
    for (k, x), (k2, y) in zip(m.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(x, y)


def test_file_without_batchnorm_counters_loads(weights, tmp_path):
    m, _ = weights
    old = {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}  # PyTorch < 0.4.1
    torch.save(old, tmp_path / "old.model")
    loaded = S.load_syncnet(tmp_path / "old.model")
    x = torch.randn(3, 1, 13, 20)
    with torch.no_grad():
        assert torch.equal(loaded.forward_aud(x), m.forward_aud(x))


def test_weights_errors(weights, tmp_path, monkeypatch):
    m, path = weights
    bad = tmp_path / "corrupt.model"
    bad.write_bytes(path.read_bytes()[:1000])  # a truncated download
    with pytest.raises(StreamCharError, match="corrupt.model is not a state dict"):
        S.load_syncnet(bad)
    state = m.state_dict()
    renamed = {("module." + k if k == "netcnnaud.0.weight" else k): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.model")
    with pytest.raises(StreamCharError, match=r"missing key 'netcnnaud.0.weight' \(1 missing, 1 unexpected\)"):
        S.load_syncnet(tmp_path / "renamed.model")
    torch.save(state | {"extra.weight": torch.zeros(1)}, tmp_path / "extra.model")
    with pytest.raises(StreamCharError, match="unexpected key 'extra.weight'"):
        S.load_syncnet(tmp_path / "extra.model")
    torch.save(state | {"netfclip.3.weight": torch.zeros(512, 512)}, tmp_path / "shape.model")
    with pytest.raises(StreamCharError, match=r"'netfclip.3.weight' has shape \(512, 512\), expected \(1024, 512\)"):
        S.load_syncnet(tmp_path / "shape.model")
    torch.save([1, 2, 3], tmp_path / "list.model")
    with pytest.raises(StreamCharError, match="holds a list, not a state dict"):
        S.load_syncnet(tmp_path / "list.model")
    monkeypatch.delenv(S.SYNCNET_ENV, raising=False)
    with pytest.raises(StreamCharError, match="syncnet_v2.model: pass its path or set STREAMCHAR_SYNCNET"):
        S.load_syncnet()
    with pytest.raises(StreamCharError, match="no file at"):
        S.load_syncnet(tmp_path / "nowhere.model")


# ---------------------------------------------------------------- audio


def tone(seconds, sample_rate, amplitude=0.3):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return amplitude * np.sin(2 * np.pi * TONE * t)


def test_mfcc_framing_and_resampling():
    m16 = S.mfcc(tone(2.0, 16000), 16000)
    assert m16.shape[0] == 13 and abs(m16.shape[1] - 200) <= 1  # 100 MFCC frames/s
    assert m16.shape[1] == 1 + int(np.ceil((32000 - 400) / 160))  # python_speech_features' framing
    m48 = S.mfcc(tone(2.0, 48000), 48000)
    assert m48.shape == m16.shape
    np.testing.assert_allclose(m48[0, 2:-2], m16[0, 2:-2], atol=0.05)  # the same log energies
    # int16 input is the same signal; two equal channels are the mono signal
    x16 = S.audio_16k(tone(2.0, 16000), 16000)
    np.testing.assert_array_equal(S.audio_16k(x16.astype(np.int16), 16000), x16)
    np.testing.assert_array_equal(S.mfcc(np.stack([tone(2.0, 16000)] * 2), 16000), m16)
    assert np.abs(x16).max() == pytest.approx(0.3 * 32768, rel=1e-3)  # kept at int16 scale, as upstream
    # upstream: wavfile.read gives int16 samples; mfcc = zip(*python_speech_features.mfcc(audio, sample_rate))
    import python_speech_features

    wav = np.round(tone(2.0, 16000) * 32768).astype(np.int16)
    upstream = np.stack([np.array(c) for c in zip(*python_speech_features.mfcc(wav, 16000))])  # (13, M)
    np.testing.assert_allclose(m16, upstream, rtol=1e-12, atol=1e-12)


def test_audio_errors():
    with pytest.raises(StreamCharError, match="peak of 2"):
        S.audio_16k(np.full(100, 2.0), 16000)
    with pytest.raises(StreamCharError, match="sample_rate must be a positive int"):
        S.audio_16k(np.zeros(100), 0)
    with pytest.raises(StreamCharError, match=r"transpose it"):
        S.audio_16k(np.zeros((100, 2)), 16000)
    with pytest.raises(StreamCharError, match="dtype int32"):
        S.audio_16k(np.zeros(100, np.int32), 16000)
    with pytest.raises(StreamCharError, match="NaN"):
        S.audio_16k(np.full(100, np.nan), 16000)


# ---------------------------------------------------------------- crops and windows


def test_crop_is_crop_video_geometry():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    # box 40 px: s = 20, rows cy - s .. cy + 1.8 s = 80 .. 136, columns cx -+ 1.4 s = 72 .. 128
    expected = cv2.resize(frame[80:136, 72:128], (224, 224))
    np.testing.assert_array_equal(S.crop_face(frame, (80, 80, 120, 120)), expected)
    # a face at the top-left corner reaches into the padding of value 110
    corner = S.crop_face(np.zeros((100, 100, 3), np.uint8), (0, 0, 20, 20))
    assert corner.shape == (224, 224, 3) and corner[0, 0].tolist() == [110, 110, 110] and corner[-1, -1].max() == 0


def test_smoothing_and_gap_filling():
    boxes = np.tile([10.0, 20.0, 50.0, 60.0], (20, 1))  # 40x40 box centred at (30, 40)
    boxes[9] = [100, 100, 140, 140]  # one wild detection
    smoothed = S.smooth_boxes(boxes)
    np.testing.assert_allclose(smoothed, np.tile([10.0, 20.0, 50.0, 60.0], (20, 1)))  # median 13 removes it
    dets = [None, None, (0, 0, 10, 10), None, (20, 0, 30, 10), None, None, None]
    filled = S.fill_and_smooth(dets, kernel=1)  # kernel 1: no smoothing, only the filling
    np.testing.assert_allclose(filled[:, 0], [0, 0, 0, 0, 20, 20, 20, 20])  # frame 3: tie -> the earlier
    with pytest.raises(StreamCharError, match="no face in any of the 4 frames"):
        S.fill_and_smooth([None] * 4)
    with pytest.raises(StreamCharError, match="odd int"):
        S.smooth_boxes(boxes, kernel=4)


def test_windows_are_bgr_and_mfcc_columns():
    crops = np.zeros((8, 224, 224, 3), np.uint8)
    crops[..., 0] = 255  # pure red RGB
    crops[3, ..., 1] = 7  # frame 3 marked in green
    x = S.lip_batch(crops, [0, 2])  # (2, 3, 5, 224, 224)
    assert x.shape == (2, 3, 5, 224, 224) and x.dtype == torch.float32
    assert x[:, 0].max() == 0 and x[:, 2].min() == 255  # channel 0 is blue, channel 2 red: BGR in [0, 255]
    assert x[0, 1, 3].min() == 7 and x[1, 1, 1].min() == 7 and x[0, 1, 2].max() == 0  # window i = frames i..i+4
    mfccs = np.arange(13 * 40, dtype=np.float64).reshape(13, 40)
    a = S.audio_batch(mfccs, [0, 3])  # (2, 1, 13, 20)
    assert a.shape == (2, 1, 13, 20)
    np.testing.assert_array_equal(a[1, 0].numpy(), mfccs[:, 12:32])  # columns 4i .. 4i + 19
    assert S.num_windows(50, 32000) == 45 and S.num_windows(60, 32000) == 45  # min(T, S // 640) - 5


def test_distances_match_upstream_calc_pdist():
    rng = np.random.default_rng(1)
    v = torch.from_numpy(rng.normal(size=(40, 16)))  # float64 on both sides, to see pairwise_distance's eps
    a = torch.from_numpy(rng.normal(size=(40, 16)))
    a[5:] = v[:-5] + 0.1 * a[5:]  # audio 5 frames late
    # syncnet_python calc_pdist + evaluate, written out in torch
    vshift = 15
    ap = F.pad(a, (0, 0, vshift, vshift))
    dists = [F.pairwise_distance(v[[i], :].repeat(2 * vshift + 1, 1), ap[i:i + 2 * vshift + 1]) for i in range(40)]
    mdist = torch.stack(dists, 1).mean(1)
    minval, minidx = torch.min(mdist, 0)
    r = S.scores_from_embeddings(v.numpy(), a.numpy())
    np.testing.assert_allclose(r.mean_dist, mdist.numpy(), rtol=1e-12)  # eps = 1e-6 matters at this tolerance
    assert r.offset == vshift - int(minidx) == -5
    assert r.sync_d == pytest.approx(float(minval), rel=1e-12)
    assert r.sync_c == pytest.approx(float(torch.median(mdist) - minval), rel=1e-12)


# ---------------------------------------------------------------- the whole pipeline with a stand-in network


def c0_level(amplitude):
    """The MFCC log energy (c0) of a steady tone of this amplitude."""
    return float(np.median(S.mfcc(tone(1.0, 16000, amplitude), 16000)[0]))


class StandIn:
    """Lip embedding: brightness / 255 of the window's middle frame. Audio embedding: c0 (log energy) of MFCC
    column 9, samples 160 .. 560 of video frame i + 2 (column 8 starts on the frame boundary, where
    pre-emphasis leaks a sample of the previous frame in), mapped linearly so that the quiet and loud tones
    give QUIET and LOUD, the brightness of the frames they go with."""

    def __init__(self):
        self.lo, self.hi = c0_level(AMP[0]), c0_level(AMP[1])

    def forward_lip(self, x):  # (B, 3, 5, 224, 224) -> (B, 1)
        assert x.shape[1:] == (3, 5, 224, 224)
        return (x[:, :, 2].mean(dim=(1, 2, 3)) / 255.0)[:, None]

    def forward_aud(self, x):  # (B, 1, 13, 20) -> (B, 1)
        assert x.shape[1:] == (1, 13, 20)
        c0 = x[:, 0, 0, 9].double()
        return (QUIET + (c0 - self.lo) / (self.hi - self.lo) * (LOUD - QUIET))[:, None]


def clip_video(levels, size=48):
    """(T,) 0/1 levels -> (T, size, size, 3) uint8 grey frames of brightness QUIET or LOUD times 255."""
    values = np.where(np.asarray(levels) == 1, round(LOUD * 255), round(QUIET * 255)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (len(values), size, size, 3)).copy()


def clip_audio(levels):
    """(T,) 0/1 levels -> (T * 640,) float tone at 16 kHz, each 25 fps frame quiet or loud."""
    amp = np.repeat([AMP[int(v)] for v in levels], S.SAMPLES_PER_FRAME)
    return amp * np.sin(2 * np.pi * TONE * np.arange(len(amp)) / 16000)


@pytest.fixture(scope="module")
def envelope():
    return np.random.default_rng(7).integers(0, 2, 53)  # (53,) loud / quiet per 25 fps frame


def test_known_offset_through_the_pipeline(envelope):
    model = StandIn()
    video = clip_video(envelope[3:53])  # (50, 48, 48, 3): frame i shows level envelope[i + 3]
    aligned = S.syncnet_scores(video, clip_audio(envelope[3:53]), 16000, 25, model)
    assert aligned["offset"] == 0 and aligned["windows"] == 45 and len(aligned["mean_dist"]) == 31
    assert not aligned["fps_resampled"] and aligned["sync_d"] < 0.02 and aligned["sync_c"] > 0.2
    # the soundtrack 3 frames late: audio frame t plays envelope[t], which the video showed at frame t - 3
    late = S.syncnet_scores(video, clip_audio(envelope[0:50]), 16000, 25, model)
    assert late["offset"] == -3 and late["sync_c"] > 0.2
    # a fixed box well inside the frame crops the same grey: the same numbers
    boxed = S.syncnet_scores(video, clip_audio(envelope[3:53]), 16000, 25, model, boxes=(12, 12, 36, 36))
    np.testing.assert_allclose(boxed["mean_dist"], aligned["mean_dist"])
    # the same clip at 30 fps (frame k shows the 25 fps frame nearest in time) is resampled to 25 fps
    k = np.floor(np.arange(60) * 25 / 30 + 0.5).astype(int)
    at30 = S.syncnet_scores(video[k], clip_audio(envelope[3:53]), 16000, 30, model)
    assert at30["fps_resampled"] and at30["frames_in"] == 60 and at30["frames_25fps"] == 50
    assert at30["offset"] == 0
    np.testing.assert_allclose(at30["mean_dist"], aligned["mean_dist"])


def test_pipeline_input_errors(envelope):
    model = StandIn()
    video, audio = clip_video(envelope[:10]), clip_audio(envelope[:10])
    with pytest.raises(StreamCharError, match="fps must be a positive number, got 0"):
        S.syncnet_scores(video, audio, 16000, 0, model)
    with pytest.raises(StreamCharError, match="uint8 RGB, got dtype float32"):
        S.syncnet_scores(video.astype(np.float32), audio, 16000, 25, model)
    with pytest.raises(StreamCharError, match=r"one per frame \(10, 4\), got shape \(3, 4\)"):
        S.syncnet_scores(video, audio, 16000, 25, model, boxes=np.zeros((3, 4)))
    with pytest.raises(StreamCharError, match="box of frame 0 .* centre outside"):
        S.syncnet_scores(video, audio, 16000, 25, model, boxes=(100, 100, 140, 140))
    with pytest.raises(StreamCharError, match="at least 6 frames"):
        S.syncnet_scores(video[:5], audio, 16000, 25, model)
    with pytest.raises(StreamCharError, match="max_lag"):
        S.syncnet_scores(video, audio, 16000, 25, model, max_lag=-1)
    assert S.frame_indices_25fps(6, 50).tolist() == [0, 2, 4]


# ---------------------------------------------------------------- face detector


def test_face_detector_missing_and_garbage_files(tmp_path, monkeypatch):
    monkeypatch.delenv(S.FACE_DETECTOR_ENV, raising=False)
    with pytest.raises(StreamCharError, match="STREAMCHAR_FACE_DETECTOR"):
        S.FaceDetector()
    garbage = tmp_path / "face_detection_yunet_2023mar.onnx"
    garbage.write_bytes(b"this is not an onnx file")
    with pytest.raises(StreamCharError, match="is not a YuNet ONNX model OpenCV can load") as e:
        S.FaceDetector(garbage)
    assert "\n" not in str(e.value)
    monkeypatch.setenv(S.FACE_DETECTOR_ENV, str(tmp_path))  # the folder form of the env var
    with pytest.raises(StreamCharError, match="not a YuNet ONNX model"):
        S.FaceDetector()


class FakeYuNet:
    """cv2.FaceDetectorYN's interface: detect(bgr) -> (retval, (N, 15) rows x, y, w, h, 10 landmarks, score)."""

    def __init__(self, faces):
        self.faces, self.seen = faces, []

    def setInputSize(self, size):
        self.size = size

    def detect(self, img):
        self.seen.append(img)
        return 1, self.faces


def test_detect_takes_the_best_face_in_bgr():
    det = object.__new__(S.FaceDetector)  # no ONNX file: the network is replaced by a fake
    row = lambda x, y, w, h, score: [x, y, w, h] + [0] * 10 + [score]  # noqa: E731
    det.net, det.size, det.path = FakeYuNet(np.array([row(1, 2, 10, 10, 0.91), row(5, 6, 20, 30, 0.99)])), None, "-"
    frame = np.zeros((40, 50, 3), np.uint8)
    frame[..., 0] = 200  # red in RGB
    assert det.detect(frame) == (5.0, 6.0, 25.0, 36.0)
    assert det.net.size == (50, 40) and det.net.seen[0][..., 2].min() == 200  # (w, h); BGR to OpenCV
    det.net.faces = None
    boxes = []
    with pytest.raises(StreamCharError, match="no face"):
        boxes = det.track(np.zeros((3, 40, 50, 3), np.uint8))
    assert boxes == []


def test_real_yunet_detector():
    path = os.environ.get(S.FACE_DETECTOR_ENV)
    if not path:
        pytest.skip("set STREAMCHAR_FACE_DETECTOR to a YuNet ONNX file")
    det = S.FaceDetector(path)
    assert det.detect(np.full((120, 160, 3), 128, np.uint8)) is None  # a grey frame has no face
    with pytest.raises(StreamCharError, match="no face in any of the 2 frames"):
        det.track(np.full((2, 120, 160, 3), 128, np.uint8))
