"""Training checkpoints: written atomically, resumed exactly.

    out_dir/checkpoints/step_00000500/
        model.safetensors    full model state dict (clean keys, same as `module.state_dict()`)
        ema.safetensors      the same with the EMA in place of the trainable parameters (when EMA is on)
        optimizer.pt         full (gathered) optimizer state dict, keyed by parameter name (torch.save)
        state.pt             step, world size, and per rank: RNG states (python, numpy, torch CPU, CUDA) and
                             the data position `data.state_dict()` (torch.save)
        train_config.yaml    the TrainConfig of the run (for the record)

The lr schedule is a pure function of the step, so `step` is the whole scheduler state. The optimizer
state lives in its own file so that only rank 0 reads it (state.pt is small and read by every rank).

Atomic: rank 0 writes everything into `checkpoints/.tmp-step_...` and renames it to `step_...` at the end;
a crash mid-write leaves only a dot-folder, which `latest_checkpoint` never picks (and the next save removes).

FSDP2 / DDP: weights and optimizer state are gathered to full CPU tensors on rank 0 with
`torch.distributed.checkpoint.state_dict` (`full_state_dict=True, cpu_offload=True`) and loaded back with
`broadcast_from_rank0=True`, so a checkpoint is one plain file set whatever the strategy or world size
(but exact resume of the data position/RNG needs the same world size). Saving and loading are collective:
call them on every rank.

Security: state.pt holds numpy RNG states, so it is read with `torch.load(weights_only=False)`, which can
run pickled code: only resume from checkpoints you wrote. optimizer.pt is read with weights_only=True.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from streamchar.errors import StreamCharError
from streamchar.train import distributed
from streamchar.train.ema import EMA, clean_name

logger = logging.getLogger(__name__)

MODEL, EMA_FILE, OPTIMIZER, STATE, CONFIG = (
    "model.safetensors", "ema.safetensors", "optimizer.pt", "state.pt", "train_config.yaml")
STEP_DIR = re.compile(r"^step_(\d+)$")
FORMAT = 1


# ---- RNG ---------------------------------------------------------------------------------------------
def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()  # this rank's current device
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- finding checkpoints -----------------------------------------------------------------------------
def checkpoint_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def _step_dirs(out_dir: str | Path) -> list[tuple[int, Path]]:
    root = checkpoint_root(out_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return sorted(found)


def missing_files(path: Path) -> list[str]:
    """The files a complete checkpoint folder lacks ([] when complete)."""
    return [name for name in (MODEL, OPTIMIZER, STATE) if not (path / name).is_file()]


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete `step_*` folder under out_dir/checkpoints (incomplete ones are skipped, with a warning)."""
    for _, path in reversed(_step_dirs(out_dir)):
        missing = missing_files(path)
        if not missing:
            return path
        logger.warning("skipping incomplete checkpoint %s (missing %s)", path, ", ".join(missing))
    return None


# ---- saving ------------------------------------------------------------------------------------------
def _for_safetensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, tied weights cloned (safetensors refuses shared storage)."""
    out, seen = {}, set()
    for key, value in sd.items():
        value = value.detach().cpu().contiguous()
        ptr = value.untyped_storage().data_ptr()
        out[key] = value.clone() if ptr in seen else value
        seen.add(ptr)
    return out


def save_checkpoint(out_dir: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, data,
                    ema: EMA | None = None, config=None, keep: int = 3) -> Path:
    """Write checkpoint `step` (collective: every rank calls it; rank 0 writes). Returns its folder."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=options)  # {} on ranks != 0 under a process group
    optim_sd = get_optimizer_state_dict(model, optimizer, options=options)
    ema_sd = ema.full_state_dict() if ema is not None else None
    ranks = distributed.all_gather_object({"rng": rng_state(), "data": data.state_dict()})
    root = checkpoint_root(out_dir)
    final = root / f"step_{step:08d}"
    if distributed.is_main():
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-step_*"):  # left by a crash in an earlier save
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
        try:
            meta = {"format": "pt", "step": str(step)}
            save_file(_for_safetensors(model_sd), str(tmp / MODEL), metadata=meta)
            if ema_sd is not None:
                missing = sorted(set(ema_sd) - set(model_sd))
                if missing:
                    raise RuntimeError(f"EMA parameters {missing[:3]} are not in the model state dict")
                save_file(_for_safetensors({**model_sd, **ema_sd}), str(tmp / EMA_FILE), metadata=meta)
            torch.save(optim_sd, tmp / OPTIMIZER)
            torch.save({"format": FORMAT, "step": step, "world_size": len(ranks), "ema": ema is not None,
                        "ranks": ranks}, tmp / STATE)
            if config is not None:
                config.to_yaml(tmp / CONFIG)
            if final.exists():  # re-saving a step (e.g. after resuming from an older checkpoint)
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for _, old in _step_dirs(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return final


# ---- loading -----------------------------------------------------------------------------------------
def _read(path: Path, name: str):
    try:
        if name.endswith(".safetensors"):
            return load_file(str(path / name))
        return torch.load(path / name, map_location="cpu", weights_only=(name != STATE))
    except (SafetensorError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise StreamCharError(f"checkpoint {path} is corrupt: cannot read {name} ({e}); "
                              "delete this folder to resume from the previous checkpoint") from None


def _expected_shapes(model: nn.Module) -> dict[str, tuple]:
    return {clean_name(k): tuple(v.shape) for k, v in distributed.unwrap(model).state_dict().items()}


def _check_weights(path: Path, name: str, sd: dict, expected: dict[str, tuple]) -> None:
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise StreamCharError(f"checkpoint {path / name} does not match the model: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    for key, value in sd.items():
        if tuple(value.shape) != expected[key]:
            raise StreamCharError(f"checkpoint {path / name}: {key} has shape {tuple(value.shape)}, "
                                  f"the model has {expected[key]}")


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, data,
                    ema: EMA | None = None) -> int:
    """Restore everything saved by `save_checkpoint` (collective). Returns the step to continue from."""
    path = Path(path)
    missing = missing_files(path) if path.is_dir() else ["the folder itself"]
    if missing:
        raise StreamCharError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    state = _read(path, STATE)  # every rank: its own RNG and data position
    world = distributed.get_world_size()
    if state.get("format") != FORMAT or state["world_size"] != world:
        raise StreamCharError(f"checkpoint {path} was written by {state.get('world_size')} ranks (format "
                              f"{state.get('format')}); this run has {world} ranks (format {FORMAT})")
    if ema is not None and not state["ema"]:
        raise StreamCharError(f"checkpoint {path} has no EMA weights but ema_decay is set")

    # rank 0 reads the big files; any error is raised on every rank (no rank is left waiting in a collective)
    model_sd, optim_sd, ema_sd, error = {}, {}, {}, None
    if distributed.is_main():
        try:
            expected = _expected_shapes(model)
            model_sd = _read(path, MODEL)
            _check_weights(path, MODEL, model_sd, expected)
            optim_sd = _read(path, OPTIMIZER)
            if ema is not None:
                ema_sd = _read(path, EMA_FILE) if (path / EMA_FILE).is_file() else None
                if ema_sd is None:
                    raise StreamCharError(f"checkpoint {path} is incomplete: missing {EMA_FILE}")
                _check_weights(path, EMA_FILE, ema_sd, expected)
        except StreamCharError as e:
            error = str(e)
    errors = [e for e in distributed.all_gather_object(error) if e]
    if errors:
        raise StreamCharError(errors[0])

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=distributed.is_dist())
    set_model_state_dict(model, model_sd, options=options)
    set_optimizer_state_dict(model, optimizer, optim_sd, options=options)
    if ema is not None:
        ema.load_full_state_dict(ema_sd)
    mine = state["ranks"][distributed.get_rank()]
    data.load_state_dict(mine["data"])
    set_rng_state(mine["rng"])
    distributed.barrier()
    return state["step"]


def resume(out_dir: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, data,
           ema: EMA | None = None) -> int:
    """Load the latest complete checkpoint under out_dir; returns its step (0 when there is none)."""
    path = latest_checkpoint(out_dir)
    if path is None:
        return 0
    logger.info("resuming from %s", path)
    return load_checkpoint(path, model, optimizer, data, ema)
