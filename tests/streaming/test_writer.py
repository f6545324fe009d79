"""MP4Writer: H.264 + AAC output, chunk-wise writing, A/V sync, atomic output, input validation."""

from fractions import Fraction

import av
import numpy as np
import pytest

from streamchar.errors import StreamCharError
from streamchar.streaming.writer import MP4Writer, default_audio_rate, probe_mp4

FPS, SR, T, S = 24, 24576, 33, 33792  # one tiny-preset chunk: 33 frames, 1.375 s of audio


def chunk(i, size=64, colour=(200, 30, 90), channels=1, sr=SR):
    """Chunk i of a solid-colour video and a continuous 440 Hz sine."""
    frames = np.empty((T, size, size, 3), np.uint8)
    frames[:] = colour
    n = T * sr // FPS
    t = (np.arange(n) + i * n) / sr
    audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return frames, (np.stack([audio] * channels) if channels > 1 else audio)


def test_default_audio_rate():
    assert default_audio_rate(24576) == 32000
    assert default_audio_rate(49152) == 48000
    assert default_audio_rate(16000) == 16000
    assert default_audio_rate(4000) == 8000


def test_three_chunks_probe(tmp_path):
    out = tmp_path / "out.mp4"
    with MP4Writer(out, width=64, height=64, sample_rate=SR) as w:
        for i in range(3):
            w.write(*chunk(i))
        assert w.frames_written == 99 and w.samples_written == 3 * S
    info = probe_mp4(out)
    assert info["video_frames"] == 99
    assert info["fps"] == 24.0
    assert (info["width"], info["height"]) == (64, 64)
    assert (info["video_codec"], info["audio_codec"]) == ("h264", "aac")
    assert info["audio_rate"] == 32000
    assert abs(info["audio_seconds"] - 99 / 24) < 1 / 24
    # Nothing lost (resampler flushed); the decoder drops AAC priming but keeps the last frame's padding.
    assert 99 / 24 - 1e-3 <= info["audio_seconds"] <= 99 / 24 + 1024 / 32000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temp file left


def test_pixels_survive(tmp_path):
    out = tmp_path / "colours.mp4"
    colours = [(200, 30, 90), (20, 180, 60), (90, 90, 230)]
    with MP4Writer(out, width=64, height=64, sample_rate=SR) as w:
        for i, colour in enumerate(colours):
            w.write(*chunk(i, colour=colour))
    with av.open(str(out)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert frames.shape == (99, 64, 64, 3)
    for i, colour in enumerate(colours):
        mean = frames[i * T : (i + 1) * T, 8:-8, 8:-8].reshape(-1, 3).mean(0)  # inner area: no chroma bleed
        assert np.abs(mean - colour).max() < 6, (colour, mean)


def test_stereo_49152(tmp_path):
    out = tmp_path / "stereo.mp4"
    with MP4Writer(out, width=32, height=32, sample_rate=49152, channels=2) as w:
        for i in range(2):
            w.write(*chunk(i, size=32, channels=2, sr=49152))
    info = probe_mp4(out)
    assert info["audio_rate"] == 48000 and info["video_frames"] == 66
    assert abs(info["audio_seconds"] - 66 / 24) < 1 / 24
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.channels == 2


def test_exception_leaves_nothing(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with MP4Writer(out, width=64, height=64, sample_rate=SR) as w:
            w.write(*chunk(0))
            assert any(p.name.endswith(".partial.mp4") for p in tmp_path.iterdir())
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_nothing_and_keeps_old_file(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    w = MP4Writer(out, width=64, height=64, sample_rate=SR)
    w.write(*chunk(0))
    w.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"] and out.read_bytes() == b"old"
    with pytest.raises(StreamCharError, match="closed"):
        w.write(*chunk(1))


def test_missing_parent_folder(tmp_path):
    with pytest.raises(StreamCharError, match="nope"):
        MP4Writer(tmp_path / "nope" / "out.mp4", width=64, height=64, sample_rate=SR)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("width,height", [(63, 64), (64, 65), (0, 64)])
def test_bad_size(tmp_path, width, height):
    with pytest.raises(StreamCharError, match="even"):
        MP4Writer(tmp_path / "out.mp4", width=width, height=height, sample_rate=SR)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(tmp_path):
    frames, audio = chunk(0)
    w = MP4Writer(tmp_path / "out.mp4", width=64, height=64, sample_rate=SR)
    with pytest.raises(StreamCharError, match="uint8"):
        w.write(frames.astype(np.float32), audio)
    with pytest.raises(StreamCharError, match=r"\(33, 32, 32, 3\)"):
        w.write(frames[:, :32, :32], audio)
    with pytest.raises(StreamCharError, match="shape"):
        w.write(frames[0], audio)
    with pytest.raises(StreamCharError, match="float64"):
        w.write(frames, audio.astype(np.float64))
    with pytest.raises(StreamCharError, match=r"\(2, 33792\)"):
        w.write(frames, np.stack([audio, audio]))
    with pytest.raises(StreamCharError, match="NaN"):
        w.write(frames, np.full_like(audio, np.nan))
    assert w.frames_written == 0 and w.samples_written == 0
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_no_drift_long_stream(tmp_path):
    """60 chunks (82.5 s): audio and video end within one frame of each other, by count and by timestamps."""
    out = tmp_path / "long.mp4"
    n = 60
    with MP4Writer(out, width=16, height=16, sample_rate=SR) as w:
        for i in range(n):
            w.write(*chunk(i, size=16))
    video_s = n * T / FPS
    info = probe_mp4(out)
    assert info["video_frames"] == n * T
    assert abs(info["audio_seconds"] - video_s) < 1 / FPS
    with av.open(str(out)) as c:
        last_video = max(f.pts for f in c.decode(video=0)) * c.streams.video[0].time_base + Fraction(1, FPS)
    with av.open(str(out)) as c:
        last_audio = max(f.pts * f.time_base + Fraction(f.samples, f.sample_rate) for f in c.decode(audio=0))
    assert last_video == video_s
    assert abs(float(last_audio) - video_s) < 1 / FPS


def test_strided_frames_are_written_as_they_read(tmp_path):
    """A channels-last view (what a decoder working in that layout hands out) encodes like its contiguous copy."""
    import av

    from streamchar.streaming.writer import MP4Writer

    rng = np.random.default_rng(0)
    planar = rng.integers(0, 256, (3, 9, 16, 16), dtype=np.uint8)
    view = planar.transpose(1, 2, 3, 0)  # (T, H, W, 3), not C-contiguous
    outs = []
    for name, frames in (("view", view), ("copy", np.ascontiguousarray(view))):
        with MP4Writer(tmp_path / f"{name}.mp4", fps=24, width=16, height=16, sample_rate=24576, channels=1,
                       crf=0) as w:
            w.write(frames, np.zeros((1, 9 * 1024), np.float32))
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            outs.append(np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_index_at_the_front(tmp_path):
    """Fast start: the moov box comes before mdat, so a player starts while the file downloads."""
    out = tmp_path / "out.mp4"
    with MP4Writer(out, width=64, height=64, sample_rate=SR) as w:
        w.write(*chunk(0))
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")
