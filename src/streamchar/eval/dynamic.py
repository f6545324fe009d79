"""VBench's *Dynamic degree*: is a generated video dynamic or (nearly) static?

Reproduced from VBench, `vbench/dynamic_degree.py` (class `DynamicDegree`, Vchitect/VBench), rule by rule:

- Frame sampling (`get_frames`): `interval = max(1, round(fps/8))`, then every `interval`-th frame from the
  first (`extract_frame`: `range(0, len(frame_list), interval)`). `fps` is the video's own frame rate.
- Flow: RAFT between consecutive *sampled* frames, `self.model(image1, image2, iters=20, test_mode=True)`,
  on frames padded to multiples of 8 by RAFT's `InputPadder` (mode 'sintel': replicate-padding split between
  both sides). The flow is scored on the padded grid (VBench never unpads).
- Per pair (`get_score`): `rad = sqrt(u^2 + v^2)`, `cut_index = int(h*w*0.05)`,
  `max_rad = np.mean(abs(np.sort(-rad_flat))[:cut_index])`: the mean of the top 5% flow magnitudes.
- Parameters (`set_params`): `factor = max(1.0, 8.0/fps)`, `scale = min(frame.shape[-2:])` (of the unpadded
  frame), `thres = factor*6.0*(scale/256.0)`, `count_num = round(4*(count/16.0))` with `count` the number of
  *sampled* frames. Python's `round` rounds halves to even: 2 frames -> 0, 6 -> 2, 10 -> 2, 14 -> 4.
- Decision (`check_move`): count the scores strictly above `thres`; dynamic as soon as the count reaches
  `count_num`. An empty score list is static; with `count_num == 0` any non-empty list is dynamic.
- The reported Dynamic degree of a model is the mean of this boolean over its videos (`np.mean(sim)`).

Two differences, both on purpose: fewer than 2 frames (before or after sampling) is an error here, where
VBench silently calls the video static; scores are computed in float64 (VBench: float32 numpy).

Flow backends share one small interface, `flow(frame_a, frame_b) -> (H, W, 2)` float32 (x, y) pixel
displacements from frame_a to frame_b, frames (H, W, 3) uint8 RGB:

- `RaftFlow`: the metric itself (`dynamic_degree`). VBench loads the original princeton-vl RAFT checkpoint
  `pretrained/raft_model/models/raft-things.pth` (FlyingChairs + FlyingThings3D). Here RAFT comes from a LOCAL
  TorchScript file, exported once, where torchvision is available, with:

      python -c "import torch; from torchvision.models.optical_flow import raft_large, Raft_Large_Weights; \\
      torch.jit.script(raft_large(weights=Raft_Large_Weights.C_T_V1).eval()).save('raft_large_C_T_V1.pt')"

  (torchvision's `C_T_V1` is "Chairs + Things, ported from original paper repo (raft-things.pth)": VBench's
  weights in torchvision's re-implementation of the network, so expect tiny numerical differences.) Call
  convention: `model(image1, image2, num_flow_updates)` with images (N, 3, H, W) float32 in [-1, 1], H and W
  multiples of 8, returns a list of flow predictions (N, 2, H, W), the last one the final. The file is
  `path` if given, else the environment variable `STREAMCHAR_RAFT`.
- `FarnebackFlow`: OpenCV's `calcOpticalFlowFarneback` on grayscale frames, weights-free. A **proxy**: its
  numbers are reported as `dynamic_degree_farneback`, never as VBench's Dynamic degree.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from streamchar.errors import StreamCharError

RAFT_ENV = "STREAMCHAR_RAFT"
RAFT_ITERS = 20  # VBench: self.model(image1, image2, iters=20, test_mode=True)
TOP_FRACTION = 0.05  # VBench get_score: cut_index = int(h*w*0.05)
BASE_THRESHOLD = 6.0  # VBench set_params: thres = factor*6.0*(scale/256.0)
BASE_SIZE = 256.0
BASE_FPS = 8.0  # VBench: interval = max(1, round(fps/8)); factor = max(1.0, 8.0/fps)


# ---------------------------------------------------------------- pure maths (no flow estimation)


def sample_frames(frames, fps: float):
    """VBench's sampling: every `max(1, round(fps/8))`-th frame from the first. frames: (T, ...) -> (T', ...)."""
    return frames[::sample_interval(fps)]


def sample_interval(fps: float) -> int:
    _check_fps(fps)
    return max(1, round(fps / BASE_FPS))


def threshold(height: int, width: int, fps: float = BASE_FPS) -> float:
    """VBench's per-pair threshold in pixels: max(1, 8/fps) * 6 * min(H, W) / 256 (H, W of the unpadded frame)."""
    _check_fps(fps)
    if not (int(height) > 0 and int(width) > 0):
        raise StreamCharError(f"dynamic degree needs a positive frame size, got {height}x{width}")
    factor = max(1.0, BASE_FPS / fps)
    return factor * BASE_THRESHOLD * (min(int(height), int(width)) / BASE_SIZE)


def count_num(num_frames: int) -> int:
    """VBench's count rule: round(4 * num_frames / 16), num_frames = sampled frames (Python round: half to even)."""
    return round(4 * (int(num_frames) / 16.0))


def flow_score(flow) -> float:
    """Mean of the top 5% flow magnitudes of one frame pair. flow: (H, W, 2) (x, y) displacements in pixels."""
    f = np.asarray(flow, dtype=np.float64)
    if f.ndim != 3 or f.shape[-1] != 2:
        raise StreamCharError(f"flow_score takes a flow field of shape (H, W, 2), got {f.shape}")
    h, w = f.shape[:2]
    cut = int(h * w * TOP_FRACTION)
    if cut < 1:
        raise StreamCharError(f"flow_score needs at least 20 pixels (top 5% of {h}x{w} is empty)")
    if not np.isfinite(f).all():
        raise StreamCharError("the flow field contains NaN or inf")
    rad = np.sqrt(f[..., 0] ** 2 + f[..., 1] ** 2).ravel()  # (H*W,)
    return float(np.sort(rad)[-cut:].mean())


def is_dynamic(scores, height: int, width: int, fps: float = BASE_FPS) -> bool:
    """VBench's check_move: dynamic iff at least count_num(len(scores) + 1) scores exceed threshold(H, W, fps).

    scores: one flow_score per pair of consecutive sampled frames; height, width: the unpadded frame size;
    fps: the video's frame rate (VBench's default 8 gives factor 1).
    """
    s = [float(x) for x in scores]
    if not all(math.isfinite(x) for x in s):
        raise StreamCharError("dynamic degree scores contain NaN or inf")
    if not s:  # VBench's loop never runs: static
        return False
    above = sum(x > threshold(height, width, fps) for x in s)
    return above >= count_num(len(s) + 1)


# ---------------------------------------------------------------- flow backends


class FlowBackend(Protocol):
    name: str  # "raft" / "farneback"
    metric: str  # the name results are reported under
    proxy: bool  # True when the numbers are not VBench's own

    def flow(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        """frame_a, frame_b: (H, W, 3) uint8 RGB -> (H', W', 2) float32 flow from a to b."""
        ...


def _check_frame(frame) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[-1] != 3:
        raise StreamCharError(f"optical flow takes RGB frames of shape (H, W, 3), got {f.shape}")
    if f.dtype != np.uint8:
        raise StreamCharError(f"optical flow takes uint8 frames, got {f.dtype}")
    return f


def _check_pair(frame_a, frame_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _check_frame(frame_a), _check_frame(frame_b)
    if a.shape != b.shape:
        raise StreamCharError(f"optical flow needs two frames of the same shape, got {a.shape} and {b.shape}")
    return a, b


class FarnebackFlow:
    """OpenCV's dense Farneback flow on grayscale frames: the weights-free proxy (OpenCV's usual parameters)."""

    name = "farneback"
    metric = "dynamic_degree_farneback"
    proxy = True

    def __init__(self, pyr_scale: float = 0.5, levels: int = 3, winsize: int = 15, iterations: int = 3,
                 poly_n: int = 5, poly_sigma: float = 1.2):
        self.params = dict(pyr_scale=pyr_scale, levels=levels, winsize=winsize, iterations=iterations,
                           poly_n=poly_n, poly_sigma=poly_sigma, flags=0)

    def flow(self, frame_a, frame_b) -> np.ndarray:
        import cv2

        a, b = _check_pair(frame_a, frame_b)
        gray_a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)  # (H, W) uint8
        gray_b = cv2.cvtColor(np.ascontiguousarray(b), cv2.COLOR_RGB2GRAY)
        return cv2.calcOpticalFlowFarneback(gray_a, gray_b, None, **self.params).astype(np.float32)  # (H, W, 2)


def resolve_raft_path(path: str | os.PathLike | None = None) -> Path:
    """The RAFT TorchScript file: `path` if given, else $STREAMCHAR_RAFT; a missing file is a one-line error."""
    chosen = path if path is not None else os.environ.get(RAFT_ENV) or None
    if chosen is None:
        raise StreamCharError(f"dynamic_degree (RAFT) needs a TorchScript RAFT file: pass its path or set "
                              f"{RAFT_ENV} (export command in streamchar.eval.dynamic)")
    p = Path(chosen).expanduser()
    if not p.is_file():
        raise StreamCharError(f"dynamic_degree (RAFT) weights not found: no file at {p} (pass a path or set "
                              f"{RAFT_ENV} to a TorchScript raft_large export, see streamchar.eval.dynamic)")
    return p


class RaftFlow:
    """RAFT from a local TorchScript file, run as VBench runs it: sintel-mode replicate padding to multiples of 8,
    20 iterations, the final prediction, scored on the padded grid."""

    name = "raft"
    metric = "dynamic_degree"
    proxy = False

    def __init__(self, path: str | os.PathLike | None = None, iters: int = RAFT_ITERS, device: str = "cpu"):
        import torch

        self.path = resolve_raft_path(path)
        self.iters = int(iters)
        self.device = torch.device(device)
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as e:  # a corrupt or non-TorchScript file
            raise StreamCharError(f"dynamic_degree (RAFT) could not load {self.path} as TorchScript: "
                                  f"{type(e).__name__}") from None

    def flow(self, frame_a, frame_b) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        a, b = _check_pair(frame_a, frame_b)
        h, w = a.shape[:2]
        pad_h, pad_w = (-h) % 8, (-w) % 8  # RAFT InputPadder: (((h // 8) + 1) * 8 - h) % 8
        pad = [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]  # left, right, top, bottom
        x = torch.from_numpy(np.stack([a, b])).to(self.device).permute(0, 3, 1, 2).float()  # (2, 3, H, W) 0..255
        x = F.pad(x, pad, mode="replicate")  # (2, 3, H8, W8)
        x = 2 * (x / 255.0) - 1.0  # [-1, 1], as RAFT's forward does to VBench's 0..255 input
        with torch.inference_mode():
            out = self.model(x[:1], x[1:], self.iters)
        if not isinstance(out, (list, tuple)) or len(out) == 0 or not isinstance(out[-1], torch.Tensor):
            raise StreamCharError(f"the RAFT file {self.path} must return a list of flow tensors, got "
                                  f"{type(out).__name__}")
        final = out[-1]
        if tuple(final.shape) != (1, 2, h + pad_h, w + pad_w):
            raise StreamCharError(f"the RAFT file {self.path} returned flow of shape {tuple(final.shape)}, "
                                  f"expected {(1, 2, h + pad_h, w + pad_w)}")
        return final[0].permute(1, 2, 0).float().cpu().numpy()  # (H8, W8, 2)


# ---------------------------------------------------------------- the metric


def dynamic_degree(frames, fps: float, backend: FlowBackend) -> dict:
    """VBench's Dynamic degree of one video.

    frames: (T, H, W, 3) uint8 RGB at `fps` frames per second; backend: RaftFlow (the metric) or FarnebackFlow
    (the proxy). Returns the decision with everything it was made from.
    """
    v = np.asarray(frames)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise StreamCharError(f"dynamic_degree takes frames of shape (T, H, W, 3), got {v.shape}")
    if v.dtype != np.uint8:
        raise StreamCharError(f"dynamic_degree takes uint8 frames, got {v.dtype}")
    if v.shape[0] < 2:
        raise StreamCharError(f"dynamic_degree needs at least 2 frames, got {v.shape[0]}")
    interval = sample_interval(fps)
    sampled = sample_frames(v, fps)  # (T', H, W, 3)
    if len(sampled) < 2:
        raise StreamCharError(f"dynamic_degree needs at least 2 frames after VBench's sampling (every "
                              f"{interval}th frame at {fps:g} fps), got {len(sampled)} of {v.shape[0]}")
    h, w = v.shape[1:3]
    scores = [flow_score(backend.flow(a, b)) for a, b in zip(sampled[:-1], sampled[1:])]
    thres = threshold(h, w, fps)
    return {
        "metric": backend.metric,
        "backend": backend.name,
        "proxy": bool(backend.proxy),
        "dynamic": is_dynamic(scores, h, w, fps),
        "scores": scores,  # (T'-1,) mean of the top 5% flow magnitudes per sampled pair
        "threshold": thres,
        "count_above": sum(s > thres for s in scores),
        "count_num": count_num(len(sampled)),
        "num_frames": int(v.shape[0]),
        "num_sampled": len(sampled),
        "interval": interval,
        "fps": float(fps),
        "height": int(h),
        "width": int(w),
    }


def _check_fps(fps: float) -> None:
    try:
        ok = math.isfinite(float(fps)) and float(fps) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise StreamCharError(f"dynamic degree needs a positive finite fps, got {fps!r}")
