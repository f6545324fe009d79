"""Distillation cost at `tiny` on this machine, and the cost model's memory at `paper` scale. Prints JSON.

- Stage I (train/distill_dmd.py) and Stage II (train/distill_rollout.py) optimizer steps with the real Trainer
  on a random latent folder shaped like SynthTalk (random tiny weights: the cost does not depend on them):
  seconds per step after `--warmup` steps, in one run, and their ratio (`stage2_over_stage1`).
- Stage II's peak memory as the rollout grows (K = 1, 2, 4, 8 chunks; window and gradient chunks min(K, 3)):
  the process's peak RSS growth over the run (CPU), or torch.cuda.max_memory_allocated (GPU), each K in a
  fresh process so peaks do not mix.
- `cost`: the cost model's training memory per GPU at `paper` scale (8 GPUs, FSDP) for pretraining,
  Stage I and Stage II (cost/memory.py `train_memory`).

    python benchmarks/bench_distill.py [--steps 6] [--warmup 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def time_steps(stage: str, folder: Path, batch: int, steps: int, warmup: int, chunks: int = 4) -> dict:
    """Seconds per optimizer step of `stage` ('dmd' | 'rollout') after `warmup` steps."""
    from streamchar.pipeline import StreamChar
    from streamchar.train.engine import Trainer

    out = folder / f"run_{stage}_{chunks}"
    common = {"init": str(folder / "teacher"), "data": str(folder / "latents"), "batch_size": batch,
              "val_samples": 0, "guidance": [2.0, 2.0],
              "train": {"steps": steps, "lr": 1e-5, "warmup_steps": 0, "log_every": 1000, "val_every": 0,
                        "ckpt_every": 0, "ema_decay": None, "precision": "fp32", "out_dir": str(out)}}
    if stage == "dmd":
        from streamchar.train.distill_dmd import DMDConfig, build_trainable, dmd_step
        from streamchar.train.latent_data import LatentLoader
        from streamchar.train.pretrain import build_datasets, build_pipeline

        cfg = DMDConfig.from_dict(common)
        pipe = build_pipeline(cfg)
        model = build_trainable(cfg, pipe)
        ds = build_datasets(cfg, pipe, "train", train=True)
        ds.uncond_record = True
        trainer = Trainer(model, dmd_step, LatentLoader(ds, batch_size=batch, seed=0), cfg.train)
    else:
        from streamchar.train.distill_rollout import (RolloutClips, RolloutConfig, RolloutLoader, build_trainable,
                                                      rollout_step)
        from streamchar.train.pretrain import build_datasets, build_pipeline

        w = min(chunks, 3)
        cfg = RolloutConfig.from_dict({**common, "teacher": str(folder / "teacher"), "chunks": chunks, "window": w})
        pipe = build_pipeline(cfg)
        model = build_trainable(cfg, pipe, StreamChar.from_pretrained(folder / "teacher"))
        clips = RolloutClips(build_datasets(cfg, pipe, "train", train=True), chunks)
        trainer = Trainer(model, rollout_step, RolloutLoader(clips, batch_size=batch, seed=0), cfg.train)
    trainer._iter = iter(trainer.data)
    model.train()
    for _ in range(warmup):
        trainer.train_step()
    t0 = time.perf_counter()
    for _ in range(steps - warmup):
        trainer.train_step()
    return {"stage": stage, "batch": batch, "seconds_per_step": (time.perf_counter() - t0) / (steps - warmup),
            **({"chunks": chunks} if stage == "rollout" else {})}


def high_water_mb() -> float:
    """This process's peak RSS (VmHWM, MB). Not getrusage's ru_maxrss: that one keeps the parent's peak across
    fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def peak_memory_child(folder: str, chunks: int, batch: int, steps: int) -> None:
    """In a fresh process: Stage II steps with K = `chunks`; prints the peak memory growth (MB) as JSON."""
    folder = Path(folder)
    cuda = torch.cuda.is_available()
    base = high_water_mb()
    r = time_steps("rollout", folder, batch, steps, warmup=0, chunks=chunks)
    peak = (torch.cuda.max_memory_allocated() / 2**20) if cuda else high_water_mb() - base
    print(json.dumps({"chunks": chunks, "peak_mb": peak, "measure": "cuda allocated" if cuda else "RSS growth",
                      "seconds_per_step": r["seconds_per_step"]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--ks", default="1,2,4,8", help="Stage II rollout lengths for the memory curve")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # folder, chunks: one memory measurement
    args = p.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    if args.child:
        peak_memory_child(args.child[0], int(args.child[1]), args.batch, 2)
        return

    from streamchar.config import paper, tiny
    from streamchar.cost.memory import train_memory
    from streamchar.data.latents import write_random_latents
    from streamchar.pipeline import StreamChar

    ks = [int(k) for k in args.ks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        StreamChar.from_config(tiny(), seed=0).save_pretrained(folder / "teacher")
        write_random_latents(folder / "latents", tiny(), {"train": [max(ks + [8])] * (4 * args.batch), "val": [2]},
                             tokens_per_chunk=16)
        stage1 = time_steps("dmd", folder, args.batch, args.steps, args.warmup)
        stage2 = time_steps("rollout", folder, args.batch, args.steps, args.warmup, chunks=4)
        memory = []
        for k in ks:
            proc = subprocess.run([sys.executable, __file__, "--child", str(folder), str(k), "--batch",
                                   str(args.batch)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"memory run K={k} failed:\n{proc.stderr[-3000:]}")
            memory.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cost = {stage: train_memory(paper(), gpus=8, stage=stage) for stage in ("pretrain", "dmd", "rollout")}
    print(json.dumps({
        "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads(),
        "stage1": stage1, "stage2": stage2,
        "stage2_over_stage1": stage2["seconds_per_step"] / stage1["seconds_per_step"],
        "stage2_memory_by_chunks": memory,
        "cost_paper_8gpu_fsdp_gb": {s: {"total_per_gpu_gb": round(c["total_per_gpu_gb"], 1),
                                        **{k: round(v, 1) for k, v in c["per_gpu_gb"].items()}}
                                    for s, c in cost.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
