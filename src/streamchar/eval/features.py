"""Features for FID and FVD from the community-standard TorchScript networks, loaded from LOCAL files.

FID: Inception-v3 pool3 features (2048-d).
  Weights: NVIDIA's TorchScript Inception `inception-2015-12-05.pt`, the file StyleGAN2-ADA, StyleGAN3 and
  clean-fid use (NVlabs/stylegan2-ada-pytorch `metrics/frechet_inception_distance.py`:
  `detector_kwargs = dict(return_features=True)`; `metrics/metric_utils.py` feeds `detector(images)` with
  images uint8 (N, 3, H, W) in [0, 255]). Call: `model(images_uint8_NCHW, return_features=True) -> (N, 2048)`.
  The network resizes to 299x299 itself and normalises (x - 128) / 128 inside (clean-fid
  `cleanfid/inception_torchscript.py`). Frames are given at their own size, as StyleGAN2-ADA / StyleGAN3 do
  (clean-fid's "clean" mode instead resizes with PIL bicubic first: numbers differ between the two).
  File: `path` if given, else $STREAMCHAR_INCEPTION.

FVD: I3D Kinetics-400 logits (400-d) of 16-frame clips.
  Weights: StyleGAN-V's TorchScript port `i3d_torchscript.pt` of the tf.hub I3D used by the reference FVD
  (google-research `frechet_video_distance.py`). universome/fvd-comparison `compare_models.py` /
  `compare_metrics.py` call it as `model(x, rescale=False, resize=False, return_features=True)` with
  x float32 (B, 3, T, 224, 224) (videos (B, T, H, W, 3) permuted (0, 4, 1, 2, 3)); with rescale=False the
  values must already be what the tf.hub module takes: [-1, 1] (the reference `preprocess` does
  `2 * x / 255 - 1` and `create_id3_embedding` asserts the range). StyleGAN-V's own training metric instead
  passes uint8 with rescale=True, resize=True and lets the network rescale and resize; we do both here,
  explicitly, so the protocol is written down. File: `path` if given, else $STREAMCHAR_I3D.

  Clip protocol (`fvd_protocol` returns it as a dict for the report):
  - clips of CLIP_FRAMES = 16 consecutive frames (frame stride 1, the video's own frame rate);
  - `clips_per_video` = k evenly spaced, non-overlapping clips per video: starts i * (T - 16) // (k - 1),
    i = 0..k-1 (the first and the last 16 frames); k = 1 (default) is the first 16 frames. A video needs
    T >= 16 k frames; shorter is an error, never a silently shorter clip;
  - each frame: short side resized to 224 (torch bilinear, antialias=True, align_corners=False; the long side
    to round(L * 224 / S)), then the centre 224x224 crop (offset (L' - 224) // 2);
  - values 2 * x / 255 - 1 in float32, layout (B, 3, 16, 224, 224);
  - features are ordered video by video, clip by clip: (num_videos * k, 400).

Features come back as float64 numpy; `fid` / `fvd` fit Gaussians and take the Fréchet distance
(`streamchar.eval.frechet`). Record `file_sha256` of each weights file next to the numbers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamchar.errors import StreamCharError
from streamchar.eval.frechet import frechet_distance_features

INCEPTION_ENV = "STREAMCHAR_INCEPTION"
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_DIM = 2048

I3D_ENV = "STREAMCHAR_I3D"
I3D_FILE = "i3d_torchscript.pt"
I3D_DIM = 400
CLIP_FRAMES = 16
I3D_SIZE = 224


# ---------------------------------------------------------------- weights files


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_path(metric: str, env_var: str, option: str | os.PathLike | None, filename: str = "") -> Path:
    """The weights file for `metric`: `option` if given, else $env_var (empty counts as unset).
    A folder holding `filename` is accepted too. Nothing found -> one-line StreamCharError."""
    chosen = option if option is not None else (os.environ.get(env_var) or None)
    expected = f"the weights file {filename}" if filename else "a weights file"
    if chosen is None:
        raise StreamCharError(f"{metric} needs {expected}: pass its path or set {env_var}")
    p = Path(chosen).expanduser()
    if p.is_dir() and filename and (p / filename).is_file():
        p = p / filename
    if not p.is_file():
        raise StreamCharError(f"{metric} weights not found: no file at {p} (expected {expected}; "
                              f"pass its path or set {env_var})")
    return p


def _load_torchscript(metric: str, path: Path, device) -> torch.jit.ScriptModule:
    try:
        model = torch.jit.load(str(path), map_location=torch.device(device))
    except Exception as e:  # not TorchScript (a torch.save checkpoint, a pickle, a truncated download, ...)
        raise StreamCharError(f"{metric}: {path} is not a TorchScript file torch.jit.load can read "
                              f"({type(e).__name__})") from None
    return model.eval()


def load_inception(path: str | os.PathLike | None = None, device="cpu") -> torch.jit.ScriptModule:
    """NVIDIA's TorchScript Inception-v3 (inception-2015-12-05.pt) from `path` or $STREAMCHAR_INCEPTION."""
    return _load_torchscript("FID", weights_path("FID", INCEPTION_ENV, path, INCEPTION_FILE), device)


def load_i3d(path: str | os.PathLike | None = None, device="cpu") -> torch.jit.ScriptModule:
    """StyleGAN-V's TorchScript I3D (i3d_torchscript.pt) from `path` or $STREAMCHAR_I3D."""
    return _load_torchscript("FVD", weights_path("FVD", I3D_ENV, path, I3D_FILE), device)


def _call(metric: str, model, x: torch.Tensor, dim: int, **kwargs) -> torch.Tensor:
    """model(x, **kwargs) -> (B, dim), a wrong network or signature named in one line."""
    try:
        y = model(x, **kwargs)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StreamCharError(f"{metric}: the network failed on input {tuple(x.shape)} {x.dtype} with {kwargs}: "
                              f"{first}") from None
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (x.shape[0], dim):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise StreamCharError(f"{metric}: the network returned {shape}, expected ({x.shape[0]}, {dim}): "
                              "wrong weights file?")
    return y


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise StreamCharError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


# ---------------------------------------------------------------- FID: Inception-v3 pool features


def _check_frames(frames, what: str) -> np.ndarray:
    x = np.asarray(frames)
    if x.dtype != np.uint8:
        raise StreamCharError(f"{what} must be uint8 RGB in [0, 255], got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] < 1 or x.shape[2] < 1:
        raise StreamCharError(f"{what} must be (N, H, W, 3) uint8 RGB, got shape {x.shape}")
    return x


def inception_features(frames_uint8, model, batch_size: int = 64, device="cpu") -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames -> (N, 2048) float64 Inception pool3 features.
    Each batch goes in as uint8 (B, 3, H, W) at the frames' own size: `model(x, return_features=True)`."""
    frames = _check_frames(frames_uint8, "FID frames")
    if frames.shape[0] == 0:
        raise StreamCharError("FID: no frames given")
    batch_size = _check_batch_size(batch_size)
    out = np.empty((frames.shape[0], INCEPTION_DIM), dtype=np.float64)  # (N, 2048)
    with torch.no_grad():
        for i in range(0, frames.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch_size]))  # (B, H, W, 3) uint8
            x = x.permute(0, 3, 1, 2).contiguous().to(device)  # (B, 3, H, W) uint8
            y = _call("FID", model, x, INCEPTION_DIM, return_features=True)  # (B, 2048)
            out[i:i + x.shape[0]] = y.double().cpu().numpy()
    return out


def fid_protocol(weights: str | os.PathLike | None = None) -> dict:
    """How FID features were taken, for the report (with the weights file name and sha256 when given)."""
    p = {
        "metric": "FID",
        "network": "Inception-v3, NVIDIA TorchScript inception-2015-12-05.pt (StyleGAN2-ADA / StyleGAN3)",
        "features": "pool3, 2048-d",
        "input": "uint8 RGB (N, 3, H, W) in [0, 255] at the frames' own size; the network resizes to 299x299",
        "call": "model(images, return_features=True)",
        "distance": "Frechet distance of Gaussians fitted in float64 (unbiased covariance)",
    }
    return p | _weights_record(weights)


# ---------------------------------------------------------------- FVD: I3D logits of 16-frame clips


def clip_starts(num_frames: int, clips_per_video: int = 1, clip_frames: int = CLIP_FRAMES) -> list[int]:
    """First frame of each clip: k evenly spaced non-overlapping clips, i * (T - L) // (k - 1); k = 1 -> [0]."""
    T, k, L = int(num_frames), int(clips_per_video), int(clip_frames)
    if k < 1:
        raise StreamCharError(f"FVD: clips_per_video must be >= 1, got {clips_per_video}")
    if T < k * L:
        raise StreamCharError(f"FVD: a video of {T} frames is too short for {k} non-overlapping clip(s) of "
                              f"{L} frames (needs at least {k * L})")
    if k == 1:
        return [0]
    return [i * (T - L) // (k - 1) for i in range(k)]


def resize_center_crop(frames: torch.Tensor, size: int = I3D_SIZE) -> torch.Tensor:
    """(T, 3, H, W) float -> (T, 3, size, size): short side resized to `size` (bilinear, antialias), long side
    to round(L * size / S); then the centre crop. A frame whose short side already is `size` is not resampled."""
    H, W = frames.shape[-2:]
    short = min(H, W)
    if short != size:
        h, w = (size, int(W * size / short + 0.5)) if H <= W else (int(H * size / short + 0.5), size)
        frames = F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    H, W = frames.shape[-2:]
    top, left = (H - size) // 2, (W - size) // 2
    return frames[..., top:top + size, left:left + size]


def _check_video(video, index: int) -> np.ndarray:
    v = _check_frames(video, f"FVD video {index}")
    if v.shape[0] < CLIP_FRAMES:
        raise StreamCharError(f"FVD video {index} has {v.shape[0]} frames, fewer than the {CLIP_FRAMES} "
                              "of one I3D clip")
    return v


def video_clips(video_uint8, clips_per_video: int = 1, index: int = 0) -> torch.Tensor:
    """One (T, H, W, 3) uint8 video -> (k, 3, 16, 224, 224) float32 clips in [-1, 1], as I3D takes them."""
    v = _check_video(video_uint8, index)
    clips = []
    for s in clip_starts(v.shape[0], clips_per_video):
        x = torch.from_numpy(np.ascontiguousarray(v[s:s + CLIP_FRAMES]))  # (16, H, W, 3) uint8
        x = x.permute(0, 3, 1, 2).float()  # (16, 3, H, W) in [0, 255]
        x = resize_center_crop(x)  # (16, 3, 224, 224)
        x = (x * (2.0 / 255.0) - 1.0).clamp(-1.0, 1.0)  # [-1, 1], the tf.hub I3D range
        clips.append(x.permute(1, 0, 2, 3))  # (3, 16, 224, 224)
    return torch.stack(clips)  # (k, 3, 16, 224, 224)


def i3d_features(videos, model, clips_per_video: int = 1, batch_size: int = 8, device="cpu") -> np.ndarray:
    """A list of (T, H, W, 3) uint8 RGB videos -> (len(videos) * clips_per_video, 400) float64 I3D logits,
    video by video, clip by clip. Clips go in `batch_size` at a time as
    `model(x, rescale=False, resize=False, return_features=True)`, x float32 (B, 3, 16, 224, 224) in [-1, 1]."""
    if isinstance(videos, np.ndarray) and videos.ndim == 4:
        raise StreamCharError("FVD: give a list of (T, H, W, 3) videos (or one (V, T, H, W, 3) array), "
                              f"got a single array of shape {videos.shape}")
    videos = list(videos)
    if not videos:
        raise StreamCharError("FVD: no videos given")
    batch_size = _check_batch_size(batch_size)
    for i, v in enumerate(videos):  # all errors before any network work
        clip_starts(_check_video(v, i).shape[0], clips_per_video)
    out = np.empty((len(videos) * int(clips_per_video), I3D_DIM), dtype=np.float64)  # (M, 400)
    pending, done = [], 0  # clips waiting for a batch, rows written

    def flush():
        nonlocal pending, done
        x = torch.cat(pending).to(device)  # (B, 3, 16, 224, 224)
        y = _call("FVD", model, x, I3D_DIM, rescale=False, resize=False, return_features=True)  # (B, 400)
        out[done:done + x.shape[0]] = y.double().cpu().numpy()
        pending, done = [], done + x.shape[0]

    with torch.no_grad():
        for i, v in enumerate(videos):
            for clip in video_clips(v, clips_per_video, index=i).split(1):  # (1, 3, 16, 224, 224) each
                pending.append(clip)
                if len(pending) == batch_size:
                    flush()
        if pending:
            flush()
    return out


def fvd_protocol(clips_per_video: int = 1, weights: str | os.PathLike | None = None) -> dict:
    """How FVD features were taken, for the report (with the weights file name and sha256 when given)."""
    p = {
        "metric": "FVD",
        "network": "I3D Kinetics-400, StyleGAN-V TorchScript i3d_torchscript.pt (port of the tf.hub module)",
        "features": "logits before softmax, 400-d",
        "clip_frames": CLIP_FRAMES,
        "frame_stride": 1,
        "clips_per_video": int(clips_per_video),
        "clip_starts": "i * (T - 16) // (k - 1) for i in 0..k-1 (k = 1: frame 0); non-overlapping, "
                       "videos shorter than 16 k frames rejected",
        "spatial": f"short side resized to {I3D_SIZE} (torch bilinear, antialias, align_corners=False), "
                   f"centre crop {I3D_SIZE}x{I3D_SIZE}",
        "value_range": "float32 2 * x / 255 - 1, in [-1, 1]",
        "input": "(B, 3, 16, 224, 224)",
        "call": "model(x, rescale=False, resize=False, return_features=True)",
        "distance": "Frechet distance of Gaussians fitted in float64 (unbiased covariance)",
    }
    return p | _weights_record(weights)


def _weights_record(weights) -> dict:
    if weights is None:
        return {}
    return {"weights_file": Path(weights).name, "weights_sha256": file_sha256(weights)}


# ---------------------------------------------------------------- distances


def fid(features_a, features_b) -> float:
    """FID from two (N, 2048) Inception feature sets (any matching (N, D) works)."""
    return frechet_distance_features(features_a, features_b)


def fvd(features_a, features_b) -> float:
    """FVD from two (M, 400) I3D feature sets (any matching (M, D) works)."""
    return frechet_distance_features(features_a, features_b)
