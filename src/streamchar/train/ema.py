"""Exponential moving average of the trainable parameters, kept in fp32.

    ema <- decay * ema + (1 - decay) * param      (after each optimizer step past `start`; a copy before)

Under FSDP2 a parameter is a DTensor and the EMA holds only this rank's local shard (plain tensors, no
collectives per step); `full_state_dict()` gathers full tensors (collective: call on every rank).
Names are the module's clean parameter names (no DDP `module.` / `_checkpoint_wrapped_module.` parts),
i.e. the keys of the model's state dict.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor, distribute_tensor

from streamchar.train import distributed


def clean_name(name: str) -> str:
    return name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")


def _local(p: torch.Tensor) -> torch.Tensor:
    return p.to_local() if isinstance(p, DTensor) else p


class EMA:
    def __init__(self, model: nn.Module, decay: float, start: int = 0):
        """`model`: the (possibly FSDP-sharded) module, not a DDP wrapper (see distributed.unwrap)."""
        self.decay, self.start = decay, start
        self.params = {clean_name(n): p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: _local(p).detach().float().clone() for n, p in self.params.items()}  # fp32 local shards

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Call after optimizer step number `step` (1-based)."""
        if step <= self.start:
            for n, p in self.params.items():
                self.shadow[n].copy_(_local(p).detach())
            return
        for n, p in self.params.items():
            self.shadow[n].lerp_(_local(p).detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model_params: dict[str, torch.Tensor] | None = None) -> None:
        """Write the EMA into the live parameters (all of them, or those in `model_params`)."""
        for n, p in (model_params or self.params).items():
            _local(p).detach().copy_(self.shadow[n])

    @contextmanager
    def swapped(self):
        """`with ema.swapped(): evaluate(model)` - the model holds the EMA weights inside the block."""
        backup = {n: _local(p).detach().clone() for n, p in self.params.items()}
        self.copy_to()
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    _local(p).detach().copy_(backup[n])

    # ---- full (gathered) state: collective under FSDP -----------------------------------------------
    @torch.no_grad()
    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """{name: full fp32 tensor on CPU} on rank 0, {} on the other ranks."""
        out = {}
        for n, p in self.params.items():
            t = self.shadow[n]
            if isinstance(p, DTensor):
                t = DTensor.from_local(t, p.device_mesh, p.placements, shape=p.shape, stride=p.stride()).full_tensor()
            if distributed.is_main():
                out[n] = t.cpu()
        return out

    @torch.no_grad()
    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load full tensors read on rank 0 (`state` may be {} on the other ranks): scatter / broadcast them."""
        for n, p in self.params.items():
            if distributed.is_main():
                if n not in state:
                    raise KeyError(n)
                full = state[n].to(device=_local(p).device, dtype=torch.float32)
            else:
                full = torch.empty(p.shape, dtype=torch.float32, device=_local(p).device)
            if isinstance(p, DTensor):
                self.shadow[n].copy_(distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=0).to_local())
            else:
                if distributed.is_dist():
                    dist.broadcast(full, src=0)
                self.shadow[n].copy_(full)
