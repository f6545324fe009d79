"""Reading the videos under evaluation (PyAV): stream facts, the soundtrack, frames one at a time.

Frames are yielded one by one so a 5-minute stream at 512x512 (7,200 frames, 5.6 GB as uint8) is never
held whole; the soundtrack is small (300 s of 16 kHz mono is 19 MB) and is read at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamchar.errors import StreamCharError


class UnreadableVideo(StreamCharError):
    """A video file that does not open or decode (`streamchar eval` reports it and scores the others)."""


@dataclass
class VideoInfo:
    path: Path
    fps: float
    width: int
    height: int
    frames: int  # as the container declares it (estimated from the duration when it does not)
    seconds: float  # frames / fps
    has_audio: bool


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise StreamCharError(f"no such video file: {path}")
    try:
        return av.open(str(path))
    except av.FFmpegError as e:
        raise UnreadableVideo(f"cannot open video file {path}: {e.strerror or 'not a video file'}") from None


def video_info(path: str | Path) -> VideoInfo:
    """Stream facts of one video file without decoding it."""
    with _open(path) as c:
        if not c.streams.video:
            raise UnreadableVideo(f"{path} has no video stream")
        v = c.streams.video[0]
        fps = float(v.average_rate or v.guessed_rate or 0)
        if not fps > 0:
            raise UnreadableVideo(f"{path}: cannot tell the frame rate of its video stream")
        frames = int(v.frames or 0)
        if frames == 0 and v.duration is not None and v.time_base is not None:
            frames = int(round(float(v.duration * v.time_base) * fps))
        return VideoInfo(Path(path), fps, v.codec_context.width, v.codec_context.height, frames, frames / fps,
                         bool(c.streams.audio))


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of the first video stream, in order."""
    import av

    with _open(path) as c:
        frames = c.decode(video=0)
        i = 0
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.FFmpegError as e:
                raise UnreadableVideo(f"{path}: the video does not decode after frame {i} "
                                      f"({e.strerror or e.__class__.__name__})") from None
            i += 1
            yield frame.to_ndarray(format="rgb24")


def read_frames(path: str | Path, indices=None) -> np.ndarray:
    """(N, H, W, 3) uint8: all frames, or only those at `indices` (sorted, decoded in one pass)."""
    wanted = None if indices is None else set(int(i) for i in indices)
    frames = [f for i, f in enumerate(iter_frames(path)) if wanted is None or i in wanted]
    if not frames:
        raise UnreadableVideo(f"{path}: no video frames decoded")
    return np.stack(frames)


def read_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """The soundtrack as (S,) float32 mono (channels averaged) at `sample_rate` (default: the file's own)."""
    import av

    with _open(path) as c:
        if not c.streams.audio:
            raise StreamCharError(f"{path} has no audio stream")
        rate = int(sample_rate or c.streams.audio[0].codec_context.sample_rate)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        parts = []
        try:
            for frame in c.decode(audio=0):
                parts += [f.to_ndarray() for f in resampler.resample(frame)]
            parts += [f.to_ndarray() for f in resampler.resample(None)]
        except av.FFmpegError as e:
            raise UnreadableVideo(f"{path}: the soundtrack does not decode ({e.strerror or e.__class__.__name__})") \
                from None
    if not parts:
        raise UnreadableVideo(f"{path}: its audio stream holds no samples")
    return np.concatenate(parts, axis=1)[0].astype(np.float32), rate
