"""Fragmented MP4: the init segment and one fragment per chunk concatenate into a file PyAV decodes whole."""

import io

import av
import numpy as np
import pytest

from streamchar.errors import StreamCharError
from streamchar.streaming.fragments import FragmentWriter, top_level_boxes

FPS, CHUNK, SR = 24, 33, 24576


def chunk(k: int) -> tuple[np.ndarray, np.ndarray]:
    frames = np.zeros((CHUNK, 64, 64, 3), np.uint8)
    frames[:, :, : 8 * (k + 1)] = 200  # a bar that grows chunk by chunk
    t = np.arange(CHUNK * SR // FPS) / SR
    return frames, (0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t)).astype(np.float32)[None]


def test_fragments_concatenate_into_one_stream():
    w = FragmentWriter(fps=FPS, width=64, height=64, sample_rate=SR, frames_per_chunk=CHUNK)
    parts = []
    for k in range(4):
        frag = w.write(*chunk(k))
        assert [kind for kind, _ in top_level_boxes(frag)] == ["moof", "mdat"]  # one fragment per chunk
        parts.append(frag)
    assert [kind for kind, _ in top_level_boxes(w.init)] == ["ftyp", "moov"]
    data = w.init + b"".join(parts) + w.close()
    with av.open(io.BytesIO(data)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(io.BytesIO(data)) as c:
        audio = [f for f in c.decode(audio=0)]
    assert len(frames) == 4 * CHUNK
    for k in range(4):  # each chunk's frames in its place: the bar's width
        lit = (frames[k * CHUNK + 5][32, :, 0] > 100).sum()
        assert abs(lit - 8 * (k + 1)) <= 2, (k, lit)
    seconds = sum(f.samples for f in audio) / audio[0].sample_rate
    assert seconds == pytest.approx(4 * CHUNK / FPS, abs=0.05)
    # every fragment starts at its chunk's time: frame k * 33 is a key frame at k * 1.375 s
    with av.open(io.BytesIO(data)) as c:
        keys = [float(p.pts * p.time_base) for p in c.demux(video=0) if p.is_keyframe]
    assert keys == pytest.approx([k * CHUNK / FPS for k in range(4)])


def test_each_fragment_decodes_after_the_init_segment_alone():
    """A client that joins late (or MSE after a seek) needs only init + any fragment."""
    w = FragmentWriter(fps=FPS, width=64, height=64, sample_rate=SR, frames_per_chunk=CHUNK)
    frags = [w.write(*chunk(k)) for k in range(3)]
    with av.open(io.BytesIO(w.init + frags[2])) as c:
        assert sum(1 for _ in c.decode(video=0)) == CHUNK


def test_bad_chunks_are_refused():
    w = FragmentWriter(fps=FPS, width=64, height=64, sample_rate=SR)
    with pytest.raises(StreamCharError, match="uint8"):
        w.write(np.zeros((CHUNK, 64, 64, 3), np.float32), chunk(0)[1])
    with pytest.raises(StreamCharError, match="NaN"):
        w.write(chunk(0)[0], np.full((1, 100), np.nan, np.float32))
    w.close()
    with pytest.raises(StreamCharError, match="closed"):
        w.write(*chunk(0))
    with pytest.raises(StreamCharError, match="even"):
        FragmentWriter(fps=FPS, width=63, height=64, sample_rate=SR)
