"""The training loop shared by every stage (flow-matching pretraining, DMD distillation, ...).

A stage provides
    model     nn.Module, the trainable module (built identically on every rank, e.g. same seed)
    loss_fn   loss_fn(model, batch, step) -> (loss: scalar Tensor, logs: dict[str, float])
              `model` is the wrapped module (DDP / FSDP): call it, don't reach around it.
              `step` is the 0-based index of the optimizer step being computed. Every rank must return
              the same log keys.
    data      iterable of batches with state_dict() / load_state_dict() (see train/data.py)
and gets: AdamW (decay on >= 2-D params), linear warm-up then constant or cosine lr, gradient
accumulation, grad-norm clipping, fp32 EMA, bf16 autocast, DDP / FSDP2, activation checkpointing,
tqdm + metrics.jsonl (+ TensorBoard), periodic validation and atomic checkpoints with exact resume.

    device = init_distributed()   # first (under torchrun): the loader reads rank / world size
    model, loader = build_model(seed=0), ResumableLoader(dataset, batch_size, seed=0)
    trainer = Trainer(model, loss_fn, loader, cfg, blocks=model.blocks)
    trainer.resume()          # latest checkpoint in cfg.out_dir, if any
    losses = trainer.fit()    # to cfg.steps
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor
from tqdm.auto import tqdm

from streamchar.errors import StreamCharError
from streamchar.streaming.record import ChunkRecord
from streamchar.train import checkpoint, distributed
from streamchar.train.config import TrainConfig
from streamchar.train.ema import EMA
from streamchar.train.metrics import MetricsLogger

LossFn = Callable[[nn.Module, object, int], tuple[torch.Tensor, dict[str, float]]]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up, then constant or cosine to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def to_device(batch, device: torch.device):
    """Tensors in (nested) dicts / lists / tuples, and records with a `.to(device)` (a ChunkRecord), moved to
    `device`; everything else unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, ChunkRecord):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA


class Trainer:
    def __init__(self, model: nn.Module, loss_fn: LossFn, data, cfg: TrainConfig,
                 blocks: Sequence[nn.Module] | None = None,
                 val_fn: Callable[[nn.Module, int], dict[str, float]] | None = None,
                 on_checkpoint: Callable[[Path, int], None] | None = None):
        """`blocks`: the model's repeated blocks (e.g. `model.blocks`), units of FSDP sharding and activation
        checkpointing. `val_fn(model, step) -> dict` runs every cfg.val_every steps on every rank (eval mode,
        no_grad). `on_checkpoint(path, step)` runs on every rank after each checkpoint is complete.
        Seeds python / numpy / torch with cfg.seed + rank: build the model before the Trainer."""
        cfg.validate()
        for name in ("state_dict", "load_state_dict"):
            if not callable(getattr(data, name, None)):
                raise StreamCharError(f"the data source {type(data).__name__} has no {name}(): exact resume "
                                      "needs one (see streamchar.train.data.ResumableLoader)")
        self.cfg, self.loss_fn, self.data, self.val_fn, self.on_checkpoint = cfg, loss_fn, data, val_fn, on_checkpoint
        self.device = distributed.init_distributed()
        self.rank = distributed.get_rank()
        self.model = distributed.wrap_model(model, cfg.strategy, self.device, blocks, cfg.activation_checkpointing)
        self.module = distributed.unwrap(self.model)  # the user's module (FSDP-sharded in place, or not)

        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise StreamCharError("the model has no trainable parameters")
        # lr scales by parameter: a model may name parts that learn at a multiple of train.lr (DMD's student and
        # fake score, paper §5.1: 2e-6 and 4e-7) with `lr_scales() -> {submodule name: scale}`
        scales = self._lr_scales(params)
        groups = []
        for scale in sorted(set(scales.values())):
            mine = [p for p in params if scales[p] == scale]
            groups += [{"params": [p for p in mine if p.dim() >= 2], "weight_decay": cfg.weight_decay,
                        "lr_scale": scale},
                       {"params": [p for p in mine if p.dim() < 2], "weight_decay": 0.0, "lr_scale": scale}]
        groups = [g for g in groups if g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=lr_at(0, cfg), betas=cfg.betas, eps=cfg.eps)
        self.ema = EMA(self.module, cfg.ema_decay, cfg.ema_start) if cfg.ema_decay is not None else None
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        self.step = 0  # optimizer steps done
        seed_everything(cfg.seed + self.rank)

    def _lr_scales(self, params) -> dict:
        """Each trainable parameter's lr scale: 1, or what `module.lr_scales()` gives its submodule."""
        scales = {p: 1.0 for p in params}
        named = getattr(self.module, "lr_scales", None)
        if callable(named):
            for name, scale in named().items():
                if not scale > 0:
                    raise StreamCharError(f"lr scale of {name!r} must be > 0, got {scale}")
                for p in self.module.get_submodule(name).parameters():
                    if p in scales:
                        scales[p] = float(scale)
        return scales

    # ---- checkpoints -------------------------------------------------------------------------------
    def save(self) -> Path:
        path = checkpoint.save_checkpoint(self.cfg.out_dir, self.step, self.model, self.optimizer, self.data,
                                          self.ema, self.cfg, keep=self.cfg.keep_checkpoints)
        if self.on_checkpoint is not None:
            self.on_checkpoint(path, self.step)
        return path

    def resume(self, path: str | Path | None = None) -> int:
        """Load checkpoint `path`, or the latest complete one in cfg.out_dir. Returns the step (0: none found)."""
        if path is None:
            self.step = checkpoint.resume(self.cfg.out_dir, self.model, self.optimizer, self.data, self.ema)
        else:
            self.step = checkpoint.load_checkpoint(path, self.model, self.optimizer, self.data, self.ema)
        return self.step

    # ---- one optimizer step ------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _sync(self, last: bool):
        """Gradient sync only on the last micro-batch of an accumulation (DDP no_sync / FSDP2 flag)."""
        if self.cfg.strategy == "ddp" and not last:
            return self.model.no_sync()
        if self.cfg.strategy == "fsdp":
            self.model.set_requires_gradient_sync(last)
        return nullcontext()

    def _next_batch(self):
        for _ in range(2):  # a fresh iterator may be empty once (position saved at the end of an epoch)
            try:
                return next(self._iter)
            except StopIteration:
                self._iter = iter(self.data)
        raise StreamCharError(f"the data source {type(self.data).__name__} yields no batches")

    def train_step(self) -> dict[str, float]:
        """Accumulate cfg.grad_accum micro-batches, clip, step, update the EMA. Returns the rank-mean logs."""
        cfg = self.cfg
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        total, logs_sum = 0.0, {}
        for micro in range(cfg.grad_accum):
            batch = to_device(self._next_batch(), self.device)
            with self._sync(micro == cfg.grad_accum - 1):
                with self._autocast():
                    loss, logs = self.loss_fn(self.model, batch, self.step)
                (loss / cfg.grad_accum).backward()
            total += loss.detach().float().item()
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + float(v)
        out = {"loss": total / cfg.grad_accum, **{k: v / cfg.grad_accum for k, v in sorted(logs_sum.items())}}
        if cfg.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            out["grad_norm"] = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.step)
        values = distributed.all_reduce_mean(torch.tensor(list(out.values()), dtype=torch.float64,
                                                          device=self.device)).tolist()
        out = dict(zip(out, values))
        if not math.isfinite(out["loss"]):
            raise StreamCharError(f"the loss is {out['loss']} at step {self.step}: training diverged "
                                  f"(lower train.lr or set train.grad_clip)")
        out["lr"] = lr
        return out

    # ---- the loop ----------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad(), self._autocast():
            out = self.val_fn(self.model, self.step)
        self.model.train()
        return {f"val/{k}": float(v) for k, v in out.items()}

    def fit(self) -> list[float]:
        """Train from self.step to cfg.steps; returns the loss of each step run here (rank mean)."""
        cfg, main = self.cfg, distributed.is_main()
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        metrics = MetricsLogger(cfg.out_dir, enabled=main)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not main, dynamic_ncols=True, desc="train")
        self._iter = iter(self.data)
        self.model.train()
        losses = []
        try:
            while self.step < cfg.steps:
                logs = self.train_step()
                losses.append(logs["loss"])
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    metrics.log(self.step, {f"train/{k}": v for k, v in logs.items()})
                    bar.set_postfix(loss=f"{logs['loss']:.4g}", lr=f"{logs['lr']:.3g}")
                if self.val_fn is not None and cfg.val_every and self.step % cfg.val_every == 0:
                    val = self.validate()
                    metrics.log(self.step, val)
                    if main:
                        bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()),
                                  file=sys.stderr)  # stdout is the command's JSON
                if cfg.ckpt_every and (self.step % cfg.ckpt_every == 0 or self.step == cfg.steps):
                    self.save()
        finally:
            bar.close()
            metrics.close()
        return losses
