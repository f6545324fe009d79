"""Sync-C / Sync-D with SyncNet (Chung & Zisserman, "Out of time", 2016), as joonson/syncnet_python computes them.

Network (`SyncNet`): the `S` class of syncnet_python `SyncNetModel.py`, same layers and the same parameter and
buffer names (`netcnnaud`, `netfcaud`, `netcnnlip`, `netfclip`), so the published `syncnet_v2.model` (a plain
state dict: upstream `SyncNetInstance.loadParameters` reads it with `torch.load(..., weights_only=True)` and
copies it key by key) loads with `load_state_dict(strict=True)`. Audio branch: (N, 1, 13, 20) MFCCs -> (N, 1024);
lip branch: (N, 3, 5, 224, 224) -> (N, 1024). File: `path` if given, else $STREAMCHAR_SYNCNET (`load_syncnet`).

Protocol (upstream `run_pipeline.py` builds 25 fps face-crop clips, `SyncNetInstance.evaluate` scores them;
`run_syncnet.py` / `demo_syncnet.py` defaults: vshift 15, batch_size 20):
- audio: mono (channels averaged, as ffmpeg `-ac 1`), resampled to 16 kHz (`scipy.signal.resample_poly`; upstream:
  ffmpeg `-ar 16000`), quantised to int16 values (round(x * 32768), clipped, as ffmpeg's `pcm_s16le`; float input
  must lie in [-1, 1]) and kept at that scale: upstream reads the wav with `scipy.io.wavfile` (int16) and calls
  `python_speech_features.mfcc(audio, 16000)` with its defaults (25 ms frames every 10 ms -> 100 MFCC frames/s,
  13 coefficients, the first one replaced by the log frame energy; the energy depends on the int16 scale), then
  transposes it (`zip(*mfcc)`) to (13, M).
- video: 25 fps. Upstream re-encodes with ffmpeg `-r 25`; here other frame rates are resampled by nearest frame:
  output frame j shows input frame floor(j * fps / 25 + 0.5), round(T * 25 / fps) output frames; the result says
  so (`fps_resampled`).
- face crop (upstream `crop_video`): per frame a box (x0, y0, x1, y1) gives the centre (cx, cy) and the half size
  s = max(x1 - x0, y1 - y0) / 2; the frame is padded by int(s * (1 + 2 * 0.4)) pixels of value 110 and the crop is
  rows cy - s .. cy + 1.8 s, columns cx - 1.4 s .. cx + 1.4 s (crop_scale 0.4; indices truncated with int()),
  resized to 224x224 with cv2.resize (bilinear). Upstream smooths s, cx and cy over time with
  `scipy.signal.medfilt(kernel_size=13)` first: `FaceDetector.track` and `smooth_boxes` do that; per-frame boxes
  given to `syncnet_scores` are used as given. `boxes=None` means the frames already are face crops (the input
  of `evaluate`); they are resized to 224x224 if needed.
- lip input: the crops as cv2 reads them, i.e. BGR, float32 in [0, 255] (no normalisation), window i is frames
  i .. i+4 -> (1, 3, 5, 224, 224). Audio input: MFCC columns 4i .. 4i+19 (0.2 s) -> (1, 1, 13, 20).
- windows: min_length = min(video frames, floor(16 kHz samples / 640)); windows i = 0 .. min_length - 6, i.e.
  min_length - 5 of them (upstream's `lastframe = min_length - 5`; one more would fit, upstream leaves it out).
  Embedded in batches of 20 under no_grad.
- scores: `streamchar.eval.sync.sync_scores(video_emb, audio_emb, max_lag=15, distance="euclidean")`: upstream
  `calc_pdist` zero-pads the audio embeddings by vshift at both ends and uses `F.pairwise_distance`, which is
  ||v - a + 1e-6||; we add that 1e-6 to the video embeddings, which gives the same formula (also against the
  zero padding). Sync-D = min over lags of the mean distance, Sync-C = median - min, offset = vshift - argmin
  (audio delayed by d frames -> -d). Distances are float64 here, float32 upstream.
What differs: no video/audio codec round trip (upstream writes the crops as XVID .avi and re-reads them as JPEGs),
and faces are found by `FaceDetector` (OpenCV's YuNet, `cv2.FaceDetectorYN`, from a LOCAL ONNX file,
$STREAMCHAR_FACE_DETECTOR; the highest-scoring face per frame, frames without one take the nearest frame's box)
rather than upstream's S3FD (conf 0.9 on frames scaled by 0.25) with IoU tracking, linear interpolation of missed
frames, a 100-frame minimum track and scene cuts: crops differ a little, so numbers can differ slightly from
syncnet_python's. Record `file_sha256` of the weights next to the numbers (`syncnet_protocol`).
"""

from __future__ import annotations

import os
from math import gcd
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from streamchar.errors import StreamCharError
from streamchar.eval.features import file_sha256, weights_path
from streamchar.eval.sync import MAX_LAG, sync_scores

METRIC = "Sync-C/Sync-D (SyncNet)"
SYNCNET_ENV = "STREAMCHAR_SYNCNET"
SYNCNET_FILE = "syncnet_v2.model"
EMBED_DIM = 1024

FPS = 25  # SyncNet's video rate
SAMPLE_RATE = 16000  # SyncNet's audio rate
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MFCC_PER_FRAME = 4  # 100 MFCC frames/s over 25 video frames/s
NUM_MFCC = 13
WINDOW_FRAMES = 5  # video frames per window
WINDOW_MFCC = WINDOW_FRAMES * MFCC_PER_FRAME  # 20 MFCC frames = 0.2 s
CROP_SIZE = 224
CROP_SCALE = 0.40  # run_pipeline.py --crop_scale
PAD_VALUE = 110  # crop_video pads frames with this value
SMOOTH_KERNEL = 13  # crop_video's medfilt kernel_size
BATCH_SIZE = 20  # run_syncnet.py --batch_size
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's default eps

FACE_DETECTOR_ENV = "STREAMCHAR_FACE_DETECTOR"
FACE_DETECTOR_FILE = "face_detection_yunet_2023mar.onnx"


# ---------------------------------------------------------------- the network


class SyncNet(nn.Module):
    """syncnet_python's `S`: two branches into a shared 1024-d space. Parameter names match syncnet_v2.model."""

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        # audio: (N, 1, 13, 20) MFCCs
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),  # (N, 64, 13, 20)
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),  # (N, 192, 13, 20)
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),  # (N, 192, 11, 9)
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),  # (N, 256, 5, 4)
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),  # (N, 512, 1, 1)
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, embed_dim),
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, embed_dim),
        )
        # lips: (N, 3, 5, 224, 224) BGR in [0, 255]
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),  # (N, 96, 1, 109, 109)
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # (N, 96, 1, 54, 54)
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),  # (N, 256, 1, 26, 26)
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # (N, 256, 1, 13, 13)
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # (N, 256, 1, 6, 6)
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),  # (N, 512, 1, 1, 1)
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows -> (N, 1024)."""
        mid = self.netcnnaud(x)  # (N, 512, 1, 1)
        return self.netfcaud(mid.reshape(mid.shape[0], -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR float crops in [0, 255] -> (N, 1024)."""
        mid = self.netcnnlip(x)  # (N, 512, 1, 1, 1)
        return self.netfclip(mid.reshape(mid.shape[0], -1))


def syncnet_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The weights file: `path`, else $STREAMCHAR_SYNCNET (a folder holding syncnet_v2.model is accepted)."""
    return weights_path(METRIC, SYNCNET_ENV, path, SYNCNET_FILE)


def load_syncnet(path: str | os.PathLike | None = None, device="cpu") -> SyncNet:
    """SyncNet with the published weights (syncnet_v2.model, a state dict) from `path` or $STREAMCHAR_SYNCNET,
    loaded strictly, in eval mode. BatchNorm `num_batches_tracked` counters (unused in eval; absent from files
    saved before PyTorch 0.4.1) are set to 0 when the file has none of them."""
    p = syncnet_weights_path(path)
    try:
        state = torch.load(str(p), map_location=torch.device(device), weights_only=True)
    except Exception as e:  # a truncated download, a pickled module, not a torch file at all
        raise StreamCharError(f"{METRIC}: {p} is not a state dict torch.load(weights_only=True) can read "
                              f"({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StreamCharError(f"{METRIC}: {p} holds a {type(state).__name__}, not a state dict of tensors")
    model = SyncNet()
    expected = model.state_dict()
    state = dict(state)
    if not any(k.endswith("num_batches_tracked") for k in state):
        state |= {k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        first = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise StreamCharError(f"{METRIC}: {p} is not a SyncNet (syncnet_v2) state dict: {first} "
                              f"({len(missing)} missing, {len(unexpected)} unexpected)")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise StreamCharError(f"{METRIC}: {p} does not match SyncNet: {k!r} has shape {tuple(state[k].shape)}, "
                                  f"expected {tuple(v.shape)}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# ---------------------------------------------------------------- audio: 16 kHz MFCCs


def audio_16k(audio, sample_rate: int) -> np.ndarray:
    """(S,) or (channels, S) audio -> (S',) float64 mono at 16 kHz holding int16 values (as ffmpeg's pcm_s16le).
    int16 input is taken as is; float input must lie in [-1, 1] and is scaled by 32768."""
    x = np.asarray(audio)
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise StreamCharError(f"{METRIC}: sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if x.ndim == 2:
        if x.shape[0] > x.shape[1]:
            raise StreamCharError(f"{METRIC}: audio must be (S,) or (channels, S), got shape {x.shape} "
                                  "(more channels than samples: transpose it?)")
    elif x.ndim != 1:
        raise StreamCharError(f"{METRIC}: audio must be (S,) or (channels, S), got shape {x.shape}")
    if x.size == 0:
        raise StreamCharError(f"{METRIC}: the audio is empty")
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise StreamCharError(f"{METRIC}: the audio contains NaN or inf")
        peak = float(np.abs(x).max())
        if peak > 1.0:
            raise StreamCharError(f"{METRIC}: float audio must lie in [-1, 1], got a peak of {peak:.4g} "
                                  "(pass int16 samples, or scale it)")
    else:
        raise StreamCharError(f"{METRIC}: audio must be int16 or float in [-1, 1], got dtype {x.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=0)  # (S,)
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = gcd(int(sample_rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g)  # (S * 16000 / sample_rate,)
    return np.clip(np.round(x * 32768.0), -32768, 32767)  # int16 values as float64


def mfcc(audio, sample_rate: int) -> np.ndarray:
    """(S,) or (channels, S) audio -> (13, M) float64 MFCCs, 100 frames/s, as syncnet_python computes them:
    `python_speech_features.mfcc(int16_audio_16k, 16000)` transposed. M = 1 + ceil((S16k - 400) / 160)."""
    return _mfcc_16k(audio_16k(audio, sample_rate))


def _mfcc_16k(x16: np.ndarray) -> np.ndarray:
    """(S16k,) int16-valued 16 kHz samples -> (13, M) MFCCs."""
    try:
        import python_speech_features
    except ImportError:
        raise StreamCharError(f"{METRIC} needs the package python_speech_features: "
                              "pip install python_speech_features") from None
    return python_speech_features.mfcc(x16, SAMPLE_RATE).T  # (M, 13) -> (13, M), upstream's zip(*mfcc)


# ---------------------------------------------------------------- video: 25 fps, face crops


def _check_video(frames) -> np.ndarray:
    v = np.asarray(frames)
    if v.dtype != np.uint8:
        raise StreamCharError(f"{METRIC}: frames must be uint8 RGB, got dtype {v.dtype}")
    if v.ndim != 4 or v.shape[-1] != 3 or v.shape[1] < 1 or v.shape[2] < 1:
        raise StreamCharError(f"{METRIC}: frames must be (T, H, W, 3) uint8 RGB, got shape {v.shape}")
    if v.shape[0] < 1:
        raise StreamCharError(f"{METRIC}: no frames given")
    return v


def _check_fps(fps) -> float:
    try:
        f = float(fps)
    except (TypeError, ValueError):
        raise StreamCharError(f"{METRIC}: fps must be a positive number, got {fps!r}") from None
    if not np.isfinite(f) or f <= 0:
        raise StreamCharError(f"{METRIC}: fps must be a positive number, got {fps!r}")
    return f


def frame_indices_25fps(num_frames: int, fps: float) -> np.ndarray:
    """Input frame shown by each 25 fps output frame (nearest in time): (round(T * 25 / fps),) int64.
    At 25 fps: 0 .. T-1."""
    f = _check_fps(fps)
    if int(num_frames) < 1:
        raise StreamCharError(f"{METRIC}: no frames given (num_frames={num_frames})")
    if abs(f - FPS) < 1e-9:
        return np.arange(int(num_frames))
    n = max(1, int(np.floor(num_frames * FPS / f + 0.5)))
    return np.minimum(np.floor(np.arange(n) * (f / FPS) + 0.5).astype(np.int64), int(num_frames) - 1)


def _check_box(box, height: int, width: int, where: str = "box") -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise StreamCharError(f"{METRIC}: {where} must be (x0, y0, x1, y1) in pixels, got {box!r}") from None
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise StreamCharError(f"{METRIC}: {where} has a non-finite coordinate: {box!r}")
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise StreamCharError(f"{METRIC}: {where} (x0, y0, x1, y1) = {(x0, y0, x1, y1)} must be at least 2 px "
                              "wide and high with x1 > x0, y1 > y0")
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise StreamCharError(f"{METRIC}: {where} {(x0, y0, x1, y1)} has its centre outside the {height}x{width} "
                              "frame")
    return x0, y0, x1, y1


def crop_face(frame, box, crop_scale: float = CROP_SCALE, size: int = CROP_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 frame, box (x0, y0, x1, y1) -> (size, size, 3) uint8: syncnet_python's `crop_video` crop
    (module docstring). Colour order is kept (RGB in, RGB out)."""
    import cv2

    frame = np.asarray(frame)
    x0, y0, x1, y1 = _check_box(box, frame.shape[0], frame.shape[1])
    cs = float(crop_scale)
    s = max(y1 - y0, x1 - x0) / 2  # half size of the detection
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    bsi = int(s * (1 + 2 * cs))  # padding
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), mode="constant", constant_values=PAD_VALUE)
    my, mx = cy + bsi, cx + bsi  # centre in the padded frame
    face = padded[max(0, int(my - s)):int(my + s * (1 + 2 * cs)),
                  max(0, int(mx - s * (1 + cs))):int(mx + s * (1 + cs))]  # about (2.8 s, 2.8 s, 3)
    if face.shape[0] < 1 or face.shape[1] < 1:
        raise StreamCharError(f"{METRIC}: box {box!r} gives an empty crop")
    return cv2.resize(np.ascontiguousarray(face), (size, size))  # bilinear, as cv2.resize's default


def smooth_boxes(boxes, kernel: int = SMOOTH_KERNEL) -> np.ndarray:
    """(T, 4) per-frame boxes (x0, y0, x1, y1) -> (T, 4) float64 square boxes (cx - s, cy - s, cx + s, cy + s) after
    `scipy.signal.medfilt(kernel_size=kernel)` of the half size s = max(w, h) / 2 and the centre (cx, cy), as
    upstream `crop_video` (kernel 13, zero-padded ends). Clips shorter than the kernel use the largest odd
    kernel <= T. The crop of a smoothed box is upstream's crop of the smoothed detection."""
    from scipy.signal import medfilt

    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4 or len(b) == 0:
        raise StreamCharError(f"{METRIC}: boxes must be (T, 4) (x0, y0, x1, y1), got shape {b.shape}")
    if not np.isfinite(b).all():
        raise StreamCharError(f"{METRIC}: boxes contain NaN or inf")
    if not isinstance(kernel, (int, np.integer)) or kernel < 1 or kernel % 2 == 0:
        raise StreamCharError(f"{METRIC}: the median-filter kernel must be an odd int >= 1, got {kernel!r}")
    k = min(int(kernel), len(b) if len(b) % 2 == 1 else len(b) - 1)
    s = medfilt(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2, kernel_size=k)  # (T,)
    cx = medfilt((b[:, 0] + b[:, 2]) / 2, kernel_size=k)
    cy = medfilt((b[:, 1] + b[:, 3]) / 2, kernel_size=k)
    return np.stack([cx - s, cy - s, cx + s, cy + s], axis=1)  # (T, 4)


def face_crops(frames, boxes=None) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames -> (T, 224, 224, 3) uint8 RGB face crops. boxes: None (the frames already
    are face crops: resized to 224x224 if needed), one box (x0, y0, x1, y1) for every frame, or (T, 4) boxes."""
    import cv2

    v = _check_video(frames)
    T, H, W = v.shape[:3]
    if boxes is None:
        if (H, W) == (CROP_SIZE, CROP_SIZE):
            return v
        return np.stack([cv2.resize(np.ascontiguousarray(f), (CROP_SIZE, CROP_SIZE)) for f in v])
    b = _boxes_array(boxes)
    if b.shape == (4,):
        b = np.broadcast_to(b, (T, 4))
    if b.shape != (T, 4):
        raise StreamCharError(f"{METRIC}: boxes must be one (x0, y0, x1, y1) box or one per frame ({T}, 4), "
                              f"got shape {b.shape}")
    for t in range(T):
        _check_box(b[t], H, W, f"box of frame {t}")
    return np.stack([crop_face(v[t], b[t]) for t in range(T)])  # (T, 224, 224, 3)


def _boxes_array(boxes) -> np.ndarray:
    try:
        return np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise StreamCharError(f"{METRIC}: boxes must be numbers (x0, y0, x1, y1), one box or one per frame; "
                              f"got {str(boxes)[:80]}") from None


# ---------------------------------------------------------------- windows and embeddings


def num_windows(num_frames: int, num_samples_16k: int) -> int:
    """Upstream's window count: min(T, floor(S / 640)) - 5 (`lastframe`)."""
    return min(int(num_frames), int(num_samples_16k) // SAMPLES_PER_FRAME) - WINDOW_FRAMES


def lip_batch(crops: np.ndarray, starts) -> torch.Tensor:
    """(T, 224, 224, 3) uint8 RGB crops, window starts -> (B, 3, 5, 224, 224) float32 BGR in [0, 255]."""
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(WINDOW_FRAMES)  # (B, 5)
    x = crops[idx][..., ::-1]  # (B, 5, 224, 224, 3) BGR, as cv2.imread gives upstream
    x = torch.from_numpy(np.ascontiguousarray(x)).float()
    return x.permute(0, 4, 1, 2, 3).contiguous()  # (B, 3, 5, 224, 224)


def audio_batch(mfccs: np.ndarray, starts) -> torch.Tensor:
    """(13, M) MFCCs, window starts (video frames) -> (B, 1, 13, 20) float32: columns 4i .. 4i+19."""
    idx = 4 * np.asarray(starts, dtype=np.int64)[:, None] + np.arange(WINDOW_MFCC)  # (B, 20)
    x = mfccs[:, idx].transpose(1, 0, 2)  # (B, 13, 20)
    return torch.from_numpy(np.ascontiguousarray(x)).float()[:, None]  # (B, 1, 13, 20)


def _embed(fn, x: torch.Tensor, what: str) -> np.ndarray:
    y = fn(x)
    if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[0] != x.shape[0]:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise StreamCharError(f"{METRIC}: the {what} branch returned {shape} for input {tuple(x.shape)}, "
                              f"expected ({x.shape[0]}, D)")
    return y.double().cpu().numpy()


def syncnet_embeddings(crops, mfccs, model, windows: int, batch_size: int = BATCH_SIZE, device=None):
    """(T, 224, 224, 3) uint8 RGB crops at 25 fps and (13, M) MFCCs -> (video (W, D), audio (W, D)) float64
    embeddings of windows 0 .. W-1, `batch_size` windows at a time, no grad."""
    if int(batch_size) < 1:
        raise StreamCharError(f"{METRIC}: batch_size must be >= 1, got {batch_size}")
    if windows < 1:
        raise StreamCharError(f"{METRIC}: no window to embed (windows={windows})")
    if len(crops) < windows + WINDOW_FRAMES - 1 or mfccs.shape[1] < 4 * (windows - 1) + WINDOW_MFCC:
        raise StreamCharError(f"{METRIC}: {windows} windows need {windows + 4} frames and "
                              f"{4 * (windows - 1) + WINDOW_MFCC} MFCC frames, got {len(crops)} and {mfccs.shape[1]}")
    if device is None:
        p = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
        device = p.device if p is not None else torch.device("cpu")
    video, audio = [], []
    with torch.no_grad():
        for i in range(0, windows, int(batch_size)):
            starts = np.arange(i, min(windows, i + int(batch_size)))
            video.append(_embed(model.forward_lip, lip_batch(crops, starts).to(device), "lip"))  # (B, D)
            audio.append(_embed(model.forward_aud, audio_batch(mfccs, starts).to(device), "audio"))  # (B, D)
    v, a = np.concatenate(video), np.concatenate(audio)
    if v.shape[1] != a.shape[1]:
        raise StreamCharError(f"{METRIC}: lip embeddings are {v.shape[1]}-d but audio embeddings {a.shape[1]}-d")
    return v, a


def scores_from_embeddings(video_emb, audio_emb, max_lag: int = MAX_LAG):
    """SyncNet's `calc_pdist` + `evaluate` reading on (W, D) embeddings -> sync.SyncResult. The 1e-6 added to the
    video embeddings reproduces `F.pairwise_distance`'s ||v - a + eps||."""
    return sync_scores(np.asarray(video_emb, np.float64) + PAIRWISE_EPS, audio_emb, max_lag, distance="euclidean")


def syncnet_scores(frames, audio, sample_rate: int, fps: float, model, boxes=None, max_lag: int = MAX_LAG,
                   batch_size: int = BATCH_SIZE, device=None) -> dict:
    """Sync-C, Sync-D and the AV offset of one clip, by syncnet_python's protocol (module docstring).

    frames: (T, H, W, 3) uint8 RGB at `fps`; audio: (S,) or (channels, S), int16 or float in [-1, 1], at
    `sample_rate`; model: `SyncNet` (or anything with `forward_lip` / `forward_aud`); boxes: None (frames are
    face crops), one (x0, y0, x1, y1) box, or (T, 4) per-frame boxes of the input frames."""
    v = _check_video(frames)
    f = _check_fps(fps)
    if not isinstance(max_lag, (int, np.integer)) or max_lag < 0:
        raise StreamCharError(f"{METRIC}: max_lag must be an int >= 0, got {max_lag!r}")
    idx = frame_indices_25fps(len(v), f)  # (T25,) input frame of each 25 fps frame
    resampled = abs(f - FPS) >= 1e-9
    b = None if boxes is None else _boxes_array(boxes)
    if b is not None and b.ndim == 2:  # per-frame boxes follow their frames
        if b.shape != (len(v), 4):
            raise StreamCharError(f"{METRIC}: boxes must be one (x0, y0, x1, y1) box or one per frame "
                                  f"({len(v)}, 4), got shape {b.shape}")
        for t in range(len(v)):
            _check_box(b[t], v.shape[1], v.shape[2], f"box of frame {t}")
        b = b[idx]
    crops = face_crops(v[idx], b)  # (T25, 224, 224, 3) uint8 RGB
    x16 = audio_16k(audio, sample_rate)  # (S16k,)
    mfccs = _mfcc_16k(x16)  # (13, M)
    windows = num_windows(len(crops), len(x16))
    if windows < 1:
        raise StreamCharError(f"{METRIC} needs at least {WINDOW_FRAMES + 1} frames ({(WINDOW_FRAMES + 1) / FPS:.2f} s) "
                              f"of 25 fps video and of audio; got {len(crops)} frames and "
                              f"{len(x16) / SAMPLE_RATE:.3f} s of audio")
    video_emb, audio_emb = syncnet_embeddings(crops, mfccs, model, windows, batch_size, device)
    r = scores_from_embeddings(video_emb, audio_emb, int(max_lag))
    return {
        "metric": METRIC,
        "sync_c": r.sync_c,
        "sync_d": r.sync_d,
        "offset": r.offset,
        "mean_dist": r.mean_dist,
        "windows": int(windows),
        "max_lag": int(max_lag),
        "fps_in": f,
        "fps_resampled": bool(resampled),
        "frames_in": int(len(v)),
        "frames_25fps": int(len(crops)),
        "video_seconds": len(crops) / FPS,
        "audio_seconds": len(x16) / SAMPLE_RATE,
        "crop": "frames are face crops" if boxes is None else "crop_video crop of the given boxes",
    }


def syncnet_protocol(weights: str | os.PathLike | None = None) -> dict:
    """How Sync-C / Sync-D were taken, for the report (with the weights file name and sha256 when given)."""
    p = {
        "metric": METRIC,
        "network": "SyncNet (joonson/syncnet_python SyncNetModel.S), weights syncnet_v2.model",
        "audio": "mono, 16 kHz (resample_poly), int16 scale, python_speech_features.mfcc defaults -> (13, M) "
                 "at 100 frames/s; window 20 MFCC frames from 4i",
        "video": "25 fps (nearest-frame resampling otherwise); crop_video crop (crop_scale 0.4, pad 110) resized "
                 "to 224x224; BGR float in [0, 255]; window 5 frames from i",
        "windows": "min(T, floor(S / 640)) - 5",
        "lags": f"+-{MAX_LAG} frames, audio embeddings zero-padded",
        "distance": "||v - a + 1e-6||_2 (F.pairwise_distance), mean over windows per lag",
        "scores": "Sync-D = min, Sync-C = median - min, offset = vshift - argmin",
        "face_detector": "YuNet (cv2.FaceDetectorYN) + medfilt(13) smoothing; upstream S3FD",
    }
    if weights is not None:
        p |= {"weights_file": Path(weights).name, "weights_sha256": file_sha256(weights)}
    return p


# ---------------------------------------------------------------- face detection (YuNet through OpenCV)


def fill_and_smooth(detections, kernel: int = SMOOTH_KERNEL) -> np.ndarray:
    """Per-frame detections (a box (x0, y0, x1, y1) or None) -> (T, 4) smoothed boxes: frames without a face take
    the box of the nearest frame with one (the earlier on a tie), then `smooth_boxes(kernel)`. No face in any
    frame -> StreamCharError."""
    dets = list(detections)
    found = [t for t, d in enumerate(dets) if d is not None]
    if not dets:
        raise StreamCharError(f"{METRIC}: no frames given to the face tracker")
    if not found:
        raise StreamCharError(f"{METRIC}: the face detector found no face in any of the {len(dets)} frames")
    have = np.array(found)
    boxes = np.empty((len(dets), 4))
    for t in range(len(dets)):
        nearest = have[np.argmin(np.abs(have - t))]  # argmin takes the first, i.e. the earlier, on a tie
        boxes[t] = np.asarray(dets[nearest], dtype=np.float64)
    return smooth_boxes(boxes, kernel)


def _cv2_message(e: Exception) -> str:
    """The part of a cv2.error after 'error: ', on one line, at most 160 characters."""
    text = " ".join(str(e).split())
    return (text.split("error: ", 1)[-1] or type(e).__name__)[:160]


class FaceDetector:
    """OpenCV's YuNet face detector (`cv2.FaceDetectorYN`) from a LOCAL ONNX file (`path`, else
    $STREAMCHAR_FACE_DETECTOR; e.g. face_detection_yunet_2023mar.onnx from the OpenCV model zoo).
    Upstream syncnet_python uses S3FD (conf 0.9 on frames scaled by 0.25); YuNet runs here at full resolution
    with score threshold 0.9, so boxes, crops and the scores can differ slightly."""

    def __init__(self, path: str | os.PathLike | None = None, score_threshold: float = 0.9,
                 nms_threshold: float = 0.3, top_k: int = 5000):
        import cv2

        if not 0.0 <= float(score_threshold) <= 1.0:
            raise StreamCharError(f"face detector: score_threshold must be in [0, 1], got {score_threshold!r}")
        self.path = weights_path("face detector", FACE_DETECTOR_ENV, path, FACE_DETECTOR_FILE)
        try:
            self.net = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), float(score_threshold),
                                                 float(nms_threshold), int(top_k))
        except cv2.error as e:
            raise StreamCharError(f"face detector: {self.path} is not a YuNet ONNX model OpenCV can load "
                                  f"({_cv2_message(e)})") from None
        self.size = (320, 320)

    def detect(self, frame) -> tuple[float, float, float, float] | None:
        """(H, W, 3) uint8 RGB frame -> the highest-scoring face as (x0, y0, x1, y1) in pixels, or None."""
        import cv2

        img = np.asarray(frame)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
            raise StreamCharError(f"face detector: a frame must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        if (w, h) != self.size:
            self.net.setInputSize((w, h))
            self.size = (w, h)
        try:
            _, faces = self.net.detect(np.ascontiguousarray(img[..., ::-1]))  # cv2 wants BGR
        except cv2.error as e:
            raise StreamCharError(f"face detector: {self.path} failed on a {h}x{w} frame ({_cv2_message(e)}): "
                                  "not a YuNet model?") from None
        if faces is None or len(faces) == 0:
            return None
        x, y, bw, bh = (float(v) for v in faces[int(np.argmax(faces[:, -1])), :4])  # rows: x, y, w, h, 10 lm, score
        return (x, y, x + bw, y + bh)

    def track(self, frames, kernel: int = SMOOTH_KERNEL) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames -> (T, 4) boxes (x0, y0, x1, y1): `detect` per frame, gaps filled from the
        nearest frame with a face, median-filtered over time (kernel 13, as upstream `crop_video`)."""
        v = _check_video(frames)
        return fill_and_smooth([self.detect(f) for f in v], kernel)
