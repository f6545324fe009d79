"""`TrainConfig`: every knob of the shared training loop, one flat dataclass, validated, YAML in and out.

A bad value raises a `StreamCharError` naming the field: `config field train.grad_accum: must be >= 1, got 0`.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamchar.config import YamlConfig, _build
from streamchar.errors import StreamCharError

PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 autocast on CUDA, fp32 on CPU
STRATEGIES = ("single", "ddp", "fsdp")
SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig(YamlConfig):
    steps: int = 1000  # optimizer steps (each one consumes grad_accum micro-batches per rank)
    lr: float = 1e-4
    weight_decay: float = 0.0  # applied to >= 2-D parameters only (matrices, embeddings)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "constant"  # after warm-up: 'constant' or 'cosine' (to min_lr at `steps`)
    warmup_steps: int = 0  # linear warm-up: lr * (step + 1) / warmup_steps for step < warmup_steps
    min_lr: float = 0.0  # floor of the cosine schedule
    grad_clip: float | None = 1.0  # max global grad norm; None or 0 = off
    grad_accum: int = 1
    ema_decay: float | None = None  # None = no EMA
    ema_start: int = 0  # EMA copies the weights until this step, then averages
    log_every: int = 10
    val_every: int = 0  # 0 = no validation
    ckpt_every: int = 0  # 0 = no checkpoints; > 0: every ckpt_every steps and at the last step
    keep_checkpoints: int = 3  # the last K complete checkpoints are kept
    seed: int = 0  # the training RNGs get seed + rank
    precision: str = "auto"  # 'auto' | 'fp32' | 'bf16' (bf16 = autocast, also on CPU when asked for explicitly)
    strategy: str = "single"  # 'single' | 'ddp' | 'fsdp' (FSDP2, fully_shard per block then the root)
    activation_checkpointing: bool = False  # recompute each block (the `blocks` list) in the backward pass
    out_dir: str = "out/train"

    def validate(self, prefix: str = "train") -> "TrainConfig":
        def bad(name: str, why: str):
            raise StreamCharError(f"config field {prefix}.{name}: {why}")

        for name in ("steps", "grad_accum", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "ema_start", "val_every", "ckpt_every", "weight_decay", "min_lr"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "eps"):
            if not getattr(self, name) > 0:
                bad(name, f"must be > 0, got {getattr(self, name)}")
        if self.min_lr > self.lr:
            bad("min_lr", f"must be <= lr ({self.lr}), got {self.min_lr}")
        if len(self.betas) != 2 or any(not 0 <= b < 1 for b in self.betas):
            bad("betas", f"need two values in [0, 1), got {self.betas}")
        if self.grad_clip is not None and self.grad_clip < 0:
            bad("grad_clip", f"must be >= 0 (or null = off), got {self.grad_clip}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            bad("ema_decay", f"must be in (0, 1) (or null = off), got {self.ema_decay}")
        for name, choices in (("precision", PRECISIONS), ("strategy", STRATEGIES), ("schedule", SCHEDULES)):
            if getattr(self, name) not in choices:
                bad(name, f"unknown value {getattr(self, name)!r}; choose from {list(choices)}")
        if not self.out_dir:
            bad("out_dir", "must not be empty")
        return self

    # YAML in and out: YamlConfig; the errors name fields under `train.`


    @classmethod
    def from_dict(cls, data: dict, prefix: str = "train") -> "TrainConfig":
        return _build(cls, data, prefix + ".").validate(prefix)

