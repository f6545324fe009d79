"""Mouth-region weight on the video flow loss (a training aid of ours, not the paper's Eq. 2).

The mouth is a few percent of a talking-head frame, yet it carries all of the lip sync. At `tiny` (a 64 px
frame, an 8 x 8 latent grid) the SynthTalk mouth box covers 2 of the 64 latent cells, 3% of the video loss:
after 6,500 stage-2 steps the tiny teacher drew faces (identity SSIM 0.63, truth 0.70) whose mouths did
not follow the audio (mouth-opening std 2.1 vs the truth's 10.6, correlation with the audio envelope 0.02
vs 0.68). Eq. 2's plain mean over the latent gives the mouth no more than its area.

`mouth_box` names the region as fractions of the frame, (x0, y0, x1, y1): every latent cell that overlaps
it is a mouth cell. The video loss then weighs each cell by (1 + mouth_weight * mouth) normalised to mean 1,
so its scale against the audio loss stays Eq. 2's and only the balance within the frame moves.
`mouth_weight` = 0 (the `paper` default) is Eq. 2. A fixed box suits SynthTalk, whose head rests at one
place and moves by less than the box's margin; data whose faces move need a per-clip box (a face tracker's),
which this module does not provide.
"""

from __future__ import annotations

import math

import torch

from streamchar.errors import StreamCharError


def check_box(box) -> tuple[float, float, float, float]:
    """A box (x0, y0, x1, y1) in frame fractions, 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1."""
    if box is None or len(box) != 4:
        raise StreamCharError(f"mouth_box must be 4 frame fractions (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise StreamCharError(f"mouth_box needs 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {tuple(box)}")
    return x0, y0, x1, y1


def mouth_mask(h: int, w: int, box) -> torch.Tensor:
    """(h, w) float mask of the latent cells that overlap `box` (frame fractions)."""
    x0, y0, x1, y1 = check_box(box)
    mask = torch.zeros(h, w)
    # cell j spans [j / w, (j + 1) / w): it overlaps [x0, x1) when j < x1 * w and j + 1 > x0 * w
    cols = slice(int(math.floor(x0 * w)), int(math.ceil(x1 * w)))
    rows = slice(int(math.floor(y0 * h)), int(math.ceil(y1 * h)))
    mask[rows, cols] = 1.0
    return mask


def weight_map(mask: torch.Tensor, weight: float) -> torch.Tensor:
    """(h, w) per-cell weights 1 + weight * mask, normalised to mean 1."""
    if weight < 0:
        raise StreamCharError(f"mouth_weight must be >= 0, got {weight}")
    w = 1.0 + weight * mask
    return w / w.mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the cells where `mask` (h, w) is 1; pred/target (B, C, T, h, w)."""
    err = (pred.float() - target.float()).pow(2) * mask
    return err.sum() / (mask.sum() * pred.numel() / mask.numel())
