"""Identity preservation: does the generated character keep the reference's face?

The paper reports VBench-2.0's *Human Identity*. Two families of scores live here:

Weights-free **proxies** (reported as `identity_proxy`, never as Human Identity):
- `ssim`: structural similarity, Wang, Bovik, Sheikh & Simoncelli 2004 ("Image quality assessment: from error
  visibility to structural similarity", the reference `ssim_index.m`): an 11x11 Gaussian window with sigma 1.5
  (normalised to sum 1), K1 = 0.01, K2 = 0.03, L = 255, on luminance Y = 0.299 R + 0.587 G + 0.114 B (BT.601, as
  MATLAB's rgb2gray) in float64 without rounding; only windows lying wholly inside the image count ('valid');
  SSIM is the mean of the SSIM map. No downsampling (the later `ssim.m` shrinks images over 256 px first).
- `color_hist_distance`: Bhattacharyya distance between the joint RGB histograms (bins^3 cells, each
  normalised to sum 1), in the Hellinger form OpenCV's `compareHist(HISTCMP_BHATTACHARYYA)` computes:
  d = sqrt(1 - sum_i sqrt(p_i q_i)), 0 for identical histograms, 1 for colours that share no cell.
- `identity_proxy`: both, per frame, on the face crop of each frame against the same crop of the reference.

Learned (needs a LOCAL TorchScript face-embedding network, `FaceEmbedder`):
- `identity_similarity`: StreamChar's setting, a reference portrait given: the mean cosine similarity of each
  frame's face embedding to the reference's.
- `human_identity`: VBench-2.0's per-video rule (Vchitect/VBench, `VBench-2.0/vbench2/human_identity.py`,
  `IDTracker.update` / `evaluate_id_consistency` / `compute_human_identity`), reproduced as:
  * the reference is the FIRST frame's face (VBench-2.0 compares nothing with an outside reference image);
  * every later frame counts as consistent iff cos(feature, first feature) >= 0.4 (`similarity_threshold`;
    VBench-2.0 flags `similarity < 0.4` as inconsistent);
  * per-video score = consistent frames / counted frames (the first frame is not counted); a video with fewer
    than 20 counted frames (`mini_frame`) gets no score (VBench-2.0 writes -1 and leaves it out);
  * the model's score is the mean of the per-video scores that exist (`compute_human_identity` recomputes
    `all_results` as that mean, not as the pooled frame ratio).
  * features: VBench-2.0's network is `resnet_face18(use_se=False)` (ronghuaiyang/arcface-pytorch) with the
    weights `resnet18_110.pth`; `extract_face_features` resizes the face crop to 128x128 (cv2.resize, bilinear),
    converts it to grayscale (cv2 RGB2GRAY), stacks it with its left-right mirror as a batch of 2 (2, 1, 128,
    128) in [-1, 1] ((x - 127.5) / 127.5) and concatenates the two 512-d outputs (1024-d). Layout "vbench2".
  What differs: VBench-2.0 finds the face with RetinaFace (ternaus/retinaface, resnet50) in every frame and skips
  frames without exactly one face (a first frame without one voids the video); no detector ships here, so the
  face is a fixed box (`box`, default `face_box`) in every frame and every frame counts. VBench-2.0 also draws
  its green detection rectangle onto the frame before cropping (a 1-2 px border inside the crop): not
  reproduced. Cosines are float64 here (VBench-2.0: float32 numpy).

`FaceEmbedder` loads a TorchScript file (`path`, else $STREAMCHAR_FACE_EMBEDDER) in one of two layouts:
- "arcface112" (default): InsightFace arcface_torch convention (`recognition/arcface_torch/inference.py`): the
  crop resized to 112x112 (cv2.resize, bilinear), RGB, (x / 255 - 0.5) / 0.5 -> (N, 3, 112, 112) float32 in
  [-1, 1]; the network returns (N, D) (512 for iresnet). ArcFace was trained on faces aligned by five landmarks;
  no alignment is done here, so numbers are lower than on aligned crops. Export, where the arcface_torch code is:
      net = get_model("r100", fp16=False); net.load_state_dict(torch.load("backbone.pth")); net.eval()
      torch.jit.trace(net, torch.zeros(1, 3, 112, 112)).save("arcface_r100.pt")
- "vbench2": VBench-2.0's network and preprocessing as above: (2N, 1, 128, 128) in, (2N, D) out, (N, 2D) features.
  Export, where VBench-2.0 is installed:
      m = resnet_face18(use_se=False); sd = torch.load("resnet18_110.pth")
      m.load_state_dict({k.replace("module.", ""): v for k, v in sd.items()}); m.eval()
      torch.jit.trace(m, torch.zeros(2, 1, 128, 128)).save("resnet18_110.pt")

Face box: `box = (top, left, height, width)` in pixels, the same for every frame and for the reference. The
default (`face_box`) is the SynthTalk face: the renderer (`streamchar.data.render`) puts the head centre at
(x, y) = (0.50, 0.445) of the image side with a face half-height of 0.20 and half-width 0.15..0.19, swaying by
about 0.02; the default box spans y 0.22..0.67 and x 0.28..0.72 of the frame. For other videos pass the box of
the face (e.g. from a detector run upstream), or (0, 0, H, W) for frames that already are face crops.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from streamchar.errors import StreamCharError

# SSIM (Wang et al. 2004)
SSIM_WIN = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_L = 255.0
LUMA = (0.299, 0.587, 0.114)  # BT.601, as MATLAB rgb2gray (0.2989, 0.5870, 0.1140 rounded)

# default SynthTalk face box, fractions of (H, W): top, left, height, width
FACE_BOX_FRACTIONS = (0.22, 0.28, 0.45, 0.44)

# learned face embedder
FACE_EMBEDDER_ENV = "STREAMCHAR_FACE_EMBEDDER"
LAYOUTS = {  # layout -> (input side, expected file)
    "arcface112": (112, "arcface_r100.pt"),
    "vbench2": (128, "resnet18_110.pt"),
}
VBENCH2_THRESHOLD = 0.4  # VBench-2.0 IDTracker similarity_threshold
VBENCH2_MIN_FRAMES = 20  # VBench-2.0 evaluate_id_consistency mini_frame


# ---------------------------------------------------------------- input checks


def _check_image(img, what: str = "image") -> np.ndarray:
    """(H, W, 3) or (H, W) uint8 -> the same array."""
    x = np.asarray(img)
    if x.dtype != np.uint8:
        raise StreamCharError(f"{what} must be uint8, got {x.dtype}")
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3)):
        raise StreamCharError(f"{what} must be (H, W, 3) RGB or (H, W) grayscale, got shape {x.shape}")
    return x


def _check_frames(frames, what: str = "frames") -> np.ndarray:
    """(T, H, W, 3) uint8, T >= 1."""
    v = np.asarray(frames)
    if v.dtype != np.uint8:
        raise StreamCharError(f"{what} must be uint8 RGB, got {v.dtype}")
    if v.ndim != 4 or v.shape[-1] != 3:
        raise StreamCharError(f"{what} must be (T, H, W, 3) uint8 RGB, got shape {v.shape}")
    if v.shape[0] < 1:
        raise StreamCharError(f"{what}: no frames given")
    return v


def luminance(img) -> np.ndarray:
    """(H, W, 3) or (H, W) uint8 -> (H, W) float64 luma Y in [0, 255] (BT.601 weights, no rounding)."""
    x = _check_image(img)
    if x.ndim == 2:
        return x.astype(np.float64)
    return x.astype(np.float64) @ np.array(LUMA)  # (H, W)


# ---------------------------------------------------------------- SSIM


def gaussian_window(size: int = SSIM_WIN, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """(size,) 1-D Gaussian summing to 1; the 2-D window is its outer product (MATLAB fspecial('gaussian'))."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(a, b) -> np.ndarray:
    """Local SSIM over every 11x11 window wholly inside the images: (H, W[, 3]) uint8 -> (H-10, W-10) float64."""
    x, y = luminance(a), luminance(b)
    if x.shape != y.shape:
        raise StreamCharError(f"ssim needs two images of the same size, got {x.shape} and {y.shape}")
    if min(x.shape) < SSIM_WIN:
        raise StreamCharError(f"ssim needs images of at least {SSIM_WIN}x{SSIM_WIN} pixels, got {x.shape}")
    g = gaussian_window()
    r = SSIM_WIN // 2

    def filt(z):  # Gaussian-weighted local mean, 'valid' part only: (H, W) -> (H-10, W-10)
        z = ndimage.correlate1d(z, g, axis=0, mode="constant")
        z = ndimage.correlate1d(z, g, axis=1, mode="constant")
        return z[r:-r, r:-r]

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx  # local variances and covariance (weighted, population form)
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    c1, c2 = (SSIM_K1 * SSIM_L) ** 2, (SSIM_K2 * SSIM_L) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(a, b) -> float:
    """Mean SSIM of two uint8 images (H, W, 3) RGB or (H, W) gray, on luminance; 1 for identical images."""
    return float(ssim_map(a, b).mean())


# ---------------------------------------------------------------- colour histograms


def color_histogram(img, bins: int = 16) -> np.ndarray:
    """Joint RGB histogram of a uint8 (H, W, 3) image: (bins, bins, bins) float64 summing to 1.
    A value v falls in cell v * bins // 256 of its channel."""
    x = _check_image(img)
    if x.ndim != 3:
        raise StreamCharError(f"color histograms need an RGB image (H, W, 3), got shape {x.shape}")
    if not isinstance(bins, (int, np.integer)) or not 1 <= bins <= 256:
        raise StreamCharError(f"bins must be an int in 1..256, got {bins!r}")
    if x.shape[0] * x.shape[1] == 0:
        raise StreamCharError("color histograms need a non-empty image")
    q = (x.reshape(-1, 3).astype(np.int64) * bins) // 256  # (H*W, 3) cell per channel
    flat = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]  # (H*W,)
    h = np.bincount(flat, minlength=bins**3).astype(np.float64)
    return (h / h.sum()).reshape(bins, bins, bins)


def color_hist_distance(a, b, bins: int = 16) -> float:
    """Bhattacharyya (Hellinger) distance of the joint RGB histograms: sqrt(1 - sum sqrt(p q)), in [0, 1].
    0 for the same colour distribution, 1 when the images share no histogram cell."""
    p, q = color_histogram(a, bins), color_histogram(b, bins)
    bc = float(np.sqrt(p * q).sum())  # Bhattacharyya coefficient, 1 for identical histograms
    return float(np.sqrt(max(0.0, 1.0 - bc)))


# ---------------------------------------------------------------- face box


def face_box(height: int, width: int) -> tuple[int, int, int, int]:
    """Default face box (top, left, height, width) in pixels for an H x W SynthTalk frame (see module doc)."""
    ft, fl, fh, fw = FACE_BOX_FRACTIONS
    return (round(ft * height), round(fl * width), round(fh * height), round(fw * width))


def _resolve_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    if box is None:
        return face_box(height, width)
    try:
        top, left, h, w = (int(v) for v in box)
    except (TypeError, ValueError):
        raise StreamCharError(f"box must be (top, left, height, width) in pixels, got {box!r}") from None
    if top < 0 or left < 0 or h < 1 or w < 1 or top + h > height or left + w > width:
        raise StreamCharError(f"box (top {top}, left {left}, height {h}, width {w}) does not fit in a "
                              f"{height}x{width} frame")
    return top, left, h, w


def crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(..., H, W, 3) -> (..., h, w, 3): the box (top, left, height, width)."""
    top, left, h, w = box
    return img[..., top:top + h, left:left + w, :]


def _frames_and_reference(frames, reference, box):
    v = _check_frames(frames)  # (T, H, W, 3)
    ref = _check_image(reference, "reference")
    if ref.ndim != 3 or ref.shape != v.shape[1:]:
        raise StreamCharError(f"the reference must be one RGB frame of the frames' size {v.shape[1:]}, "
                              f"got {ref.shape}")
    b = _resolve_box(box, v.shape[1], v.shape[2])
    return crop(v, b), crop(ref, b), b


# ---------------------------------------------------------------- the proxy


def identity_proxy(frames, reference, box=None, bins: int = 16) -> dict:
    """Weights-free identity proxy: SSIM and colour-histogram distance of each frame's face crop to the
    reference's. frames: (T, H, W, 3) uint8; reference: (H, W, 3) uint8; box: (top, left, height, width),
    default `face_box(H, W)`. Higher SSIM / lower distance = closer to the reference. Not Human Identity."""
    faces, ref_face, b = _frames_and_reference(frames, reference, box)  # (T, h, w, 3), (h, w, 3)
    s = [ssim(f, ref_face) for f in faces]  # (T,)
    d = [color_hist_distance(f, ref_face, bins) for f in faces]  # (T,)
    return {
        "metric": "identity_proxy",
        "proxy": True,
        "ssim": float(np.mean(s)),
        "hist_distance": float(np.mean(d)),
        "ssim_per_frame": s,
        "hist_distance_per_frame": d,
        "box": b,
        "bins": int(bins),
        "num_frames": len(s),
    }


# ---------------------------------------------------------------- learned: face embeddings


def resolve_face_embedder_path(path: str | os.PathLike | None = None, layout: str = "arcface112") -> Path:
    """The TorchScript file: `path`, else $STREAMCHAR_FACE_EMBEDDER (a folder holding the layout's file is
    accepted); nothing there -> one-line StreamCharError naming the metric, file and variable."""
    from streamchar.eval.features import weights_path

    return weights_path(f"identity_similarity / human_identity (layout {layout})", FACE_EMBEDDER_ENV, path,
                        LAYOUTS[layout][1])


class FaceEmbedder:
    """A face-embedding network from a LOCAL TorchScript file; `embed(faces)` -> (N, D) float64 features.

    layout "arcface112": (N, 3, 112, 112) RGB in [-1, 1] -> (N, D); layout "vbench2": VBench-2.0's grayscale
    image + mirror pairs (2N, 1, 128, 128) in [-1, 1] -> (2N, D), concatenated per face -> (N, 2D).
    """

    proxy = False

    def __init__(self, path: str | os.PathLike | None = None, layout: str = "arcface112", device: str = "cpu",
                 batch_size: int = 32):
        import torch

        if layout not in LAYOUTS:
            raise StreamCharError(f"face embedder layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        if int(batch_size) < 1:
            raise StreamCharError(f"batch_size must be >= 1, got {batch_size}")
        self.layout = layout
        self.size = LAYOUTS[layout][0]
        self.batch_size = int(batch_size)
        self.path = resolve_face_embedder_path(path, layout)
        self.device = torch.device(device)
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as e:  # not TorchScript (a torch.save checkpoint, a truncated file, ...)
            raise StreamCharError(f"face embedder: {self.path} is not a TorchScript file torch.jit.load can read "
                                  f"({type(e).__name__})") from None

    def preprocess(self, faces) -> np.ndarray:
        """(N, h, w, 3) uint8 face crops -> the network input as float32 numpy:
        arcface112 (N, 3, 112, 112); vbench2 (2N, 1, 128, 128) ordered face0, mirror0, face1, mirror1, ..."""
        import cv2

        faces = _check_frames(faces, "faces")
        s = self.size
        resized = np.stack([cv2.resize(np.ascontiguousarray(f), (s, s), interpolation=cv2.INTER_LINEAR)
                            for f in faces])  # (N, s, s, 3) uint8
        if self.layout == "arcface112":
            x = resized.transpose(0, 3, 1, 2).astype(np.float32)  # (N, 3, 112, 112)
            return (x / 255.0 - 0.5) / 0.5
        gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in resized])  # (N, 128, 128) uint8
        pairs = np.stack([gray, gray[:, :, ::-1]], axis=1)  # (N, 2, 128, 128): image, left-right mirror
        x = pairs.reshape(-1, 1, s, s).astype(np.float32)  # (2N, 1, 128, 128)
        return (x - 127.5) / 127.5

    def embed(self, faces) -> np.ndarray:
        """(N, h, w, 3) uint8 face crops -> (N, D) float64 embeddings (vbench2: (N, 2D))."""
        import torch

        x = self.preprocess(faces)
        per_face = 2 if self.layout == "vbench2" else 1
        n = x.shape[0] // per_face
        out = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], self.batch_size * per_face):
                xb = torch.from_numpy(x[i:i + self.batch_size * per_face]).to(self.device)
                y = self.model(xb)
                if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[0] != xb.shape[0]:
                    shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                    raise StreamCharError(f"face embedder {self.path} returned {shape} for input "
                                          f"{tuple(xb.shape)}, expected ({xb.shape[0]}, D): wrong file or layout?")
                out.append(y.double().cpu().numpy())
        e = np.concatenate(out)  # (N * per_face, D)
        return e.reshape(n, -1)  # vbench2: rows 2i, 2i+1 side by side -> (N, 2D), as np.hstack((fe_1, fe_2))


def cosine(a, b) -> np.ndarray:
    """Row-wise cosine similarity in float64: (N, D), (D,) or (N, D) -> (N,)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise StreamCharError("face embeddings contain NaN or inf")
    if (na == 0).any() or (nb == 0).any():
        raise StreamCharError("a face embedding is all zeros: cosine similarity is undefined")
    return (a * b).sum(axis=1) / (na * nb)


def identity_similarity(frames, reference, embedder: FaceEmbedder, box=None) -> dict:
    """Mean cosine similarity of each frame's face embedding to the reference's face embedding.
    frames: (T, H, W, 3) uint8; reference: (H, W, 3) uint8; box as in `identity_proxy`."""
    faces, ref_face, b = _frames_and_reference(frames, reference, box)
    e = embedder.embed(faces)  # (T, D)
    r = embedder.embed(ref_face[None])[0]  # (D,)
    sims = cosine(e, r)  # (T,)
    return {
        "metric": "identity_similarity",
        "proxy": False,
        "similarity": float(sims.mean()),
        "per_frame": sims.tolist(),
        "box": b,
        "layout": embedder.layout,
        "num_frames": int(len(sims)),
    }


def identity_consistency(similarities, threshold: float = VBENCH2_THRESHOLD,
                         min_frames: int = VBENCH2_MIN_FRAMES) -> float | None:
    """VBench-2.0's per-video score: the share of counted frames with similarity >= threshold, or None when
    fewer than `min_frames` frames are counted (VBench-2.0 writes -1 and leaves the video out)."""
    s = np.asarray(similarities, dtype=np.float64)
    if s.ndim != 1:
        raise StreamCharError(f"identity_consistency takes similarities of shape (N,), got {s.shape}")
    if not np.isfinite(s).all():
        raise StreamCharError("identity similarities contain NaN or inf")
    if len(s) < int(min_frames) or len(s) == 0:
        return None
    return float((s >= threshold).sum() / len(s))


def human_identity(frames, embedder: FaceEmbedder, box=None, threshold: float = VBENCH2_THRESHOLD,
                   min_frames: int = VBENCH2_MIN_FRAMES) -> dict:
    """VBench-2.0's Human Identity rule for one video (module doc): frame 0's face is the reference, frames
    1..T-1 are counted, consistent iff cosine >= threshold. frames: (T, H, W, 3) uint8. `score` is None when
    fewer than `min_frames` frames are counted. The face is a fixed box (VBench-2.0: RetinaFace per frame)."""
    v = _check_frames(frames)
    b = _resolve_box(box, v.shape[1], v.shape[2])
    e = embedder.embed(crop(v, b))  # (T, D)
    sims = cosine(e[1:], e[0]) if len(e) > 1 else np.zeros(0)  # (T-1,)
    return {
        "metric": "human_identity",
        "proxy": False,
        "score": identity_consistency(sims, threshold, min_frames),
        "similarities": sims.tolist(),
        "consistent": int((sims >= threshold).sum()),
        "counted": int(len(sims)),
        "threshold": float(threshold),
        "min_frames": int(min_frames),
        "box": b,
        "layout": embedder.layout,
        "face_detection": "fixed box (VBench-2.0: RetinaFace, one face per frame)",
    }


def human_identity_mean(scores) -> float:
    """A model's Human Identity: the mean of its videos' per-video scores, videos without one (None) left out."""
    valid = [float(s) for s in scores if s is not None]
    if not valid:
        raise StreamCharError("human_identity: no video had enough counted frames for a score")
    return float(np.mean(valid))
