import math

import numpy as np
import pytest
import torch

from streamchar.errors import StreamCharError
from streamchar.eval.psnr import psnr


def test_identical_is_inf():
    a = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert psnr(a, a.copy()) == math.inf


def test_known_mse_uint8():
    a = np.zeros((10, 10), np.uint8)
    b = np.full((10, 10), 10, np.uint8)  # MSE 100 (no uint8 wrap-around: compared as float)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(b, a) == pytest.approx(28.1308, abs=1e-4)


def test_known_mse_float_and_tensor():
    a = torch.zeros(2, 3, 5)
    b = torch.full((2, 3, 5), 0.1)  # MSE 0.01 -> 20 dB with max 1
    assert psnr(a, b, max_value=1.0) == pytest.approx(20.0)


def test_bad_inputs():
    with pytest.raises(StreamCharError, match="same shape"):
        psnr(np.zeros(3), np.zeros(4))
    with pytest.raises(StreamCharError, match="max_value"):
        psnr(np.zeros(3), np.ones(3), max_value=0)
