import numpy as np
import pytest

from streamchar.errors import StreamCharError
from streamchar.eval.media import iter_frames, read_audio, read_frames, video_info
from streamchar.streaming.writer import MP4Writer


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """48 frames at 24 fps whose brightness is 5 * index; 2 s of a 440 Hz tone at 16 kHz."""
    path = tmp_path_factory.mktemp("media") / "v.mp4"
    frames = np.stack([np.full((32, 48, 3), 5 * i, np.uint8) for i in range(48)])
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    with MP4Writer(path, width=48, height=32, sample_rate=16000, fps=24) as w:
        w.write(frames, tone[None])
    return path


def test_video_info(video):
    info = video_info(video)
    assert (info.fps, info.width, info.height, info.frames, info.has_audio) == (24.0, 48, 32, 48, True)
    assert info.seconds == pytest.approx(2.0)


def test_frames_in_order_and_by_index(video):
    means = [f.mean() for f in iter_frames(video)]
    assert len(means) == 48 and np.all(np.diff(means) > 0)  # brightness rises frame by frame
    picked = read_frames(video, [0, 10, 47])
    assert picked.shape == (3, 32, 48, 3)
    assert [round(f.mean() / 5) for f in picked] == [0, 10, 47]


def test_audio(video):
    audio, sr = read_audio(video)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert len(audio) / sr == pytest.approx(2.0, abs=0.05)
    at8k, sr8 = read_audio(video, 8000)
    assert sr8 == 8000 and len(at8k) == pytest.approx(16000, abs=400)
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert np.argmax(spectrum) * sr / 16000 == pytest.approx(440, abs=2)


def test_errors(tmp_path):
    with pytest.raises(StreamCharError, match="no such video file"):
        video_info(tmp_path / "nope.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(StreamCharError, match="cannot open video file"):
        read_audio(tmp_path / "bad.mp4")
