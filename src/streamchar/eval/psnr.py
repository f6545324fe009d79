"""Peak signal-to-noise ratio between two images / videos / waveforms of the same shape."""

from __future__ import annotations

import math

import numpy as np

from streamchar.errors import StreamCharError


def psnr(a, b, max_value: float = 255.0) -> float:
    """10 log10(max_value^2 / MSE) in dB over all elements of `a` and `b` (numpy arrays or CPU tensors).

    uint8 inputs are compared as integers 0-255 (use the default max_value); float inputs in [0, 1] need
    max_value=1, in [-1, 1] max_value=2. Identical inputs give inf.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise StreamCharError(f"psnr needs arrays of the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise StreamCharError("psnr of empty arrays is undefined")
    if not max_value > 0:
        raise StreamCharError(f"psnr max_value must be > 0, got {max_value}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(max_value**2 / mse)
