import cv2
import numpy as np
import pytest
import torch

from streamchar.errors import StreamCharError
from streamchar.eval.dynamic import (
    RAFT_ENV,
    FarnebackFlow,
    RaftFlow,
    count_num,
    dynamic_degree,
    flow_score,
    is_dynamic,
    sample_frames,
    threshold,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    cv2.setNumThreads(1)


def square_video(size: int, dx: int, dy: int, frames: int = 16, seed: int = 0):
    """A bright textured square on a dark textured background, jumping by (dx, dy) and back every frame
    (positions p0, p0 + d, p0, ...): every consecutive pair moves it by exactly (dx, dy) or its opposite.
    Returns frames (T, size, size, 3) uint8 and the square's first top-left corner and side."""
    rng = np.random.default_rng(seed)
    side = size * 3 // 8
    bg = cv2.GaussianBlur(rng.integers(0, 80, (size, size)).astype(np.float32), (0, 0), 1.5)
    patch = cv2.GaussianBlur(rng.integers(150, 255, (side, side)).astype(np.float32), (0, 0), 1.5)
    y0 = x0 = size // 2 - side // 2
    video = []
    for t in range(frames):
        f = bg.copy()
        y, x = y0 + (t % 2) * dy, x0 + (t % 2) * dx
        f[y:y + side, x:x + side] = patch
        video.append(np.repeat(f[..., None], 3, axis=-1).clip(0, 255).astype(np.uint8))
    return np.stack(video), (y0, x0), side


# ---------------------------------------------------------------- pure maths


def test_flow_score_is_mean_of_top_five_percent():
    flow = np.zeros((20, 10, 2), np.float32)  # 200 pixels -> top 10
    flow.reshape(-1, 2)[:10] = [3.0, 4.0]  # magnitude 5
    assert flow_score(flow) == pytest.approx(5.0)
    flow.reshape(-1, 2)[:5] = [0.0, 1.0]  # the top 10 are now five 5s and five 1s
    assert flow_score(flow) == pytest.approx(3.0)
    mags = np.arange(200, dtype=np.float64).reshape(20, 10)  # top 10 are 190..199
    assert flow_score(np.stack([mags, np.zeros_like(mags)], -1)) == pytest.approx(194.5)


def test_threshold_scales_with_size_and_fps():
    assert threshold(256, 256) == pytest.approx(6.0)
    assert threshold(64, 64) == pytest.approx(1.5)
    assert threshold(480, 832) == pytest.approx(6.0 * 480 / 256)  # the smaller side
    assert threshold(256, 256, fps=25) == pytest.approx(6.0)  # factor max(1, 8/25) = 1
    assert threshold(256, 256, fps=4) == pytest.approx(12.0)  # factor 8/4 = 2


def test_count_rule_rounds_half_to_even_like_python():
    assert [count_num(n) for n in (2, 3, 6, 10, 14, 16, 18, 33)] == [0, 1, 2, 2, 4, 4, 4, 8]


def test_is_dynamic_at_the_count_boundary():
    thr = threshold(64, 64)  # 1.5
    hi, lo = thr + 0.01, thr - 0.01
    # 16 frames -> 15 pairs, count_num 4
    assert not is_dynamic([hi] * 3 + [lo] * 12, 64, 64)
    assert is_dynamic([hi] * 4 + [lo] * 11, 64, 64)
    assert is_dynamic([lo] * 11 + [hi] * 4, 64, 64)  # order does not matter
    assert not is_dynamic([thr] * 15, 64, 64)  # strictly above
    # 6 frames -> count_num round(1.5) = 2; 10 frames -> round(2.5) = 2
    assert not is_dynamic([hi] + [lo] * 4, 64, 64)
    assert is_dynamic([hi] * 2 + [lo] * 3, 64, 64)
    assert is_dynamic([hi] * 2 + [lo] * 7, 64, 64)
    # 2 frames -> count_num 0: VBench calls any pair dynamic; no pair at all is static
    assert is_dynamic([0.0], 64, 64)
    assert not is_dynamic([], 64, 64)
    # the fps factor raises the bar
    assert is_dynamic([2.0] * 15, 64, 64, fps=8)
    assert not is_dynamic([2.0] * 15, 64, 64, fps=4)  # threshold 3.0


def test_sample_frames_like_vbench():
    idx = np.arange(50)
    assert list(sample_frames(idx, 8)) == list(range(50))
    assert list(sample_frames(idx, 4)) == list(range(50))  # interval at least 1
    assert list(sample_frames(idx, 25)) == list(range(0, 50, 3))
    assert list(sample_frames(idx, 30)) == list(range(0, 50, 4))
    assert list(sample_frames(idx, 12)) == list(range(0, 50, 2))  # round(1.5) = 2
    assert list(sample_frames(idx, 20)) == list(range(0, 50, 2))  # round(2.5) = 2
    assert list(sample_frames(list(idx), 16)) == list(range(0, 50, 2))


# ---------------------------------------------------------------- Farneback proxy


@pytest.mark.parametrize("dx,dy", [(2, 1), (3, 0), (0, -2)])
def test_farneback_recovers_the_square_motion(dx, dy):
    video, (y0, x0), side = square_video(64, dx, dy, frames=2)
    flow = FarnebackFlow().flow(video[0], video[1])
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    m = 6
    med = np.median(flow[y0 + m:y0 + side - m, x0 + m:x0 + side - m].reshape(-1, 2), axis=0)
    true = np.array([dx, dy], np.float64)
    assert np.linalg.norm(med - true) <= 0.2 * np.linalg.norm(true)
    # the square (24x24 = 576 px) holds all of the top 5% (204 px): the score is its displacement
    assert flow_score(flow) == pytest.approx(np.hypot(dx, dy), rel=0.2)
    far = flow[:8, :8].reshape(-1, 2)  # the static background
    assert np.abs(far).max() < 0.1


def test_static_video_is_not_dynamic():
    video, _, _ = square_video(64, 0, 0)
    r = dynamic_degree(video, 8, FarnebackFlow())
    assert r["dynamic"] is False
    assert max(r["scores"]) < 0.05
    assert r["metric"] == "dynamic_degree_farneback" and r["backend"] == "farneback" and r["proxy"] is True


def test_fast_video_is_dynamic():
    video, _, _ = square_video(64, 6, 3)
    r = dynamic_degree(video, 8, FarnebackFlow())
    assert r["dynamic"] is True
    assert r["threshold"] == pytest.approx(1.5) and r["count_num"] == 4
    assert r["count_above"] == 15 and len(r["scores"]) == 15
    assert np.median(r["scores"]) == pytest.approx(np.hypot(6, 3), rel=0.2)


def test_threshold_scales_with_frame_size():
    # the same 3 px per frame: dynamic at 64x64 (threshold 1.5), static at 256x256 (threshold 6)
    small, _, _ = square_video(64, 3, 0)
    big, _, _ = square_video(256, 3, 0)
    rs, rb = dynamic_degree(small, 8, FarnebackFlow()), dynamic_degree(big, 8, FarnebackFlow())
    assert rs["dynamic"] is True and rb["dynamic"] is False
    assert rb["threshold"] == pytest.approx(6.0)
    assert np.median(rb["scores"]) == pytest.approx(3.0, rel=0.2)


def test_fps_sampling_in_dynamic_degree():
    video, _, _ = square_video(64, 3, 0, frames=32)  # jumps back and forth every frame
    r = dynamic_degree(video, 16, FarnebackFlow())  # every 2nd frame: the square is always at p0
    assert r["interval"] == 2 and r["num_sampled"] == 16 and r["count_num"] == 4
    assert r["dynamic"] is False and max(r["scores"]) < 0.05


def test_bad_inputs():
    fb = FarnebackFlow()
    with pytest.raises(StreamCharError, match="at least 2 frames"):
        dynamic_degree(np.zeros((1, 32, 32, 3), np.uint8), 8, fb)
    with pytest.raises(StreamCharError, match="after VBench's sampling"):
        dynamic_degree(np.zeros((3, 32, 32, 3), np.uint8), 30, fb)
    with pytest.raises(StreamCharError, match=r"\(T, H, W, 3\)"):
        dynamic_degree(np.zeros((4, 32, 32), np.uint8), 8, fb)
    with pytest.raises(StreamCharError, match="uint8"):
        dynamic_degree(np.zeros((4, 32, 32, 3), np.float32), 8, fb)
    with pytest.raises(StreamCharError, match="fps"):
        dynamic_degree(np.zeros((4, 32, 32, 3), np.uint8), 0, fb)
    with pytest.raises(StreamCharError, match=r"\(H, W, 2\)"):
        flow_score(np.zeros((8, 8, 3)))
    with pytest.raises(StreamCharError, match="20 pixels"):
        flow_score(np.zeros((4, 4, 2)))
    with pytest.raises(StreamCharError, match="same shape"):
        fb.flow(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))


# ---------------------------------------------------------------- RAFT path (a stand-in TorchScript module)


class ConstantRaft(torch.nn.Module):
    """torchvision RAFT's call convention; returns flow (3, 4) everywhere (magnitude 5) after checking its input."""

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, num_flow_updates: int = 12) -> list[torch.Tensor]:
        n, c, h, w = image1.shape
        torch._assert(c == 3 and h % 8 == 0 and w % 8 == 0, "RAFT input must be (N, 3, H8, W8)")
        torch._assert(image1.min() >= -1.0 and image2.max() <= 1.0, "RAFT input must be in [-1, 1]")
        torch._assert(image1.min() < 0.0, "RAFT input is not normalised to [-1, 1] (dark pixels must be < 0)")
        torch._assert(num_flow_updates == 20, "VBench runs 20 RAFT iterations")
        flow = torch.ones(n, 2, h, w)
        flow[:, 0] = 3.0
        flow[:, 1] = 4.0
        return [0.5 * flow, flow]


@pytest.fixture
def raft_file(tmp_path):
    path = tmp_path / "raft_stand_in.pt"
    torch.jit.script(ConstantRaft()).save(str(path))
    return path


def test_raft_scores_from_torchscript(raft_file):
    backend = RaftFlow(raft_file)
    video, _, _ = square_video(64, 2, 1, frames=4)
    video = video[:, 2:, 1:]  # 62x63: padded to 64x64 as VBench's InputPadder does
    flow = backend.flow(video[0], video[1])
    assert flow.shape == (64, 64, 2)
    assert np.allclose(flow[..., 0], 3.0) and np.allclose(flow[..., 1], 4.0)
    r = dynamic_degree(video, 8, backend)
    assert r["scores"] == pytest.approx([5.0] * 3)
    assert r["threshold"] == pytest.approx(6.0 * 62 / 256)  # the unpadded size
    assert r["count_num"] == 1 and r["dynamic"] is True
    assert r["metric"] == "dynamic_degree" and r["backend"] == "raft" and r["proxy"] is False


def test_raft_path_from_env(raft_file, monkeypatch):
    monkeypatch.setenv(RAFT_ENV, str(raft_file))
    assert RaftFlow().path == raft_file


def test_raft_missing_weights(check_missing_weights, tmp_path):
    check_missing_weights(RaftFlow, RAFT_ENV, "dynamic_degree")
    missing = tmp_path / "raft_large.pt"  # an explicit path that is not there
    with pytest.raises(StreamCharError, match=RAFT_ENV) as e:
        RaftFlow(missing)
    assert str(missing) in str(e.value) and "\n" not in str(e.value)


def test_raft_bad_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript file")
    with pytest.raises(StreamCharError, match="TorchScript"):
        RaftFlow(bad)
