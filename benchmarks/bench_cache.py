"""Cached vs full-recomputation denoise loop: one chunk, 4 student steps, DiT + orchestrator only (no codecs).

(a) cached: `orchestrator.encode_prefix` + `dit.encode_conditions` once, then per step
    `orchestrator.condition` (33 E_cond tokens on the prefix KV) + `dit.forward` (noisy tokens on the condition KV);
(b) full:   per step `orchestrator.forward_full` + `dit.forward_full` over the whole sequence (asymmetric mask).

Mid-stream inputs: reference latent (1 frame), sink and motion latents (9 frames each), ~5 s of reference
audio latents, 15 s of history (history_frames latents), a prompt + ~60-word transcript
as random token ids, a random prompt context (1, text.max_length, text.dim). Random weights, eval, no_grad.
Both paths start from the same noise (same generator seed), so their velocities must match: the max abs
difference over all steps is reported.

    python benchmarks/bench_cache.py [--repeats 5] [--device auto|cpu|cuda]

Prints one JSON object on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

import torch

from streamchar.config import StreamCharConfig, tiny
from streamchar.device import inference_dtype, pick_device, sync
from streamchar.diffusion.samplers import student_sample, student_timesteps
from streamchar.models.dit import JointDiT
from streamchar.models.orchestrator import Orchestrator, OrchestratorInputs

REF_AUDIO_SECONDS = 5.0
PROMPT_TOKENS = 8
TRANSCRIPT_TOKENS = 80  # ~60 words at ~1.3 tokens / word (Qwen-style BPE)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def mid() -> StreamCharConfig:
    """Between `tiny` and `paper`: a 512-wide DiT and orchestrator, 128x128 video (4x the video tokens)."""
    cfg = tiny()
    return dataclasses.replace(
        cfg,
        video=dataclasses.replace(cfg.video, height=128, width=128),
        dit=dataclasses.replace(cfg.dit, dim=512, num_layers=8, num_heads=8, ffn_dim=1536),
        orchestrator=dataclasses.replace(cfg.orchestrator, hidden_size=512, num_layers=8, num_heads=8,
                                         num_kv_heads=2, intermediate_size=1408),
    ).validate()


def make_inputs(cfg: StreamCharConfig, device, dtype, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)
    C, Ca, K = cfg.video.latent_channels, cfg.audio.latent_channels, cfg.video_latent_frames
    h, w = cfg.latent_size
    n_ref_audio = round(REF_AUDIO_SECONDS * cfg.audio_latent_rate)
    n_hist = cfg.history_frames
    text_ids = torch.randint(1, cfg.orchestrator.vocab_size, (1, PROMPT_TOKENS + TRANSCRIPT_TOKENS), generator=g)
    ref_audio, hist_audio = rand(1, n_ref_audio, Ca), rand(1, n_hist, Ca)
    orch_inputs = OrchestratorInputs.unpadded(ref_audio, text_ids.to(device), PROMPT_TOKENS, hist_audio, Ca)
    return {
        "orchestrator": orch_inputs,
        "reference": rand(1, C, 1, h, w), "sink": rand(1, C, K, h, w), "motion": rand(1, C, K, h, w),
        "ref_audio": ref_audio, "hist_audio": hist_audio,
        "text_ids": text_ids.to(device), "transcript_start": PROMPT_TOKENS,
        "context": rand(1, cfg.text.max_length, cfg.text.dim),
        "shape_v": (1, C, K, h, w), "shape_a": (1, cfg.audio_latent_frames, Ca),
    }


def run_chunk(dit, orch, inp, timesteps, mode: str, dtype, device):
    """One chunk's denoise loop. -> (seconds, per-component seconds, list of per-step velocities)."""
    split = {"orchestrator": 0.0, "dit": 0.0}
    velocities = []
    gen = torch.Generator(device).manual_seed(1234)  # same noise for both modes
    sync(device)
    start = time.perf_counter()
    conds = dit.condition_frames(inp["reference"], inp["sink"], inp["motion"])
    if mode == "cached":
        t0 = time.perf_counter()
        prefix = orch.encode_prefix(inp["orchestrator"])
        sync(device)
        t1 = time.perf_counter()
        cache = dit.encode_conditions(conds, inp["context"])
        sync(device)
        split["orchestrator"] += t1 - t0
        split["dit"] += time.perf_counter() - t1

    def velocity(x_v, x_a, t):
        t0 = time.perf_counter()
        if mode == "cached":
            c_a, _ = orch.condition(prefix, x_a, t)
        else:
            c_a = orch.forward_full(inp["orchestrator"], x_a, t)[0]
        sync(device)
        t1 = time.perf_counter()
        if mode == "cached":
            v = dit(x_v, x_a, c_a, t, cache)
        else:
            v = dit.forward_full(x_v, x_a, c_a, t, conds, inp["context"])
        sync(device)
        split["orchestrator"] += t1 - t0
        split["dit"] += time.perf_counter() - t1
        velocities.append(v)
        return v

    x_v = torch.randn(inp["shape_v"], generator=gen, device=device).to(dtype)
    x_a = torch.randn(inp["shape_a"], generator=gen, device=device).to(dtype)
    student_sample(velocity, x_v, x_a, timesteps, generator=gen)
    sync(device)
    return time.perf_counter() - start, split, velocities


def bench(name: str, cfg: StreamCharConfig, device, dtype, repeats: int) -> dict:
    torch.manual_seed(0)
    dit = JointDiT.from_config(cfg).to(device, dtype).eval()
    orch = Orchestrator.from_config(cfg).to(device, dtype).eval()
    inp = make_inputs(cfg, device, dtype)
    timesteps = student_timesteps(cfg.stream.student_timesteps, cfg.stream.shift)

    modes = ("cached", "full")
    vel = {mode: run_chunk(dit, orch, inp, timesteps, mode, dtype, device)[2] for mode in modes}  # warm-up
    runs = {mode: [] for mode in modes}
    for _ in range(repeats):  # interleaved, so a noisy machine slows both modes alike
        for mode in modes:
            runs[mode].append(run_chunk(dit, orch, inp, timesteps, mode, dtype, device)[:2])
    out = {}
    for mode in modes:
        times = [r[0] for r in runs[mode]]
        out[f"{mode}_s"] = statistics.median(times)
        out[f"{mode}_runs_s"] = [round(x, 4) for x in times]
        out[f"{mode}_split_s"] = {k: statistics.median(r[1][k] for r in runs[mode]) for k in ("orchestrator", "dit")}
        log(f"[{name}] {mode}: median {out[f'{mode}_s']:.4f} s over {repeats} (min {min(times):.4f}, max {max(times):.4f})")

    diff_v = max((a[0] - b[0]).abs().max().item() for a, b in zip(vel["cached"], vel["full"]))
    diff_a = max((a[1] - b[1]).abs().max().item() for a, b in zip(vel["cached"], vel["full"]))
    scale = max(max(v[0].abs().max().item(), v[1].abs().max().item()) for v in vel["full"])

    h, w = cfg.latent_size
    per_frame = (h // cfg.dit.patch_size[1]) * (w // cfg.dit.patch_size[2])
    K = cfg.video_latent_frames
    tokens = {
        "dit_condition": (1 + 2 * K) * per_frame,
        "dit_noisy_video": K * per_frame,
        "dit_noisy_audio": cfg.audio_latent_frames,
        "orchestrator_prefix": inp["ref_audio"].shape[1] + inp["text_ids"].shape[1] + inp["hist_audio"].shape[1],
        "orchestrator_cond": cfg.audio_latent_frames,
    }
    tokens["dit_full_sequence"] = tokens["dit_condition"] + tokens["dit_noisy_video"] + tokens["dit_noisy_audio"]
    tokens["dit_cached_sequence"] = tokens["dit_noisy_video"] + tokens["dit_noisy_audio"]
    tokens["orchestrator_full_sequence"] = tokens["orchestrator_prefix"] + tokens["orchestrator_cond"]
    steps = len(timesteps)
    # Tokens pushed through the linear layers per chunk, full / cached: the speedup the cache can give
    # where the matmuls dominate (attention and per-token overheads come on top).
    token_pass_ratio = {
        "dit": steps * tokens["dit_full_sequence"] / (tokens["dit_condition"] + steps * tokens["dit_cached_sequence"]),
        "orchestrator": steps * tokens["orchestrator_full_sequence"]
        / (tokens["orchestrator_prefix"] + steps * tokens["orchestrator_cond"]),
    }
    return {
        **out,
        "speedup": out["full_s"] / out["cached_s"],
        "max_abs_diff": max(diff_v, diff_a),
        "max_abs_diff_video": diff_v,
        "max_abs_diff_audio": diff_a,
        "max_abs_velocity": scale,
        "tokens": tokens,
        "token_pass_ratio": token_pass_ratio,
        "video": f"{cfg.video.height}x{cfg.video.width}",
        "params_m": {"dit": sum(p.numel() for p in dit.parameters()) / 1e6,
                     "orchestrator": sum(p.numel() for p in orch.parameters()) / 1e6},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per mode (median reported)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    device = pick_device(args.device)
    dtype = inference_dtype(device)

    results = {}
    with torch.no_grad():
        for name, cfg in (("tiny", tiny()), ("mid", mid())):
            results[name] = bench(name, cfg, device, dtype, args.repeats)

    print(json.dumps({
        "speedup_tiny": results["tiny"]["speedup"],
        "speedup_mid": results["mid"]["speedup"],
        "tiny": results["tiny"],
        "mid": results["mid"],
        "steps": len(tiny().stream.student_timesteps),
        "repeats": args.repeats,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "random_init": True,
    }, indent=2))


if __name__ == "__main__":
    main()
