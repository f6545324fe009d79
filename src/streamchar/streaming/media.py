"""Reading the user's reference media: an image (PIL) and a voice sample (PyAV, any format ffmpeg reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamchar.errors import StreamCharError

MAX_IMAGE_PIXELS = 64_000_000  # a reference image larger than this (e.g. 8000 x 8000) is refused


def load_image(path: str | Path, height: int, width: int) -> np.ndarray:
    """-> (height, width, 3) uint8 RGB, upright by its EXIF orientation: scaled to cover, then centre-cropped."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise StreamCharError(f"reference image {path} is a folder, not an image file")
    if not path.is_file():
        raise StreamCharError(f"reference image not found: {path}")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise StreamCharError(f"reference image {path} is {im.width}x{im.height}: larger than the "
                                      f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels accepted; scale it down first")
            im = ImageOps.exif_transpose(im).convert("RGB")  # phone photos: rotate as the camera held them
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise StreamCharError(f"cannot read reference image {path}: not an image file ({e.__class__.__name__})") from None
    return fit_image(im, height, width)


def fit_image(image, height: int, width: int) -> np.ndarray:
    """A PIL image or (h, w, 3) uint8 array -> (height, width, 3) uint8: scaled to cover, then centre-cropped."""
    from PIL import Image

    im = Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
    if (im.height, im.width) == (height, width):
        return np.asarray(im, dtype=np.uint8).copy()
    scale = max(height / im.height, width / im.width)
    size = (max(width, round(im.width * scale)), max(height, round(im.height * scale)))
    im = im.resize(size, Image.Resampling.BICUBIC)
    left, top = (im.width - width) // 2, (im.height - height) // 2
    return np.asarray(im.crop((left, top, left + width, top + height)), dtype=np.uint8).copy()


def load_audio(path: str | Path | bytes, sample_rate: int, channels: int,
               max_seconds: float | None = None) -> np.ndarray:
    """A file's (or a media file's bytes') soundtrack -> (channels, samples) float32 in [-1, 1] at
    `sample_rate`, resampled by PyAV; its first `max_seconds` when given."""
    import io

    import av

    if isinstance(path, bytes):
        source, path = io.BytesIO(path), "(in memory)"
    else:
        path = Path(path)
        if not path.is_file():
            raise StreamCharError(f"reference audio not found: {path}")
        source = str(path)
    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
    parts = []
    try:
        with av.open(source) as container:
            if not container.streams.audio:
                raise StreamCharError(f"cannot read reference audio {path}: it has no audio stream")
            for frame in container.decode(audio=0):
                parts += [f.to_ndarray() for f in resampler.resample(frame)]
            parts += [f.to_ndarray() for f in resampler.resample(None)]
    except av.error.FFmpegError as e:
        raise StreamCharError(f"cannot read reference audio {path}: {e.strerror or 'not an audio file'}") from None
    if not parts:
        raise StreamCharError(f"reference audio {path} holds no samples")
    wave = np.concatenate(parts, axis=1).astype(np.float32)
    if max_seconds is not None:
        wave = wave[:, : int(max_seconds * sample_rate)]
    return np.clip(wave, -1.0, 1.0)


def voiced_span(audio: np.ndarray, sample_rate: int, frame_s: float = 0.02, below_peak_db: float = 30.0,
                floor: float = 1e-3) -> tuple[float, float] | None:
    """Where speech starts and ends in `audio` ((samples,) or (channels, samples)), in seconds: the first and
    the last 20 ms frame whose RMS is within `below_peak_db` of the loudest frame's and above `floor`
    (-60 dBFS). None when nothing is voiced."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim == 2:
        audio = audio.mean(0)
    n = max(1, round(frame_s * sample_rate))
    frames = len(audio) // n
    if frames == 0:
        return None
    rms = np.sqrt(np.mean(np.square(audio[:frames * n].reshape(frames, n)), axis=1))
    idx = np.flatnonzero((rms > floor) & (rms >= rms.max() * 10 ** (-below_peak_db / 20)))
    return (float(idx[0] * n / sample_rate), float((idx[-1] + 1) * n / sample_rate)) if len(idx) else None
