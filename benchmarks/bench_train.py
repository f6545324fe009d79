"""Pretraining throughput at `tiny` on CPU. Prints JSON.

Default: batched micro-batches against one-sample micro-batches, in one process, same model, same data,
same global batch (`--batch` samples per optimizer step; the batched run groups items by prefix length, as
pretraining does): the real Trainer and loss on a random latent folder
shaped like SynthTalk (clips of 8 chunks, reference voices of 1-15 s, history up to 15 s). Reports
samples/s of both, `speedup_batched`, the training FLOPs per sample (counted with torch's FlopCounterMode on
one batched step: forward + backward), the achieved GFLOP/s, and the same run's fp32 GEMM rate (a 1024^3
matmul) with the fraction of it reached.

`--distributed`: one process against 2 processes under torchrun (FSDP2 and DDP, gloo), the same global batch,
each the real `streamchar train pretrain` command; steps/s from the main rank's metrics.jsonl timestamps
after `--warmup` steps. The loss curves must agree (same samples, same noise): the report gives their largest
difference.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

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
        "stage": 2, "data": str(latents), "val_samples": 0, "batch_size": 1,
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


def gemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """fp32 GEMM rate of this process: (n x n) @ (n x n), best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def batched(args) -> dict:
    """Batched vs one-sample micro-batches: the same model, data and global batch, in this process."""
    from torch.utils.flop_counter import FlopCounterMode

    from streamchar.pipeline import StreamChar
    from streamchar.train.engine import Trainer
    from streamchar.train.latent_data import LatentLoader, collate
    from streamchar.train.pretrain import build_datasets, build_trainable, pretrain_loss

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        need = 32 * args.batch  # a length-grouping window of items
        latents = write_random_latents(tmp / "latents", tiny(), {"train": [8] * (need // 8 + 2), "val": [2]},
                                       tokens_per_chunk=5)
        results = {}
        for name, (bs, accum) in (("one_sample", (1, args.batch)), ("batched", (args.batch, 1))):
            cfg = PretrainConfig.from_dict({
                "stage": 2, "data": str(latents), "val_samples": 0, "batch_size": bs, "ref_audio_prob": 0.5,
                "group_by_length": bs > 1,
                "train": {"steps": args.steps, "lr": 3e-4, "grad_accum": accum, "log_every": 1000,
                          "precision": "fp32", "out_dir": str(tmp / name)}})
            pipe = StreamChar.from_config(tiny(), seed=0)
            model = build_trainable(cfg, pipe)
            ds = build_datasets(cfg, pipe, "train", train=True)
            loader = LatentLoader(ds, batch_size=bs, seed=0, group_by_length=cfg.group_by_length)
            trainer = Trainer(model, pretrain_loss, loader, cfg.train)
            trainer._iter = iter(trainer.data)
            model.train()
            for _ in range(args.warmup):
                trainer.train_step()
            t0 = time.perf_counter()
            for _ in range(args.steps - args.warmup):
                trainer.train_step()
            seconds = time.perf_counter() - t0
            results[name] = {"batch_size": bs, "grad_accum": accum,
                             "samples_per_s": (args.steps - args.warmup) * args.batch / seconds}
            if name == "batched":  # FLOPs of one batched forward + backward
                batch = collate([ds[i] for i in range(args.batch)])
                with FlopCounterMode(display=False) as counter:
                    model(batch)["loss"].backward()
                model.zero_grad(set_to_none=True)
                results[name]["gflop_per_sample"] = counter.get_total_flops() / args.batch / 1e9
    gemm = gemm_gflops()
    b, one = results["batched"], results["one_sample"]
    achieved = b["gflop_per_sample"] * b["samples_per_s"]
    return {"samples_per_s_batched": b["samples_per_s"], "samples_per_s_one_sample": one["samples_per_s"],
            "speedup_batched": b["samples_per_s"] / one["samples_per_s"],
            "gflop_per_sample": b["gflop_per_sample"], "achieved_gflops_batched": achieved,
            "achieved_gflops_one_sample": b["gflop_per_sample"] * one["samples_per_s"],
            "gemm_gflops_fp32": gemm, "fraction_of_gemm_batched": achieved / gemm,
            "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "threads": torch.get_num_threads(),
            "preset": "tiny", "device": "cpu", "random_init": True, "runs": results}


def distributed(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # enough chunks for every step in one epoch: clips of 4 chunks
        latents = write_random_latents(tmp / "latents", tiny(),
                                       {"train": [4] * (args.steps * args.global_batch // 4 + 1), "val": [2]})
        runs = {name: run(tmp, latents, name, procs, args) for name, procs in
                (("single", 1), ("fsdp", 2), ("ddp", 2))}
    base = runs["single"]
    diff = max(abs(a - b) for name in ("fsdp", "ddp") for a, b in zip(runs[name]["losses"], base["losses"]))
    return {
        "steps_per_s_single": base["steps_per_s"],
        "steps_per_s_fsdp_2proc": runs["fsdp"]["steps_per_s"],
        "steps_per_s_ddp_2proc": runs["ddp"]["steps_per_s"],
        "fsdp_vs_single": runs["fsdp"]["steps_per_s"] / base["steps_per_s"],
        "ddp_vs_single": runs["ddp"]["steps_per_s"] / base["steps_per_s"],
        "max_loss_diff_vs_single": diff,
        "global_batch": args.global_batch, "steps": args.steps, "warmup": args.warmup,
        "activation_checkpointing": args.activation_checkpointing, "preset": "tiny", "device": "cpu",
        "random_init": True, "runs": runs}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2, help="steps excluded from the timing")
    ap.add_argument("--batch", type=int, default=16, help="samples per optimizer step (batched vs one-sample)")
    ap.add_argument("--distributed", action="store_true", help="1 process vs 2 under torchrun instead")
    ap.add_argument("--global-batch", type=int, default=4, help="--distributed: samples per optimizer step (even)")
    ap.add_argument("--activation-checkpointing", action="store_true", help="--distributed runs")
    args = ap.parse_args()
    if args.steps <= args.warmup + 1:
        ap.error("--steps must be > --warmup + 1")
    if args.distributed:
        if args.global_batch % 2:
            ap.error("--global-batch must be even")
        print(json.dumps(distributed(args), indent=2))
    else:
        print(json.dumps(batched(args), indent=2))


if __name__ == "__main__":
    main()
