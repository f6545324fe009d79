import dataclasses
import gc
import weakref

import numpy as np

from streamchar.config import tiny
from streamchar.pipeline import StreamChar
from streamchar.streaming.generate import stream_to_file
from streamchar.streaming.session import StreamSession
from streamchar.streaming.writer import probe_mp4

IMG = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


class Tracked(np.ndarray):
    """An ndarray that can be weakly referenced, to see whether anything still holds it."""


class TrackingSession:
    """A session whose chunks' pixels and samples are weakly referenced as they are delivered."""

    def __init__(self, session):
        self.session, self.refs, self.alive = session, [], []
        self.cfg, self.transcript = session.cfg, session.transcript

    def estimated_chunks(self):
        return self.session.estimated_chunks()

    @property
    def ended_by(self):
        return self.session.ended_by

    def chunks(self, **kwargs):
        for c in self.session.chunks(**kwargs):
            gc.collect()
            self.alive.append(sum(r() is not None for r in self.refs))  # earlier chunks' arrays still held
            c = dataclasses.replace(c, frames=c.frames.view(Tracked), audio=c.audio.view(Tracked))
            self.refs += [weakref.ref(c.frames), weakref.ref(c.audio)]
            yield c


def test_a_stream_to_file_keeps_no_chunk_pixels(tmp_path):
    """Memory stays flat over a long stream: the timing report keeps the timings, not every chunk's frames."""
    model = StreamChar.from_config(tiny(), seed=0)
    session = TrackingSession(StreamSession(model, text="hello there", ref_image=IMG, max_seconds=6 * 1.375,
                                            stop_at_end=False, sampler="student"))
    report = stream_to_file(session, tmp_path / "out.mp4", progress=False)
    assert report["chunks"] == 6 and len(session.refs) == 12
    # bounded: at most the previous chunk's frames and audio (the consumer's loop variable) while the next is made;
    # keeping them for the report would give 0, 2, 4, 6, ...
    assert max(session.alive) <= 2, session.alive
    assert probe_mp4(tmp_path / "out.mp4")["video_frames"] == 6 * 33
