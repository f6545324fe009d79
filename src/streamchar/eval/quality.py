"""Per-frame imaging quality, the input of Quality Drift (`streamchar.eval.drift.quality_drift`).

Two scorers share one interface, `score_frame(frame (H, W, 3) uint8) -> float` plus `metric` / `proxy`:

- `MusiqScorer`: VBench's *Imaging quality*, MUSIQ from a LOCAL TorchScript file. Reproduced from VBench
  (Vchitect/VBench `vbench/imaging_quality.py`, `transform` and `technical_quality`):
  * frames as float 0..255 (T, 3, H, W); with the default `imaging_quality_preprocessing_mode` 'longer', a frame
    whose longer side exceeds 512 is resized to (int(s * H), int(s * W)), s = 512 / max(H, W), with
    torchvision's `transforms.Resize` (bilinear; on tensors antialias=True since torchvision 0.17, reproduced
    here with `F.interpolate(mode="bilinear", antialias=True, align_corners=False)`; torchvision < 0.17 did not
    antialias tensors); then divided by 255 -> [0, 1]. No normalisation outside the network (pyiqa's MUSIQ
    normalises inside).
  * MUSIQ is called on one frame at a time, (1, 3, H', W') float32 in [0, 1], and returns its 0-100 score
    (VBench: pyiqa's `MUSIQ(pretrained_model_path=.../pyiqa_model/musiq_spaq_ckpt-358bb6af.pth)`, the SPAQ
    checkpoint, with `model.training = False`).
  * A video's score is the mean of its frame scores; VBench divides the average over videos by 100. Here each
    frame score is divided by 100 (the same numbers, as the mean is linear), so frames score about 0..1.
  Export (where pyiqa is installed; the multi-scale patching of MUSIQ depends on the input size, so trace at
  the size you will score, i.e. after the 512 resize, and check the traced module against pyiqa on a frame):
      from pyiqa.archs.musiq_arch import MUSIQ
      m = MUSIQ(pretrained_model_path="musiq_spaq_ckpt-358bb6af.pth").eval()
      torch.jit.trace(m, torch.rand(1, 3, H, W)).save("musiq_spaq.pt")
  Call convention of the file: model((N, 3, H, W) float32 in [0, 1]) -> (N,) or (N, 1) scores on MUSIQ's 0-100
  scale. The file is `path` if given, else $STREAMCHAR_MUSIQ.

- `SharpnessProxy` / `sharpness_proxy`: a weights-free **proxy**, reported as `imaging_quality_proxy`, never as
  VBench's Imaging quality. On luminance Y in [0, 1] (BT.601):
  * noise: Immerkaer's estimator (1996, "Fast noise variance estimation"): sigma_n = sqrt(pi / 2) *
    mean |Y * M| / 6 over the interior, M = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]];
  * detail: the RMS of the 4-neighbour Laplacian of Y over the interior, with white noise's share taken out
    (that Laplacian turns noise of sigma_n into variance 20 sigma_n^2): S = sqrt(max(0, E[L^2] - 20 sigma_n^2));
  * score = S / (S + S0) * N0^2 / (N0^2 + sigma_n^2), with S0 = 0.05 and N0 = 0.04 (about 10/255): in [0, 1);
    it falls as blur removes detail and as noise grows (the noise term falls, the noise-free detail does not
    rise). Immerkaer's estimate also sees a little of a clean fine texture (about 2/255), which blur removes; the
    quadratic, wide noise term stays flat there and S0 keeps the detail term from saturating, so blur still
    lowers the score. Checked on multi-scale textures and SynthTalk frames (96 and 128 px): strictly falling for
    Gaussian blur sigma 0.5..4 px (steps of 0.1) and noise sigma 0.5..30 grey levels; blur under 0.5 px, which
    hardly changes a uint8 frame, can move it by well under 1%. Pixel-scale texture is indistinguishable from
    noise to any such estimate: blurring it can raise the score.
  A textured, sharp, clean frame scores high; a flat frame scores 0. The scale depends on content and frame
  size: compare frames of one stream at one size (as Quality Drift does), not different videos.

`per_frame_quality(frames, scorer)` -> (T,) float64 for `quality_drift(scores, fps)`; frames may be an array
(T, H, W, 3) or any iterable of (H, W, 3) frames (a decoder's generator for a long stream).
`imaging_quality(frames, scorer)` -> the video's mean with its per-frame scores, named after the scorer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage

from streamchar.errors import StreamCharError

MUSIQ_ENV = "STREAMCHAR_MUSIQ"
MUSIQ_FILE = "musiq_spaq.pt"
MUSIQ_MAX_SIDE = 512  # VBench transform, preprocess_mode 'longer'
MUSIQ_SCALE = 100.0  # VBench: average_score / 100

LUMA = (0.299, 0.587, 0.114)  # BT.601
IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
LAPLACE = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
LAPLACE_NOISE_GAIN = 20.0  # sum of LAPLACE**2: white noise sigma -> Laplacian variance 20 sigma^2
DETAIL_HALF = 0.05  # S0: detail RMS at which the detail term is 1/2
NOISE_HALF = 0.04  # N0: noise sigma (in [0, 1] units, about 10/255) at which the noise term is 1/2


class QualityScorer(Protocol):
    metric: str  # the name results are reported under
    proxy: bool  # True when the numbers are not VBench's own

    def score_frame(self, frame: np.ndarray) -> float:
        """(H, W, 3) uint8 RGB -> one quality score (about 0..1)."""
        ...


def _check_frame(frame) -> np.ndarray:
    f = np.asarray(frame)
    if f.dtype != np.uint8:
        raise StreamCharError(f"imaging quality takes uint8 RGB frames, got {f.dtype}")
    if f.ndim != 3 or f.shape[-1] != 3:
        raise StreamCharError(f"imaging quality takes frames of shape (H, W, 3), got {f.shape}")
    if f.shape[0] < 3 or f.shape[1] < 3:
        raise StreamCharError(f"imaging quality needs frames of at least 3x3 pixels, got {f.shape}")
    return f


# ---------------------------------------------------------------- the weights-free proxy


def noise_sigma(frame) -> float:
    """Immerkaer's noise standard deviation of the luminance, in [0, 1] units. frame: (H, W, 3) uint8."""
    y = _check_frame(frame).astype(np.float64) @ np.array(LUMA) / 255.0  # (H, W)
    r = ndimage.correlate(y, IMMERKAER, mode="nearest")[1:-1, 1:-1]  # (H-2, W-2)
    return float(math.sqrt(math.pi / 2) * np.abs(r).mean() / 6.0)


def detail_rms(frame, sigma_n: float | None = None) -> float:
    """Noise-corrected RMS of the 4-neighbour Laplacian of the luminance, [0, 1] units. frame: (H, W, 3) uint8."""
    f = _check_frame(frame)
    y = f.astype(np.float64) @ np.array(LUMA) / 255.0  # (H, W)
    lap = ndimage.correlate(y, LAPLACE, mode="nearest")[1:-1, 1:-1]  # (H-2, W-2)
    s = noise_sigma(f) if sigma_n is None else float(sigma_n)
    return float(math.sqrt(max(0.0, float((lap * lap).mean()) - LAPLACE_NOISE_GAIN * s * s)))


def sharpness_proxy(frame) -> float:
    """Weights-free imaging-quality proxy of one (H, W, 3) uint8 frame, in [0, 1): falls with blur and noise."""
    s_n = noise_sigma(frame)
    d = detail_rms(frame, s_n)
    return float(d / (d + DETAIL_HALF) * NOISE_HALF**2 / (NOISE_HALF**2 + s_n**2))


class SharpnessProxy:
    """`sharpness_proxy` behind the scorer interface."""

    name = "sharpness"
    metric = "imaging_quality_proxy"
    proxy = True

    def score_frame(self, frame) -> float:
        return sharpness_proxy(frame)


# ---------------------------------------------------------------- learned: MUSIQ


def resolve_musiq_path(path: str | os.PathLike | None = None) -> Path:
    """The MUSIQ TorchScript file: `path`, else $STREAMCHAR_MUSIQ (a folder holding musiq_spaq.pt is accepted);
    nothing there -> one-line StreamCharError naming the metric, the file and the variable."""
    from streamchar.eval.features import weights_path

    return weights_path("imaging_quality (MUSIQ)", MUSIQ_ENV, path, MUSIQ_FILE)


def vbench_resize(x, max_side: int = MUSIQ_MAX_SIDE):
    """VBench's 'longer' rule: (N, 3, H, W) float -> resized so the longer side is at most `max_side`
    (to (int(s*H), int(s*W)), s = max_side / max(H, W), bilinear with antialias); smaller frames unchanged."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    if max(h, w) <= max_side:
        return x
    s = max_side / max(h, w)
    size = (int(s * h), int(s * w))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


class MusiqScorer:
    """MUSIQ from a LOCAL TorchScript file, run as VBench's imaging_quality runs it; scores / 100."""

    name = "musiq"
    metric = "imaging_quality"
    proxy = False

    def __init__(self, path: str | os.PathLike | None = None, device: str = "cpu",
                 max_side: int = MUSIQ_MAX_SIDE):
        import torch

        self.path = resolve_musiq_path(path)
        self.device = torch.device(device)
        self.max_side = int(max_side)
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as e:  # not TorchScript (a raw pyiqa checkpoint, a truncated file, ...)
            raise StreamCharError(f"imaging_quality (MUSIQ): {self.path} is not a TorchScript file torch.jit.load "
                                  f"can read ({type(e).__name__})") from None

    def preprocess(self, frame):
        """(H, W, 3) uint8 -> (1, 3, H', W') float32 in [0, 1], longer side <= max_side."""
        import torch

        f = _check_frame(frame)
        x = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float()  # (1, 3, H, W) 0..255
        x = vbench_resize(x, self.max_side)
        return (x / 255.0).to(self.device)

    def score_frame(self, frame) -> float:
        """MUSIQ score of one frame / 100 (about 0..1)."""
        import torch

        x = self.preprocess(frame)
        with torch.inference_mode():
            y = self.model(x)
        if not isinstance(y, torch.Tensor) or y.numel() != 1:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise StreamCharError(f"imaging_quality (MUSIQ): {self.path} returned {shape} for one frame "
                                  f"{tuple(x.shape)}, expected one score: wrong file?")
        s = float(y.reshape(()).item())
        if not math.isfinite(s):
            raise StreamCharError(f"imaging_quality (MUSIQ): {self.path} returned a non-finite score")
        return s / MUSIQ_SCALE


# ---------------------------------------------------------------- per-frame scores for Quality Drift


def per_frame_quality(frames, scorer: QualityScorer) -> np.ndarray:
    """Per-frame quality for `quality_drift`: (T, H, W, 3) uint8 or an iterable of (H, W, 3) uint8 frames
    -> (T,) float64, frame by frame (nothing but one frame is held, so a decoder's generator works)."""
    if not hasattr(scorer, "score_frame"):
        raise StreamCharError(f"scorer must have score_frame(frame) -> float, got {type(scorer).__name__}")
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise StreamCharError(f"frames must be (T, H, W, 3) uint8 RGB, got shape {frames.shape}")
    scores = np.array([float(scorer.score_frame(f)) for f in frames], dtype=np.float64)  # (T,)
    if scores.size == 0:
        raise StreamCharError("per_frame_quality: no frames given")
    return scores


def imaging_quality(frames, scorer: QualityScorer) -> dict:
    """One video's imaging quality as VBench reports it: the mean of its per-frame scores, under the scorer's
    name (`imaging_quality` for MUSIQ, `imaging_quality_proxy` for the proxy)."""
    q = per_frame_quality(frames, scorer)  # (T,)
    return {
        "metric": scorer.metric,
        "proxy": bool(scorer.proxy),
        "score": float(q.mean()),
        "per_frame": q.tolist(),
        "num_frames": int(len(q)),
    }
