"""Process group, rank helpers and model wrapping (DDP, FSDP2, activation checkpointing).

Launch with torchrun (`torchrun --nproc_per_node N script.py`); a plain `python script.py` is a
world of one and every helper here degrades to a no-op. Backend: nccl on CUDA, gloo on CPU.
FSDP2 (`fully_shard`) runs on CPU/gloo too (checked with torch 2.13), which is what the tests use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

from streamchar.errors import StreamCharError


def init_distributed() -> torch.device:
    """Join the torchrun process group (if RANK/WORLD_SIZE are set) and return this rank's device."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=(
            device if device.type == "cuda" else None))
    return device


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of `tensor` over ranks, in place (and returned). Identity in a world of one."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def all_gather_object(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (small picklable objects only)."""
    if not is_dist():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def destroy_distributed() -> None:
    if is_dist():
        dist.destroy_process_group()


def apply_activation_checkpointing(blocks: nn.ModuleList) -> None:
    """Replace each block by a checkpointed wrapper (non-reentrant): its activations are recomputed in backward.

    State-dict keys stay unchanged (the wrapper strips its `_checkpoint_wrapped_module.` prefix).
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(blocks):
        blocks[i] = checkpoint_wrapper(block)


def wrap_model(model: nn.Module, strategy: str, device: torch.device, blocks: Sequence[nn.Module] | None = None,
               activation_checkpointing: bool = False) -> nn.Module:
    """Move `model` to `device` and wrap it for `strategy` ('single' | 'ddp' | 'fsdp').

    `blocks` (e.g. `model.blocks`, an nn.ModuleList) are the units of activation checkpointing and of FSDP
    sharding: FSDP2 `fully_shard` is applied to each block, then to the root. Under FSDP the parameters
    become DTensors in place (the returned module is `model` itself); under DDP it is a DDP wrapper.
    """
    if activation_checkpointing:
        if blocks is None or not isinstance(blocks, nn.ModuleList):
            raise StreamCharError("activation_checkpointing needs `blocks`, an nn.ModuleList of the model's blocks")
        apply_activation_checkpointing(blocks)
    model = model.to(device)
    if strategy == "single":
        return model
    if not is_dist():
        raise StreamCharError(f"strategy {strategy!r} needs a process group: launch with torchrun "
                              "and call init_distributed() first (or use strategy 'single')")
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        for block in blocks or ():
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    raise StreamCharError(f"unknown strategy {strategy!r}; choose from ['single', 'ddp', 'fsdp']")


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under a DDP wrapper (FSDP2 and 'single' return it unchanged)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return model.module if isinstance(model, DDP) else model
