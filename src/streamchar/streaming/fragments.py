"""Fragmented MP4 for live delivery: one init segment, then one fragment (moof + mdat) per chunk, as it is ready.

A browser's Media Source Extensions play the bytes in order: `init` (ftyp + moov), then each chunk's fragment.
libavformat's MP4 muxer cuts a fragment only when the next packet arrives, which would hold every chunk back
until the next one exists. So the encoders (H.264, AAC) live for the whole stream, and each chunk's packets
are muxed by a fresh MP4 muxer that is closed at once: its output is the chunk's complete fragment. With
`frag_discont` and an edit list each fragment carries its absolute decode time (tfdt), and `fragment_index`
numbers it, so the fragments of all muxers concatenate into one valid fragmented MP4 after the first muxer's
init segment. Every chunk starts with a key frame, so a fragment starts a GOP.

    w = FragmentWriter(fps=24, width=64, height=64, sample_rate=24576, frames_per_chunk=33)
    send(w.init)                                   # ftyp + moov (the codecs' parameters)
    for chunk in session:
        send(w.write(chunk.frames, chunk.audio))   # moof + mdat of this chunk
    send(w.close())                                # the encoders' tails (AAC holds back a few samples)
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
import numpy as np

from streamchar.errors import StreamCharError
from streamchar.streaming.writer import AAC_RATES, check_audio, check_frames, default_audio_rate

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+skip_trailer+frag_discont"


def top_level_boxes(data: bytes) -> list[tuple[str, bytes]]:
    """(type, bytes) of each top-level ISO BMFF box (size + 4-character type headers; 64-bit sizes too)."""
    boxes, i = [], 0
    while i < len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        elif size == 0:
            size = len(data) - i
        if size < 8 or i + size > len(data):
            raise StreamCharError(f"malformed MP4 box {kind!r} at byte {i}")
        boxes.append((kind.decode("latin-1"), data[i:i + size]))
        i += size
    return boxes


class FragmentWriter:
    """H.264 (yuv420p, no B-frames, a key frame per chunk) + AAC as an init segment and one fragment per chunk."""

    def __init__(self, *, fps: int, width: int, height: int, sample_rate: int, channels: int = 1,
                 frames_per_chunk: int = 33, audio_rate: int | None = None, crf: int = 23, preset: str = "veryfast"):
        if not (isinstance(fps, int) and fps > 0):
            raise StreamCharError(f"fps must be a positive integer, got {fps!r}")
        for name, size in (("width", width), ("height", height)):
            if not (isinstance(size, int) and size > 0 and size % 2 == 0):
                raise StreamCharError(f"{name} must be a positive even integer (yuv420p), got {size!r}")
        if channels not in (1, 2):
            raise StreamCharError(f"channels must be 1 or 2, got {channels!r}")
        audio_rate = audio_rate or default_audio_rate(sample_rate)
        if audio_rate not in AAC_RATES:
            raise StreamCharError(f"audio_rate {audio_rate!r} is not an AAC sample rate; use one of {AAC_RATES}")
        self.fps, self.width, self.height, self.channels = fps, width, height, channels
        self.sample_rate, self.audio_rate = sample_rate, audio_rate
        self.layout = "mono" if channels == 1 else "stereo"
        self.frames_written = self.samples_written = self._audio_out = 0
        self.fragments = 0
        self.closed = False

        # The encoders, in a container that is never written: its streams are the templates of every muxer's.
        self._encoders = av.open(io.BytesIO(), mode="w", format="mp4")
        self._video = self._encoders.add_stream("libx264", rate=fps, options={
            "crf": str(crf), "preset": preset, "tune": "zerolatency", "bframes": "0",
            "g": str(frames_per_chunk), "keyint_min": str(frames_per_chunk), "sc_threshold": "0"})
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        self._video.time_base = self._video.codec_context.time_base = Fraction(1, fps)
        self._audio = self._encoders.add_stream("aac", rate=audio_rate, layout=self.layout)
        self._audio.time_base = self._audio.codec_context.time_base = Fraction(1, audio_rate)
        self._encoders.start_encoding()  # opens both encoders: their parameters (SPS/PPS, AudioSpecificConfig)
        self._resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=audio_rate,
                                            frame_size=self._audio.codec_context.frame_size)
        self.init = b""  # ftyp + moov, known once the first fragment is muxed (the muxer writes both together)
        self._pending: list = []  # packets of the chunk being muxed

    @property
    def mime(self) -> str:
        """The MIME type with codecs, as Media Source Extensions want it: H.264 profile/level from the SPS."""
        sps = self._video.codec_context.extradata or b""
        i = sps.find(b"\x00\x00\x01")
        while i >= 0 and i + 6 < len(sps) and sps[i + 3] & 0x1F != 7:  # NAL type 7: sequence parameter set
            i = sps.find(b"\x00\x00\x01", i + 3)
        avc = sps[i + 4:i + 7].hex() if i >= 0 and i + 6 < len(sps) else "42e01e"  # else: baseline 3.0
        return f'video/mp4; codecs="avc1.{avc}, mp4a.40.2"'

    # -- one chunk -----------------------------------------------------------------------------------
    def write(self, frames: np.ndarray, audio: np.ndarray) -> bytes:
        """Encode one chunk (frames (T, H, W, 3) uint8, audio (channels, S) float32) -> its fragment's bytes."""
        if self.closed:
            raise StreamCharError("this FragmentWriter is closed")
        frames = check_frames(frames, self.height, self.width)
        audio = check_audio(audio, self.channels)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = self.frames_written, Fraction(1, self.fps)
            if i == 0:
                frame.pict_type = av.video.frame.PictureType.I  # each fragment starts a GOP
            self._pending += self._video.encode(frame)
            self.frames_written += 1
        if audio.shape[1]:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout=self.layout)
            frame.sample_rate, frame.pts = self.sample_rate, self.samples_written
            frame.time_base = Fraction(1, self.sample_rate)
            self.samples_written += audio.shape[1]
            self._encode_audio(self._resampler.resample(frame))
        return self._fragment()

    def close(self) -> bytes:
        """Flush the resampler and encoders -> the last fragment's bytes (empty when nothing was held back)."""
        if self.closed:
            return b""
        self._encode_audio(self._resampler.resample(None))
        self._pending += self._video.encode(None) + self._audio.encode(None)
        self.closed = True
        out = self._fragment() if self._pending else b""
        self._encoders.close()
        return out

    # -- inside --------------------------------------------------------------------------------------
    def _encode_audio(self, frames: list) -> None:
        for frame in frames:
            frame.pts, frame.time_base = self._audio_out, Fraction(1, self.audio_rate)
            self._audio_out += frame.samples
            self._pending += self._audio.encode(frame)

    def _fragment(self) -> bytes:
        """Mux the pending packets with a fresh muxer -> its moof + mdat (the first one also gives `init`)."""
        packets, self._pending = self._pending, []
        if not packets:
            return b""
        buf = io.BytesIO()
        self.fragments += 1
        with av.open(buf, mode="w", format="mp4", options={"movflags": MOVFLAGS, "use_editlist": "1",
                                                           "fragment_index": str(self.fragments)}) as mux:
            streams = {self._video.index: mux.add_stream_from_template(self._video, opaque=True),
                       self._audio.index: mux.add_stream_from_template(self._audio, opaque=True)}
            for s, template in ((streams[self._video.index], self._video), (streams[self._audio.index], self._audio)):
                s.time_base = template.time_base
            for p in sorted(packets, key=lambda p: float(p.dts * p.time_base)):  # interleaved by decode time
                p.stream = streams[p.stream_index]
                mux.mux(p)
        boxes = top_level_boxes(buf.getvalue())
        if not self.init:
            self.init = b"".join(b for kind, b in boxes if kind in ("ftyp", "moov"))
        return b"".join(b for kind, b in boxes if kind in ("moof", "mdat"))
