"""Write a streamed talking character to MP4 (H.264 + AAC), one chunk at a time, atomically.

Each `write(frames, audio)` call encodes one chunk. Video timestamps come from the frame count
(time base 1/fps) and audio timestamps from the resampled sample count (time base 1/audio_rate),
so the tracks cannot drift apart however long the stream runs. The file is written to a hidden
temporary name next to the target and renamed into place only on a clean `close()`.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamchar.errors import StreamCharError

# Sample rates the AAC encoder accepts (ascending). Our model rates (24576, 49152) are not among them.
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def default_audio_rate(sample_rate: int) -> int:
    """Smallest AAC rate >= min(sample_rate, 48000): never upsample past need, never above 48 kHz.

    24576 -> 32000, 49152 -> 48000, 16000 -> 16000.
    """
    target = min(int(sample_rate), 48000)
    return next(r for r in AAC_RATES if r >= target)


class MP4Writer:
    """Context manager writing RGB frames + float audio chunks to an MP4 (libx264 yuv420p + AAC).

    Usage:
        with MP4Writer("out.mp4", width=512, height=512, sample_rate=24576) as w:
            for frames, audio in chunks:  # (T, H, W, 3) uint8, (C, S) or (S,) float32
                w.write(frames, audio)

    If the `with` block raises (or `abort()` is called) no output file is left behind.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fps: int = 24,
        width: int,
        height: int,
        sample_rate: int,
        channels: int = 1,
        audio_rate: int | None = None,
        crf: int = 20,
        preset: str = "veryfast",
    ):
        self.path = Path(path)
        parent = self.path.parent
        if not parent.is_dir():
            raise StreamCharError(f"output folder does not exist: {parent} (for {self.path})")
        if self.path.is_dir():
            raise StreamCharError(f"output path is a folder, expected a file: {self.path}")
        if not (isinstance(fps, int) and fps > 0):
            raise StreamCharError(f"fps must be a positive integer, got {fps!r}")
        for name, size in (("width", width), ("height", height)):
            if not (isinstance(size, int) and size > 0 and size % 2 == 0):
                raise StreamCharError(f"{name} must be a positive even integer (yuv420p), got {size!r}")
        if not (isinstance(sample_rate, int) and sample_rate > 0):
            raise StreamCharError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if channels not in (1, 2):
            raise StreamCharError(f"channels must be 1 or 2, got {channels!r}")
        if audio_rate is None:
            audio_rate = default_audio_rate(sample_rate)
        if audio_rate not in AAC_RATES:
            raise StreamCharError(f"audio_rate {audio_rate!r} is not an AAC sample rate; use one of {AAC_RATES}")

        self.fps, self.width, self.height = fps, width, height
        self.sample_rate, self.channels, self.audio_rate = sample_rate, channels, audio_rate
        self.layout = "mono" if channels == 1 else "stereo"
        self.frames_written = 0  # video frames given to the encoder
        self.samples_written = 0  # input audio samples (per channel, at sample_rate) given to the writer
        self._audio_out = 0  # resampled samples (at audio_rate) given to the AAC encoder = next audio pts
        self._closed = False

        self.tmp_path = parent / f".{self.path.name}.{os.getpid()}.partial.mp4"
        # faststart: the index (moov) goes to the front when the file is closed, so a browser plays it while
        # it downloads
        self._container = av.open(str(self.tmp_path), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            self._video = self._container.add_stream(
                "libx264", rate=fps, options={"crf": str(crf), "preset": preset}
            )
            self._video.width, self._video.height = width, height
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.time_base = Fraction(1, fps)

            self._audio = self._container.add_stream("aac", rate=audio_rate, layout=self.layout)
            self._audio.codec_context.time_base = Fraction(1, audio_rate)
            self._audio.codec_context.open()  # so frame_size (1024 for AAC) is known
            # frame_size makes the resampler emit exactly the chunks the AAC encoder wants.
            self._resampler = av.AudioResampler(
                format="fltp", layout=self.layout, rate=audio_rate, frame_size=self._audio.codec_context.frame_size
            )
        except BaseException:
            self.abort()
            raise

    # -- writing ---------------------------------------------------------------------------------

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        """Encode one chunk: frames (T, H, W, 3) uint8 RGB, audio (channels, S) or (S,) float32 in [-1, 1]."""
        if self._closed:
            raise StreamCharError(f"MP4Writer for {self.path} is already closed")
        frames = self._check_frames(frames)
        audio = self._check_audio(audio)

        for rgb in frames:
            # PyAV copies the array's buffer as if it were C-contiguous: a strided view (decoders that work
            # channels-last hand out such frames) would be read as garbage, so make it contiguous first
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.frames_written
            frame.time_base = Fraction(1, self.fps)
            self._container.mux(self._video.encode(frame))
            self.frames_written += 1

        if audio.shape[1]:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout=self.layout)
            frame.sample_rate = self.sample_rate
            frame.pts = self.samples_written
            frame.time_base = Fraction(1, self.sample_rate)
            self.samples_written += audio.shape[1]
            self._encode_audio(self._resampler.resample(frame))

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        return check_frames(frames, self.height, self.width)

    def _check_audio(self, audio: np.ndarray) -> np.ndarray:
        return check_audio(audio, self.channels)

    def _encode_audio(self, frames: list) -> None:
        for frame in frames:
            frame.pts = self._audio_out
            frame.time_base = Fraction(1, self.audio_rate)
            self._audio_out += frame.samples
            self._container.mux(self._audio.encode(frame))

    # -- finishing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush resampler and encoders, finish the file and move it to `path`."""
        if self._closed:
            return
        try:
            self._encode_audio(self._resampler.resample(None))  # the resampler holds back a few samples
            self._container.mux(self._video.encode(None))
            self._container.mux(self._audio.encode(None))
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        """Stop without producing an output file (the temporary file is removed)."""
        self._closed = True
        try:
            self._container.close()
        except Exception:
            pass
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> MP4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def check_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """A chunk's frames: (T, height, width, 3) uint8, or a one-line error naming what is wrong."""
    if not isinstance(frames, np.ndarray):
        raise StreamCharError(f"frames must be a numpy array (T, H, W, 3), got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise StreamCharError(f"frames must be uint8, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
        raise StreamCharError(f"frames must have shape (T, {height}, {width}, 3), got {frames.shape}")
    return frames


def check_audio(audio: np.ndarray, channels: int) -> np.ndarray:
    """A chunk's audio: (channels, S) float32 ((S,) for mono), finite; clipped to [-1, 1]."""
    if not isinstance(audio, np.ndarray):
        raise StreamCharError(f"audio must be a numpy array ({channels}, S), got {type(audio).__name__}")
    if audio.dtype != np.float32:
        raise StreamCharError(f"audio must be float32, got dtype {audio.dtype}")
    if audio.ndim == 1 and channels == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[0] != channels:
        raise StreamCharError(f"audio must have shape ({channels}, S) (or (S,) for mono), got {audio.shape}")
    if not np.isfinite(audio).all():
        raise StreamCharError("audio contains NaN or inf")
    return np.clip(audio, -1.0, 1.0)


def probe_mp4(path: str | os.PathLike) -> dict:
    """Decode an MP4 fully and report frame count, fps, size, audio duration/rate and codec names."""
    path = Path(path)
    if not path.is_file():
        raise StreamCharError(f"no such video file: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise StreamCharError(f"cannot open video file {path}: {e}") from e
    with container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        n_frames, n_samples = 0, 0
        for packet in container.demux(*[s for s in (video, audio) if s is not None]):
            for frame in packet.decode():
                if packet.stream is video:
                    n_frames += 1
                else:
                    n_samples += frame.samples
        rate = audio.codec_context.sample_rate if audio else 0
        return {
            "video_frames": n_frames,
            "fps": float(video.average_rate or video.guessed_rate or 0) if video else 0.0,
            "width": video.codec_context.width if video else 0,
            "height": video.codec_context.height if video else 0,
            "audio_seconds": n_samples / rate if rate else 0.0,
            "audio_rate": rate,
            "video_codec": video.codec_context.name if video else None,
            "audio_codec": audio.codec_context.name if audio else None,
        }
