import pytest
import torch


def _random_frames(t, h=64, w=64, b=1, seed=0):
    """(b, 3, t, h, w) uniform in [-1, 1), seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


@pytest.fixture
def frames():
    return _random_frames
