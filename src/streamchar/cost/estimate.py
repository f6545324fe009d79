"""Roofline latency of one chunk, real-time factor, and the whole `streamchar cost` report.

Latency per part = max(FLOPs / (peak x MFU), bytes / (bandwidth x efficiency)): a roofline with derating
factors, not a measurement. All memory figures are decimal GB (1e9 bytes).
"""

from __future__ import annotations

from streamchar.config import StreamCharConfig
from streamchar.cost.flops import chunk_cost
from streamchar.cost.gpus import gpu_spec
from streamchar.cost.memory import TRAIN_STAGES, inference_memory, train_memory
from streamchar.errors import StreamCharError

# The paper's own measurement (§5.1, "Inference Efficiency"): one H100, 512x512, 33-frame chunk, 4 steps, bf16.
PAPER_H100 = {"llm_dit_s": 0.96, "vae_decode_s": 0.30, "preprocess_s": 0.05, "write_s": 0.025, "total_s": 1.34,
              "source": "§5.1: one H100, 512x512, 33-frame chunk, 4 steps, bf16"}


def estimate(cfg: StreamCharConfig, gpu: str, mfu: float = 0.4, bandwidth_eff: float = 0.7, **chunk_kwargs) -> dict:
    """Roofline latency per part and per chunk, real-time factor, inference memory.

    time(part) = max(FLOPs / (peak x mfu), bytes / (bandwidth x bandwidth_eff)): compute- or memory-bound,
    whichever is slower, with derating factors for what kernels reach in practice. rtf = chunk latency /
    chunk duration (< 1 means faster than real time). The parts run one after another (no overlap assumed).
    """
    spec = gpu_spec(gpu)
    if not 0 < mfu <= 1 or not 0 < bandwidth_eff <= 1:
        raise StreamCharError(f"mfu and bandwidth_eff must be in (0, 1], got {mfu} and {bandwidth_eff}")
    chunk = chunk_cost(cfg, **chunk_kwargs)
    flops_s = spec["bf16_tflops"] * 1e12 * mfu  # sustained FLOP/s
    bytes_s = spec["bandwidth_tbs"] * 1e12 * bandwidth_eff  # sustained bytes/s
    latency, bound = {}, {}
    for name, p in chunk["parts"].items():
        t_compute, t_memory = p["flops"] / flops_s, p["bytes"] / bytes_s
        latency[name] = max(t_compute, t_memory)
        bound[name] = "compute" if t_compute >= t_memory else "memory"
    total = sum(latency.values())
    llm_dit = sum(v for k, v in latency.items() if k.startswith(("orchestrator", "dit")))
    memory = inference_memory(cfg, chunk)
    return {"gpu": spec, "mfu": mfu, "bandwidth_eff": bandwidth_eff, "chunk": chunk,
            "latency_s": latency, "bound": bound, "llm_dit_s": llm_dit,
            "decode_s": latency["video_decode"] + latency["audio_decode"], "total_s": total,
            "chunk_seconds": cfg.chunk_seconds, "rtf": total / cfg.chunk_seconds,
            "real_time": total < cfg.chunk_seconds, "memory": memory,
            "fits": memory["total_gb"] <= spec["memory_gb"],
            "paper_h100": PAPER_H100 if cfg.preset == "paper" else None}


def cost_report(cfg: StreamCharConfig, gpu: str, train_gpus: int = 8) -> dict:
    """Everything for `streamchar cost`: chunk cost, latency and memory estimate, FSDP training memory."""
    report = estimate(cfg, gpu)
    report["preset"] = cfg.preset
    report["train"] = {stage: train_memory(cfg, gpus=train_gpus, stage=stage) for stage in TRAIN_STAGES}
    return report
