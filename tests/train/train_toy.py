"""Toy training problem shared by the tests in tests/train (and by the torchrun helper scripts).

A small residual MLP with a `blocks` ModuleList regressing a fixed random linear map. Odd widths
(13, 5) make FSDP shards uneven across 2 ranks.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from streamchar.train import ResumableLoader, TrainConfig

DIM, HIDDEN, OUT, N = 8, 13, 5, 96


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):  # (B, dim) -> (B, dim)
        return x + F.gelu(self.fc(self.norm(x)))


class ToyMLP(nn.Module):
    def __init__(self, depth: int = 3):
        super().__init__()
        self.inp = nn.Linear(DIM, HIDDEN)
        self.blocks = nn.ModuleList(Block(HIDDEN) for _ in range(depth))
        self.out = nn.Linear(HIDDEN, OUT)

    def forward(self, x):  # (B, DIM) -> (B, OUT)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


class LinearMapDataset:
    """x ~ N(0, 1)^DIM, y = x @ W (fixed random W)."""

    def __init__(self, n: int = N, seed: int = 123):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, DIM, generator=g)  # (N, DIM)
        self.y = self.x @ torch.randn(DIM, OUT, generator=g)  # (N, OUT)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def make_model(seed: int = 0) -> ToyMLP:
    torch.manual_seed(seed)
    return ToyMLP()


def mse_loss(model, batch, step):
    x, y = batch  # (B, DIM), (B, OUT)
    loss = F.mse_loss(model(x), y)
    return loss, {"pred_loss": loss.item()}


def noisy_loss(model, batch, step):
    """Uses the global torch RNG: exact resume needs the RNG state restored."""
    x, y = batch
    x = x + 0.1 * torch.randn_like(x)
    loss = F.mse_loss(model(x), y)
    return loss, {}


def make_run(out_dir, batch_size: int = 8, data_seed: int = 1, model_seed: int = 0, **overrides):
    cfg = TrainConfig(**{"steps": 10, "lr": 1e-2, "grad_clip": 1.0, "log_every": 1, "out_dir": str(out_dir),
                         **overrides}).validate()
    return make_model(model_seed), ResumableLoader(LinearMapDataset(), batch_size=batch_size, seed=data_seed), cfg
