"""Pretraining throughput at `tiny` on CPU: one process vs 2 processes under torchrun (FSDP2 and DDP, gloo),
the same global batch. Prints JSON.

Each run is the real command (`streamchar train pretrain`, stage 2) on a random latent folder. Steps/s are
taken from the main rank's metrics.jsonl timestamps after `--warmup` steps (process start, model build and the
first steps are excluded). The single process gets all the cores as threads (OMP_NUM_THREADS = cores); each
of the W ranks gets cores / W. The loss curves of the three runs must agree (same samples, same noise): the
report gives their largest difference.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from streamchar.config import tiny
from streamchar.data.latents import write_random_latents
from streamchar.train.pretrain import PretrainConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp: Path, latents: Path, strategy: str, procs: int, args) -> dict:
    out = tmp / strategy
    cfg = PretrainConfig.from_dict({
        "stage": 2, "data": str(latents), "val_samples": 0,
        "train": {"steps": args.steps, "lr": 3e-4, "warmup_steps": 2, "grad_accum": args.global_batch // procs,
                  "log_every": 1, "val_every": 0, "ckpt_every": 0, "precision": "fp32", "strategy": strategy,
                  "activation_checkpointing": args.activation_checkpointing, "out_dir": str(out)}})
    cfg.to_yaml(tmp / f"{strategy}.yaml")
    cores = len(os.sched_getaffinity(0))
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // procs)), "HF_HUB_OFFLINE": "1"}
    cli = ["-m", "streamchar.cli", "train", "pretrain", "--config", str(tmp / f"{strategy}.yaml")]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port",
               str(free_port()), *cli]
    else:
        cmd = [sys.executable, *cli]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{strategy} run failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/loss" in r]
    timed = [r for r in rows if r["step"] >= args.warmup]
    steps_per_s = (len(timed) - 1) / (timed[-1]["time"] - timed[0]["time"])
    return {"strategy": strategy, "processes": procs, "threads_per_process": int(env["OMP_NUM_THREADS"]),
            "steps_per_s": steps_per_s, "samples_per_s": steps_per_s * args.global_batch,
            "losses": [r["train/loss"] for r in rows]}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--warmup", type=int, default=4, help="steps excluded from the timing")
    ap.add_argument("--global-batch", type=int, default=4, help="samples per optimizer step (even)")
    ap.add_argument("--activation-checkpointing", action="store_true")
    args = ap.parse_args()
    if args.global_batch % 2 or args.steps <= args.warmup + 1:
        ap.error("--global-batch must be even and --steps > --warmup + 1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # enough chunks for every step in one epoch: clips of 4 chunks
        latents = write_random_latents(tmp / "latents", tiny(),
                                       {"train": [4] * (args.steps * args.global_batch // 4 + 1), "val": [2]})
        runs = {name: run(tmp, latents, name, procs, args) for name, procs in
                (("single", 1), ("fsdp", 2), ("ddp", 2))}
    base = runs["single"]
    diff = max(abs(a - b) for name in ("fsdp", "ddp") for a, b in zip(runs[name]["losses"], base["losses"]))
    print(json.dumps({
        "steps_per_s_single": base["steps_per_s"],
        "steps_per_s_fsdp_2proc": runs["fsdp"]["steps_per_s"],
        "steps_per_s_ddp_2proc": runs["ddp"]["steps_per_s"],
        "fsdp_vs_single": runs["fsdp"]["steps_per_s"] / base["steps_per_s"],
        "ddp_vs_single": runs["ddp"]["steps_per_s"] / base["steps_per_s"],
        "max_loss_diff_vs_single": diff,
        "global_batch": args.global_batch, "steps": args.steps, "warmup": args.warmup,
        "activation_checkpointing": args.activation_checkpointing, "preset": "tiny", "device": "cpu",
        "random_init": True, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
