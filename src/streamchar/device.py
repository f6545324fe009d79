"""Device and dtype choices shared by the CLI, the benchmarks and the session."""

from __future__ import annotations

import torch

from streamchar.errors import StreamCharError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; otherwise any torch device string ('cuda:1')."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise StreamCharError(f"--device {name!r} is not a device (try auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StreamCharError(f"--device {name}: CUDA is not available on this machine")
    return device


def inference_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA; fp32 on CPU (bf16 runs there too, but fp32 is the tested reference)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
