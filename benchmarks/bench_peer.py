"""Our DiT against diffusers' WanTransformer3DModel at the same configuration, in the same run.

One denoise pass over the same video tokens (9 latent frames at 16x16, patch 1x2x2: 576 tokens) and the same
prompt context, random weights, no gradients. Ours runs `forward_full` with no condition frames and no audio
frames, so both do exactly the Wan block's work (self-attention with RoPE and QK-norm, cross-attention to the
prompt, the FFN, adaLN modulation). The two are timed interleaved, `--repeats` times after a warm-up, and the
medians compared: `ratio` = ours / diffusers (< 1: ours is faster).

    python benchmarks/bench_peer.py [--repeats 15] [--dtype fp32|bf16] [--device auto]

Configurations: the `tiny` preset's DiT dims and a 512-wide, 8-layer DiT. Each also times our DiT in fp32 against
bf16, interleaved (`bf16_speedup`), beside the dtype `--device auto` picks there (`auto_dtype`). Prints one JSON
object on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from diffusers import WanTransformer3DModel

from streamchar.config import DiTConfig, tiny
from streamchar.device import cpu_has_bf16, inference_dtype, pick_device, sync
from streamchar.models.dit import JointDiT

C, TEXT_DIM, TEXT_LEN, GRID = 16, 64, 32, (9, 16, 16)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def build(dit_cfg: DiTConfig, device, dtype):
    torch.manual_seed(0)
    ours = JointDiT(dit_cfg, video_channels=C, audio_channels=8, text_dim=TEXT_DIM, audio_rope_scale=0.25,
                    frames_per_chunk=GRID[0] * 4 - 3).to(device, dtype).eval()
    heads = dit_cfg.num_heads
    wan = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=dit_cfg.dim // heads,
                                in_channels=C, out_channels=C, text_dim=TEXT_DIM, freq_dim=dit_cfg.freq_dim,
                                ffn_dim=dit_cfg.ffn_dim, num_layers=dit_cfg.num_layers, cross_attn_norm=True,
                                qk_norm="rms_norm_across_heads", eps=1e-6).to(device, dtype).eval()
    return ours, wan


def inputs(dit_cfg: DiTConfig, device, dtype):
    """The pass's inputs: video latents (1, C, 9, 16, 16), no audio frames and no c_a, t, the prompt context."""
    g = torch.Generator().manual_seed(1)
    x_v = torch.randn(1, C, *GRID, generator=g).to(device, dtype)
    ctx = torch.randn(1, TEXT_LEN, TEXT_DIM, generator=g).to(device, dtype)
    x_a, c_a = x_v.new_zeros(1, 0, 8), x_v.new_zeros(1, 0, dit_cfg.dim)
    return x_v, x_a, c_a, torch.full((1,), 0.7, device=device), ctx


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


@torch.no_grad()
def compare(name: str, dit_cfg: DiTConfig, device, dtype, repeats: int) -> dict:
    ours, wan = build(dit_cfg, device, dtype)
    x_v, x_a, c_a, t, ctx = inputs(dit_cfg, device, dtype)
    step_ours = lambda: ours.forward_full(x_v, x_a, c_a, t, [], ctx)
    step_wan = lambda: wan(hidden_states=x_v, timestep=t * 1000, encoder_hidden_states=ctx, return_dict=False)
    for _ in range(2):  # warm-up
        step_ours(), step_wan()
    ours_s, wan_s = [], []
    for _ in range(repeats):
        ours_s.append(timed(step_ours, device))
        wan_s.append(timed(step_wan, device))
    o, w = statistics.median(ours_s), statistics.median(wan_s)
    log(f"{name}: ours {o * 1e3:.1f} ms, diffusers {w * 1e3:.1f} ms, ratio {o / w:.3f}")
    return {"name": name, "dim": dit_cfg.dim, "layers": dit_cfg.num_layers, "heads": dit_cfg.num_heads,
            "ffn_dim": dit_cfg.ffn_dim, "tokens": GRID[0] * GRID[1] * GRID[2] // 4, "ours_s": o, "diffusers_s": w,
            "ratio": o / w}


@torch.no_grad()
def bf16_speedup(dit_cfg: DiTConfig, device, repeats: int) -> dict:
    """Our DiT in fp32 and in bf16 on the same inputs, interleaved: `bf16_speedup` = fp32 / bf16 time."""
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        ours, _ = build(dit_cfg, device, dtype)
        runs[dtype] = lambda ours=ours, x=inputs(dit_cfg, device, dtype): ours.forward_full(*x[:4], [], x[4])
        runs[dtype](), runs[dtype]()  # warm-up
    times = {dtype: [] for dtype in runs}
    for _ in range(repeats):
        for dtype, step in runs.items():
            times[dtype].append(timed(step, device))
    fp32, bf16 = (statistics.median(times[d]) for d in (torch.float32, torch.bfloat16))
    log(f"  ours fp32 {fp32 * 1e3:.1f} ms, bf16 {bf16 * 1e3:.1f} ms, bf16 speedup {fp32 / bf16:.2f}")
    return {"ours_fp32_s": fp32, "ours_bf16_s": bf16, "bf16_speedup": fp32 / bf16}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    t = tiny().dit
    configs = [("tiny", DiTConfig(dim=t.dim, num_layers=t.num_layers, num_heads=t.num_heads, ffn_dim=t.ffn_dim,
                                  freq_dim=t.freq_dim)),
               ("dim512x8", DiTConfig(dim=512, num_layers=8, num_heads=8, ffn_dim=2048, freq_dim=256))]
    results = [compare(name, cfg, device, dtype, args.repeats) for name, cfg in configs]
    for (name, cfg), row in zip(configs, results):  # bf16 against fp32, ours alone, interleaved
        row.update(bf16_speedup(cfg, device, args.repeats))
    print(json.dumps({"configs": results, "dtype": args.dtype, "cpu_has_bf16": cpu_has_bf16(),
                      "auto_dtype": {name: str(inference_dtype(device, cfg.dim)).removeprefix("torch.")
                                     for name, cfg in configs}, "device": str(device), "repeats": args.repeats,
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "random_init": True},
                     indent=2))


if __name__ == "__main__":
    main()
