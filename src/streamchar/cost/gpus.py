"""GPUs the cost model knows: dense bf16 peak, memory bandwidth and memory, each with its source."""

from __future__ import annotations

from streamchar.errors import StreamCharError

# Dense (no 2:4 sparsity) bf16 tensor-core peak, memory bandwidth and memory, from the vendors' datasheets.
GPUS = {
    # NVIDIA H100 SXM5 datasheet: 989 TFLOP/s bf16 dense (1979 is with sparsity), 3.35 TB/s HBM3, 80 GB.
    "h100": {"name": "NVIDIA H100 SXM", "bf16_tflops": 989.0, "bandwidth_tbs": 3.35, "memory_gb": 80.0},
    # NVIDIA H200 SXM datasheet: same compute as H100 SXM, 4.8 TB/s HBM3e, 141 GB.
    "h200": {"name": "NVIDIA H200 SXM", "bf16_tflops": 989.0, "bandwidth_tbs": 4.8, "memory_gb": 141.0},
    # NVIDIA A100 SXM 80GB datasheet: 312 TFLOP/s bf16 dense, 2.0 TB/s HBM2e (2,039 GB/s), 80 GB.
    "a100": {"name": "NVIDIA A100 SXM 80GB", "bf16_tflops": 312.0, "bandwidth_tbs": 2.0, "memory_gb": 80.0},
    # NVIDIA L40S datasheet: 362 TFLOP/s bf16 dense (733 with sparsity), 864 GB/s GDDR6, 48 GB.
    "l40s": {"name": "NVIDIA L40S", "bf16_tflops": 362.0, "bandwidth_tbs": 0.864, "memory_gb": 48.0},
    # NVIDIA Ada GPU architecture whitepaper, RTX 4090: peak bf16 tensor 165.2 TFLOP/s with fp32 accumulate
    # (330.3 with fp16 accumulate; GeForce parts run fp32 accumulate at half rate). PyTorch's bf16 matmuls
    # accumulate in fp32, so 165 applies. 1,008 GB/s GDDR6X (~1.0 TB/s), 24 GB.
    "rtx4090": {"name": "NVIDIA GeForce RTX 4090", "bf16_tflops": 165.0, "bandwidth_tbs": 1.0, "memory_gb": 24.0},
}


def gpu_spec(name: str) -> dict:
    """The GPUS entry for `name` (case-insensitive); an unknown name raises StreamCharError."""
    key = str(name).lower()
    if key not in GPUS:
        raise StreamCharError(f"unknown GPU {name!r}; known: {', '.join(sorted(GPUS))}")
    return dict(GPUS[key], key=key)
