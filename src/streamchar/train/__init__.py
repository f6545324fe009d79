"""The shared training engine: config, loop, checkpoints, distributed wrapping, EMA, resumable data.

    from streamchar.train import Trainer, TrainConfig, ResumableLoader
"""

from streamchar.train.checkpoint import latest_checkpoint, load_checkpoint, resume, save_checkpoint
from streamchar.train.config import TrainConfig
from streamchar.train.data import ResumableLoader, ResumableSampler
from streamchar.train.distributed import (
    all_reduce_mean,
    barrier,
    destroy_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_main,
    wrap_model,
)
from streamchar.train.ema import EMA
from streamchar.train.engine import Trainer, lr_at
from streamchar.train.metrics import MetricsLogger

__all__ = [
    "EMA", "MetricsLogger", "ResumableLoader", "ResumableSampler", "TrainConfig", "Trainer",
    "all_reduce_mean", "barrier", "destroy_distributed", "get_rank", "get_world_size", "init_distributed",
    "is_main", "latest_checkpoint", "load_checkpoint", "lr_at", "resume", "save_checkpoint", "wrap_model",
]
