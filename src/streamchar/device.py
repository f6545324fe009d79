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


# The narrowest DiT at which bf16 pays on a CPU with native bf16 GEMMs (benchmarks/bench_peer.py, both dtypes):
# below it the casts around float32 norms, modulation and attention cost more than the faster GEMMs save.
CPU_BF16_MIN_DIM = 512


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 GEMMs natively (oneDNN: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles, on which oneDNN's bf16 attention kernels beat float32 (measured at
    8 heads x 576 tokens x 64: 2.2 ms bf16 against 5.2 ms float32; without AMX, on an AVX512-BF16 core, bf16
    was the slower one, 16.5 ms against 12.4 ms)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def inference_dtype(device: torch.device, dit_dim: int | None = None) -> torch.dtype:
    """The faster dtype for streaming: bf16 on CUDA; on a CPU, bf16 for a DiT at least `CPU_BF16_MIN_DIM` wide
    when the CPU has native bf16 GEMMs, else fp32 (`tiny`, and the tested reference)."""
    if device.type == "cuda":
        return torch.bfloat16
    if dit_dim is not None and dit_dim >= CPU_BF16_MIN_DIM and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageClock:
    """Per-stage times of one chunk without syncing in the hot loop: `mark(stage)` ends the interval since the
    previous mark and books it to `stage`. On CUDA the marks are events read once, when `durations()` is asked
    (after the chunk's last kernel); on the CPU, where every op has finished when it returns, perf_counter."""

    def __init__(self, device: torch.device):
        import time

        self.cuda = device.type == "cuda"
        self._now = time.perf_counter
        self.marks: list[tuple[str, object]] = [("start", self._point())]

    def _point(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return self._now()

    def mark(self, stage: str) -> None:
        self.marks.append((stage, self._point()))

    def durations(self) -> dict[str, float]:
        if self.cuda:
            self.marks[-1][1].synchronize()
        out: dict[str, float] = {}
        for (_, a), (stage, b) in zip(self.marks, self.marks[1:]):
            seconds = a.elapsed_time(b) / 1000.0 if self.cuda else b - a
            out[stage] = out.get(stage, 0.0) + seconds
        return out
